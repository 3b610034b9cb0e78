"""A server's copy of a database: loaded from the writer's snapshot, kept current by applying
the change feed, read by the serving code as the one process used to read its file.

Read-your-writes: a request notes the writer's committed sequence number as it arrives
(`CommittedSeq`, a memory read) and waits until the copy has applied the feed up to it, which
is usually at once; whichever server took a write, a request that arrives after its
acknowledgement sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server.cluster.client import WriterClient, WriterUnavailable, follow
from server.cluster.paths import CommittedSeq
from server.writer.commands import apply_entries
from storage.database import Database
from storage.errors import StorageError
from storage.export import import_snapshot

logger = logging.getLogger("reqo")

CATCH_UP_WAIT = 10.0
"""Seconds a request waits for this server's copy to reach the writer's committed writes."""


LAG_SAMPLES = 10_000
"""Feed lags kept for the percentiles that /-/health reports."""


class Behind(StorageError):
    """This server's copy did not catch up with the writer in time (503)."""

    status = 503


class Replica:
    """The copy of one database in a server (or trainer, or offline) process."""

    def __init__(
        self,
        name: str,
        client: WriterClient,
        socket: Path,
        committed: CommittedSeq | None,
        *,
        read_threads: int = 4,
    ) -> None:
        self.name = name
        self.client = client
        self.socket = socket
        self.committed = committed
        self.database = Database(name, None, read_threads=read_threads)
        self.applied = 0
        """The sequence number of the last change feed entry applied to the copy."""
        self.diverged = 0
        """Feed entries that the copy refused although the writer stored them."""
        self.last_applied_at = time.monotonic()
        self.lags: deque[float] = deque(maxlen=LAG_SAMPLES)
        """Seconds from the writer's commit to this copy holding it, of the latest entries."""
        self.listeners: list[Callable[[list[dict[str, Any]]], None]] = []
        """Called with each batch of applied entries (on the event loop)."""
        self._advanced = asyncio.Event()
        self._following: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Replace the copy by the writer's latest snapshot."""
        path, _ = await self.client.snapshot(self.name)
        seq = await self.database.write(lambda ctx: import_snapshot(ctx, path))
        self._advance(seq)
        logger.info("database %r: loaded the snapshot at %d", self.name, seq)

    async def start(self) -> None:
        """Load a snapshot and follow the feed from it (in the background)."""
        await self.load()
        self._following = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._following is not None:
            self._following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._following
        await asyncio.to_thread(self.database.close)

    async def _follow(self) -> None:
        while True:
            try:
                async for batch in follow(self.socket, self.name, self.applied):
                    if batch is None or not await self._apply(batch[0]):
                        # Too far behind for the feed, or a bulk import: a snapshot holds it.
                        await self.load()
                        break
                    if batch[1] is not None:
                        self.lags.append(time.time() - batch[1])
            except (WriterUnavailable, OSError) as error:
                logger.warning("database %r: the change feed is unreachable: %s", self.name, error)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("database %r: applying the change feed failed", self.name)
            await asyncio.sleep(0.05)

    async def _apply(self, entries: list[list[Any]]) -> bool:
        """Apply a batch of `[seq, entry]`; False where it stopped at an entry that asks for a
        snapshot instead (everything before it is applied)."""
        fresh = [e for e in entries if int(e[0]) > self.applied]
        reload_at = next((i for i, e in enumerate(fresh) if e[1].get("cmd") == "reload"), None)
        if reload_at is not None:
            fresh = fresh[:reload_at]
        if fresh:
            payloads: list[dict[str, Any]] = [e[1] for e in fresh]
            refused = await self.database.write(lambda ctx: apply_entries(ctx, payloads))
            if refused:
                self.diverged += refused
                logger.error(
                    "database %r: %d change feed entries were refused by this copy",
                    self.name,
                    refused,
                )
            self._advance(int(fresh[-1][0]))
            for listener in self.listeners:
                try:
                    listener(payloads)
                except Exception:
                    logger.exception("database %r: a change feed listener failed", self.name)
        return reload_at is None

    def _advance(self, seq: int) -> None:
        self.applied = seq
        self.last_applied_at = time.monotonic()
        event, self._advanced = self._advanced, asyncio.Event()
        event.set()

    def lag_ms(self) -> dict[str, float | int | None]:
        """The feed lag's median and 99th percentile over the latest entries (milliseconds)."""
        samples = sorted(self.lags)
        if not samples:
            return {"samples": 0, "p50": None, "p99": None}

        def at(q: float) -> float:
            return round(samples[min(len(samples) - 1, int(q * len(samples)))] * 1e3, 3)

        return {"samples": len(samples), "p50": at(0.5), "p99": at(0.99)}

    def target(self) -> int:
        """The writer's committed sequence number now (what a request must see)."""
        return self.committed.get() if self.committed is not None else self.applied

    async def caught_up(self, seq: int | None = None, *, extra: float = 0.0) -> None:
        """Wait until the copy has applied the feed up to `seq` (default: what the writer has
        committed now), for `CATCH_UP_WAIT` (plus `extra`) seconds at most."""
        target = self.target() if seq is None else seq
        if self.applied >= target:
            return
        deadline = time.monotonic() + CATCH_UP_WAIT + extra
        while self.applied < target:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Behind(
                    f"database '{self.name}': this server has not caught up with the writer "
                    f"(applied {self.applied} of {target}); try again shortly"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), remaining)
