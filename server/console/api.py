"""The console's JSON: the overview of every database, a database's scenarios with their KPIs
over time, and its models with their versions, evaluations and maps.

Everything here reads what the server holds already (its copy of the database, the model
directories, the metrics history); nothing trains, evaluates or draws inside a request.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from server.api.admin import ServerState, awaiting_versions
from server.console.history import TrafficHistory
from server.serving.scenarios import ScenarioConfig
from server.serving.store import Served
from server.training.artifacts import model_versions
from storage.database import ReadContext
from storage.errors import BadParameter, NotFound
from storage.kpi import outcomes, series

MAX_EVALUATIONS = 10
"""The newest evaluation records shown per database."""
BUCKETS = {"hour": 3600.0, "day": 86400.0, "minute": 60.0}


def served_or_404(state: ServerState, database: str) -> Served:
    found = state.store.get(database)
    if found is None:
        raise NotFound(f"database '{database}' does not exist on this server")
    return found


def counts(ctx: ReadContext) -> dict[str, int]:
    """How many items, users, interactions and logged recommendations a database holds."""
    row = ctx.conn.execute(
        "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM users), "
        "(SELECT count(*) FROM interactions), (SELECT count(*) FROM recommendations)"
    ).fetchone()
    assert row is not None
    return {
        "items": int(row[0]),
        "users": int(row[1]),
        "interactions": int(row[2]),
        "recommendations": int(row[3]),
    }


def _models_summary(state: ServerState, served: Served) -> list[dict[str, Any]]:
    """Each configured model: the version this server serves, when it was trained and its
    training figures."""
    directory = state.live.config.models_dir(served.name)
    listing = []
    for name, settings in sorted(served.models.configs.items()):
        loaded = served.models.peek(name)
        versions = model_versions(directory, name)
        live = next((v for v in versions if v.live), None)
        listing.append(
            {
                "model": name,
                "algorithm": settings.algorithm,
                "serving": loaded.version if loaded is not None else None,
                "live": live.to_json() if live is not None else None,
                "versions": len(versions),
                "awaitingTraining": name in served.models.awaiting,
            }
        )
    return listing


async def overview(state: ServerState, history: TrafficHistory | None) -> dict[str, Any]:
    """Per database: its counts, its traffic over the last hour and its models; and whether
    the server is ready (and what it waits for)."""
    missing = awaiting_versions(state) if state.started else {}
    databases = []
    for served in sorted(state.store.all(), key=lambda s: s.name):
        found = await served.database.read(counts)
        models = await asyncio.to_thread(_models_summary, state, served)
        databases.append(
            {
                "name": served.name,
                **found,
                "models": models,
                "awaiting": missing.get(served.name, []),
                "traffic": history.to_json(served.name) if history is not None else None,
            }
        )
    config = state.live.config
    metrics = config.metrics
    return {
        "ready": state.started and not missing,
        "scenarios": [
            {"name": s.name, "endpoint": s.endpoint, "model": s.model}
            for s in sorted(config.scenarios.values(), key=lambda s: s.name)
        ],
        "metricsEnabled": metrics.enabled if metrics is not None else True,
        "databases": databases,
        "now": time.time(),
    }


def scenario_yaml(state: ServerState, name: str) -> str:
    """A scenario's configuration as the YAML wrote it, with the models it names."""
    config = state.live.config
    written = config.written.get("scenarios", {}).get(name)
    shown: dict[str, Any] = {"scenarios": {name: written if written is not None else {}}}
    scenario = config.scenarios[name]
    names = {scenario.model} if scenario.model else set()
    if scenario.experiment is not None:
        names.update(v.model for v in scenario.experiment.variants)
    models = {m: config.written.get("models", {}).get(m) for m in sorted(n for n in names if n)}
    models = {m: v for m, v in models.items() if v is not None}
    if models:
        shown["models"] = models
    return yaml.safe_dump(shown, sort_keys=False, default_flow_style=False)


def settings_of(scenario: ScenarioConfig) -> dict[str, Any]:
    """The settings a scenario serves with, defaults included (the YAML shows only what it
    sets)."""
    return {
        "model": scenario.model,
        "logic": scenario.logic.name if scenario.logic is not None else None,
        "filter": scenario.filter,
        "booster": scenario.booster,
        "diversity": scenario.diversity,
        "rotationRate": scenario.rotation_rate,
        "rotationTime": scenario.rotation_time,
        "minRelevance": scenario.min_relevance,
        "excludeInteracted": scenario.exclude_interacted,
    }


async def scenarios(state: ServerState, database: str, bucket: str) -> dict[str, Any]:
    """Each configured scenario (and any other that the log holds): its settings, its KPIs per
    variant in total and per time bucket, and its bandit's live state."""
    served = served_or_404(state, database)
    if bucket not in BUCKETS:
        raise BadParameter("bucket", f"must be one of {', '.join(BUCKETS)}, not {bucket!r}")
    seconds = BUCKETS[bucket]
    found, buckets = await served.database.read(lambda ctx: (outcomes(ctx), series(ctx, seconds)))
    configured = state.live.config.scenarios
    names = sorted(set(configured) | {s for s, _ in found if s is not None})
    entries = []
    for name in names:
        config = configured.get(name)
        variants: dict[str | None, dict[str, Any]] = {}
        if config is not None and config.experiment is not None:
            variants = {v: {"variant": v, "points": []} for v in config.experiment.names}
        elif config is not None:
            variants = {None: {"variant": None, "points": []}}
        totals: dict[str | None, Any] = {}
        for (of, variant), figures in found.items():
            if of == name:
                totals[variant] = figures.to_json()
        for point in buckets:
            if point.scenario != name:
                continue
            entry = variants.setdefault(point.variant, {"variant": point.variant, "points": []})
            entry["points"].append(
                {
                    "t": point.start,
                    "recommendations": point.served,
                    "clicks": point.clicks,
                    "conversions": point.converted,
                    "revenue": point.revenue,
                    "ctr": point.clicks / point.served if point.served else None,
                    "conversion": point.converted / point.served if point.served else None,
                }
            )
        for variant, entry in variants.items():
            entry["totals"] = totals.get(variant)
        entries.append(
            {
                "name": name,
                "configured": config is not None,
                "endpoint": config.endpoint if config is not None else None,
                "model": config.model if config is not None else None,
                "settings": settings_of(config) if config is not None else None,
                "yaml": scenario_yaml(state, name) if config is not None else None,
                "variants": list(variants.values()),
                "bandit": served.experiments.state(config) if config is not None else None,
            }
        )
    return {"database": database, "bucket": bucket, "bucketSeconds": seconds, "scenarios": entries}


def evaluations(directory: Path, database: str) -> list[dict[str, Any]]:
    """The newest `reqo evaluate` records of a database: protocol, models and their means."""
    records = []
    paths = sorted(
        directory.glob(f"{database}-*.json"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for path in paths[:MAX_EVALUATIONS]:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(record, Mapping) or record.get("database") != database:
            continue
        protocol = record.get("protocol") or {}
        records.append(
            {
                "file": path.name,
                "created": record.get("created"),
                "protocol": protocol.get("name") if isinstance(protocol, Mapping) else None,
                "seeds": record.get("seeds"),
                "summary": record.get("summary"),
            }
        )
    return records


def maps(directory: Path) -> list[dict[str, Any]]:
    """The t-SNE maps that `reqo plot embeddings` wrote for a database."""
    if not directory.is_dir():
        return []
    return [
        {"file": path.name, "model": path.stem.split("-", 1)[0], "modified": path.stat().st_mtime}
        for path in sorted(directory.glob("*.png"))
    ]


def models(state: ServerState, database: str) -> dict[str, Any]:
    """Every configured model with all its versions (and their training figures), the latest
    evaluations and the maps."""
    served = served_or_404(state, database)
    config = state.live.config
    directory = config.models_dir(database)
    listing = []
    for name, settings in sorted(served.models.configs.items()):
        loaded = served.models.peek(name)
        listing.append(
            {
                "model": name,
                "algorithm": settings.algorithm,
                "params": dict(settings.params),
                "serving": loaded.version if loaded is not None else None,
                "versions": [v.to_json() for v in reversed(model_versions(directory, name))],
            }
        )
    return {
        "database": database,
        "models": listing,
        "evaluations": evaluations(config.evaluations_dir, database),
        "maps": maps(config.maps_dir(database)),
    }


def map_file(state: ServerState, database: str, name: str) -> Path:
    """The PNG of one map (only a plain file name of the maps directory)."""
    served_or_404(state, database)
    directory = state.live.config.maps_dir(database)
    if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".png"):
        raise NotFound(f"no map '{name}'")
    path = directory / name
    if not path.is_file():
        raise NotFound(f"no map '{name}'")
    return path
