"""The names under which reqo's actors are found on a Ray cluster."""

from __future__ import annotations

NAMESPACE = "reqo"
"""The Ray namespace of reqo's actors and Serve application."""

APPLICATION = "reqo"
"""The Ray Serve application (and deployment) name."""

TRAINER = "reqo-trainer"

METRICS = "reqo-metrics"
"""The actor that gathers the replicas' and writers' metrics."""


def writer_actor(database: str) -> str:
    """The name of a database's writer actor."""
    return f"reqo-writer-{database}"
