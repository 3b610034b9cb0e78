"""Gauges that describe a process's state rather than its events, sampled every second (and by
the process that answers a scrape, just before it answers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from server.telemetry.metrics import (
    FEED_BEHIND,
    FEED_LAG,
    IN_FLIGHT,
    MEMORY,
    MODEL_AWAITING,
    MODEL_VERSION,
    REQL_CACHE,
    SEARCH_VECTORS,
    resident_bytes,
    version_time,
)

if TYPE_CHECKING:
    from server.api.admission import Traffic
    from server.serving.store import Store

logger = logging.getLogger("reqo")

SAMPLE_INTERVAL = 1.0


class Sampler:
    """A process's gauges: its memory, and whatever `sources` set."""

    def __init__(self, role: str, sources: list[Callable[[], None]] | None = None) -> None:
        self.role = role
        self.sources = sources or []

    def sample(self) -> None:
        MEMORY.labels(self.role).set(resident_bytes())
        for source in self.sources:
            try:
                source()
            except Exception:  # a broken gauge must not stop the others, nor the process
                logger.exception("sampling metrics failed")

    async def run(self, interval: float = SAMPLE_INTERVAL) -> None:
        """Sample until cancelled."""
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                self.sample()
                await asyncio.sleep(interval)


class ServerGauges:
    """A server's gauges: per database, its copy's feed lag, requests in flight, the ReQL
    cache's lookups, and the model versions it serves."""

    def __init__(self, store: Store, traffic: Traffic) -> None:
        self.store = store
        self.traffic = traffic
        self._counted: dict[str, tuple[int, int]] = {}

    def __call__(self) -> None:
        for served in self.store.all():
            name = served.name
            replica = served.replica
            FEED_BEHIND.labels(name).set(max(0, replica.last_known_target() - replica.applied))
            FEED_LAG.labels(name).set(replica.lags[-1] if replica.lags else 0.0)
            IN_FLIGHT.labels(name).set(self.traffic.in_flight.get(name, 0))
            cache = served.engine.results
            hits, misses = cache.hits, cache.misses
            last_hits, last_misses = self._counted.get(name, (0, 0))
            REQL_CACHE.labels(name, "hit").inc(max(0, hits - last_hits))
            REQL_CACHE.labels(name, "miss").inc(max(0, misses - last_misses))
            self._counted[name] = (hits, misses)
            for embedder, semantic in list(served.search.semantic.items()):
                for state, count in semantic.states().items():
                    SEARCH_VECTORS.labels(name, embedder, state).set(count)
            for model in served.models.configs:
                loaded = served.models.peek(model)
                if loaded is None:
                    continue
                MODEL_VERSION.labels(name, model).set(version_time(loaded.version))
                MODEL_AWAITING.labels(name, model).set(1 if model in served.models.awaiting else 0)
