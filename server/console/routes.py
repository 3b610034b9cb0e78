"""The console's routes under `/-/console/`: the login page, the single page of the console and
its script, and the JSON it reads.

Every path but the login page needs the admin token: as a session cookie opened by logging in
(the JSON also wants the console's header, see server.console.session), or as
`Authorization: Bearer`. A development server without an admin token (unsigned requests allowed,
on loopback) opens the console to anyone, as it does every admin operation.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from server.api.admin import ServerState
from server.api.boundary import SafeJSONResponse
from server.api.operations import error_body
from server.console import api, lookup
from server.console.session import (
    console_admin,
    in_session,
    new_session,
    set_cookie_header,
)
from storage.errors import BadParameter, StorageError
from storage.params import read_int

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
PREFIX = "/-/console"
MAX_TOKEN_LENGTH = 4096
FAILED_LOGIN_DELAY = 0.5
"""Seconds a wrong token waits for its answer (guessing is slowed; the token is long anyway)."""

Handler = Callable[[Request], Awaitable[Any]]
PAGE_HEADERS = {
    "cache-control": "no-store",
    # Its own script only, no framing by another site (clickjacking a rollback), forms post
    # here only; item pictures may come from anywhere.
    "content-security-policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src * data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
"""The headers of the console's HTML pages."""


def console_routes(state: ServerState) -> list[Route]:
    """The console's routes, to put before the databases' ones."""

    def token() -> str | None:
        return state.live.config.admin_token

    def open_to_all() -> bool:
        config = state.live.config
        return config.admin_token is None and config.allow_unsigned

    def may_see_pages(request: Request) -> bool:
        return open_to_all() or in_session(request.scope, token())

    def secure(request: Request) -> bool:
        return request.url.scheme == "https"

    async def login_page(request: Request) -> Response:
        if may_see_pages(request):
            return RedirectResponse(f"{PREFIX}/", 303)
        return _login_html(state, None)

    async def login(request: Request) -> Response:
        admin_token = token()
        if admin_token is None:
            return _login_html(state, None, 401)
        form = await request.form(max_files=0, max_fields=4)
        given = form.get("token")
        if not isinstance(given, str) or len(given) > MAX_TOKEN_LENGTH or given != admin_token:
            await asyncio.sleep(FAILED_LOGIN_DELAY)
            return _login_html(state, "That is not this server's admin token.", 401)
        response = RedirectResponse(f"{PREFIX}/", 303)
        cookie = set_cookie_header(new_session(admin_token), secure=secure(request))
        response.headers.append("set-cookie", cookie)
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse(f"{PREFIX}/login", 303)
        ended = set_cookie_header("", secure=secure(request), max_age=0)
        response.headers.append("set-cookie", ended)
        return response

    async def to_slash(request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/", 308)

    async def page(request: Request) -> Response:
        if not may_see_pages(request):
            return RedirectResponse(f"{PREFIX}/login", 303)
        response = FileResponse(STATIC / "index.html", media_type="text/html")
        response.headers.update(PAGE_HEADERS)
        return response

    async def asset(request: Request) -> Response:
        if not may_see_pages(request):
            return SafeJSONResponse({"statusCode": 401, "error": "log in to the console"}, 401)
        name = request.path_params["name"]
        if name not in ASSETS:
            return SafeJSONResponse({"statusCode": 404, "error": f"no asset '{name}'"}, 404)
        return FileResponse(STATIC / name, media_type=ASSETS[name])

    def guarded(handler: Handler, *, header: bool = True) -> Handler:
        async def endpoint(request: Request) -> Response:
            config = state.live.config
            allowed = console_admin(
                request.scope, config.admin_token, allow_unsigned=config.allow_unsigned
            ) or (not header and may_see_pages(request))
            if not allowed:
                body = {
                    "statusCode": 401,
                    "error": "log in to the console, or send the admin token as "
                    "'Authorization: Bearer <admin_token>'",
                }
                return SafeJSONResponse(body, 401)
            try:
                result = await handler(request)
            except StorageError as error:
                return SafeJSONResponse(error_body(error), error.status)
            if isinstance(result, Response):
                return result
            return SafeJSONResponse(result)

        return endpoint

    def query(request: Request, name: str, default: str | None = None) -> str:
        value = request.query_params.get(name, default)
        if value is None:
            raise BadParameter(name, "is required")
        return value

    async def overview(request: Request) -> Any:
        return await api.overview(state, state.history)

    async def scenarios(request: Request) -> Any:
        bucket = query(request, "bucket", "hour")
        return await api.scenarios(state, request.path_params["db"], bucket)

    async def models(request: Request) -> Any:
        return await asyncio.to_thread(api.models, state, request.path_params["db"])

    async def map_image(request: Request) -> Any:
        path = api.map_file(state, request.path_params["db"], request.path_params["name"])
        return FileResponse(path, media_type="image/png")

    async def check(request: Request) -> Any:
        return lookup.check_expression(
            state,
            request.path_params["db"],
            query(request, "expression"),
            query(request, "purpose", "filter"),
            query(request, "endpoint", "items-to-user"),
        )

    async def find(request: Request) -> Any:
        return await lookup.find(
            state, request.path_params["db"], query(request, "entity"), query(request, "q", "")
        )

    async def user(request: Request) -> Any:
        return await lookup.user(state, request.path_params["db"], request.path_params["id"])

    async def item(request: Request) -> Any:
        return await lookup.item(state, request.path_params["db"], request.path_params["id"])

    async def neighbours(request: Request) -> Any:
        count = read_int(dict(request.query_params), "count", minimum=1) or lookup.NEIGHBOURS
        if count > lookup.MAX_FOUND:
            raise BadParameter("count", f"{count} is above the maximum {lookup.MAX_FOUND}")
        return await lookup.neighbours(
            state, request.path_params["db"], request.path_params["id"], count
        )

    base = f"{PREFIX}/api"
    return [
        Route(f"{PREFIX}/login", login_page, methods=["GET"]),
        Route(f"{PREFIX}/login", login, methods=["POST"]),
        Route(f"{PREFIX}/logout", logout, methods=["POST"]),
        Route(f"{PREFIX}/", page, methods=["GET"]),
        Route(PREFIX, to_slash, methods=["GET"]),
        Route(f"{PREFIX}/static/{{name}}", asset, methods=["GET"]),
        Route(f"{base}/overview", guarded(overview), methods=["GET"]),
        Route(f"{base}/{{db}}/scenarios", guarded(scenarios), methods=["GET"]),
        Route(f"{base}/{{db}}/models", guarded(models), methods=["GET"]),
        # An <img> sends the cookie but no header: reading a picture changes nothing.
        Route(f"{base}/{{db}}/maps/{{name}}", guarded(map_image, header=False), methods=["GET"]),
        Route(f"{base}/{{db}}/reql", guarded(check), methods=["GET"]),
        Route(f"{base}/{{db}}/find", guarded(find), methods=["GET"]),
        Route(f"{base}/{{db}}/users/{{id}}", guarded(user), methods=["GET"]),
        Route(f"{base}/{{db}}/items/{{id}}", guarded(item), methods=["GET"]),
        Route(f"{base}/{{db}}/items/{{id}}/neighbours", guarded(neighbours), methods=["GET"]),
    ]


def _login_html(state: ServerState, problem: str | None, status: int = 200) -> HTMLResponse:
    """The login page (with the problem of the last try, or why there is no console)."""
    config = state.live.config
    if config.admin_token is None:
        problem = (
            "This server has no admin_token configured: the console is off. Set admin_token in "
            "the configuration (or allow_unsigned on a development server) and reload."
        )
        status = 401
    text = (STATIC / "login.html").read_text(encoding="utf-8")
    shown = f'<p class="problem" role="alert">{html.escape(problem)}</p>' if problem else ""
    return HTMLResponse(text.replace("<!--problem-->", shown), status, headers=PAGE_HEADERS)
