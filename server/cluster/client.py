"""The writer's client, for the processes that hand it writes and follow its change feed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from server.cluster.paths import socket_path
from server.cluster.wire import WireError, encode, read_frame
from storage.errors import StorageError

logger = logging.getLogger("reqo")

RECONNECT_WAIT = 15.0
"""Seconds a request waits for the writer to come back (a restarted writer takes a few)."""


class WriterUnavailable(StorageError):
    """The writer could not be reached (503): it is restarting, or gone."""

    status = 503


class WriterRefused(StorageError):
    """The writer refused a write: its status and message, as it gave them."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Address = Path | tuple[str, int]
"""Where a role listens: a Unix socket on this machine, or a TCP host and port (on a cluster)."""

Locator = Callable[[], Awaitable[Address]]
"""Finds where a role listens now (a restarted writer actor listens on another port)."""


def fixed(address: Address) -> Locator:
    """The locator of a role that always listens at the same address."""

    async def locate() -> Address:
        return address

    return locate


class RoleClient:
    """One connection to a role's socket (the writer's, the trainer's), shared by a process's
    concurrent requests (each request has an id; answers come back in any order).

    `where` is the role's address, or a locator that finds it (asked again at each connection);
    `token`, where the role asks for one (a TCP listener on a cluster), is sent first."""

    def __init__(
        self, where: Address | Locator, *, wait: float = RECONNECT_WAIT, token: str | None = None
    ) -> None:
        self.locate: Locator = where if callable(where) else fixed(where)
        self.token = token
        self.wait = wait
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()

    async def _connected(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            reader, writer = await connect(self.locate, self.wait, self.token)
            self._writer = writer
            self._reading = asyncio.create_task(self._read(reader, writer))
            return writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                reply = await read_frame(reader)
                future = self._pending.pop(reply.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(reply)
        except WireError:
            pass
        finally:
            writer.close()
            if self._writer is writer:
                self._writer = None
            lost, self._pending = self._pending, {}
            for future in lost.values():
                if not future.done():
                    future.set_exception(
                        WriterUnavailable(
                            "the writer went away before it answered; the write may or may "
                            "not be stored"
                        )
                    )

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its answer; raises the writer's refusal as a
        StorageError (`WriterRefused`, `WriterUnavailable`)."""
        writer = await self._connected()
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        writer.write(encode({**message, "id": ident}))
        reply = await future
        if not reply.get("ok"):
            raise WriterRefused(int(reply.get("status", 500)), str(reply.get("error")))
        return reply

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reading


class WriterClient(RoleClient):
    """The writer's client: writes, selections and snapshots."""

    async def write(self, database: str, cmd: str, payload: dict[str, Any]) -> tuple[Any, int]:
        """Apply a write command; its result and the committed sequence number after it."""
        reply = await self.request({"op": "write", "db": database, "cmd": cmd, "payload": payload})
        return reply.get("result"), int(reply["seq"])

    async def snapshot(self, database: str) -> tuple[Path, int]:
        """A snapshot directory of the database that this process can read, and its seq."""
        reply = await self.request({"op": "snapshot", "db": database})
        return Path(reply["path"]), int(reply["seq"])

    async def seq(self, database: str) -> int:
        """The writer's committed sequence number of a database now."""
        reply = await self.request({"op": "seq", "db": database})
        return int(reply["seq"])

    async def done_with(self, snapshot: Path) -> None:
        """The caller has loaded a snapshot that `snapshot` gave (a copy made for it goes)."""


class RemoteCommitted:
    """The writer's committed sequence number where no mapped file reaches it (another
    machine): asked of the writer, one question at a time. A caller joins the next question
    (sent after it arrived, so its answer covers every write acknowledged before), and every
    caller that arrived meanwhile shares that answer."""

    def __init__(self, client: WriterClient, database: str) -> None:
        self.client = client
        self.database = database
        self.last = 0
        """The latest answer."""
        self._next: asyncio.Future[int] | None = None
        self._asking: asyncio.Task[None] | None = None

    async def get(self) -> int:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        future = self._next
        if self._asking is None or self._asking.done():
            self._asking = asyncio.create_task(self._ask())
        return await asyncio.shield(future)

    async def _ask(self) -> None:
        while self._next is not None:
            future, self._next = self._next, None
            try:
                self.last = await self.client.seq(self.database)
                future.set_result(self.last)
            except Exception as error:
                future.set_exception(error)
                future.exception()  # retrieved: callers that went away leave no warning


async def ask_local_writer(data_dir: Path, message: dict[str, Any]) -> dict[str, Any]:
    """One request to the writer serving this machine's data directory (a command-line tool's
    question: a snapshot, an import, a restore, a write); its answer."""
    client = WriterClient(socket_path(data_dir, "writer"))
    try:
        return await client.request(message)
    finally:
        await client.close()


async def open_connection(
    address: Address,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if isinstance(address, Path):
        return await asyncio.open_unix_connection(str(address), limit=2**20)
    host, port = address
    return await asyncio.open_connection(host, port, limit=2**20)


async def connect(
    locate: Locator, wait: float = RECONNECT_WAIT, token: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a role, waiting up to `wait` seconds for it to listen (and to be found)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            address = await locate()
            reader, writer = await open_connection(address)
        except (OSError, WriterUnavailable) as error:
            if loop.time() >= deadline:
                raise WriterUnavailable(
                    f"the writer is not reachable ({type(error).__name__}); try again shortly"
                ) from None
            await asyncio.sleep(0.05)
            continue
        if token is not None:
            writer.write(encode({"op": "hello", "token": token}))
        return reader, writer


async def follow(
    client: RoleClient, database: str, after: int
) -> AsyncIterator[tuple[list[Any], float | None] | None]:
    """The change feed of a database after `after`: lists of `[seq, entry]` as they commit,
    with the time of their commit (None for entries read back from the feed table), or None
    where the feed no longer reaches back to `after` (load a snapshot). Ends when the
    connection does; the caller subscribes again from where it got to."""
    reader, writer = await connect(client.locate, client.wait, client.token)
    try:
        writer.write(encode({"op": "subscribe", "db": database, "after": after}))
        while True:
            try:
                message = await read_frame(reader)
            except WireError:
                return
            if message.get("resync"):
                yield None
                return
            yield message["entries"], message.get("at")
    finally:
        writer.close()
