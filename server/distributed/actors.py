"""The stateful roles as Ray actors: each database's writer, and the trainer that sends
training to Ray tasks.

A writer actor runs `WriterService` for one database on the node that holds its file (a hard
node affinity, so Ray restarts it there after it dies: the file's WAL holds every acknowledged
write). Servers reach it on a TCP port that asks for the cluster's token; snapshots travel
through Ray's object store. An actor that restarts listens on a new port: servers find it
through the actor again (`address`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import ray

from plugins.manager import Registry
from server.cluster.client import WriterClient
from server.config import Config, load_config
from server.distributed.links import RayLinks, RayWriterClient
from server.distributed.metrics import publish_forever
from server.distributed.names import NAMESPACE, writer_actor
from server.telemetry.logs import configure_logging
from server.training.trainer import NewVectors, TrainerService, fit_snapshot
from server.writer.service import WriterService

logger = logging.getLogger("reqo")

TRAIN_RETRIES = 3
"""Times Ray runs a training task again after its process died (a node lost, a kill)."""


def _logging(role: str) -> None:
    configure_logging(role=role, log_format="json")


class WriterActor:
    """The writer of one database (a Ray actor; `reqo serve --ray` starts one per database)."""

    def __init__(self, config_path: str, database: str, token: str) -> None:
        _logging("writer")
        self.config = load_config(Path(config_path))
        self.database = database
        self.token = token
        self._service: WriterService | None = None
        self._address: tuple[str, int] | None = None
        self._lock = asyncio.Lock()
        self._publishing: asyncio.Task[None] | None = None

    async def _started(self) -> WriterService:
        # Ray runs an async actor's constructor outside its event loop: the service opens on
        # the first call (after a restart too; every caller locates the writer first).
        async with self._lock:
            if self._service is None:
                service = WriterService(self.config, [self.database], token=self.token)
                await asyncio.to_thread(self.config.check_data_dir)
                service.open()
                host = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
                self._address = await service.listen_tcp(host, 0)
                self._service = service
                self._publishing = asyncio.create_task(publish_forever(f"writer-{self.database}"))
            return self._service

    async def address(self) -> tuple[str, int]:
        """Where the writer listens (host, port)."""
        await self._started()
        assert self._address is not None
        return self._address

    async def snapshot(self) -> tuple[int, dict[str, bytes]]:
        """The latest snapshot: its sequence number and its files' contents by name."""
        service = await self._started()
        path = await service.snapshot(self.database)
        files = await asyncio.to_thread(_read_files, path)
        return int(path.name), files

    async def pid(self) -> int:
        """The actor's process id (tests kill it)."""
        return os.getpid()

    async def stop(self) -> None:
        """Close the database (before the actor is killed on shutdown)."""
        async with self._lock:
            if self._service is not None:
                await asyncio.to_thread(self._service.close)
                self._service = None


def _read_files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


def write_files(files: dict[str, bytes], parent: Path | None = None) -> Path:
    """Write a snapshot's files into a new temporary directory; returns it."""
    directory = Path(tempfile.mkdtemp(prefix="reqo-snapshot-", dir=parent))
    for name, content in files.items():
        (directory / Path(name).name).write_bytes(content)
    return directory


class TrainerActor:
    """The trainer of a Ray cluster: answers servers' requests and runs the schedule; each
    fit is a Ray task (on a GPU where the cluster has one, retried if its process dies)."""

    def __init__(self, config_path: str, token: str) -> None:
        _logging("trainer")
        from server.api.app import load_registry

        self.config_path = config_path
        self.config = load_config(Path(config_path))
        self.token = token
        self.service = RayTrainerService(
            self.config, load_registry(self.config), config_path=config_path, token=token
        )
        self._scheduled: asyncio.Task[None] | None = None

    def _start(self) -> None:
        if self._scheduled is None:
            self._scheduled = asyncio.get_running_loop().create_task(self.service.schedule())

    async def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        """A server's `train` request (as `TrainerService.answer`)."""
        self._start()
        return await self.service.answer(message)

    async def ping(self) -> int:
        self._start()
        return os.getpid()


class RayTrainerService(TrainerService):
    """The trainer whose fits are Ray tasks."""

    def __init__(self, config: Config, registry: Registry, *, config_path: str, token: str) -> None:
        self.links = RayLinks(token)
        super().__init__(config, registry, client=RayWriterClient(writer_actor, token=token))
        self.config_path = config_path

    def writer(self, database: str) -> WriterClient:
        return self.links.writer(database)

    async def fit(self, database: str, names: list[str]) -> dict[str, str]:
        gpus = self.config.ray.train_gpus if self.config.ray is not None else None
        if gpus is None:
            resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
            gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        task = fit_task.options(num_gpus=gpus, max_retries=TRAIN_RETRIES)
        fitted: tuple[dict[str, str], list[NewVectors]] = await task.remote(
            self.config_path, database, names
        )
        versions, embedded = fitted
        await self.keep_vectors(database, embedded)
        return versions


@ray.remote(num_cpus=1)
def fit_task(
    config_path: str, database: str, names: list[str]
) -> tuple[dict[str, str], list[NewVectors]]:
    """Fit models of a database on its writer's latest snapshot (from the object store) and
    publish them in the shared models directory; their new versions by name, and the image
    vectors that training embedded (for the writer's cache)."""
    _logging("training")
    from server.api.app import load_registry

    config = load_config(Path(config_path))
    marker = config.models_dir(database) / ".training.pid"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))  # where this attempt runs (tests kill it)
    writer = ray.get_actor(writer_actor(database), namespace=NAMESPACE)
    reference: Any = writer.snapshot.remote()
    seq, files = ray.get(reference)
    snapshot = write_files(files)
    try:
        logger.info("training task: fitting %s of %r at %d", ", ".join(names), database, seq)
        embedded: list[NewVectors] = []
        versions = fit_snapshot(
            config, load_registry(config), database, snapshot, names, embedded=embedded
        )
        return versions, embedded
    finally:
        import shutil

        shutil.rmtree(snapshot, ignore_errors=True)
