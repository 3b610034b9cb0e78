"""Property-based fuzzing against a real server: no input gives a 5xx.

Raw bytes, hostile JSON (5,000 levels of nesting, 5,000-digit integers, 1e400, lone surrogates as
`\\ud800` escapes in keys and values) in every field of writes, recommendations and batches, and
ReQL text (valid expressions, mutations of them, token soup, deep nesting, huge literals) as
filters and boosters. Each test sends its inputs over one keep-alive connection and asserts, for
every input: no 5xx, every 4xx is Recombee's `{"statusCode": N, "error": "…"}` with a message, and
the connection stays open (a dropped connection is a failure, charged to the request it answered
last). Hypothesis runs derandomized, so a run is repeatable; the failures are collected over the
whole run and listed together, with a curl line for each and the server log's exception.

`python -m bench.fuzz` runs the same generators on 100,000 inputs.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests import fuzzing
from tests.fuzzing import Checker, FuzzRequest
from tests.serving import RunningServer

pytestmark = pytest.mark.timeout(180)

# Examples per family, sized so that the file runs in about a minute on two busy cores.
RAW_EXAMPLES = 300
JSON_EXAMPLES = 700
REQL_EXAMPLES = 600
REFUSED_WRITE_EXAMPLES = 100


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        # No shrinking: a failure is recorded, not raised, and the run goes on.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = fuzzing.start_server(tmp_path_factory.mktemp("fuzz"))
    yield running
    running.stop()


@pytest.fixture
def checker(fuzz_server: RunningServer) -> Iterator[Checker]:
    """A fresh catalog and one keep-alive connection for the test."""
    fuzzing.seed_catalog(fuzz_server.url)
    checker = Checker(fuzz_server.url, log=fuzz_server.log)
    yield checker
    checker.session.close()
    for slow in checker.slow:
        print("slow:", slow.describe(fuzz_server.url))


def run_family(checker: Checker, strategy: st.SearchStrategy[FuzzRequest], examples: int) -> None:
    @fuzz_settings(examples)
    @given(strategy)
    def send(request: FuzzRequest) -> None:
        checker.send(request)

    send()
    checker.assert_clean()


def test_known_hostile_inputs(checker: Checker) -> None:
    for request in fuzzing.KNOWN_HOSTILE:
        checker.send(request)
    checker.assert_clean()


def test_raw_bytes_bodies(checker: Checker) -> None:
    """Any bytes as the body of write, read, recommendation and batch endpoints."""
    run_family(checker, fuzzing.raw_requests(), RAW_EXAMPLES)


def test_hostile_json(checker: Checker) -> None:
    """Random and hostile JSON in the fields of interactions, values, recommendations, batches."""
    run_family(checker, fuzzing.json_requests(), JSON_EXAMPLES)


def test_reql_filters_and_boosters(checker: Checker) -> None:
    """Random and grammar-shaped ReQL as filters and boosters of recommendations and lists."""
    run_family(checker, fuzzing.reql_requests(), REQL_EXAMPLES)


def snapshot(session: requests.Session, base_url: str) -> Any:
    """Everything a write could change, read in one batch."""
    reads: list[dict[str, Any]] = [
        {"method": "GET", "path": "/items/list/", "params": {"returnProperties": True}},
        {"method": "GET", "path": "/users/list/", "params": {"returnProperties": True}},
        {"method": "GET", "path": "/items/properties/list/"},
        {"method": "GET", "path": "/users/properties/list/"},
    ]
    for kind in fuzzing.INTERACTION_KINDS:
        reads += [{"method": "GET", "path": f"/users/{u}/{kind}/"} for u in fuzzing.USERS]
        reads += [{"method": "GET", "path": f"/items/{i}/{kind}/"} for i in fuzzing.ITEMS]
    answer = session.post(
        f"{base_url}/{fuzzing.DATABASE}/batch/", json={"requests": reads}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


WRITES = st.one_of(
    fuzzing.interaction_bodies(),
    fuzzing.item_value_bodies(),
    fuzzing.batch_bodies(),
    fuzzing.raw_requests().filter(lambda r: r.path in {e.path for e in fuzzing.WRITE_ENDPOINTS}),
    fuzzing.reql_requests().filter(lambda r: r.family == "reql-more-items"),
)
HALF_A_BATCH = FuzzRequest(
    "known",
    "POST",
    "/batch/",
    json.dumps(
        {
            "requests": [
                {"method": "PUT", "path": "/items/batch-new", "params": {}},
                {
                    "method": "POST",
                    "path": "/detailviews/",
                    "params": {"userId": "user-1", "itemId": "item-2", "timestamp": 1.2e9},
                },
                {
                    "method": "POST",
                    "path": "/recomms/users/user-1/items/",
                    "params": {"count": 1, "rotationRate": 0.5, "rotationTime": 1e13},
                },
            ]
        }
    ).encode(),
)
"""Two writes, then a sub-request that has made the batch fail: if the batch fails, the
writes must not stay."""


def test_refused_writes_store_nothing(fuzz_server: RunningServer, checker: Checker) -> None:
    """A write answered with an error (4xx, or a 5xx) leaves every item, user, property and
    interaction as it was; a batch answered with an error stores none of its sub-requests."""
    # The snapshots go over their own connection: the checker's is the one under test.
    reader = requests.Session()
    before = [snapshot(reader, fuzz_server.url)]
    changed: list[str] = []
    refused: list[FuzzRequest] = []

    @fuzz_settings(REFUSED_WRITE_EXAMPLES)
    @example(HALF_A_BATCH)
    @given(WRITES)
    def send(request: FuzzRequest) -> None:
        response = checker.send(request)
        now = snapshot(reader, fuzz_server.url)
        if response is not None and response.status_code >= 400:
            refused.append(request)
            if now != before[-1]:
                changed.append(
                    f"{response.status_code} {response.text[:200]}\n    "
                    + request.reproducer(fuzz_server.url)
                )
        before.append(now)

    try:
        send()
    finally:
        reader.close()
    assert len(refused) > REFUSED_WRITE_EXAMPLES // 2, f"only {len(refused)} writes were refused"
    checker.probe()
    if changed or checker.problems:
        stored = "\n".join(changed) if changed else "none"
        pytest.fail(f"refused writes that changed the data: {stored}\n{checker.report()}", False)


def test_checker_sees_a_dropped_connection() -> None:
    """The harness itself: a server that closes the connection after answering is caught."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                body = b'{"statusCode": 400, "error": "no"}'
                conn.sendall(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                # Closed without "Connection: close": the client learns it on its next request.

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    checker = Checker(f"http://127.0.0.1:{port}")
    first = FuzzRequest("t", "POST", "/detailviews/", b"{}")
    checker.send(first)
    checker.send(FuzzRequest("t", "POST", "/detailviews/", b"[]"))
    thread.join(timeout=10)
    listener.close()
    assert [p.kind for p in checker.problems] == ["dropped-connection"]
    assert checker.problems[0].request == first


def test_long_query_string_in_pieces(fuzz_server: RunningServer) -> None:
    """A list request with a valid filter (10,000 characters at most) whose query string,
    percent-encoded, takes some 30 KB, arriving in several TCP segments as it does off
    loopback: answered with JSON, on a connection that stays open."""
    fuzzing.seed_catalog(fuzz_server.url)
    text = "'title' != \"" + "'" * 9_980 + '"'
    query = fuzzing.encode_query([("filter", text), ("count", "2")])
    head = (
        f"GET /{fuzzing.DATABASE}/items/list/?{query} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{fuzz_server.port}\r\n\r\n"
    ).encode()
    again = f"GET /{fuzzing.DATABASE}/items/item-1 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", fuzz_server.port), timeout=30) as conn:
        refused: str | None = None
        for start in range(0, len(head), 4096):
            try:
                conn.sendall(head[start : start + 4096])
            except OSError as error:
                refused = f"after {start:,} of the {len(head):,} bytes of the request head: {error}"
                break
            time.sleep(0.01)
        if refused is not None:
            answer = read_response(conn)
            pytest.fail(f"the server closed the connection {refused}; it answered {answer}", False)
        first = read_response(conn)
        conn.sendall(again)
        second = read_response(conn)
    status, headers, body = first
    assert status < 500, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, body)
    if status >= 400:
        assert fuzzing.error_body_problem(status, body) is None, body[:300]
    assert headers.get("connection", "").lower() != "close", headers
    assert second[0] == 200, second


def read_response(conn: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response from a raw socket (its body: Content-Length bytes, or up to the
    end of the connection)."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = conn.recv(65536)
        except OSError as error:
            raise ConnectionError(f"{error} after {data[:200]!r}") from None
        if not chunk:
            raise ConnectionError(f"closed after {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length", str(2**31)))
    while len(body) < length:
        try:
            chunk = conn.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]
