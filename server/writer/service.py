"""The writer role: the only process that opens the databases' files for writing.

It listens on a Unix socket (and, on a cluster, on a TCP port that asks for the cluster's token)
for what the other roles send:
- `write`: a command (`server.writer.commands`) to apply and commit; the answer carries the
  change feed's committed sequence number, so that the sender can wait for its copy to reach it;
- `subscribe`: the connection becomes a stream of change feed entries, from a given sequence
  number on (from the feed table first, then live as groups commit);
- `import`: a bulk import of a file (servers load a snapshot after it);
- `snapshot`: a consistent Parquet export of a database, with its sequence number;
- `ping`.

The change feed's committed number is also published in a mapped file (`CommittedSeq`) before a
commit's writes are acknowledged, so a server learns it without asking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from server.cluster.paths import CommittedSeq, snapshots_dir, socket_path
from server.cluster.wire import WireError, encode, read_frame
from server.config import Config
from server.writer.commands import command
from storage.bulk import import_file
from storage.database import CoalescedJob, Database, ReadContext, WriteContext, WriteJob
from storage.errors import StorageError
from storage.export import export_snapshot, import_snapshot
from storage.feed import RELOAD_ENTRY, Entry, entries_after

logger = logging.getLogger("reqo")

CATCH_UP_CHUNK = 10_000
"""Feed entries read from the table at a time for a subscriber that catches up."""

MAX_SUBSCRIBER_BUFFER = 64 * 2**20
"""Bytes queued for a subscriber that does not read; beyond it the writer drops the connection
(the subscriber reconnects and catches up from the table)."""

SNAPSHOT_LIFETIME = 600.0
"""Seconds an older snapshot stays on disk for readers that are still loading it."""

GROUP_WAIT = 0.002
"""Seconds the writer gathers concurrent writes (recommendations' records, interactions) into
one commit: each commit costs milliseconds whatever it holds, and each group is one change
feed frame for every server to apply."""


def count_writes(database: str, command: str, payload: dict[str, Any], result: Any) -> None:
    """`reqo_writes_total`: Recombee's writes by operation (those that succeeded), reqo's own
    (recommendation records, model versions, …) by command."""
    from server.telemetry.metrics import WRITES

    if command != "calls":
        WRITES.labels(database, command).inc()
        return
    for call, answer in zip(payload.get("calls", ()), result or (), strict=False):
        if isinstance(answer, dict) and answer.get("code", 500) < 300:
            WRITES.labels(database, str(call.get("op"))).inc()


def _entries_after(ctx: ReadContext, after: int) -> list[Entry] | None:
    return entries_after(ctx.conn, after, CATCH_UP_CHUNK)


def _frame(entries: Sequence[Entry], committed_at: float | None) -> bytes:
    """A feed frame; the entries are JSON already: they travel as they are, not as strings."""
    frame: dict[str, Any] = {"entries": [(seq, orjson.Fragment(text)) for seq, text in entries]}
    if committed_at is not None:
        frame["at"] = committed_at  # the commit's time, for the servers' feed lag
    return encode(frame)


def restore(ctx: WriteContext, path: Path) -> None:
    """Replace every table by a backup's; servers load a snapshot after it (a reload entry)."""
    import_snapshot(ctx, path)
    ctx.record(RELOAD_ENTRY)


def submit(database: Database, name: str, payload: dict[str, Any]) -> Future[Any]:
    """Queue a write command on the database's writer thread (commands that apply many at once
    join their neighbours); the future resolves after its commit."""
    found = command(name)
    if "now" not in payload:
        payload["now"] = time.time_ns() // 1000
    if found.apply_many is not None:
        return database.submit(CoalescedJob(found.apply_many, payload))
    apply = found.apply
    assert apply is not None
    return database.submit(WriteJob(lambda ctx: apply(ctx, payload)))


@dataclass
class _Subscriber:
    writer: asyncio.StreamWriter
    last_sent: int
    live: bool = False
    held: list[Entry] = field(default_factory=list)


@dataclass
class _Served:
    database: Database
    seq: CommittedSeq
    subscribers: list[_Subscriber] = field(default_factory=list)
    snapshot_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class WriterService:
    """Opens every configured database for writing and answers the other roles."""

    def __init__(
        self, config: Config, databases: Sequence[str] | None = None, token: str | None = None
    ) -> None:
        self.config = config
        self.databases = list(config.databases) if databases is None else list(databases)
        """The databases this writer opens (on a cluster, each has a writer of its own)."""
        self.token = token
        """What a TCP connection must send first (`hello`); none is asked on the Unix socket."""
        self._served: dict[str, _Served] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tcp_loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        for name in self.databases:
            database = Database(
                name,
                self.config.database_path(name),
                read_threads=self.config.read_threads,
                feed=True,
            )
            database.group_wait = GROUP_WAIT
            seq = CommittedSeq(self.config.data_dir, name, writable=True)
            assert database.feed is not None
            seq.set(database.feed.committed_seq)
            served = _Served(database, seq)
            database.feed.listeners.append(self._listener(served))
            self._served[name] = served
            # Snapshots are named by sequence number, which tells only writes through a writer
            # apart: a file replaced or written offline since (a restored backup, an import
            # with the server stopped) may hold other data at the same number.
            self._forget_snapshots(snapshots_dir(self.config.data_dir, name))

    @staticmethod
    def _forget_snapshots(parent: Path) -> None:
        for old in parent.iterdir():
            shutil.rmtree(old, ignore_errors=True)

    def _listener(self, served: _Served) -> Any:
        loop = self._loop
        assert loop is not None

        def published(entries: Sequence[Entry]) -> None:
            # On the database's writer thread, before the group's writes are acknowledged.
            served.seq.set(entries[-1][0])
            loop.call_soon_threadsafe(self._fan_out, served, list(entries), time.time())

        return published

    async def serve(self) -> None:
        """Listen on the writer socket until cancelled."""
        path = socket_path(self.config.data_dir, "writer")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._server = await asyncio.start_unix_server(self._connection, path=str(path))
        os.chmod(path, 0o600)
        logger.info("writer: listening on %s", path)
        async with self._server:
            await self._server.serve_forever()

    async def listen_tcp(self, host: str, port: int = 0) -> tuple[str, int]:
        """Also listen on a TCP port (a cluster's servers reach the writer there; each
        connection must open with the token); returns the address. Serves until closed."""
        if self.token is None:
            raise ValueError("a TCP listener needs a token")
        server = await asyncio.start_server(
            partial(self._connection, needs_token=True), host=host, port=port, limit=2**20
        )
        self._tcp = server
        self._tcp_loop = asyncio.get_running_loop()
        bound = server.sockets[0].getsockname()
        logger.info("writer: listening on %s:%d", bound[0], bound[1])
        return str(bound[0]), int(bound[1])

    def close(self) -> None:
        """Stop listening on TCP and close the databases; callable from any thread."""
        server, loop = self._tcp, self._tcp_loop
        if server is not None and loop is not None and not loop.is_closed():
            # asyncio's Server is not thread-safe: closed from another thread while its loop
            # detaches a connection, it wakes its waiters twice and fails.
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop or not loop.is_running():
                server.close()
            else:
                loop.call_soon_threadsafe(server.close)
        for served in self._served.values():
            served.database.close()
            served.seq.close()
        self._served.clear()

    # -- connections ----------------------------------------------------------------------------

    async def _connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        needs_token: bool = False,
    ) -> None:
        try:
            if needs_token:
                hello = await read_frame(reader)
                if not isinstance(hello, dict) or hello.get("op") != "hello":
                    return
                token = hello.get("token")
                if not isinstance(token, str):
                    return
                if not secrets.compare_digest(token, self.token or ""):
                    logger.warning("writer: a connection sent a wrong token; closed")
                    return
            while True:
                message = await read_frame(reader)
                if message.get("op") == "subscribe":
                    await self._subscribe(message, reader, writer)
                    return
                # A write runs to its end even if the sender goes away: it may have committed.
                task = asyncio.create_task(self._answer(message, writer))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (WireError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _answer(self, message: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        ident = message.get("id")
        try:
            body = await self._handle(message)
            reply = {"id": ident, "ok": True, **body}
        except StorageError as error:
            reply = {"id": ident, "ok": False, "status": error.status, "error": error.message}
        except Exception as error:
            logger.exception("writer: %s failed", message.get("op"))
            reply = {
                "id": ident,
                "ok": False,
                "status": 500,
                "error": f"internal error: {type(error).__name__}",
            }
        if not writer.is_closing():
            writer.write(encode(reply))

    async def _handle(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "ping":
            return {"pid": os.getpid()}
        served = self._database(message.get("db"))
        database = served.database
        if op == "write":
            result = await self._write(database, message["cmd"], message["payload"])
            count_writes(database.name, message["cmd"], message["payload"], result)
            return {"result": result, "seq": served.seq.get()}
        if op == "snapshot":
            path = await self._snapshot(served)
            return {"path": str(path), "seq": int(path.name)}
        if op == "seq":
            return {"seq": served.seq.get()}
        if op == "import":
            report = await asyncio.to_thread(
                import_file,
                database,
                str(message["what"]),
                Path(str(message["path"])),
                schema=message.get("schema"),
                kind=message.get("kind"),
                file_format=message.get("format"),
                progress=False,
            )
            return {"report": report, "seq": served.seq.get()}
        if op == "restore":
            path = Path(str(message["path"]))
            await database.write(lambda ctx: restore(ctx, path))
            return {"seq": served.seq.get()}
        raise StorageError(f"unknown writer operation '{op}'")

    def _database(self, name: object) -> _Served:
        served = self._served.get(str(name))
        if served is None:
            raise StorageError(f"database '{name}' is not open on this writer")
        return served

    async def _write(self, database: Database, name: str, payload: dict[str, Any]) -> Any:
        return await asyncio.wrap_future(submit(database, name, payload))

    # -- snapshots ------------------------------------------------------------------------------

    async def snapshot(self, database: str) -> Path:
        """A consistent Parquet export of a database (the latest one where nothing changed)."""
        return await self._snapshot(self._database(database))

    async def _snapshot(self, served: _Served) -> Path:
        parent = snapshots_dir(self.config.data_dir, served.database.name)
        async with served.snapshot_lock:
            current = served.seq.get()
            existing = parent / str(current)
            if (existing / "snapshot.json").exists():
                return existing
            path = await served.database.read(lambda ctx: export_snapshot(ctx, parent))
            self._prune_snapshots(parent, keep=path)
            return path

    @staticmethod
    def _prune_snapshots(parent: Path, keep: Path) -> None:
        now = time.time()
        for old in parent.iterdir():
            if old == keep:
                continue
            with contextlib.suppress(OSError):
                if now - old.stat().st_mtime > SNAPSHOT_LIFETIME:
                    shutil.rmtree(old, ignore_errors=True)

    # -- the change feed ------------------------------------------------------------------------

    async def _subscribe(
        self,
        message: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Stream the feed from `after` on; returns when the subscriber goes away."""
        served = self._database(message.get("db"))
        subscriber = _Subscriber(writer, int(message.get("after", 0)))
        served.subscribers.append(subscriber)
        try:
            while True:
                target = served.seq.get()
                if subscriber.last_sent >= target:
                    break
                chunk = await served.database.read(
                    partial(_entries_after, after=subscriber.last_sent)
                )
                if chunk is None:
                    writer.write(encode({"resync": True}))
                    await writer.drain()
                    return
                if not chunk:
                    break
                self._send(subscriber, chunk)
                await writer.drain()
            subscriber.live = True
            held, subscriber.held = subscriber.held, []
            self._send(subscriber, held)
            # The subscriber sends nothing more: wait for it to close the connection.
            while await reader.read(4096):
                pass
        finally:
            with contextlib.suppress(ValueError):
                served.subscribers.remove(subscriber)

    def _fan_out(self, served: _Served, entries: list[Entry], committed_at: float) -> None:
        encoded: bytes | None = None  # the same frame for every subscriber that is up to date
        for subscriber in list(served.subscribers):
            if not subscriber.live:
                subscriber.held.extend(entries)
            elif subscriber.last_sent < entries[0][0]:
                if encoded is None:
                    encoded = _frame(entries, committed_at)
                self._push(subscriber, encoded, entries[-1][0])
            else:
                self._send(subscriber, entries, committed_at)

    def _send(
        self, subscriber: _Subscriber, entries: Sequence[Entry], committed_at: float | None = None
    ) -> None:
        fresh = [(seq, text) for seq, text in entries if seq > subscriber.last_sent]
        if fresh:
            self._push(subscriber, _frame(fresh, committed_at), fresh[-1][0])

    @staticmethod
    def _push(subscriber: _Subscriber, frame: bytes, last: int) -> None:
        if subscriber.writer.is_closing():
            return
        if subscriber.writer.transport.get_write_buffer_size() > MAX_SUBSCRIBER_BUFFER:
            logger.warning("writer: a feed subscriber fell behind; dropping its connection")
            subscriber.writer.close()
            return
        subscriber.writer.write(frame)
        subscriber.last_sent = last
