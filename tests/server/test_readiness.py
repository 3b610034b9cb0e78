"""`/-/ready`: 200 only once every database is open and every model a scenario serves with has a
trained version; `/-/health` stays liveness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from recombee_api_client.api_requests import AddDetailView

from tests.serving import RunningServer, free_port

ADMIN = "ready-admin-token-0123456789"
SCENARIOS = {
    "homepage": {"endpoint": "items-to-user", "model": "knn"},
    "split": {
        "variants": [{"name": "a", "model": "knn"}, {"name": "b", "model": "pop"}],
        "allocation": {"method": "split"},
    },
}


@pytest.fixture
def scenario_server(tmp_path: Path) -> Iterator[RunningServer]:
    running = RunningServer(
        tmp_path,
        free_port(),
        {"shop": "ready-token-0123456789"},
        admin_token=ADMIN,
        extra={
            "models": {"knn": {"algorithm": "item-knn"}, "pop": {"algorithm": "popularity"}},
            "scenarios": SCENARIOS,
        },
    )
    running.start()
    yield running
    running.stop()


def test_ready_waits_for_every_scenario_model_to_have_a_version(
    scenario_server: RunningServer,
) -> None:
    server = scenario_server
    client = server.client("shop")
    for user in range(3):
        client.send(AddDetailView(f"u{user}", f"i{user}", cascade_create=True))
    bare = requests.get(f"{server.url}/-/ready", timeout=10)
    assert bare.status_code == 503
    assert bare.json() == {"status": "not ready"}
    detailed = server.admin("GET", "ready")
    assert detailed.json()["missing"] == {"modelVersions": {"shop": ["knn", "pop"]}}
    # Alive all the same.
    assert requests.get(f"{server.url}/-/health", timeout=10).status_code == 200

    trained = server.request("POST", "/-/train?model=knn", database="shop")
    assert trained.status_code == 200, trained.text
    assert server.admin("GET", "ready").json()["missing"] == {"modelVersions": {"shop": ["pop"]}}
    assert server.request("POST", "/-/train?model=pop", database="shop").status_code == 200
    ready = requests.get(f"{server.url}/-/ready", timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
    assert "missing" not in server.admin("GET", "ready").json()
