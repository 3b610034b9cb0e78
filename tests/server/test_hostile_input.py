"""What one request does to the others: a 500 keeps its connection open, and one client's bad
text cannot cost other clients their recommendation records."""

from __future__ import annotations

import http.client
import json
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.serving import RunningServer, free_port

BROKEN_PLUGIN = textwrap.dedent(
    """
    from plugins.builtin.recently_viewed import RecentlyViewed
    from plugins.hookspecs import hookimpl


    class Broken(RecentlyViewed):
        name = "broken"
        description = "a plugin with a bug: scoring a user raises"

        def user_scores(self, histories):
            raise RuntimeError("a bug in a plugin")


    @hookimpl
    def register_algorithms():
        return [Broken]
    """
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    (tmp_path / "broken.py").write_text(BROKEN_PLUGIN)
    running = RunningServer(
        tmp_path,
        free_port(),
        {"test": "t"},
        allow_unsigned=True,
        extra={
            "plugins": [str(tmp_path / "broken.py")],
            "models": {"broken": {"algorithm": "broken"}},
            "scenarios": {"bug": {"endpoint": "items-to-user", "model": "broken"}},
        },
    )
    running.start()
    for item in range(5):
        running.request("POST", "/detailviews/", json=_view("u1", f"i{item}"), signed=False)
    assert running.request("POST", "/-/train", json={}, signed=False).status_code == 200
    yield running
    running.stop()


def _view(user: str, item: str) -> dict[str, object]:
    return {"userId": user, "itemId": item, "cascadeCreate": True}


def test_a_500_keeps_the_connection_open(server: RunningServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = json.dumps({"count": 3, "scenario": "bug"})
    headers = {"Content-Type": "application/json"}
    connection.request("POST", "/test/recomms/users/u1/items/", body, headers)
    response = connection.getresponse()
    payload = json.loads(response.read())
    assert response.status == 500
    assert payload == {"statusCode": 500, "error": "internal error: RuntimeError"}
    socket_before = connection.sock
    assert socket_before is not None
    # The next request goes on the same connection: before, the server had dropped it
    # without a Connection: close, and this request failed.
    connection.request("GET", "/test/items/i1")
    follow_up = connection.getresponse()
    assert follow_up.status == 200
    assert json.loads(follow_up.read()) == {}
    assert connection.sock is socket_before
    connection.close()
    assert "a bug in a plugin" in server.output()


def test_a_lone_surrogate_cannot_cost_others_their_recommendation_records(
    server: RunningServer,
) -> None:
    def recommend(scenario: str) -> tuple[int, str | None]:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        # Built by hand: a JSON library would not write a lone surrogate escape.
        body = '{"count": 2, "scenario": "' + scenario + '", "cascadeCreate": true}'
        connection.request("POST", "/test/recomms/users/u2/items/", body.encode())
        response = connection.getresponse()
        payload = json.loads(response.read())
        connection.close()
        return response.status, payload.get("recommId")

    # The hostile request lands among ordinary ones, inside one interval of the log's writes.
    scenarios = ["home"] * 10 + ["\\ud800"] + ["home"] * 10
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(recommend, scenarios))
    refused = [status for status, _ in outcomes if status != 200]
    assert refused == [400]
    for status, recomm_id in outcomes:
        if status != 200:
            continue
        page = server.request(
            "POST", f"/recomms/next/items/{recomm_id}", json={"count": 1}, signed=False
        )
        assert page.status_code == 200, page.text
