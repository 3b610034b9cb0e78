"""Recommendation records on their way to the `recommendations` table, written behind the
responses.

A response does not wait for its record's commit: the records of a short interval gather and go
to the writer as one statement, and one by one if that statement fails. What reads the table
(Recommend Next Items, rotation) first waits for `settled()`, so it never misses a record of a
response already sent. A crash loses the records of the last interval; a record that fails
alone is logged, not retried.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from storage.database import Database, WriteContext, WriteJob
from storage.recommendations import Recommendation, log_recommendations

logger = logging.getLogger("reqo")

FLUSH_DELAY = 0.1
"""Seconds the first record of a batch waits for others before the batch is written."""

MAX_PENDING = 2048
"""Records that are written at once, without waiting for the delay."""


class RecommendationLog:
    """Gathers records on the event loop and writes them in batches on the database's writer."""

    def __init__(self, database: Database, *, delay: float = FLUSH_DELAY) -> None:
        self.database = database
        self.delay = delay
        self.failures = 0
        """Records whose write failed, alone (they are lost)."""
        self._buffer: list[Recommendation] = []
        self._timer: asyncio.TimerHandle | None = None
        self._in_flight: set[asyncio.Future[Any]] = set()

    def add(self, record: Recommendation) -> None:
        """Queue a record (on the event loop); it is written within `delay` seconds."""
        self._buffer.append(record)
        if len(self._buffer) >= MAX_PENDING:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self.flush)

    def flush(self) -> None:
        """Send the queued records to the writer now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer:
            return
        records, self._buffer = self._buffer, []
        self._write(records)

    def _write(self, records: list[Recommendation]) -> None:
        def write(ctx: WriteContext) -> None:
            log_recommendations(ctx, records)

        future = asyncio.wrap_future(self.database.submit(WriteJob(write)))
        self._in_flight.add(future)
        future.add_done_callback(lambda done: self._written(done, records))

    async def settled(self) -> None:
        """Wait until every record queued so far is committed (or has failed)."""
        self.flush()
        # A failed batch's records are written again one by one, as new writes: wait for those.
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            await asyncio.sleep(0)

    def _written(self, future: asyncio.Future[Any], records: list[Recommendation]) -> None:
        self._in_flight.discard(future)
        error = None if future.cancelled() else future.exception()
        if not future.cancelled() and error is None:
            return
        if len(records) > 1:
            # One record the database refuses must not cost the others theirs (their recommIds
            # would answer 404 and their rewards go unattributed): each goes again alone.
            for record in records:
                self._write([record])
            return
        self.failures += 1
        logger.error("recommendation %s was not logged: %r", records[0].recomm_id, error)
