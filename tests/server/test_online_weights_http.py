"""Online optimisation of ensemble weights over HTTP, with the official client: a scenario's
candidates serve (abGroup), detail views after their recommendations are their rewards, the KPI
endpoint shows the search, a generation ends and the served weights change, a next page keeps
its weighting, and a restart keeps the generation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from recombee_api_client.api_requests import AddDetailView, RecommendItemsToUser, RecommendNextItems

from tests.serving import RunningServer, free_port

MODELS: dict[str, Any] = {
    "ease": {"algorithm": "ease", "params": {"l2": 1.0}},
    "knn": {"algorithm": "item-knn", "params": {"neighbours": 20}},
    "blend": {
        "algorithm": "ensemble",
        "params": {"members": ["ease", "knn", "popularity"], "weights": {"popularity": 0.5}},
    },
}
PER_CANDIDATE = 3
HTTP_SCENARIOS: dict[str, Any] = {
    "home": {
        "model": "blend",
        "optimize_online": {
            "population": 3,
            "recommendations_per_candidate": PER_CANDIDATE,
            "min_share": 0.25,
            "sticky_seconds": 0,
            "seed": 2,
        },
    }
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    extra = {"models": MODELS, "scenarios": HTTP_SCENARIOS}
    running = RunningServer(tmp_path, free_port(), {"test": "evolve-token"}, extra=extra)
    running.start()
    views = [
        {
            "method": "POST",
            "path": "/detailviews/",
            "params": {"userId": f"u{user}", "itemId": f"f{film:02d}", "cascadeCreate": True},
        }
        for user in range(16)
        for film in range(12)
        if film % 4 == user % 4 or film == (user * 5) % 12
    ]
    stored = running.request("POST", "/batch/", json={"requests": views})
    assert stored.status_code == 200
    assert all(a["code"] == 200 for a in stored.json())
    assert running.request("POST", "/-/train", json={}).status_code == 200
    yield running
    running.stop()


def kpi_state(server: RunningServer) -> dict[str, Any]:
    response = server.request("GET", "/-/kpi?scenario=home")
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()["scenarios"][0]["bandit"]
    return state


def serve_until(server: RunningServer, prefix: str, clicked: str, limit: int = 60) -> str:
    """Recommend to users in turn until a variant whose name starts with `prefix` serves (the
    response's abGroup); each recommendation of variant `clicked` gets a detail view."""
    client = server.client()
    deadline = time.monotonic() + 30
    for turn in range(limit):
        user = f"u{turn % 16}"
        response = client.send(RecommendItemsToUser(user, 3, scenario="home", return_ab_group=True))
        group = response["abGroup"]
        if group == clicked:
            item = response["recomms"][0]["id"]
            client.send(AddDetailView(user, item, recomm_id=response["recommId"]))
        if group.startswith(prefix):
            return str(group)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    raise AssertionError(f"no variant {prefix}* served in {limit} requests")


def evolving_state(server: RunningServer) -> dict[str, Any]:
    """The KPI endpoint's state of the scenario once its evolution is built (in a thread, after
    the server's start)."""
    deadline = time.monotonic() + 20
    state = kpi_state(server)
    while state["evolution"] is None:
        assert time.monotonic() < deadline, "the evolution was not built"
        time.sleep(0.2)
        state = kpi_state(server)
    return state


def test_clicks_end_a_generation_and_a_restart_keeps_it(server: RunningServer) -> None:
    first = evolving_state(server)
    assert first["method"] == "evolve"
    assert set(first["variants"]) == {"g0-c0", "g0-c1", "g0-c2", "g0-best"}
    weights = {name: v["weights"] for name, v in first["variants"].items()}
    assert weights["g0-best"] == {"ease": 1.0, "knn": 1.0, "popularity": 0.5}
    # Each variant serves its recommendations; g0-c1's are clicked. The KPI request reads
    # the rewards at once; the next recommendation carries the new generation to the writer,
    # and the change feed brings it back to serve.
    client = server.client()
    counts: dict[str, int] = {}
    for turn in range(80):
        user = f"u{turn % 16}"
        response = client.send(RecommendItemsToUser(user, 3, scenario="home", return_ab_group=True))
        group = response["abGroup"]
        counts[group] = counts.get(group, 0) + 1
        if group == "g0-c1":
            item = response["recomms"][0]["id"]
            client.send(AddDetailView(user, item, recomm_id=response["recommId"]))
        if min(counts.get(v, 0) for v in weights) >= PER_CANDIDATE:
            break
    ended = kpi_state(server)
    assert ended["evolution"]["generation"] == 0  # proposed, not yet back from the writer
    group = serve_until(server, "g1-", clicked="g1-c0")
    state = kpi_state(server)
    assert state["evolution"]["generation"] == 1
    judged = {entry["variant"]: entry for entry in state["evolution"]["history"]}
    assert judged["g0-c1"]["served"] >= PER_CANDIDATE
    assert judged["g0-c1"]["mean"] > judged["g0-c0"]["mean"]
    assert set(state["variants"]) == {"g1-c0", "g1-c1", "g1-c2", "g1-best"}
    assert state["variants"]["g1-best"]["weights"] == weights["g0-c1"]
    new = {name: v["weights"] for name, v in state["variants"].items()}
    assert all(new[f"g1-c{c}"] not in weights.values() for c in range(3))
    assert group in new
    # A next page keeps the weighting of its first page.
    response = client.send(RecommendItemsToUser("u3", 2, scenario="home", return_ab_group=True))
    more = client.send(RecommendNextItems(response["recommId"], 2))
    assert more["abGroup"] == response["abGroup"]

    server.stop()
    server.start()
    restored = evolving_state(server)
    assert restored["evolution"]["generation"] == 1
    assert restored["evolution"]["searchMean"] == state["evolution"]["searchMean"]
    assert {name: v["weights"] for name, v in restored["variants"].items()} == new
    assert serve_until(server, "g1-", clicked="none", limit=5) in new
