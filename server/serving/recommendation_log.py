"""Recommendation records on their way to the writer, sent behind the responses.

A response does not wait for its record's commit: the records of a short interval (`delay`)
go to the writer as one command, and one by one if that command fails, so that a busy server
costs the writer one commit per interval rather than one per recommendation. Until its record
is in this server's copy of the database, the log answers for it (`pending`, `recent`): Recommend
Next Items and rotation on this server see every response already sent. Another server sees
the record once the change feed brings it (within `delay` and a commit); its recommId carries
the time it was made (a version-7 UUID), so that a server that does not know a recommId that
young waits for the feed rather than answer 404 (`server.api.recommendations.next_items`).

A recommendation with rotation is the exception: its record is stored before the response goes,
so that the user's next rotated request counts it on whichever server takes it.

A crash of the server loses the records of the last interval; a record that fails alone is
counted and logged, not retried.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from storage.recommendations import Recommendation

logger = logging.getLogger("reqo")

FLUSH_DELAY = 0.05
"""Seconds the first record of a batch waits for others before the batch is sent."""

MAX_PENDING = 2048
"""Records that are sent at once, without waiting for the delay."""

Send = Callable[[list[Recommendation]], Awaitable[None]]
"""Stores records (all or none) and returns once they are in this server's copy."""


def new_recomm_id(now: float | None = None) -> str:
    """A version-7 UUID: 48 bits of milliseconds since the epoch, then random bits."""
    ms = int((time.time() if now is None else now) * 1000) & (2**48 - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62)
    value |= rand & (2**62 - 1)
    return str(uuid.UUID(int=value))


def recomm_id_time(recomm_id: str) -> float | None:
    """When a recommId of `new_recomm_id` was made (epoch seconds); None for any other id."""
    try:
        parsed = uuid.UUID(recomm_id)
    except ValueError:
        return None
    if parsed.version != 7:
        return None
    return (parsed.int >> 80) / 1000.0


class RecommendationLog:
    """Gathers records on the event loop and sends them in batches."""

    def __init__(
        self,
        send: Send,
        *,
        delay: float = FLUSH_DELAY,
        stored: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.send = send
        self.delay = delay
        self.stored = stored
        """Run by `settled` last: what makes every record queryable (a server stores the
        records it keeps in memory in its copy's table)."""
        self.failures = 0
        """Records whose write failed, alone (they are lost)."""
        self.pending: dict[str, Recommendation] = {}
        """Records sent or about to be, not yet in this server's copy, by recommId."""
        self._buffer: list[Recommendation] = []
        self._timer: asyncio.TimerHandle | None = None
        self._in_flight: set[asyncio.Task[Any]] = set()

    def add(self, record: Recommendation) -> None:
        """Queue a record (on the event loop); it is sent within `delay` seconds."""
        self.pending[record.recomm_id] = record
        self._buffer.append(record)
        if len(self._buffer) >= MAX_PENDING:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self.flush)

    async def commit(self, record: Recommendation) -> None:
        """Store a record now and wait for it (a rotated recommendation: the user's next
        rotated request, on any server, must count it); a failure is counted, not raised."""
        self.pending[record.recomm_id] = record
        await self._send([record])

    def recent(self, user_id: str, since: float) -> dict[str, int]:
        """How often each item was recommended to the user since a time, in pending records."""
        counts: dict[str, int] = {}
        for record in self.pending.values():
            if record.user_id == user_id and record.timestamp >= since:
                for item in record.returned:
                    counts[item] = counts.get(item, 0) + 1
        return counts

    def flush(self) -> None:
        """Send the queued records now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer:
            return
        records, self._buffer = self._buffer, []
        task = asyncio.get_running_loop().create_task(self._send(records))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _send(self, records: list[Recommendation]) -> None:
        try:
            await self.send(records)
        except Exception as error:
            if len(records) > 1:
                # One record the database refuses must not cost the others theirs (their
                # recommIds would answer 404 and their rewards go unattributed).
                for record in records:
                    await self._send([record])
                return
            self.failures += 1
            logger.error("recommendation %s was not logged: %r", records[0].recomm_id, error)
        finally:
            for record in records:
                self.pending.pop(record.recomm_id, None)

    async def settled(self) -> None:
        """Wait until every record queued so far is stored (or has failed)."""
        self.flush()
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            await asyncio.sleep(0)
        if self.stored is not None:
            await self.stored()
