"""Mixed traffic as it comes in production: writers creating users and items while others read
and are recommended to; work beyond the server's bound; expressions that would run for long."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from storage.bulk import import_file
from storage.database import Database
from tests.serving import RunningServer, free_port


def start(tmp_path: Path, **extra: Any) -> RunningServer:
    server = RunningServer(tmp_path, free_port(), {"test": "t"}, allow_unsigned=True, extra=extra)
    server.start()
    return server


def seed(server: RunningServer, items: int = 40, users: int = 20) -> None:
    session = requests.Session()
    session.put(f"{server.url}/test/items/properties/title?type=string").raise_for_status()
    requests_ = [
        {
            "method": "POST",
            "path": f"/items/i{item}",
            "params": {"title": f"film {item}", "!cascadeCreate": True},
        }
        for item in range(items)
    ] + [
        {
            "method": "POST",
            "path": "/detailviews/",
            "params": {"userId": f"u{user}", "itemId": f"i{(user * 7 + k) % items}"},
        }
        for user in range(users)
        for k in range(5)
    ]
    for request in requests_:
        if request["path"] == "/detailviews/":
            request["params"]["cascadeCreate"] = True  # type: ignore[index]
    for start in range(0, len(requests_), 5000):
        chunk = requests_[start : start + 5000]
        response = session.post(f"{server.url}/test/batch/", json={"requests": chunk})
        response.raise_for_status()
        refused = [o for o in response.json() if o["code"] not in (200, 201)]
        assert refused == [], refused[:3]


@pytest.fixture
def mixed(tmp_path: Path) -> Iterator[RunningServer]:
    server = start(tmp_path)
    seed(server)
    yield server
    server.stop()


def slow_filter(comparison: str) -> str:
    """A filter that evaluates 1,400 elements per item: within the static cost bound, so only
    the time limit stops it on a large catalog."""
    numbers = "[" + ", ".join(map(str, range(1400))) + "]"
    return f"size(select(lambda 'x': 'x' * size('title') % 7 == 3, {numbers})) {comparison}"


def run_for(
    seconds: float, workers: dict[str, tuple[int, Callable[[requests.Session, int], int]]]
) -> Counter[tuple[str, int]]:
    """Run each kind of worker in its threads for `seconds`; the statuses seen by kind."""
    seen: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop(kind: str, work: Callable[[requests.Session, int], int], worker: int) -> None:
        session = requests.Session()
        n = 0
        while time.monotonic() < deadline:
            status = work(session, worker * 1_000_000 + n)
            n += 1
            with lock:
                seen[(kind, status)] += 1

    threads = [
        threading.Thread(target=loop, args=(kind, work, worker))
        for kind, (count, work) in workers.items()
        for worker in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen


def test_recommendations_never_fail_while_writers_create_users_and_items(
    mixed: RunningServer,
) -> None:
    base = f"{mixed.url}/test"

    def create(session: requests.Session, n: int) -> int:
        view = {"userId": f"new-user-{n}", "itemId": f"new-item-{n}", "cascadeCreate": True}
        return session.post(f"{base}/detailviews/", json=view).status_code

    def users_to_user(session: requests.Session, n: int) -> int:
        body = {"count": 5}
        return session.post(f"{base}/recomms/users/u{n % 20}/users/", json=body).status_code

    def filtered(session: requests.Session, n: int) -> int:
        # A new filter text now and then: its mask is computed while the catalog grows.
        body = {"count": 5, "filter": f"'itemId' != \"nothing-{n % 50}\""}
        return session.post(f"{base}/recomms/users/u{n % 20}/items/", json=body).status_code

    seen = run_for(
        6.0,
        {"create": (3, create), "users-to-user": (2, users_to_user), "filtered": (2, filtered)},
    )
    failures = {key: n for key, n in seen.items() if key[1] != 200}
    assert not failures, (failures, mixed.output()[-3000:])
    assert sum(n for (kind, _), n in seen.items() if kind == "create") > 50
    assert sum(n for (kind, _), n in seen.items() if kind != "create") > 50


def test_work_beyond_the_bound_is_shed_with_retry_after(tmp_path: Path) -> None:
    server = start(tmp_path, limits={"max_queued": 2, "retry_after": 3})
    seed(server)
    base = f"{server.url}/test"
    batch = {
        "requests": [{"method": "POST", "path": "/recomms/users/u1/items/", "params": {"count": 5}}]
        * 300
    }

    def send(_: int) -> requests.Response:
        return requests.post(f"{base}/batch/", json=batch, timeout=60)

    health: list[float] = []
    try:
        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(send, n) for n in range(12)]
            time.sleep(0.3)
            for _ in range(10):
                started = time.perf_counter()
                probe = requests.get(f"{server.url}/-/health", timeout=10)
                health.append(time.perf_counter() - started)
                assert probe.status_code == 200
            responses = [future.result() for future in futures]
    finally:
        server.stop()
    statuses = Counter(response.status_code for response in responses)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] >= 1, statuses
    assert statuses[200] >= 2, statuses
    shed = next(response for response in responses if response.status_code == 503)
    assert shed.headers["Retry-After"] == "3"
    assert "busy" in shed.json()["error"]
    # The probe never waits behind the queued work.
    assert max(health) < 1.0, health


def test_an_expression_past_the_time_limit_is_interrupted(tmp_path: Path) -> None:
    import_items(tmp_path, 3000)
    server = start(tmp_path, limits={"query_timeout": 0.05})
    try:
        slow = slow_filter("> 0")
        started = time.perf_counter()
        response = server.request(
            "GET", "/items/list/?count=5", json={"filter": slow}, signed=False
        )
        took = time.perf_counter() - started
        assert response.status_code == 400, response.text
        assert "limits.query_timeout" in response.json()["error"]
        assert took < 2.0
        # The server is fine afterwards.
        assert server.request("GET", "/items/i1", signed=False).status_code == 200
    finally:
        server.stop()


def import_items(tmp_path: Path, items: int) -> None:
    """Items `i0` … with a title, bulk-imported before the server starts (sending 20,000 of them
    one by one would take the writer, then each server's copy, most of a minute)."""
    csv = tmp_path / "items.csv"
    csv.write_text("itemId,title\n" + "".join(f"i{n},film {n}\n" for n in range(items)))
    database = Database("test", tmp_path / "data" / "test.duckdb")
    try:
        import_file(database, "items", csv, progress=False)
    finally:
        database.close()


def test_delete_more_items_evaluates_its_filter_off_the_writer(tmp_path: Path) -> None:
    import_items(tmp_path, 20_000)
    server = start(tmp_path, limits={"query_timeout": 5})
    try:
        # A filter that takes a while and matches nothing.
        slow = slow_filter("< 0")
        deleting = threading.Thread(
            target=server.request,
            args=("DELETE", "/more-items/"),
            kwargs={"json": {"filter": slow}, "signed": False},
        )
        deleting.start()
        time.sleep(0.2)
        write_times: list[float] = []
        while deleting.is_alive() and len(write_times) < 20:
            started = time.perf_counter()
            view = {"userId": "writer", "itemId": "i1", "cascadeCreate": True}
            response = server.request("POST", "/detailviews/", json=view, signed=False)
            write_times.append(time.perf_counter() - started)
            assert response.status_code == 200
        deleting.join()
        assert write_times, "the filter finished before any write was sent: make it slower"
        # Before, the writer evaluated the filter and every write waited for it.
        assert max(write_times) < 0.25, write_times
    finally:
        server.stop()
