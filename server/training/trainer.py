"""The trainer role: fits models from snapshots and publishes versioned artifacts.

Training never runs in a server process or inside a request. The trainer fits every model every
`train_every` seconds, and on demand: servers ask it (on its Unix socket) for a model that has
no version yet (they serve its fallback meanwhile), and `POST /{db}/-/train` waits for it. Each
round loads the writer's latest snapshot into a database of its own; servers notice the new
versions in the models directory and swap them in.

The trainer runs at a lower CPU priority than the servers, so that a retrain slows requests as
little as the machine allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import numpy as np

from plugins.manager import Registry
from server.cluster.client import WriterClient
from server.cluster.paths import socket_path
from server.cluster.wire import WireError, encode, read_frame
from server.config import Config
from server.training.artifacts import (
    current_version,
    learns_from_shards,
    train_model,
    train_model_from_shards,
    training_order,
)
from storage.database import Database
from storage.embeddings import added_since
from storage.errors import StorageError
from storage.export import import_snapshot
from storage.text_vectors import payloads

logger = logging.getLogger("reqo")

NICENESS = 15
"""How much lower than the servers' the trainer's CPU priority is."""


class TrainerService:
    """Trains the configured models of every database, one round at a time."""

    def __init__(
        self, config: Config, registry: Registry, client: WriterClient | None = None
    ) -> None:
        self.config = config
        self.registry = registry
        self.client = client or WriterClient(socket_path(config.data_dir, "writer"))
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.rounds = 0

    async def run(self) -> None:
        """Listen for requests, train what is missing, then retrain on the schedule."""
        with contextlib.suppress(OSError):
            os.nice(NICENESS)
        path = socket_path(self.config.data_dir, "trainer")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server = await asyncio.start_unix_server(self._connection, path=str(path))
        os.chmod(path, 0o600)
        async with server:
            await self._schedule()

    async def schedule(self) -> None:
        """Retrain every model of every database on the `train_every` schedule, forever."""
        await self._schedule()

    async def _schedule(self) -> None:
        while True:
            interval = self.config.train_every
            await asyncio.sleep(interval if interval else 60.0)
            if not self.config.train_every:
                continue
            for name in self.config.databases:
                await self._train_logged(name, None, missing_only=False)

    async def _train_logged(
        self, database: str, models: list[str] | None, *, missing_only: bool
    ) -> None:
        try:
            await self.train(database, models, missing_only=missing_only)
        except Exception:
            logger.exception("trainer: training %s failed", database)

    async def train(
        self, database: str, models: list[str] | None, *, missing_only: bool = False
    ) -> dict[str, str]:
        """Fit models of a database on its latest snapshot; their new versions by name."""
        configs = dict(self.config.models)
        names = sorted(configs) if models is None else models
        for name in names:
            if name not in configs:
                raise StorageError(f"unknown model '{name}'")
        directory = self.config.models_dir(database)
        if missing_only:
            names = [n for n in names if current_version(directory, n) is None]
        if not names:
            return {}
        async with self._lock:
            versions = await self.fit(database, names)
            self.rounds += 1
            # Through the change feed: every server loads them before it answers a request
            # that arrives after this one's answer.
            await self.publish(database, versions)
            return versions

    def writer(self, database: str) -> WriterClient:
        """The client of a database's writer."""
        return self.client

    async def publish(self, database: str, versions: dict[str, str]) -> None:
        """Announce new model versions in the database's change feed."""
        await self.writer(database).write(database, "models", {"versions": versions})

    async def fit(self, database: str, names: list[str]) -> dict[str, str]:
        """Fit models of a database on the writer's latest snapshot, in this process (a
        thread); their new versions by name. (On a Ray cluster, a task fits them.)"""
        path, seq = await self.client.snapshot(database)
        logger.info("trainer: fitting %s of %r at %d", ", ".join(names), database, seq)
        embedded: list[NewVectors] = []
        try:
            versions = await asyncio.to_thread(
                fit_snapshot, self.config, self.registry, database, path, names, embedded=embedded
            )
        finally:
            await self.client.done_with(path)
        await self.keep_vectors(database, embedded)
        return versions

    async def keep_vectors(self, database: str, embedded: list[NewVectors]) -> None:
        """Send the image vectors that training embedded to the writer's cache (the copy they
        were cached in is gone), so that the next round does not embed them again."""
        try:
            for found in embedded:
                for (embedder, digest), vectors in found.items():
                    for payload in payloads(embedder, digest, vectors, VECTORS_AT_ONCE):
                        await self.writer(database).write(database, "image-vectors", payload)
        except (OSError, WireError, StorageError) as error:
            logger.warning("trainer: image vectors not cached: %s", error)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(WireError, asyncio.CancelledError):
            while True:
                message = await read_frame(reader)
                self._spawn(self._answer(message, writer))

    async def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        """Answer a `train` request (`db`, `models`, `wait`): with the new versions, or at once
        (`wait: false`) with the models queued; a refusal as `ok: false`."""
        try:
            database = str(message.get("db"))
            if database not in self.config.databases:
                raise StorageError(f"database '{database}' is not configured")
            models = message.get("models")
            if message.get("wait", True):
                versions = await self.train(database, models)
                return {"ok": True, "versions": versions}
            self._spawn(self._train_logged(database, models, missing_only=True))
            return {"ok": True, "queued": True}
        except StorageError as error:
            return {"ok": False, "status": error.status, "error": error.message}
        except Exception as error:
            logger.exception("trainer: a request failed")
            return {"ok": False, "status": 500, "error": f"{type(error).__name__}"}

    async def _answer(self, message: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        reply = {"id": message.get("id"), **await self.answer(message)}
        if not writer.is_closing():
            writer.write(encode(reply))


NewVectors = dict[tuple[str, str], dict[str, np.ndarray[Any, Any]]]
"""Image vectors by (embedder, settings digest), then image hash."""
VECTORS_AT_ONCE = 500
"""Image vectors per `image-vectors` write (about 3.4 MB of base64 at 1,280 dimensions)."""

SHARD_ROWS = 1_000_000
"""Interaction rows a model that trains in shards reads at a time."""


def fit_snapshot(
    config: Config,
    registry: Registry,
    name: str,
    snapshot: Path,
    names: list[str],
    *,
    batch_rows: int = SHARD_ROWS,
    embedded: list[NewVectors] | None = None,
) -> dict[str, str]:
    """Fit models of a database on a snapshot directory and publish them in its models
    directory; their new versions by name. Past `train_in_shards_over` interactions, the models
    that learn from mini-batches read the snapshot's files in shards; the others (and all of
    them below it) learn from the snapshot loaded into a database of this process.
    `embedded`: where to add the image vectors that training embedded (for the writer's
    cache; this process's database goes when training ends)."""
    configs = dict(config.models)
    directory = config.models_dir(name)
    sharded = interaction_rows(snapshot) > config.train_in_shards_over
    database: Database | None = None
    try:
        versions: dict[str, str] = {}
        for model in training_order(names, configs, registry):
            started = time.monotonic()
            logger.info(
                "trainer: training %s of %r%s",
                model,
                name,
                " in shards" if sharded else "",
                extra={"event": "training_start", "db": name, "model": model},
            )
            try:
                if sharded and learns_from_shards(configs[model], registry):
                    train_model_from_shards(
                        snapshot, configs[model], registry, directory, batch_rows=batch_rows
                    )
                else:
                    if database is None:
                        database = Database(name, None, read_threads=1)
                        database.write_sync(lambda ctx: import_snapshot(ctx, snapshot))
                    train_model(database, configs[model], registry, directory, configs)
            except BaseException:
                record_training(name, model, None, time.monotonic() - started)
                raise
            version = current_version(directory, model)
            record_training(name, model, version, time.monotonic() - started)
            if version is not None:
                versions[model] = version
        if database is not None and embedded is not None:
            embedded.append(added_since(database, snapshot))
        return versions
    finally:
        if database is not None:
            database.close()


def record_training(database: str, model: str, version: str | None, seconds: float) -> None:
    """Log a training's end (or failure: no version) with its figures, and count it."""
    from server.telemetry.metrics import TRAINED_AT, TRAINING_SECONDS, TRAININGS

    TRAININGS.labels(database, model, "ok" if version else "failed").inc()
    fields = {"db": database, "model": model, "seconds": round(seconds, 3)}
    if version is None:
        logger.error(
            "trainer: training %s of %r failed after %.1f s",
            model,
            database,
            seconds,
            extra={"event": "training_failed", **fields},
        )
        return
    TRAINED_AT.labels(database, model).set(time.time())
    TRAINING_SECONDS.labels(database, model).set(seconds)
    logger.info(
        "trainer: trained %s of %r in %.1f s: version %s",
        model,
        database,
        seconds,
        version,
        extra={"event": "training_end", "version": version, **fields},
    )


def interaction_rows(snapshot: Path) -> int:
    """How many interactions a snapshot directory holds (from its Parquet file's footer)."""
    import pyarrow.parquet as pq

    path = snapshot / "interactions.parquet"
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0
