"""Time limits for DuckDB queries: one watchdog thread interrupts the cursors whose query has
run past its deadline.

A ReQL expression can be expensive in ways no static bound foresees (a costly regular
expression over long texts, a large catalog), and DuckDB keeps computing after the client has
gone. `limited` arms a deadline around one query; past it the watchdog calls the cursor's
`interrupt()`, the query raises `duckdb.InterruptException`, and `limited` turns that into
`TimeLimitExceeded`. One thread serves every query: a timer thread per query would cost more
than most of the queries it guards.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Protocol

import duckdb


class Interruptible(Protocol):
    def interrupt(self) -> None: ...


class TimeLimitExceeded(Exception):
    """A query ran past its time limit and was interrupted."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"took longer than the limit of {seconds:g} s")
        self.seconds = seconds


class Watchdog:
    """Interrupts cursors at their deadlines (a daemon thread, started on first use)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, Interruptible] = {}
        self._fired: set[int] = set()
        self._ids = itertools.count()
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def limited(self, cursor: Interruptible, seconds: float) -> Iterator[None]:
        """Run the block's query under a deadline; TimeLimitExceeded when it was interrupted."""
        token = self._arm(cursor, seconds)
        try:
            yield
        except duckdb.InterruptException:
            if self._disarm(token):
                raise TimeLimitExceeded(seconds) from None
            raise
        finally:
            self._disarm(token)

    def _arm(self, cursor: Interruptible, seconds: float) -> int:
        token = next(self._ids)
        with self._lock:
            self._armed[token] = cursor
            heapq.heappush(self._heap, (time.monotonic() + seconds, token))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="reqo-watchdog")
                self._thread.daemon = True
                self._thread.start()
            self._lock.notify()
        return token

    def _disarm(self, token: int) -> bool:
        """Forget a deadline; whether the watchdog had fired it."""
        with self._lock:
            self._armed.pop(token, None)
            if token in self._fired:
                self._fired.discard(token)
                return True
            return False

    def _run(self) -> None:
        with self._lock:
            while True:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)  # finished in time
                if not self._heap:
                    self._lock.wait()
                    continue
                deadline, token = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._lock.wait(delay)
                    continue
                heapq.heappop(self._heap)
                # Under the lock: the query cannot be disarmed, and its cursor reused for
                # another query, between this check and the interrupt.
                cursor = self._armed.pop(token)
                self._fired.add(token)
                with contextlib.suppress(duckdb.Error):
                    cursor.interrupt()


WATCHDOG = Watchdog()
"""The process's watchdog."""
