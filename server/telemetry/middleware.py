"""Per request: an id, a metric sample and a log line.

The request id is the client's `X-Request-ID` where it is a plain token (at most 128 letters,
digits and `._:-`), else a fresh one; either way the response carries it back in `X-Request-ID`,
and every log record of the request carries it. The access line names the path, never the query
string, so a signature never reaches the log.

Labels are bounded whatever clients send: `db` is a configured database or empty, `endpoint` is
the route's template (`(none)` where no route matched or the request was shed before routing),
`scenario` is set by the handler and only for a configured scenario.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.config_telemetry import LogsConfig
from server.telemetry.logs import REQUEST_ID
from server.telemetry.metrics import LATENCY, REQUESTS

INFO_KEY = "reqo.request"
DATABASE_ROUTE = "/{databaseId}/"
HEADER = b"x-request-id"
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
access_logger = logging.getLogger("reqo.access")


@dataclass
class RequestInfo:
    """What the handler learns about a request that its telemetry reports."""

    request_id: str
    scenario: str = ""


def note_scenario(scope: MutableMapping[str, Any], scenario: str) -> None:
    """Report the request's (configured) scenario in its metrics and log line."""
    info = scope.get(INFO_KEY)
    if isinstance(info, RequestInfo):
        info.scenario = scenario


def request_id_of(scope: Scope) -> str:
    """The client's request id where it is acceptable, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == HEADER and _CLIENT_ID.fullmatch(value):
            return str(value.decode("ascii"))
    return secrets.token_hex(8)


class Telemetry:
    """ASGI middleware (the outermost): request id, metrics and the access log."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        databases: Iterable[str],
        logs: Callable[[], LogsConfig],
        metrics: Callable[[], bool],
    ) -> None:
        self.app = app
        self.databases = frozenset(databases)
        self.logs = logs
        """The logging settings in force (a reload may change them)."""
        self.metrics = metrics
        """Whether metrics are on now."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope)
        token = REQUEST_ID.set(request_id)
        info = RequestInfo(request_id)
        scope[INFO_KEY] = info
        status = 500
        header = (HEADER, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            self._report(scope, info, status, elapsed)
            REQUEST_ID.reset(token)

    def _report(self, scope: Scope, info: RequestInfo, status: int, elapsed: float) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "(none)"
        path: str = scope["path"]
        name = path.split("/", 2)[1] if path.startswith("/") else ""
        # Not for /metrics, /-/…: a database may be called "metrics".
        db = name if name in self.databases and endpoint.startswith(DATABASE_ROUTE) else ""
        if route is None and name in self.databases:
            db = name  # shed before routing, or no such endpoint of the database
        if self.metrics():
            labels = (db, endpoint, info.scenario, str(status))
            try:
                REQUESTS.labels(*labels).inc()
                LATENCY.labels(*labels).observe(elapsed)
            except OSError as error:  # the metrics' folder: never the request's failure
                access_logger.warning("a request's metrics were not recorded: %s", error)
        settings = self.logs()
        slow = settings.slow_request > 0 and elapsed >= settings.slow_request
        if not (slow or settings.access):
            return
        level = logging.WARNING if slow or status >= 500 else logging.INFO
        if not access_logger.isEnabledFor(level):
            return
        latency_ms = round(elapsed * 1000, 3)
        access_logger.log(
            level,
            "%s %s %d %.1f ms%s",
            scope["method"],
            path,
            status,
            latency_ms,
            " (slow)" if slow else "",
            extra={
                "event": "slow_request" if slow else "request",
                "method": scope["method"],
                "path": path,
                "status": status,
                "latency_ms": latency_ms,
                "db": db,
                "endpoint": endpoint,
                "scenario": info.scenario,
            },
        )
