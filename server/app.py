"""The Starlette application: Recombee's API under `/{databaseId}/`, plus reqo's own `/-/` paths."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.api.batch import parse_batch, run_batch
from server.api.catalog import catalog_operations
from server.api.interactions import interaction_operations
from server.api.operations import Mode, Operation, OperationTable, Params, error_body
from server.auth import AUTH_PARAMETERS, verify_request
from server.config import Config
from server.store import Store
from storage.database import Database
from storage.errors import InvalidInput, NotFound, StorageError, TooLarge

logger = logging.getLogger("reqo")
MAX_BODY_BYTES = 64 * 2**20
"""A full batch of 10,000 requests takes a few MB; anything far larger is refused with 413."""

Endpoint = Callable[[Request], Awaitable[Response]]


def operation_table() -> OperationTable:
    """Every operation of Recombee's API that reqo serves."""
    return OperationTable([*catalog_operations(), *interaction_operations()])


def create_app(config: Config) -> Starlette:
    """Build the application for a configuration; databases open in the lifespan."""
    store = Store(config)
    table = operation_table()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(store.open)
        try:
            yield
        finally:
            await asyncio.to_thread(store.close)

    def database_of(request: Request) -> Database:
        name = request.path_params["databaseId"]
        found = store.get(name)
        if found is None:
            raise NotFound(f"database '{name}' does not exist on this server")
        database, settings = found
        verify_request(request.scope, settings.token, allow_unsigned=config.allow_unsigned)
        return database

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
            result = await database.write(lambda ctx: run_batch(ctx, prepared))
        except StorageError as error:
            return JSONResponse(error_body(error), status_code=error.status)
        return JSONResponse(result)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "databases": store.names()})

    routes = [Route("/-/health", health, methods=["GET"])]
    routes.append(Route("/{databaseId}/batch/", batch, methods=["POST"]))
    for operation in table.operations:
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
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise TooLarge(f"the request body has {declared} bytes; the limit is {MAX_BODY_BYTES}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise TooLarge(f"the request body exceeds the limit of {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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
