"""How a server process reaches the other roles: the writer of each database (its writes, its
change feed, its snapshots and its committed sequence number) and the trainer.

On one machine (`LocalLinks`) they are the Unix sockets and mapped files of the data directory;
on a Ray cluster (`server.distributed.links.RayLinks`) they are the roles' actors.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from server.cluster.client import RemoteCommitted, RoleClient, WriterClient
from server.cluster.paths import CommittedSeq, socket_path
from server.config import Config


class TrainerLink(Protocol):
    """Where a server asks for models to be trained."""

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a `train` request (`db`, `models`, `wait`); the trainer's answer."""
        ...

    async def close(self) -> None:
        """Close the link."""
        ...


class Links(Protocol):
    """The roles a server process talks to."""

    trainer: TrainerLink

    def writer(self, database: str) -> WriterClient:
        """The client of the writer of a database."""
        ...

    async def committed(self, database: str) -> CommittedSeq | RemoteCommitted:
        """Where the writer's committed sequence number of a database is read."""
        ...

    async def metrics(self) -> bytes | None:
        """Every role's metrics where this process cannot read them itself (None: this
        process's own exposition covers them)."""
        ...

    async def close(self) -> None:
        """Close every link."""
        ...


class LocalLinks:
    """The roles of `reqo serve` on this machine, through the data directory."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._writer = WriterClient(socket_path(config.data_dir, "writer"))
        self.trainer: TrainerLink = RoleClient(socket_path(config.data_dir, "trainer"))

    def writer(self, database: str) -> WriterClient:
        return self._writer

    async def committed(self, database: str, wait: float = 30.0) -> CommittedSeq:
        """The writer's mapped file of the database (once the writer has opened it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            with contextlib.suppress(FileNotFoundError, ValueError):
                return CommittedSeq(self.config.data_dir, database)
            if loop.time() >= deadline:
                raise RuntimeError(f"the writer has not opened database '{database}'")
            await asyncio.sleep(0.05)

    async def metrics(self) -> bytes | None:
        return None  # the group's multiprocess folder, which any server reads

    async def close(self) -> None:
        await self._writer.close()
        await self.trainer.close()
