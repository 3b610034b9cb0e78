"""The start-up summary a server logs once its databases are open: what it serves, with which
model versions (never a token)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from server.training.artifacts import current_version

if TYPE_CHECKING:
    from server.config import Config
    from server.serving.store import Store

logger = logging.getLogger("reqo")


def startup_summary(config: Config, store: Store) -> dict[str, Any]:
    """Per database its change feed position and each model's current version (None: not
    trained yet); the scenarios with their endpoint and model."""
    databases = {}
    for served in sorted(store.all(), key=lambda s: s.name):
        directory = config.models_dir(served.name)
        databases[served.name] = {
            "seq": served.replica.applied,
            "models": {m: current_version(directory, m) for m in sorted(served.models.configs)},
        }
    scenarios = {
        name: {"endpoint": s.endpoint, "model": s.model}
        for name, s in sorted(config.scenarios.items())
    }
    return {"databases": databases, "scenarios": scenarios}


def log_startup(config: Config, store: Store) -> None:
    summary = startup_summary(config, store)
    untrained = sorted(
        f"{db}/{model}"
        for db, found in summary["databases"].items()
        for model, version in found["models"].items()
        if version is None
    )
    logger.info(
        "serving %d database(s) (%s), %d scenario(s), %d model(s)%s",
        len(summary["databases"]),
        ", ".join(summary["databases"]) or "none",
        len(summary["scenarios"]),
        len(config.models),
        f"; not trained yet: {', '.join(untrained)}" if untrained else "",
        extra={"event": "startup", **summary},
    )
