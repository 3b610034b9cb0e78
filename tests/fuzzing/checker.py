"""Sending inputs over one keep-alive connection and judging the answers (`Checker`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import urllib3

from tests.fuzzing.catalog import DATABASE, ITEMS, ServerError, server_errors
from tests.fuzzing.endpoints import FuzzRequest


@dataclass
class Problem:
    """Something wrong with the answer to one input."""

    kind: str  # 5xx | bad-4xx-body | bad-2xx-body | dropped-connection | error | slow
    request: FuzzRequest
    detail: str
    dropped: bool = False
    """For a 5xx: the server closed the connection after it, too."""

    def describe(self, base_url: str = "http://127.0.0.1:PORT") -> str:
        return f"[{self.kind}] {self.detail}\n    {self.request.reproducer(base_url)}"


def error_body_problem(status: int, body: bytes) -> str | None:
    """Why a 4xx body is not Recombee's error JSON, or None when it is."""
    try:
        payload = json.loads(body)
    except ValueError:
        return f"the {status} body is not JSON: {body[:200]!r}"
    if not isinstance(payload, dict):
        return f"the {status} body is not an object: {body[:200]!r}"
    if payload.get("statusCode") != status:
        return f"statusCode {payload.get('statusCode')!r} in a {status} body"
    message = payload.get("error")
    if not isinstance(message, str) or not message.strip():
        return f"no error message in the {status} body: {body[:200]!r}"
    return None


class CountingAdapter(requests.adapters.HTTPAdapter):
    """An adapter of one pooled connection that counts the sockets it had to open.

    urllib3 reuses a pooled connection object when the server closed its socket (it reconnects
    silently), so the pool's connection count says nothing: the count of `connect()` calls does.
    """

    def __init__(self) -> None:
        super().__init__(pool_connections=1, pool_maxsize=1)
        self.opened = 0
        adapter = self

        class Connection(urllib3.connection.HTTPConnection):
            def connect(self) -> None:
                adapter.opened += 1
                super().connect()

        class Pool(urllib3.HTTPConnectionPool):
            ConnectionCls = Connection

        self.poolmanager.pool_classes_by_scheme = {
            **self.poolmanager.pool_classes_by_scheme,
            "http": Pool,
        }


@dataclass
class Checker:
    """Sends inputs over one keep-alive connection and collects what went wrong."""

    base_url: str
    timeout: float = 60.0
    slow_after: float = 10.0
    session: requests.Session = field(default_factory=requests.Session)
    problems: list[Problem] = field(default_factory=list)
    slow: list[Problem] = field(default_factory=list)
    """Answers slower than `slow_after`: reported, not failures (the machine may be busy)."""
    statuses: dict[int, int] = field(default_factory=dict)
    last_answer: float = 0.0
    previous: FuzzRequest | None = None
    log: Path | None = None
    """The server's log: its exceptions are listed with the problems."""
    allow_shedding: bool = False
    """Whether a 503 with Retry-After (load shedding, many clients at once) is no problem: it
    never is for one connection, which is all the tests use."""
    shed: int = 0
    log_offset: int = 0

    def __post_init__(self) -> None:
        if not self.base_url.startswith("http://127.0.0.1:"):
            raise ValueError("the fuzzer talks to 127.0.0.1 only")
        # One connection in the pool: a second one means the server dropped the first.
        self.adapter = CountingAdapter()
        self.session.mount("http://", self.adapter)
        if self.log is not None and self.log.exists():
            self.log_offset = self.log.stat().st_size

    def connections(self) -> int:
        return self.adapter.opened

    def send(self, request: FuzzRequest) -> requests.Response | None:
        """Send one input; record a problem where the answer is wrong. None: no answer."""
        idle = time.monotonic() - self.last_answer
        before = self.connections()
        started = time.monotonic()
        try:
            response = self._request(request)
        except requests.ConnectionError as error:
            if before == 0 or self.connections() != before or self.previous is None:
                self._failed(request, error)
                return None
            # The kept-alive connection was closed under this request: the server dropped it
            # after answering the previous one (unless it was idle long enough for uvicorn's
            # keep-alive timeout). Try this one again on a new connection.
            if idle < 2.0:
                self._dropped(self.previous, f"the next request failed: {error}")
            self.session.close()
            started = time.monotonic()
            try:
                response = self._request(request)
            except requests.RequestException as again:
                self._failed(request, again)
                return None
        except requests.RequestException as error:
            self._failed(request, error)
            return None
        else:
            # A connection opened for this request while the previous one was fresh (well
            # within uvicorn's 5 s keep-alive): the server closed it after the previous answer.
            if self.connections() > before > 0 and idle < 2.0 and self.previous is not None:
                self._dropped(self.previous, "the server closed the connection after answering")
        self.last_answer = time.monotonic()
        elapsed = self.last_answer - started
        self.previous = request
        self.check(request, response, elapsed)
        return response

    def _request(self, request: FuzzRequest) -> requests.Response:
        url = f"{self.base_url}/{DATABASE}{request.path}"
        headers = {"Content-Type": "application/json"} if request.body is not None else {}
        return self.session.request(
            request.method, url, data=request.body, headers=headers, timeout=self.timeout
        )

    def _failed(self, request: FuzzRequest, error: Exception) -> None:
        self.problems.append(Problem("error", request, f"{type(error).__name__}: {error}"))
        self.session.close()
        self.previous = None
        self.last_answer = time.monotonic()

    def _dropped(self, request: FuzzRequest, why: str) -> None:
        for problem in reversed(self.problems):
            if problem.request is request and problem.kind == "5xx":
                # uvicorn closes the connection after an exception escaped the application:
                # one cause, one entry.
                problem.detail += " (and the connection was dropped)"
                problem.dropped = True
                return
        self.problems.append(Problem("dropped-connection", request, why))

    def check(self, request: FuzzRequest, response: requests.Response, elapsed: float) -> None:
        status = response.status_code
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if elapsed > self.slow_after:
            self.slow.append(Problem("slow", request, f"answered in {elapsed:.1f} s"))
        self._check_status(request, response)
        if response.headers.get("connection", "").lower() == "close":
            self._dropped(request, "answered with Connection: close")

    def _check_status(self, request: FuzzRequest, response: requests.Response) -> None:
        status = response.status_code
        if status == 503 and self.allow_shedding and "retry-after" in response.headers:
            self.shed += 1
        elif status >= 500:
            self.problems.append(Problem("5xx", request, f"{status} {response.text[:300]}"))
        elif status >= 400:
            why = error_body_problem(status, response.content)
            if why is not None:
                self.problems.append(Problem("bad-4xx-body", request, why))
        else:
            try:
                response.json()
            except ValueError:
                self.problems.append(Problem("bad-2xx-body", request, f"{status}: not JSON"))

    def probe(self) -> None:
        """One last request: the connection must still answer."""
        self.send(FuzzRequest("probe", "GET", f"/items/{ITEMS[1]}"))

    def server_errors(self) -> list[ServerError]:
        if self.log is None or not self.log.exists():
            return []
        with self.log.open("rb") as handle:
            handle.seek(self.log_offset)
            return server_errors(handle.read().decode("utf-8", errors="replace"))

    def report(self, limit: int = 20) -> str:
        """The problems (the first `limit`), then the server's exceptions, grouped."""
        total = sum(self.statuses.values())
        lines = [f"{len(self.problems)} problems over {total} requests (statuses {self.statuses})"]
        lines += [p.describe(self.base_url) for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"… and {len(self.problems) - limit} more")
        errors: dict[tuple[str, str], int] = {}
        for error in self.server_errors():
            key = (error.exception[:200], error.where)
            errors[key] = errors.get(key, 0) + 1
        if errors:
            lines.append("server exceptions (count, exception, innermost frame of reqo):")
            lines += [f"  {n} x {exc}  at {where}" for (exc, where), n in errors.items()]
        return "\n".join(lines)

    def assert_clean(self) -> None:
        """Fail the test (listing every problem) unless every answer was right; the connection
        must still answer one more request."""
        self.probe()
        if self.problems:
            pytest.fail(self.report(), pytrace=False)
