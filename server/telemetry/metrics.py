"""reqo's Prometheus metrics, and their exposition.

Under `reqo serve` every process of the group (servers, writer, trainer, supervisor) records
into files of one folder (prometheus-client's multiprocess mode, `server.telemetry.multiprocess`),
so that one scrape of any server covers the whole machine. A process outside a group (a test's
in-process server, a Ray replica) records into its own registry.

Gauges say how they combine over processes: `livemax` (the worst of the live processes),
`livemin` (the oldest model version any live server serves), `livesum`, `liveall` (one series
per process, with a `pid` label).

Import this module only once the multiprocess folder is decided (prometheus-client reads the
environment when it is first imported).
"""

from __future__ import annotations

import calendar
import os
import resource
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from server.telemetry.multiprocess import multiprocess_dir

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
REQUEST_LABELS = ("db", "endpoint", "scenario", "status")

REQUESTS = Counter(
    "reqo_requests",
    "HTTP requests answered, by database, endpoint, scenario and status",
    REQUEST_LABELS,
)
LATENCY = Histogram(
    "reqo_request_duration_seconds",
    "Seconds from a request's arrival to the end of its response",
    REQUEST_LABELS,
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "reqo_requests_in_flight",
    "Requests being handled, by database (all server processes)",
    ("db",),
    multiprocess_mode="livesum",
)
WRITES = Counter("reqo_writes", "Writes the writer applied, by database and kind", ("db", "kind"))
BATCH_SIZE = Histogram(
    "reqo_batch_requests", "Requests in one Batch", ("db",), buckets=BATCH_BUCKETS
)
TEXT_VECTORS = Counter(
    "reqo_text_vectors",
    "Item text vectors that the servers' semantic indexes took, by database, text embedder and "
    "source (embedded: computed here; cache: found in the database's cache or this process's)",
    ("db", "embedder", "source"),
)
SEARCH_VECTORS = Gauge(
    "reqo_search_vectors",
    "Items of a server's semantic search index, by database, text embedder and state (indexed: "
    "in the built vector index; exact: new or changed since, searched exactly; queued: waiting "
    "to be embedded)",
    ("db", "embedder", "state"),
    multiprocess_mode="livemin",
)
REQL_CACHE = Counter(
    "reqo_reql_cache_lookups",
    "Lookups of evaluated ReQL expressions in the servers' caches, by result (hit or miss)",
    ("db", "result"),
)
MODEL_VERSION = Gauge(
    "reqo_model_version_timestamp_seconds",
    "When the version of a model that the servers serve was saved (the oldest among the live "
    "server processes; 0 while the fallback serves it)",
    ("db", "model"),
    multiprocess_mode="livemin",
)
MODEL_AWAITING = Gauge(
    "reqo_model_awaiting_training",
    "1 while a model has no trained version and the fallback serves it",
    ("db", "model"),
    multiprocess_mode="livemax",
)
TRAINED_AT = Gauge(
    "reqo_model_last_training_timestamp_seconds",
    "When a model's latest training on this machine ended",
    ("db", "model"),
    multiprocess_mode="max",
)
TRAINING_SECONDS = Gauge(
    "reqo_model_last_training_duration_seconds",
    "How long a model's latest training took",
    ("db", "model"),
    multiprocess_mode="mostrecent",
)
TRAININGS = Counter(
    "reqo_trainings",
    "Trainings by database, model and outcome (ok, failed)",
    ("db", "model", "outcome"),
)
FEED_LAG = Gauge(
    "reqo_feed_lag_seconds",
    "Seconds from the writer's commit to a server's copy holding it, latest entry (worst server)",
    ("db",),
    multiprocess_mode="livemax",
)
FEED_BEHIND = Gauge(
    "reqo_feed_entries_behind",
    "Change feed entries committed that a server's copy does not hold yet (worst server)",
    ("db",),
    multiprocess_mode="livemax",
)
ROLE_UP = Gauge(
    "reqo_role_up",
    "1 while the role's process runs (reqo serve's supervisor says)",
    ("role",),
    multiprocess_mode="max",
)
ROLE_RESTARTS = Counter("reqo_role_restarts", "Times the supervisor restarted a role", ("role",))
MEMORY = Gauge(
    "reqo_process_resident_memory_bytes",
    "Resident memory of each process",
    ("role",),
    multiprocess_mode="liveall",
)


def exposition() -> tuple[bytes, str]:
    """The text of a scrape, and its content type: every process of the group where there is a
    multiprocess folder, else this process."""
    from prometheus_client.multiprocess import MultiProcessCollector

    folder = multiprocess_dir()
    if folder is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def resident_bytes() -> int:
    """This process's resident memory now (its peak where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def version_time(version: str) -> float:
    """When a model version (named `YYYYmmddTHHMMSS-nanos`) was saved; 0 for another name."""
    try:
        return float(calendar.timegm(time.strptime(version.split("-", 1)[0], "%Y%m%dT%H%M%S")))
    except ValueError:
        return 0.0
