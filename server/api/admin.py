"""reqo's own operations outside any database: health, readiness, metrics, plugins, reload, the
OpenAPI document of reqo's extensions.

`/-/health` (liveness) and `/-/ready` answer anyone with their status alone, at once, without
touching a database (a probe must never wait behind request work); with the admin token they
also report each database and the traffic counters, and `/-/ready` what it still waits for.
`/-/ready` is 200 once every database is open and every model that a scenario serves with has
a trained version, 503 before. `/-/metrics` (also `/metrics`, which no database named
"metrics" shadows) is Prometheus' text format, public where `server.metrics.public` says so.
Everything else here needs the admin token.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plugins.algorithm import Parameter
from plugins.manager import Registry
from server.api.admission import Traffic
from server.api.auth import is_admin, verify_admin
from server.api.boundary import SafeJSONResponse
from server.api.operations import error_body
from server.config import Config, ConfigError
from server.config_telemetry import MetricsConfig
from server.serving.lifecycle import Live
from server.serving.store import Store
from server.telemetry.sampler import Sampler
from storage.errors import StorageError

if TYPE_CHECKING:
    from server.console.history import TrafficHistory

OPENAPI = Path(__file__).resolve().parent.parent / "openapi.yaml"
"""reqo's extensions to Recombee's API, as an OpenAPI document."""


@dataclass
class ServerState:
    """What the admin operations look at."""

    store: Store
    live: Live
    registry: Registry
    traffic: Traffic
    sampler: Sampler
    started: bool = False
    """True once every database is open; false again while the server shuts down."""
    history: TrafficHistory | None = None
    """The last hour of each database's traffic (the console's overview)."""


def plugins_json(registry: Registry) -> dict[str, Any]:
    """The plugins, and each algorithm and embedder with its parameters (`parameters`: the
    defaults by name; `parameterHelp`: type, default, range and description)."""

    def described(classes: Mapping[str, Any]) -> dict[str, Any]:
        return {
            name: {
                "description": cls.description,
                "parameters": {p.name: p.default for p in cls.parameters},
                "parameterHelp": {p.name: parameter_help(p) for p in cls.parameters},
            }
            for name, cls in sorted(classes.items())
        }

    return {
        "plugins": [p.to_json() for p in registry.plugins],
        "algorithms": described(registry.algorithms),
        "embedders": described(registry.embedders),
        "textEmbedders": described(registry.text_embedders),
    }


def parameter_help(parameter: Parameter) -> dict[str, Any]:
    """A parameter as `reqo plugins` shows it."""
    shown: dict[str, Any] = {
        "type": parameter.kind.__name__,
        "default": parameter.default,
        "description": parameter.description,
    }
    if parameter.minimum is not None:
        shown["minimum"] = parameter.minimum
    if parameter.maximum is not None:
        shown["maximum"] = parameter.maximum
    if parameter.choices:
        shown["choices"] = list(parameter.choices)
    return shown


def admin_routes(state: ServerState) -> list[Route]:
    """The routes under `/-/`."""

    def admin(request: Request) -> bool:
        config = state.live.config
        return is_admin(request.scope, config.admin_token, allow_unsigned=config.allow_unsigned)

    def guarded(
        handler: Callable[[Request], Any],
    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            config = state.live.config
            try:
                verify_admin(
                    request.scope, config.admin_token, allow_unsigned=config.allow_unsigned
                )
            except StorageError as error:
                return SafeJSONResponse(error_body(error), error.status)
            response: Response = await handler(request)
            return response

        return endpoint

    async def health(request: Request) -> Response:
        body: dict[str, Any] = {"status": "ok"}
        if admin(request):
            body["process"] = os.getpid()  # which server of the group answered
            body["databases"] = _databases(state)
            body["traffic"] = state.traffic.to_json()
        return SafeJSONResponse(body)

    async def ready(request: Request) -> Response:
        # Ready once every database is open and every model a scenario serves with has a
        # version (a model without one would be served by the fallback meanwhile).
        missing = awaiting_versions(state) if state.started else {}
        is_ready = state.started and not missing
        body: dict[str, Any] = {"status": "ready" if is_ready else "not ready"}
        if admin(request):
            body["databases"] = _databases(state)
            if not state.started:
                body["missing"] = {"databases": "not open yet"}
            elif missing:
                body["missing"] = {"modelVersions": missing}
        return SafeJSONResponse(body, 200 if is_ready else 503)

    async def metrics(request: Request) -> Response:
        settings = state.live.config.metrics or MetricsConfig()
        if not settings.enabled:
            body = {"statusCode": 404, "error": "metrics are off (server.metrics.enabled: false)"}
            return SafeJSONResponse(body, 404)
        if not settings.public:
            try:
                config = state.live.config
                verify_admin(
                    request.scope, config.admin_token, allow_unsigned=config.allow_unsigned
                )
            except StorageError as error:
                return SafeJSONResponse(error_body(error), error.status)
        from prometheus_client import CONTENT_TYPE_LATEST

        from server.telemetry.metrics import exposition

        # A cluster's come from every replica and writer; else this machine's processes.
        gathered = await state.store.links.metrics()
        if gathered is not None:
            return Response(gathered, media_type=CONTENT_TYPE_LATEST)
        state.sampler.sample()
        text, content_type = await asyncio.to_thread(exposition)
        return Response(text, media_type=content_type)

    async def plugins(request: Request) -> Response:
        return SafeJSONResponse(plugins_json(state.registry))

    async def reload(request: Request) -> Response:
        try:
            result = await state.live.reload(notify=True)
        except ConfigError as error:
            return SafeJSONResponse({"statusCode": 400, "error": str(error)}, 400)
        return SafeJSONResponse(result)

    async def openapi(request: Request) -> Response:
        return Response(OPENAPI.read_bytes(), media_type="application/yaml")

    return [
        Route("/-/health", health, methods=["GET"]),
        Route("/-/ready", ready, methods=["GET"]),
        Route("/-/metrics", metrics, methods=["GET"]),
        # Before the databases' routes: a database named "metrics" has /metrics/… paths only.
        Route("/metrics", metrics, methods=["GET"]),
        Route("/-/plugins", guarded(plugins), methods=["GET"]),
        Route("/-/reload", guarded(reload), methods=["POST"]),
        Route("/-/openapi.yaml", openapi, methods=["GET"]),
    ]


def scenario_models(config: Config, registry: Registry) -> set[str]:
    """The models the configured scenarios serve with (their variants' and ensembles' members
    included)."""
    from server.api.recommendations import DEFAULT_MODEL
    from server.training.artifacts import ensemble_members

    names: set[str] = set()
    for scenario in config.scenarios.values():
        names.add(scenario.model or DEFAULT_MODEL[scenario.endpoint])
        if scenario.experiment is not None:
            names.update(v.model for v in scenario.experiment.variants)
        if scenario.cold_start is not None:
            names.add(scenario.cold_start.model)
    for name in list(names):
        if name in config.models:
            names.update(ensemble_members(config.models[name], registry))
    return {name for name in names if name in config.models}


def awaiting_versions(state: ServerState) -> dict[str, list[str]]:
    """By database, the scenarios' models that have no version yet."""
    from server.training.artifacts import current_version

    config = state.live.config
    wanted = sorted(scenario_models(config, state.registry))
    missing = {}
    for served in state.store.all():
        directory = config.models_dir(served.name)
        absent = [name for name in wanted if current_version(directory, name) is None]
        if absent:
            missing[served.name] = absent
    return missing


def _databases(state: ServerState) -> dict[str, Any]:
    """Each open database's state, from memory only."""
    report = {}
    for served in state.store.all():
        database = served.database
        report[database.name] = {
            "diskFull": database.disk_full,
            "inFlight": state.traffic.in_flight.get(database.name, 0),
            "shed": state.traffic.shed.get(database.name, 0),
            "historyIndexReady": served.pipeline.histories.ready,
            "recommendationLogFailures": served.log.failures,
            "appliedSeq": served.replica.applied,
            "committedSeq": served.replica.last_known_target(),
            "divergedEntries": served.replica.diverged,
            "feedLagMs": served.replica.lag_ms(),
            "modelsAwaitingTraining": sorted(served.models.awaiting),
        }
    return report
