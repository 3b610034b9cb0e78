"""A database's model versions over HTTP: `GET /{databaseId}/-/models` and
`POST /{databaseId}/-/models/{model}/rollback`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.boundary import SafeJSONResponse
from server.api.operations import Params, error_body
from server.serving.store import Served, Store
from server.training.artifacts import VersionError, model_versions, roll_back
from storage.errors import BadParameter, NotFound, StorageError
from storage.params import check_known, read_str

logger = logging.getLogger("reqo")

Accept = Callable[..., Awaitable[tuple[Served, Params]]]
"""The application's check of a request: its database and parameters (`reads=False` for a
request that writes)."""


def model_routes(store: Store, accept: Accept) -> list[Route]:
    """The routes of model versions."""

    async def models(request: Request) -> Response:
        """Each configured model: the version this server serves, and the versions on disk."""
        try:
            served, params = await accept(request)
            check_known(params.merged, ())
            directory = store.config.models_dir(served.name)
            listing = []
            for name in sorted(served.models.configs):
                loaded = served.models.peek(name)
                versions = await asyncio.to_thread(model_versions, directory, name)
                listing.append(
                    {
                        "model": name,
                        "serving": loaded.version if loaded is not None else None,
                        "versions": [v.to_json() for v in versions],
                    }
                )
        except StorageError as error:
            return SafeJSONResponse(error_body(error), status_code=error.status)
        return SafeJSONResponse(listing)

    async def rollback(request: Request) -> Response:
        """Serve an older version of a model (`to`, or the one before the live one), on every
        server: the change travels through the change feed, as a trainer's new version does."""
        try:
            served, params = await accept(request, reads=False)
            check_known(params.merged, ("to",))
            name = request.path_params["model"]
            if name not in served.models.configs:
                raise NotFound(f"model '{name}' is not configured")
            directory = store.config.models_dir(served.name)
            try:
                previous, version = await asyncio.to_thread(
                    roll_back, directory, name, read_str(params.merged, "to")
                )
            except VersionError as error:
                raise BadParameter("to", str(error)) from None
            await served.write_and_see("models", {"versions": {name: version}})
            logger.info(
                "database %r: model '%s' rolled back from %s to %s",
                served.name,
                name,
                previous,
                version,
                extra={
                    "event": "model_rollback",
                    "db": served.name,
                    "model": name,
                    "version": version,
                    "previous": previous,
                },
            )
        except StorageError as error:
            return SafeJSONResponse(error_body(error), status_code=error.status)
        return SafeJSONResponse({"model": name, "previous": previous, "version": version})

    return [
        Route("/{databaseId}/-/models", models, methods=["GET"]),
        Route("/{databaseId}/-/models/{model}/rollback", rollback, methods=["POST"]),
    ]
