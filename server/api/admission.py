"""Load shedding: a bound on the requests each database holds at once.

Past the bound a request is answered at once with 503 and `Retry-After`, before its body is
read, rather than queueing for seconds behind the others: a client that backs off does better
than one that times out, and the server's memory stays bounded. Paths outside a database
(`/-/health`, `/-/ready`, …) are never held back.

The middleware also counts every response by status, with shed requests counted apart from
other 5xx, for the detailed health report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.boundary import SafeJSONResponse


@dataclass
class Traffic:
    """What the server has answered since it started."""

    in_flight: Counter[str] = field(default_factory=Counter)
    """Requests being handled now, by database."""
    statuses: Counter[int] = field(default_factory=Counter)
    """Responses by status code, shed requests included under 503."""
    shed: Counter[str] = field(default_factory=Counter)
    """Requests refused by load shedding, by database."""

    def to_json(self) -> dict[str, object]:
        server_errors = sum(n for status, n in self.statuses.items() if status >= 500)
        return {
            "inFlight": dict(self.in_flight),
            "responses": {str(status): n for status, n in sorted(self.statuses.items())},
            "shed": dict(self.shed),
            # 5xx that are not load shedding: each one is a bug to look at.
            "serverErrors": server_errors - sum(self.shed.values()),
        }


class Admission:
    """ASGI middleware: at most `max_queued` requests per database at once; the rest get 503."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        databases: Iterable[str],
        max_queued: int,
        retry_after: int,
        traffic: Traffic,
    ) -> None:
        self.app = app
        self.databases = frozenset(databases)
        self.max_queued = max_queued
        self.retry_after = retry_after
        self.traffic = traffic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        traffic = self.traffic

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                traffic.statuses[message["status"]] += 1
            await send(message)

        name = scope["path"].split("/", 2)[1] if scope["path"].startswith("/") else ""
        if name not in self.databases:
            await self.app(scope, receive, counted)
            return
        if traffic.in_flight[name] >= self.max_queued:
            traffic.shed[name] += 1
            body = {
                "statusCode": 503,
                "error": f"the server is busy ({self.max_queued} requests are queued); "
                f"retry after {self.retry_after} s",
            }
            headers = {"Retry-After": str(self.retry_after)}
            await SafeJSONResponse(body, 503, headers)(scope, receive, counted)
            return
        traffic.in_flight[name] += 1
        try:
            await self.app(scope, receive, counted)
        finally:
            traffic.in_flight[name] -= 1
