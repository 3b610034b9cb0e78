"""The last hour of each database's traffic, as the console's overview draws it: request rate,
latency percentiles and error rates, from the server's own Prometheus metrics, so that no
Prometheus is needed to see them.

Every `interval` seconds a server reads the request counters and the latency histogram (under
`reqo serve`, every process's, from the metrics folder they share; else its own) and keeps the
difference from the last reading as one point. Each server process keeps its own copy of the
history, made from the same shared figures, so any of them can answer the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("reqo")

HISTORY_SECONDS = 3600.0
QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class Reading:
    """Cumulative figures of one database at one moment."""

    requests: float = 0.0
    server_errors: float = 0.0
    client_errors: float = 0.0
    buckets: Mapping[float, float] = field(default_factory=dict)
    """Cumulative latency histogram: upper bound (seconds) -> requests at or under it."""


@dataclass(frozen=True)
class Point:
    """One interval of a database's traffic."""

    at: float
    """The interval's end (epoch seconds)."""
    seconds: float
    requests: int
    server_errors: int
    client_errors: int
    latency_ms: Mapping[float, float | None]
    """Quantile -> milliseconds (None in an interval without requests)."""

    def to_json(self) -> dict[str, Any]:
        rate = self.requests / self.seconds if self.seconds > 0 else 0.0
        return {
            "t": self.at,
            "requests": self.requests,
            "rate": rate,
            "serverErrorRate": self.server_errors / self.requests if self.requests else None,
            "clientErrorRate": self.client_errors / self.requests if self.requests else None,
            **{f"p{round(q * 100)}": ms for q, ms in self.latency_ms.items()},
        }


def quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated linearly inside its bucket (as
    Prometheus' histogram_quantile); None for an empty one."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bound: that bound is all one can say
            inside = count - below
            share = (rank - below) / inside if inside > 0 else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


def difference(now: Reading, before: Reading, at: float, seconds: float) -> Point:
    """The point of the interval between two readings (a counter that went down, as after a
    server's restart, counts from zero)."""

    def delta(a: float, b: float) -> float:
        return a - b if a >= b else a

    buckets = {le: delta(count, before.buckets.get(le, 0.0)) for le, count in now.buckets.items()}
    latency = {q: _ms(quantile(buckets, q)) for q in QUANTILES}
    return Point(
        at,
        seconds,
        round(delta(now.requests, before.requests)),
        round(delta(now.server_errors, before.server_errors)),
        round(delta(now.client_errors, before.client_errors)),
        latency,
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def read_metrics(databases: Iterable[str]) -> dict[str, Reading]:
    """Each database's cumulative request figures now, from every process of the group."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from server.telemetry.multiprocess import multiprocess_dir

    folder = multiprocess_dir()
    if folder is None:
        registry = REGISTRY
    else:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    wanted = set(databases)
    requests: dict[str, float] = dict.fromkeys(wanted, 0.0)
    server_errors: dict[str, float] = dict.fromkeys(wanted, 0.0)
    client_errors: dict[str, float] = dict.fromkeys(wanted, 0.0)
    buckets: dict[str, dict[float, float]] = {name: {} for name in wanted}
    for metric in registry.collect():
        for sample in metric.samples:
            db = sample.labels.get("db", "")
            if db not in wanted:
                continue
            if sample.name == "reqo_requests_total":
                requests[db] += sample.value
                status = sample.labels.get("status", "")
                if status.startswith("5"):
                    server_errors[db] += sample.value
                elif status.startswith("4"):
                    client_errors[db] += sample.value
            elif sample.name == "reqo_request_duration_seconds_bucket":
                bound = float(sample.labels["le"])
                buckets[db][bound] = buckets[db].get(bound, 0.0) + sample.value
    return {
        name: Reading(requests[name], server_errors[name], client_errors[name], buckets[name])
        for name in wanted
    }


class TrafficHistory:
    """A rolling hour of points per database."""

    def __init__(self, databases: Iterable[str], interval: float) -> None:
        self.databases = sorted(databases)
        self.interval = interval
        size = max(2, math.ceil(HISTORY_SECONDS / interval))
        self.points: dict[str, deque[Point]] = {name: deque(maxlen=size) for name in self.databases}
        self._last: dict[str, Reading] | None = None
        self._last_at = 0.0

    def take(self, readings: Mapping[str, Reading], at: float) -> None:
        """Add the interval that ends with these readings."""
        if self._last is not None:
            seconds = at - self._last_at
            for name in self.databases:
                before = self._last.get(name, Reading())
                now = readings.get(name, Reading())
                self.points[name].append(difference(now, before, at, seconds))
        self._last, self._last_at = dict(readings), at

    def to_json(self, database: str) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "points": [p.to_json() for p in self.points.get(database, ())],
        }

    async def run(self) -> None:
        """Read the metrics every interval until cancelled."""
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                try:
                    readings = await asyncio.to_thread(read_metrics, self.databases)
                    self.take(readings, time.time())
                except Exception:  # the history is a view: never the server's failure
                    logger.exception("reading the metrics for the console's history failed")
                await asyncio.sleep(self.interval)
