"""The servers as Ray Serve deployments.

- `ReqoReplica`: one server replica, running reqo's own ASGI application (the same routes,
  copy of each database and models as a `reqo serve` server process), reaching the writers and
  the trainer through their actors (`RayLinks`).
- `ReqoRouter`: the HTTP ingress behind Serve's proxy. It hands each request to a replica and,
  where that replica dies before it answers, sends a request that is safe to repeat (a read, a
  recommendation) to another, and answers any other with a 503 that says the write may or may
  not be stored: never a wrong answer, never a bare 500.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import orjson
import ray
from ray import serve
from ray.serve.exceptions import RayServeException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.config import Config, load_config
from server.distributed.links import RayLinks
from server.distributed.metrics import publish_forever
from server.distributed.names import APPLICATION

MAX_ONGOING_REQUESTS = 256
"""Requests a replica takes at once (reqo's own admission control queues and sheds beyond its
limits); the autoscaler aims at `server.ray.target_ongoing_requests`."""

MAX_BODY = 64 * 2**20
"""The largest request body the router forwards (a batch of 10,000 writes is a few MiB)."""

RETRIES = 2
"""Other replicas a request that is safe to repeat is sent to after its replica died."""

QUIET = {"enable_access_log": False, "log_level": "WARNING"}
"""Serve's logging of each request costs a replica more than reqo's answer (reqo's own logs
and /-/health count the requests)."""

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
"""A replica's response: status, headers, body."""


class ReqoReplica:
    """One server replica: reqo's application, its lifespan run for the replica's life (Serve
    awaits an async constructor)."""

    async def __init__(self, config_path: str, token: str) -> None:  # type: ignore[misc]
        from server.api.app import create_app
        from server.config_telemetry import LogsConfig
        from server.telemetry.logs import configure_logging

        config = load_config(Path(config_path))
        configure_logging(role="server", log_format=(config.logs or LogsConfig()).format)
        self.app = create_app(config, links=RayLinks(token))
        self._lifespan = self.app.router.lifespan_context(self.app)
        # Loads every database's copy from its writer's snapshot, and the models.
        await self._lifespan.__aenter__()
        replica = serve.get_replica_context().replica_id.unique_id
        self._publishing = asyncio.create_task(publish_forever(f"replica-{replica}"))

    async def call(self, request: dict[str, Any], body: bytes) -> Answer:
        """Run one HTTP request through the application."""
        scope: Scope = {**request, "type": "http", "asgi": {"version": "3.0"}}
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status, headers, chunks = 500, [], []

        async def send(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status, headers = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, headers, b"".join(chunks)

    async def __del__(self) -> None:
        self._publishing.cancel()
        with contextlib.suppress(Exception):
            await self._lifespan.__aexit__(None, None, None)


def safe_to_repeat(method: str, path: str) -> bool:
    """Whether a request may be sent again after its replica died mid-way: reads and
    recommendations (a repeated one is a new recommendation), not writes."""
    return method in ("GET", "HEAD") or "/recomms/" in path


def _error(status: int, message: str) -> Answer:
    body = orjson.dumps({"statusCode": status, "error": message})
    return status, [(b"content-type", b"application/json")], body


class ReqoRouter:
    """The HTTP ingress: forwards each request to a `ReqoReplica`."""

    def __init__(self, replicas: Any) -> None:
        self.replicas = replicas

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _body(receive)
        if body is None:
            answer = _error(413, f"the request body is over {MAX_BODY} bytes")
        else:
            answer = await self._forward(scope, body)
        status, headers, content = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _forward(self, scope: Scope, body: bytes) -> Answer:
        request = {
            key: scope.get(key)
            for key in (
                "method",
                "path",
                "raw_path",
                "query_string",
                "headers",
                "client",
                "server",
                "scheme",
                "http_version",
                "root_path",
            )
        }
        request["headers"] = [(bytes(k), bytes(v)) for k, v in scope.get("headers", [])]
        repeatable = safe_to_repeat(str(scope.get("method")), str(scope.get("path")))
        for attempt in range(RETRIES + 1):
            try:
                answer: Answer = await self.replicas.call.remote(request, body)
                return answer
            except (ray.exceptions.RayActorError, RayServeException) as error:
                if repeatable and attempt < RETRIES:
                    continue
                what = "" if repeatable else "; a write may or may not be stored"
                return _error(
                    503,
                    f"the server replica handling this request died before it answered "
                    f"({type(error).__name__}){what}: try again",
                )
        raise AssertionError("unreachable")


async def _body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


@serve.ingress()
class RouterDeployment:
    """The ingress deployment (its ASGI application is a `ReqoRouter`)."""

    def __init__(self, replicas: Any) -> None:
        self.replicas = replicas

    def __serve_build_asgi_app__(self) -> ASGIApp:
        return ReqoRouter(self.replicas)


def application(config: Config, config_path: Path, token: str) -> Any:
    """The Serve application of a configuration (to `serve.run`)."""
    settings = config.ray
    assert settings is not None
    scaling: dict[str, Any]
    if settings.autoscaled:
        scaling = {
            "autoscaling_config": {
                "min_replicas": settings.min_replicas,
                "max_replicas": settings.max_replicas,
                "target_ongoing_requests": settings.target_ongoing_requests,
            }
        }
    else:
        scaling = {"num_replicas": settings.min_replicas}
    replicas = serve.deployment(
        name=APPLICATION,
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
        ray_actor_options={"num_cpus": settings.replica_cpus},
        health_check_period_s=2,
        graceful_shutdown_timeout_s=10,
        logging_config=QUIET,
        **scaling,
    )(ReqoReplica)
    router = serve.deployment(
        name=f"{APPLICATION}-router",
        max_ongoing_requests=4 * MAX_ONGOING_REQUESTS,
        # Light (it parses nothing): it shares the replicas' CPUs.
        ray_actor_options={"num_cpus": 0},
        logging_config=QUIET,
        **scaling,
    )(RouterDeployment)
    return router.bind(replicas.bind(str(config_path.resolve()), token))
