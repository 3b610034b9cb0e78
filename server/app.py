"""The Starlette application: Recombee's API under `/{databaseId}/`, plus reqo's own `/-/` paths."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from plugins.manager import PluginError, Registry, collect, get_plugin_manager
from server.api.batch import PreparedBatch, parse_batch, run_batch
from server.api.catalog import catalog_operations
from server.api.image_search import ENDPOINT, read_image_request
from server.api.image_search import PATH as IMAGE_PATH
from server.api.interactions import interaction_operations
from server.api.kpi import kpi as kpi_report
from server.api.operations import (
    Call,
    Mode,
    Operation,
    OperationTable,
    Params,
    error_body,
    read_body,
)
from server.api.recommendations import (
    PATHS,
    next_items,
    parse_request,
    recommend,
    recommend_for_image,
    recommend_in_transaction,
    recommendation_operations,
)
from server.auth import AUTH_PARAMETERS, verify_request
from server.config import Config, ConfigError
from server.lifecycle import Live
from server.models import check_models
from server.store import Served, Store
from storage.database import Database, WriteContext
from storage.errors import BadParameter, InvalidInput, NotFound, StorageError
from storage.params import check_known, read_str

OPENAPI = Path(__file__).with_name("openapi.yaml")
"""reqo's extensions to Recombee's API, as an OpenAPI document."""
logger = logging.getLogger("reqo")
MAX_BODY_BYTES = 64 * 2**20
"""A full batch of 10,000 requests takes a few MB; anything far larger is refused with 413."""

Endpoint = Callable[[Request], Awaitable[Response]]


def load_registry(config: Config) -> Registry:
    """The plugins' registry, with every configured model checked against its algorithm."""
    try:
        registry = collect(get_plugin_manager(config.plugins))
    except PluginError as error:
        raise ConfigError(config.source, "plugins", str(error)) from None
    check_models(config, registry)
    return registry


def plugins_json(registry: Registry) -> dict[str, Any]:
    return {
        "plugins": [p.to_json() for p in registry.plugins],
        "algorithms": {
            name: {
                "description": cls.description,
                "parameters": {p.name: p.default for p in cls.parameters},
            }
            for name, cls in sorted(registry.algorithms.items())
        },
    }


def operation_table() -> OperationTable:
    """Every operation of Recombee's API that reqo serves."""
    return OperationTable(
        [*catalog_operations(), *interaction_operations(), *recommendation_operations()]
    )


def create_app(config: Config, registry: Registry | None = None) -> Starlette:
    """Build the application for a configuration; databases open in the lifespan."""
    registry = registry if registry is not None else load_registry(config)
    store = Store(config, registry)
    live = Live(config, registry, store)
    table = operation_table()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(store.open)
        registry.manager.hook.startup(config=config)
        trainer = asyncio.create_task(live.train_on_schedule())
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.create_task(_reload_logged()))
        try:
            yield
        finally:
            trainer.cancel()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
            registry.manager.hook.shutdown()
            await store.settle()
            await asyncio.to_thread(store.close)

    async def _reload_logged() -> None:
        try:
            await live.reload()
        except ConfigError as error:
            logger.error("reload refused: %s", error)

    def served_of(request: Request) -> Served:
        name = request.path_params["databaseId"]
        found = store.get(name)
        if found is None:
            raise NotFound(f"database '{name}' does not exist on this server")
        verify_request(request.scope, found.settings.token, allow_unsigned=config.allow_unsigned)
        return found

    def database_of(request: Request) -> Database:
        return served_of(request).database

    def endpoint(operation: Operation) -> Endpoint:
        async def handle(request: Request) -> Response:
            try:
                database = database_of(request)
                params = await read_params(request)
                args = {k: v for k, v in request.path_params.items() if k != "databaseId"}
                result = await execute(database, operation, args, params)
            except StorageError as error:
                return JSONResponse(error_body(error), status_code=error.status)
            return JSONResponse(result, status_code=operation.status)

        return handle

    async def batch(request: Request) -> Response:
        try:
            database = database_of(request)
            params = await read_params(request)
            prepared = await asyncio.to_thread(parse_batch, table, params)
            served = served_of(request)
            current = live.config

            def recommend_one(ctx: WriteContext, call: Call, batch: PreparedBatch) -> Any:
                kind = call.operation.recommendation
                exclude = frozenset(batch.recommended) if batch.distinct_recomms else frozenset()
                if kind == "next-items":
                    raise BadParameter("requests", "Recommend Next Items cannot be part of a batch")
                assert kind is not None
                parsed = parse_request(
                    kind, call.args, call.params, current.scenarios, current.models
                )
                body = recommend_in_transaction(
                    ctx, served.pipeline, parsed, kind, exclude, served.experiments
                )
                batch.recommended.update(r["id"] for r in body["recomms"])
                return body

            result = await database.write(lambda ctx: run_batch(ctx, prepared, recommend_one))
        except StorageError as error:
            return JSONResponse(error_body(error), status_code=error.status)
        return JSONResponse(result)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "databases": store.names()})

    async def openapi(request: Request) -> Response:
        return Response(OPENAPI.read_bytes(), media_type="application/yaml")

    async def plugins(request: Request) -> Response:
        return JSONResponse(plugins_json(registry))

    def recommendation(endpoint: str) -> Endpoint:
        async def handle(request: Request) -> Response:
            try:
                served = served_of(request)
                params = await read_params(request)
                args = {k: v for k, v in request.path_params.items() if k != "databaseId"}
                current = live.config
                parsed = parse_request(endpoint, args, params, current.scenarios, current.models)
                result = await recommend(served, parsed, endpoint)
            except StorageError as error:
                return JSONResponse(error_body(error), status_code=error.status)
            return JSONResponse(result)

        return handle

    async def image_items(request: Request) -> Response:
        try:
            served = served_of(request)
            image, params = await read_image_request(request)
            current = live.config
            parsed = parse_request(ENDPOINT, {}, params, current.scenarios, current.models)
            result = await recommend_for_image(served, parsed, image)
        except StorageError as error:
            return JSONResponse(error_body(error), status_code=error.status)
        return JSONResponse(result)

    async def next_page(request: Request) -> Response:
        try:
            served = served_of(request)
            params = await read_params(request)
            result = await next_items(
                served,
                request.path_params["recommId"],
                params,
                live.config.scenarios,
                live.config.models,
            )
        except StorageError as error:
            return JSONResponse(error_body(error), status_code=error.status)
        return JSONResponse(result)

    async def kpi(request: Request) -> Response:
        try:
            served = served_of(request)
            params = await read_params(request)
            result = await kpi_report(served, params, live.config.scenarios)
        except StorageError as error:
            return JSONResponse(error_body(error), status_code=error.status)
        return JSONResponse(result)

    async def scenarios(request: Request) -> Response:
        try:
            served_of(request)
        except StorageError as error:
            return JSONResponse(error_body(error), status_code=error.status)
        return JSONResponse([s.to_json() for s in live.config.scenarios.values()])

    async def reload(request: Request) -> Response:
        # Any database's token signs it (or none, where unsigned requests are allowed).
        refusals = []
        for settings in config.databases.values():
            try:
                verify_request(request.scope, settings.token, allow_unsigned=config.allow_unsigned)
                break
            except StorageError as error:
                refusals.append(error)
        else:
            return JSONResponse(error_body(refusals[0]), status_code=refusals[0].status)
        try:
            result = await live.reload()
        except ConfigError as error:
            return JSONResponse({"statusCode": 400, "error": str(error)}, status_code=400)
        return JSONResponse(result)

    async def train(request: Request) -> Response:
        try:
            served = served_of(request)
            params = await read_params(request)
            check_known(params.merged, ("model",))
            wanted = read_str(params.merged, "model")
            names = [wanted] if wanted else served.models.training_order()
            for name in names:
                if name not in served.models.configs:
                    raise BadParameter("model", f"unknown model '{name}'")
            versions = {}
            for name in names:
                loaded = await asyncio.to_thread(served.models.train, name)
                versions[name] = loaded.version
        except StorageError as error:
            return JSONResponse(error_body(error), status_code=error.status)
        return JSONResponse({"trained": versions})

    routes = [
        Route("/-/health", health, methods=["GET"]),
        Route("/{databaseId}/-/train", train, methods=["POST"]),
        Route("/-/plugins", plugins, methods=["GET"]),
        Route("/-/openapi.yaml", openapi, methods=["GET"]),
        Route("/-/reload", reload, methods=["POST"]),
        Route("/{databaseId}/scenarios/", scenarios, methods=["GET"]),
        Route("/{databaseId}/-/kpi", kpi, methods=["GET"]),
        Route("/{databaseId}/recomms/next/items/{recommId}", next_page, methods=["POST", "GET"]),
        Route("/{databaseId}" + IMAGE_PATH, image_items, methods=["POST"]),
    ]
    for kind, path in PATHS.items():
        if kind == "next-items":
            continue
        routes.append(Route("/{databaseId}" + path, recommendation(kind), methods=["POST", "GET"]))
    routes.append(Route("/{databaseId}/batch/", batch, methods=["POST"]))
    for operation in table.operations:
        if operation.recommendation is not None:
            continue  # served by the routes above, with the pipeline
        routes.append(
            Route("/{databaseId}" + operation.path, endpoint(operation), methods=[operation.method])
        )

    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )


async def execute(
    database: Database, operation: Operation, args: dict[str, str], params: Params
) -> Any:
    """Run an operation where it belongs: a reader thread, or the writer (coalesced if it can)."""
    if operation.coalesce is not None:
        payload = operation.coalesce.prepare(args, params)
        return await database.write_coalesced(operation.coalesce.apply, payload)
    if operation.mode is Mode.READ:
        return await database.read(lambda ctx: operation.handler(ctx, args, params))
    return await database.write(lambda ctx: operation.handler(ctx, args, params))


async def read_params(request: Request) -> Params:
    """The query parameters (without the signature) and the JSON body object."""
    query = {k: v for k, v in request.query_params.items() if k not in AUTH_PARAMETERS}
    raw = await _read_body(request)
    if not raw.strip():
        return Params(query=query)
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInput(f"the request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    return Params(query=query, body=body)


async def _read_body(request: Request) -> bytes:
    return await read_body(request, MAX_BODY_BYTES)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail
    if exc.status_code == 404:
        message = f"no endpoint {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    return JSONResponse({"statusCode": exc.status_code, "error": message}, exc.status_code)


async def internal_error(request: Request, exc: Exception) -> Response:
    logger.exception("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    body = {"statusCode": 500, "error": f"internal error: {type(exc).__name__}"}
    return JSONResponse(body, status_code=500)
