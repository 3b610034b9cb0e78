"""A server's copy of a database: loaded from the writer's snapshot, kept current by applying
the change feed, read by the serving code as the one process used to read its file.

Read-your-writes: a request notes the writer's committed sequence number as it arrives
(`CommittedSeq`, a memory read; on a cluster, `RemoteCommitted` asks the writer) and waits
until the copy has applied the feed up to it, which is usually at once; whichever server took a
write, a request that arrives after its acknowledgement sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from server.cluster.client import RemoteCommitted, WriterClient, WriterUnavailable, follow
from server.cluster.paths import CommittedSeq
from server.writer.commands import apply_entries
from storage.contexts import WriteContext
from storage.database import Database
from storage.errors import StorageError
from storage.export import import_snapshot
from storage.recommendations import Recommendation, log_recommendations, record_from_json

logger = logging.getLogger("reqo")

CATCH_UP_WAIT = 10.0
"""Seconds a request waits for this server's copy to reach the writer's committed writes."""


LOG_FLUSH_INTERVAL = 1.0
"""Seconds the recommendation records from the feed stay in memory before the copy's table gets
them (sooner where an entry reads or changes that table, or a query needs it)."""

MAX_RECENT = 20_000
"""Records kept in memory at most before they are stored."""

LAG_SAMPLES = 10_000
"""Feed lags kept for the percentiles that /-/health reports."""


Frame = tuple[list[Any], float | None]
"""A change feed frame: its `[seq, entry]`s and the time of their commit."""

Inbox = asyncio.Queue[Frame | None]
"""Frames received and not yet applied (None: the feed no longer reaches back)."""


class Behind(StorageError):
    """This server's copy did not catch up with the writer in time (503)."""

    status = 503


class Replica:
    """The copy of one database in a server (or trainer, or offline) process."""

    def __init__(
        self,
        name: str,
        client: WriterClient,
        committed: CommittedSeq | RemoteCommitted | None,
        *,
        read_threads: int = 4,
    ) -> None:
        self.name = name
        self.client = client
        self.committed = committed
        self.database = Database(name, None, read_threads=read_threads)
        self.applied = 0
        """The sequence number of the last change feed entry applied to the copy."""
        self.diverged = 0
        """Feed entries that the copy refused although the writer stored them."""
        self.lags: deque[float] = deque(maxlen=LAG_SAMPLES)
        """Seconds from the writer's commit to this copy holding it, of the latest entries."""
        self.listeners: list[Callable[[list[dict[str, Any]]], None]] = []
        """Called with each batch of applied entries (on the event loop)."""
        self.preparers: list[Callable[[list[dict[str, Any]]], Awaitable[None]]] = []
        """Awaited with each batch of entries before the copy counts them as applied (a model
        publication: the server loads the new versions first)."""
        self.reloaded: list[Callable[[], Awaitable[None]]] = []
        """Awaited after a snapshot replaced the copy, before the copy counts it as loaded
        (a full-text index built again)."""
        self.recent = RecentRecords()
        """Recommendation records from the feed, kept in memory until stored in the table."""
        self._advanced = asyncio.Event()
        self._following: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Replace the copy by the writer's latest snapshot."""
        path, _ = await self.client.snapshot(self.name)
        try:
            seq = await self.database.write(lambda ctx: _load_copy(ctx, path))
        finally:
            await self.client.done_with(path)
        for reload in self.reloaded:
            await reload()
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
        """Receive the feed into an inbox, and apply what has gathered there as one job (a
        copy that fell behind catches up in a few large transactions, not many small ones)."""
        inbox: Inbox = asyncio.Queue()
        applying = asyncio.create_task(self._apply_from(inbox))
        try:
            while True:
                try:
                    async for batch in follow(self.client, self.name, self.applied):
                        await inbox.put(batch)
                        if batch is None:
                            break
                except (WriterUnavailable, OSError) as error:
                    logger.warning(
                        "database %r: the change feed is unreachable: %s", self.name, error
                    )
                # Resubscribe once the inbox is applied, from where the copy got to.
                await inbox.join()
                await asyncio.sleep(0.05)
        finally:
            applying.cancel()

    async def _apply_from(
        self, inbox: asyncio.Queue[tuple[list[Any], float | None] | None]
    ) -> None:
        while True:
            try:
                first = await asyncio.wait_for(inbox.get(), LOG_FLUSH_INTERVAL)
            except TimeoutError:
                await self._flush_log_if_due()
                continue
            batches = [first]
            while not inbox.empty():
                batches.append(inbox.get_nowait())
            try:
                await self._apply_batches(batches)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("database %r: applying the change feed failed", self.name)
            finally:
                for _ in batches:
                    inbox.task_done()

    async def _apply_batches(self, batches: list[Frame | None]) -> None:
        entries: list[list[Any]] = []
        lags: list[float] = []
        resync = False
        for batch in batches:
            if batch is None:
                resync = True
                break
            entries.extend(batch[0])
            if batch[1] is not None:
                lags.append(batch[1])
        if not await self._apply(entries) or resync:
            # Too far behind for the feed, or a bulk import: a snapshot holds it.
            await self.load()
        now = time.time()
        self.lags.extend(now - at for at in lags)
        await self._flush_log_if_due()

    async def _apply(self, entries: list[list[Any]]) -> bool:
        """Apply `[seq, entry]`s; False where it stopped at an entry that asks for a snapshot
        instead (everything before it is applied).

        Recommendation records (`log`) are kept in memory (`recent`) and stored in the copy's
        table in large batches (`LOG_FLUSH_INTERVAL`), before any entry that reads or changes
        that table: most of the feed under load is records, and a small insert costs DuckDB
        about as much as a large one."""
        fresh = [e for e in entries if int(e[0]) > self.applied]
        reload_at = next((i for i, e in enumerate(fresh) if e[1].get("cmd") == "reload"), None)
        if reload_at is not None:
            fresh = fresh[:reload_at]
        if not fresh:
            return reload_at is None
        payloads: list[dict[str, Any]] = []
        stored: list[Recommendation] = []
        for _, payload in fresh:
            if payload.get("cmd") == "log":
                for data in payload["records"]:
                    self.recent.add(record_from_json(data))
                continue
            if _touches_log(payload):
                records = self.recent.unstored()
                payloads.append({"cmd": "_stored", "records": records})
                stored.extend(records)
            payloads.append(payload)
        if payloads:
            refused = await self.database.write(lambda ctx: self._apply_entries(ctx, payloads))
            if refused:
                self.diverged += refused
                logger.error(
                    "database %r: %d change feed entries were refused by this copy",
                    self.name,
                    refused,
                )
        self.recent.stored(stored)
        applied = [e[1] for e in fresh]
        for prepare in self.preparers:
            try:
                await prepare(applied)
            except Exception:
                logger.exception("database %r: preparing for change feed entries failed", self.name)
        self._advance(int(fresh[-1][0]))
        for listener in self.listeners:
            try:
                listener(applied)
            except Exception:
                logger.exception("database %r: a change feed listener failed", self.name)
        return reload_at is None

    def _apply_entries(self, ctx: WriteContext, payloads: list[dict[str, Any]]) -> int:
        """The job that applies a batch: records kept in memory are stored where an entry
        needs them in the table (`_stored`), the rest as the writer applied it."""
        refused = 0
        run: list[dict[str, Any]] = []
        for payload in payloads:
            if payload["cmd"] != "_stored":
                run.append(payload)
                continue
            refused += apply_entries(ctx, run)
            run = []
            store_records(ctx, payload["records"])
        refused += apply_entries(ctx, run)
        return refused

    async def flush_log(self) -> None:
        """Store the records kept in memory in the copy's table (before a query reads it)."""
        records = self.recent.unstored()
        if records:
            await self.database.write(lambda ctx: store_records(ctx, records))
        self.recent.stored(records)

    async def _flush_log_if_due(self) -> None:
        if self.recent.due():
            await self.flush_log()

    def _advance(self, seq: int) -> None:
        self.applied = seq
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

    def last_known_target(self) -> int:
        """The writer's committed sequence number as last learnt, without asking it."""
        if self.committed is None:
            return self.applied
        if isinstance(self.committed, CommittedSeq):
            return self.committed.get()
        return max(self.committed.last, self.applied)

    async def target(self) -> int:
        """The writer's committed sequence number now (what a request must see)."""
        if self.committed is None:
            return self.applied
        if isinstance(self.committed, CommittedSeq):
            return self.committed.get()
        return await self.committed.get()

    async def caught_up(self, seq: int | None = None, *, extra: float = 0.0) -> None:
        """Wait until the copy has applied the feed up to `seq` (default: what the writer has
        committed now), for `CATCH_UP_WAIT` (plus `extra`) seconds at most."""
        target = await self.target() if seq is None else seq
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


def _load_copy(ctx: WriteContext, snapshot: Path) -> int:
    """Load a snapshot into a server's copy, with what serving reads by: the interactions of
    one user (a recommendation whose history index is being rebuilt reads its user's rows)."""
    seq = import_snapshot(ctx, snapshot)
    ctx.conn.execute("CREATE INDEX IF NOT EXISTS interactions_by_user ON interactions (user_id)")
    return seq


def _touches_log(payload: dict[str, Any]) -> bool:
    """Whether applying an entry reads or changes the recommendations table (so the records
    kept in memory must be stored first)."""
    cmd = payload.get("cmd")
    if cmd == "extend":
        return True
    if cmd == "calls":
        return any(call.get("op") == "reset database" for call in payload["calls"])
    return False


def store_records(ctx: WriteContext, records: list[Recommendation]) -> None:
    """Insert records that may be in the table already (a flush and an entry's own storing
    may overlap): those are left as they are."""
    if not records:
        return
    ids = [r.recomm_id for r in records]
    present = {
        row[0]
        for row in ctx.conn.execute(
            "SELECT recomm_id FROM recommendations WHERE recomm_id IN (SELECT unnest(?))", [ids]
        ).fetchall()
    }
    fresh = [r for r in records if r.recomm_id not in present]
    if fresh:
        log_recommendations(ctx, fresh)


class RecentRecords:
    """Recommendation records that this copy holds in memory, not yet in its table."""

    def __init__(self) -> None:
        self.by_id: dict[str, Recommendation] = {}
        self._by_user: dict[str, list[Recommendation]] = {}
        self._since = time.monotonic()

    def add(self, record: Recommendation) -> None:
        if not self.by_id:
            self._since = time.monotonic()
        self.by_id[record.recomm_id] = record
        if record.user_id is not None:
            self._by_user.setdefault(record.user_id, []).append(record)

    def get(self, recomm_id: str) -> Recommendation | None:
        return self.by_id.get(recomm_id)

    def shown(self, user_id: str, since: float) -> dict[str, int]:
        """How often each item was recommended to the user since a time."""
        counts: dict[str, int] = {}
        for record in self._by_user.get(user_id, ()):
            if record.timestamp >= since:
                for item in record.returned:
                    counts[item] = counts.get(item, 0) + 1
        return counts

    def unstored(self) -> list[Recommendation]:
        return list(self.by_id.values())

    def stored(self, records: list[Recommendation]) -> None:
        """Forget records that the table now holds."""
        for record in records:
            self.by_id.pop(record.recomm_id, None)
        self._by_user = {}
        for record in self.by_id.values():
            if record.user_id is not None:
                self._by_user.setdefault(record.user_id, []).append(record)

    def due(self) -> bool:
        return bool(self.by_id) and (
            len(self.by_id) >= MAX_RECENT or time.monotonic() - self._since >= LOG_FLUSH_INTERVAL
        )
