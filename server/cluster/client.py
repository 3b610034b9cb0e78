"""The writer's client, for the processes that hand it writes and follow its change feed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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


class RoleClient:
    """One connection to a role's socket (the writer's, the trainer's), shared by a process's
    concurrent requests (each request has an id; answers come back in any order)."""

    def __init__(self, path: Path, *, wait: float = RECONNECT_WAIT) -> None:
        self.path = path
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
            reader, writer = await connect(self.path, self.wait)
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
        reply = await self.request({"op": "snapshot", "db": database})
        return Path(reply["path"]), int(reply["seq"])


async def connect(
    path: Path, wait: float = RECONNECT_WAIT
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a role's socket, waiting up to `wait` seconds for it to listen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            return await asyncio.open_unix_connection(str(path), limit=2**20)
        except (FileNotFoundError, ConnectionRefusedError) as error:
            if loop.time() >= deadline:
                role = path.stem.rsplit("-", 1)[-1]
                raise WriterUnavailable(
                    f"the {role} is not reachable ({type(error).__name__}); try again shortly"
                ) from None
            await asyncio.sleep(0.05)


async def follow(
    path: Path, database: str, after: int
) -> AsyncIterator[tuple[list[Any], float | None] | None]:
    """The change feed of a database after `after`: lists of `[seq, entry]` as they commit,
    with the time of their commit (None for entries read back from the feed table), or None
    where the feed no longer reaches back to `after` (load a snapshot). Ends when the
    connection does; the caller subscribes again from where it got to."""
    reader, writer = await connect(path)
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
