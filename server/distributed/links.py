"""How a Ray Serve replica reaches the other roles: each database's writer actor (its TCP
port, its snapshots through the object store) and the trainer actor."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from server.cluster.client import (
    Address,
    RemoteCommitted,
    WriterClient,
    WriterRefused,
    WriterUnavailable,
)
from server.cluster.links import TrainerLink
from server.distributed.names import NAMESPACE, TRAINER, writer_actor

LOOKUP_WAIT = 30.0
"""Seconds a lookup of an actor waits for it to be registered (at start-up)."""


async def actor(name: str, wait: float = LOOKUP_WAIT) -> Any:
    """The handle of a named actor of reqo's namespace, once it exists."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            return await asyncio.to_thread(ray.get_actor, name, namespace=NAMESPACE)
        except ValueError:
            if loop.time() >= deadline:
                raise WriterUnavailable(f"the actor {name} does not exist") from None
            await asyncio.sleep(0.2)


class RayWriterClient(WriterClient):
    """The writer client of a replica or training process: connects to the writer actor's TCP
    port (asking the actor where it is at each connection) and gets snapshots from the object
    store. `name_of(database)` names the database's writer actor."""

    def __init__(self, name_of: Callable[[str], str], *, token: str, database: str = "") -> None:
        super().__init__(self._locate, token=token)
        self.name_of = name_of
        self.database = database
        self._handles: dict[str, Any] = {}

    def bound_to(self, database: str) -> RayWriterClient:
        """The client of one database's writer."""
        client = RayWriterClient(self.name_of, token=self.token or "", database=database)
        client._handles = self._handles
        return client

    async def _handle(self, database: str) -> Any:
        if database not in self._handles:
            self._handles[database] = await actor(self.name_of(database))
        return self._handles[database]

    async def _locate(self) -> Address:
        handle = await self._handle(self.database)
        try:
            host, port = await handle.address.remote()
        except ray.exceptions.RayActorError as error:
            raise WriterUnavailable(f"the writer actor is down: {error}") from None
        return str(host), int(port)

    async def snapshot(self, database: str) -> tuple[Path, int]:
        from server.distributed.actors import write_files

        handle = await self._handle(database)
        try:
            seq, files = await handle.snapshot.remote()
        except ray.exceptions.RayActorError as error:
            raise WriterUnavailable(f"the writer actor is down: {error}") from None
        return await asyncio.to_thread(write_files, files), int(seq)

    async def done_with(self, snapshot: Path) -> None:
        await asyncio.to_thread(shutil.rmtree, snapshot, True)


class RayTrainerLink:
    """The trainer actor, as servers ask it for models."""

    def __init__(self) -> None:
        self._handle: Any = None

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._handle is None:
            self._handle = await actor(TRAINER)
        try:
            reply: dict[str, Any] = await self._handle.answer.remote(message)
        except ray.exceptions.RayActorError as error:
            raise WriterUnavailable(f"the trainer actor is down: {error}") from None
        if not reply.get("ok"):
            raise WriterRefused(int(reply.get("status", 500)), str(reply.get("error")))
        return reply

    async def close(self) -> None:
        self._handle = None


class RayLinks:
    """The roles of a Ray cluster, as a Serve replica reaches them."""

    def __init__(self, token: str) -> None:
        self._client = RayWriterClient(writer_actor, token=token)
        self._writers: dict[str, RayWriterClient] = {}
        self.trainer: TrainerLink = RayTrainerLink()

    def writer(self, database: str) -> WriterClient:
        if database not in self._writers:
            self._writers[database] = self._client.bound_to(database)
        return self._writers[database]

    async def committed(self, database: str) -> RemoteCommitted:
        return RemoteCommitted(self.writer(database), database)

    async def metrics(self) -> bytes | None:
        from server.distributed.metrics import scrape_board

        return await scrape_board()

    async def close(self) -> None:
        for client in self._writers.values():
            await client.close()
        await self.trainer.close()
