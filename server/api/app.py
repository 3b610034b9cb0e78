"""The Starlette application: Recombee's API under `/{databaseId}/`, plus reqo's own `/-/` paths."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plugins.manager import PluginError, Registry, collect, get_plugin_manager
from server.api.admin import ServerState, admin_routes
from server.api.admission import Admission, Traffic
from server.api.auth import (
    PUBLIC_OPERATIONS,
    PUBLIC_RECOMMENDATIONS,
    PUBLIC_SCOPE_KEY,
    Forbidden,
    Unauthorized,
    check_digest,
    signed_publicly,
    verify_public,
    verify_request,
)
from server.api.batch import BatchOn, PreparedBatch, call_payload, parse_batch, run_batch
from server.api.body import read_params
from server.api.boundary import ErrorBoundary, SafeJSONResponse
from server.api.image_search import ENDPOINT, read_image_request
from server.api.image_search import MAX_REQUEST_BYTES as IMAGE_REQUEST_BYTES
from server.api.image_search import PATH as IMAGE_PATH
from server.api.kpi import kpi as kpi_report
from server.api.model_routes import model_routes
from server.api.operations import (
    Call,
    Mode,
    Operation,
    Params,
    error_body,
    read_body,
)
from server.api.recommendation_routes import PAGES, PATHS
from server.api.recommendations import (
    next_items,
    parse_request,
    recommend,
    recommend_for_image,
)
from server.api.segment_recommendations import COMPOSITE, composite
from server.api.table import operation_table
from server.cluster.client import WriterRefused
from server.cluster.links import Links
from server.config import CONFIG_EXIT, Config, ConfigError
from server.config_telemetry import LogsConfig, MetricsConfig
from server.console.history import TrafficHistory
from server.console.routes import console_routes
from server.console.session import CONSOLE_SCOPE_KEY, session_opens
from server.serving.expressions import LIMITS
from server.serving.lifecycle import Live, reload_was_asked
from server.serving.live_models import check_models
from server.serving.scenario_check import check_scenarios
from server.serving.store import Served, Store
from server.telemetry.metrics import BATCH_SIZE
from server.telemetry.middleware import Telemetry, note_scenario
from server.telemetry.sampler import Sampler, ServerGauges
from server.telemetry.summary import log_startup
from storage.errors import BadParameter, NotFound, StorageError
from storage.params import check_known, read_str

logger = logging.getLogger("reqo")

Endpoint = Callable[[Request], Awaitable[Response]]


def load_registry(config: Config) -> Registry:
    """The plugins' registry, with every configured model checked against its algorithm."""
    try:
        registry = collect(get_plugin_manager(config.plugins))
    except PluginError as error:
        raise ConfigError(config.source, "plugins", str(error)) from None
    check_models(config, registry)
    return registry


def create_app(
    config: Config, registry: Registry | None = None, links: Links | None = None
) -> Starlette:
    """Build the application for a configuration; databases open in the lifespan. `links`:
    how to reach the writers and the trainer (by default, through the data directory)."""
    registry = registry if registry is not None else load_registry(config)
    configure_limits(config)
    store = Store(config, registry, links)
    live = Live(config, registry, store)
    table = operation_table()
    traffic = Traffic()
    history = TrafficHistory(config.databases, (config.metrics or MetricsConfig()).history_interval)
    state = ServerState(store, live, registry, traffic, Sampler("server"), history=history)
    state.sampler.sources.append(ServerGauges(store, traffic))
    # Unknown databases are checked against a token nobody has, so that an unsigned or wrongly
    # signed request learns nothing from the answer about which databases exist.
    nobody = secrets.token_hex(32)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        # The scenarios' ReQL and property names against the schemas, before any request.
        try:
            check_scenarios(live.config, store.schemas(), registry.functions)
        except ConfigError as error:
            await store.close()
            logger.error("reqo: configuration error: %s", error)
            logging.shutdown()
            # Not SystemExit: uvicorn reports any failed start-up as its own exit status 3, and
            # the supervisor must tell a configuration mistake (stop) from a crash (restart).
            os._exit(CONFIG_EXIT)
        registry.manager.hook.startup(config=config)
        log_startup(live.config, store)
        sampling = asyncio.create_task(state.sampler.run())
        recording = asyncio.create_task(history.run())
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.create_task(_reload_logged()))
        if reload_was_asked():  # while this process was starting
            await _reload_logged()
        state.started = True
        try:
            yield
        finally:
            state.started = False
            sampling.cancel()
            recording.cancel()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
            registry.manager.hook.shutdown()
            await store.close()

    async def _reload_logged() -> None:
        with contextlib.suppress(ConfigError):  # logged by the reload, with its reason
            await live.reload()

    def served_of(request: Request, *, public: bool = False) -> Served:
        """The request's database, once its signature is verified. `public`: whether the
        operation is one that the public token may call (Recombee's client-side SDKs)."""
        name = request.path_params["databaseId"]
        found = store.get(name)
        if found is None:
            verify_request(request.scope, nobody, allow_unsigned=config.allow_unsigned)
            raise NotFound(f"database '{name}' does not exist on this server")
        settings = found.settings
        if session_opens(request.scope, live.config.admin_token):
            request.scope[CONSOLE_SCOPE_KEY] = True  # the console, logged in: no signature
            return found
        if signed_publicly(request.scope):
            if settings.public_token is None:
                raise Unauthorized(
                    f"database '{name}' has no public token: sign with its private token"
                )
            verify_public(request.scope, settings.public_token)
            if not public:
                raise _PUBLIC_REFUSAL
            request.scope[PUBLIC_SCOPE_KEY] = True
            return found
        verify_request(
            request.scope,
            settings.token,
            allow_unsigned=config.allow_unsigned,
            strict=settings.strict_signatures,
        )
        return found

    async def accept(
        request: Request, *, reads: bool = True, public: bool = False
    ) -> tuple[Served, Params]:
        """The request's database and parameters, its signature (and body digest) verified;
        for a request that reads, once this server's copy holds every write that the writer
        had acknowledged when the request arrived."""
        served = served_of(request, public=public)
        target = await served.replica.target()
        params, raw = await read_params(request)
        console = bool(request.scope.get(CONSOLE_SCOPE_KEY))
        if served.settings.strict_signatures and not _unsigned(request, config) and not console:
            check_digest(request.scope, raw)
        if reads:
            await served.replica.caught_up(target)
        return served, params

    def endpoint(operation: Operation) -> Endpoint:
        async def handle(request: Request) -> Response:
            try:
                # A read, or the select of a read-then-write: on a copy that holds every write
                # acknowledged before the request arrived.
                reads = (
                    operation.mode is Mode.READ and operation.coalesce is None
                ) or operation.read_then_write is not None
                public = operation.name in PUBLIC_OPERATIONS
                served, params = await accept(request, reads=reads, public=public)
                args = {k: v for k, v in request.path_params.items() if k != "databaseId"}
                result = await execute(served, operation, args, params)
            except StorageError as error:
                return SafeJSONResponse(error_body(error), status_code=error.status)
            return SafeJSONResponse(result, status_code=operation.status)

        return handle

    async def batch(request: Request) -> Response:
        try:
            served, params = await accept(request, public=True)
            prepared = await asyncio.to_thread(parse_batch, table, params)
            if request.scope.get(PUBLIC_SCOPE_KEY):
                for prepared_call in prepared.calls:
                    operation = prepared_call.call.operation
                    name = operation.name
                    kind = operation.recommendation
                    if name not in PUBLIC_OPERATIONS and kind not in PUBLIC_RECOMMENDATIONS:
                        raise Forbidden(
                            f"a batch signed with the public token holds '{name}', which takes "
                            "the private token"
                        )
            BATCH_SIZE.labels(served.name).observe(len(prepared.calls))
            current = live.config

            async def recommend_one(call: Call, batch: PreparedBatch) -> Any:
                kind = call.operation.recommendation
                if kind in PAGES:
                    raise BadParameter("requests", "Recommend Next Items cannot be part of a batch")
                assert kind is not None
                if kind == COMPOSITE:
                    return await composite(served, call.params, current.scenarios, current.models)
                parsed = parse_request(
                    kind, call.args, call.params, current.scenarios, current.models, registry.logics
                )
                if batch.distinct_recomms and batch.recommended:
                    query = replace(parsed.query, exclude_ids=frozenset(batch.recommended))
                    parsed = replace(parsed, query=query)
                body = await recommend(served, parsed, kind)
                batch.recommended.update(r["id"] for r in body["recomms"])
                return body

            result = await run_batch(BatchOn(served), prepared, recommend_one)
        except StorageError as error:
            return SafeJSONResponse(error_body(error), status_code=error.status)
        return SafeJSONResponse(result)

    def recommendation(endpoint: str) -> Endpoint:
        async def handle(request: Request) -> Response:
            try:
                public = endpoint in PUBLIC_RECOMMENDATIONS
                served, params = await accept(request, public=public)
                args = {k: v for k, v in request.path_params.items() if k != "databaseId"}
                current = live.config
                parsed = parse_request(
                    endpoint, args, params, current.scenarios, current.models, registry.logics
                )
                if parsed.scenario is not None and parsed.scenario in current.scenarios:
                    note_scenario(request.scope, parsed.scenario)
                # The console's previews are not logged: they earn no KPI and skew none.
                logged = not request.scope.get(CONSOLE_SCOPE_KEY)
                result = await recommend(served, parsed, endpoint, logged=logged)
            except StorageError as error:
                return SafeJSONResponse(error_body(error), status_code=error.status)
            return SafeJSONResponse(result)

        return handle

    async def image_items(request: Request) -> Response:
        try:
            served = served_of(request)
            await served.replica.caught_up()
            if served.settings.strict_signatures and not _unsigned(request, config):
                raw = await read_body(request, IMAGE_REQUEST_BYTES)
                check_digest(request.scope, raw)
                # Starlette reads a body it holds already from here (the form parser too).
                request._body = raw
            image, params = await read_image_request(request)
            current = live.config
            parsed = parse_request(
                ENDPOINT, {}, params, current.scenarios, current.models, registry.logics
            )
            result = await recommend_for_image(served, parsed, image)
        except StorageError as error:
            return SafeJSONResponse(error_body(error), status_code=error.status)
        return SafeJSONResponse(result)

    def next_page(segments: bool) -> Endpoint:
        async def handle(request: Request) -> Response:
            try:
                served, params = await accept(request, public=True)
                result = await next_items(
                    served,
                    request.path_params["recommId"],
                    params,
                    live.config.scenarios,
                    live.config.models,
                    segments=segments,
                )
            except StorageError as error:
                return SafeJSONResponse(error_body(error), status_code=error.status)
            return SafeJSONResponse(result)

        return handle

    async def composite_recommendation(request: Request) -> Response:
        try:
            served, params = await accept(request, public=True)
            current = live.config
            result = await composite(served, params, current.scenarios, current.models)
        except StorageError as error:
            return SafeJSONResponse(error_body(error), status_code=error.status)
        return SafeJSONResponse(result)

    async def kpi(request: Request) -> Response:
        try:
            served, params = await accept(request)
            result = await kpi_report(served, params, live.config.scenarios)
        except StorageError as error:
            return SafeJSONResponse(error_body(error), status_code=error.status)
        return SafeJSONResponse(result)

    async def scenarios(request: Request) -> Response:
        try:
            await accept(request)
        except StorageError as error:
            return SafeJSONResponse(error_body(error), status_code=error.status)
        return SafeJSONResponse([s.to_json() for s in live.config.scenarios.values()])

    async def train(request: Request) -> Response:
        try:
            served, params = await accept(request, reads=False)
            check_known(params.merged, ("model",))
            wanted = read_str(params.merged, "model")
            names = [wanted] if wanted else served.models.training_order()
            for name in names:
                if name not in served.models.configs:
                    raise BadParameter("model", f"unknown model '{name}'")
            # The trainer fits them (never this process); the new versions serve here at once,
            # and on the other servers within a second.
            reply = await store.trainer.request({"op": "train", "db": served.name, "models": names})
            await asyncio.to_thread(served.models.refresh)
        except StorageError as error:
            return SafeJSONResponse(error_body(error), status_code=error.status)
        return SafeJSONResponse({"trained": reply.get("versions", {})})

    routes = [
        *admin_routes(state),
        *console_routes(state),
        Route("/{databaseId}/-/train", train, methods=["POST"]),
        *model_routes(store, accept),
        Route("/{databaseId}/scenarios/", scenarios, methods=["GET"]),
        Route("/{databaseId}/-/kpi", kpi, methods=["GET"]),
        Route("/{databaseId}" + PATHS["next-items"], next_page(False), methods=["POST", "GET"]),
        Route(
            "/{databaseId}" + PATHS["next-item-segments"], next_page(True), methods=["POST", "GET"]
        ),
        Route("/{databaseId}" + PATHS[COMPOSITE], composite_recommendation, methods=["POST"]),
        Route("/{databaseId}" + IMAGE_PATH, image_items, methods=["POST"]),
    ]
    for kind, path in PATHS.items():
        if kind in PAGES or kind == COMPOSITE:
            continue
        routes.append(Route("/{databaseId}" + path, recommendation(kind), methods=["POST", "GET"]))
    routes.append(Route("/{databaseId}/batch/", batch, methods=["POST"]))
    for operation in table.operations:
        if operation.recommendation is not None:
            continue  # served by the routes above, with the pipeline
        routes.append(
            Route("/{databaseId}" + operation.path, endpoint(operation), methods=[operation.method])
        )

    limits = config.limits
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(
                Telemetry,
                databases=config.databases,
                logs=lambda: live.config.logs or LogsConfig(),
                metrics=lambda: (live.config.metrics or MetricsConfig()).enabled,
            ),
            *(
                [
                    Middleware(
                        CORSMiddleware,
                        allow_origins=list(config.cors_origins),
                        allow_methods=["GET", "POST", "PUT", "DELETE"],
                        allow_headers=["Accept", "Content-Type", "X-Request-ID"],
                        expose_headers=["X-Request-ID"],
                        max_age=600,
                    )
                ]
                if config.cors_origins
                else []
            ),
            Middleware(
                Admission,
                databases=config.databases,
                max_queued=limits.max_queued,
                retry_after=limits.retry_after,
                traffic=state.traffic,
            ),
            Middleware(ErrorBoundary),
        ],
        exception_handlers={HTTPException: http_error},
    )


def configure_limits(config: Config) -> None:
    """Apply the configuration's limits that live outside the application object."""
    LIMITS.timeout = config.limits.query_timeout


def _unsigned(request: Request, config: Config) -> bool:
    """Whether a development server let the request in without a signature."""
    return config.allow_unsigned and "hmac_sign" not in request.query_params


async def execute(
    served: Served, operation: Operation, args: dict[str, str], params: Params
) -> Any:
    """Run an operation where it belongs: a read on this server's copy, a write on the writer."""
    if operation.mode is Mode.READ and operation.coalesce is None:
        return await served.database.read(lambda ctx: operation.handler(ctx, args, params))
    if operation.read_then_write is not None:
        result, _ = await served.select_then_write(operation, args, params)
        return result
    call = call_payload(operation, args, params)
    answers = await served.write("calls", {"calls": [call]})
    answer = answers[0]
    if answer["code"] >= 300:
        raise WriterRefused(answer["code"], answer["json"]["error"])
    return answer["json"]


_PUBLIC_REFUSAL = Forbidden(
    "the public token may only send interactions and ask for recommendations and searches; "
    "this operation takes the private token"
)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail
    if exc.status_code == 404:
        message = f"no endpoint {request.method} {request.url.path}"
    elif exc.status_code == 405:
        if signed_publicly(request.scope):
            # The client-side SDKs POST everything; what they POST to a path that takes another
            # method (Merge Users) is an operation the public token may not call.
            return SafeJSONResponse(error_body(_PUBLIC_REFUSAL), _PUBLIC_REFUSAL.status)
        message = f"method {request.method} is not allowed on {request.url.path}"
    return SafeJSONResponse({"statusCode": exc.status_code, "error": message}, exc.status_code)
