"""Metrics on a Ray cluster: every replica and writer actor publishes its own metrics to one
named actor, the board, every `PUBLISH_INTERVAL` seconds; a scrape of `/-/metrics` through any
replica answers with all of them, each sample labelled with its source (`ray_actor`:
`replica-<id>` or `writer-<database>`) and its `node`.

(Processes of a Ray cluster share no folder, so prometheus-client's multiprocess mode, which
`reqo serve` uses, does not apply.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import ray
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from server.distributed.names import METRICS, NAMESPACE

logger = logging.getLogger("reqo")

PUBLISH_INTERVAL = 2.0
STALE_AFTER = 10.0
"""Seconds after which a source that stopped publishing (a dead replica) is left out."""


class MetricsBoard:
    """The latest metrics of each source (a Ray actor)."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[float, dict[str, str], str]] = {}

    def publish(self, source: str, labels: dict[str, str], text: str) -> None:
        self._latest[source] = (time.monotonic(), labels, text)

    def scrape(self) -> str:
        """Every live source's metrics, labelled, in Prometheus' text format."""
        now = time.monotonic()
        for source, (at, _, _) in list(self._latest.items()):
            if now - at > STALE_AFTER:
                del self._latest[source]
        return merge((labels, text) for _, labels, text in self._latest.values())


def merge(sources: Iterable[tuple[Mapping[str, str], str]]) -> str:
    """Metrics texts as one: samples of the same family together, each with its source's
    labels added."""
    families: dict[str, Metric] = {}
    for labels, text in sources:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = merged
            for sample in family.samples:
                merged.samples.append(sample._replace(labels={**sample.labels, **labels}))

    class Merged:
        def collect(self) -> Iterable[Metric]:
            return list(families.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Merged())
    return generate_latest(registry).decode()


async def publish_forever(source: str) -> None:
    """Publish this process's metrics to the board until cancelled (started by a replica or a
    writer actor)."""
    labels = {
        "ray_actor": source,
        "node": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
    }
    board: Any = None
    while True:
        try:
            if board is None:
                board = await asyncio.to_thread(ray.get_actor, METRICS, namespace=NAMESPACE)
            text = generate_latest(REGISTRY).decode()
            await board.publish.remote(source, labels, text)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the board restarting, or not there yet
            logger.debug("metrics not published: %s", error)
            board = None
        await asyncio.sleep(PUBLISH_INTERVAL)


async def scrape_board() -> bytes:
    """The cluster's metrics, from the board."""
    board = await asyncio.to_thread(ray.get_actor, METRICS, namespace=NAMESPACE)
    text: str = await board.scrape.remote()
    return text.encode()


def stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        with contextlib.suppress(Exception):
            task.cancel()
