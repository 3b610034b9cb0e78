"""Scenarios and models from the YAML configuration, a plugin's algorithm used from a scenario,
reloading without a restart, and scheduled training."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from recombee_api_client.api_requests import (
    AddDetailView,
    AddItemProperty,
    ListScenarios,
    RecommendItemsToItem,
    RecommendItemsToUser,
    SetItemValues,
)
from recombee_api_client.exceptions import ResponseException

from tests.serving import RunningServer, free_port

GENRES = ["action", "comedy", "drama"]
CONFIG: dict[str, Any] = {
    "models": {
        "cooc": {"algorithm": "co-occurrence", "params": {"min_users": 1}},
        "knn": {"algorithm": "item-knn", "params": {"neighbours": 20}, "weights": {"purchases": 5}},
        "ease": {"algorithm": "ease", "params": {"l2": 1.0}},
        "vae": {
            "algorithm": "mult-vae",
            "params": {"epochs": 150, "hidden": 32, "latent": 8, "dropout": 0.2, "batch_size": 4},
        },
        "dae": {"algorithm": "mult-dae", "params": {"epochs": 40, "hidden": 16, "latent": 8}},
    },
    "scenarios": {
        "related": {
            "endpoint": "items-to-item",
            "model": "cooc",
            "filter": "'genre' != \"drama\"",
        },
        "homepage": {"endpoint": "items-to-user", "logic": "recombee:personal", "diversity": 0.1},
    },
}


def configured_server(directory: Path) -> Iterator[RunningServer]:
    """A server with CONFIG's models and scenarios, 18 films of 3 genres, 12 users who watched
    some, and every model trained."""
    server = RunningServer(
        directory,
        free_port(),
        {"test": "scenario-token"},
        admin_token="scenario-admin-token-0123",
        extra=CONFIG,
    )
    server.start()
    client = server.client()
    client.send(AddItemProperty("genre", "string"))
    for i in range(18):
        client.send(SetItemValues(f"f{i:02d}", {"genre": GENRES[i % 3]}, cascade_create=True))
    for user in range(12):
        for film in range(18):
            if film % 3 == user % 3 or film == (user * 5) % 18:
                client.send(AddDetailView(f"u{user}", f"f{film:02d}", cascade_create=True))
    assert server.request("POST", "/-/train", json={}).status_code == 200
    yield server
    server.stop()


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One such server for the tests that leave its configuration as it is."""
    yield from configured_server(tmp_path_factory.mktemp("scenarios"))


@pytest.fixture
def reloadable(configured: RunningServer) -> Iterator[RunningServer]:
    """The module's server, for a test that changes its configuration: the file is written
    back and reloaded afterwards."""
    original = configured.config_path.read_text()
    yield configured
    configured.config_path.write_text(original)
    restored = configured.admin("POST", "reload", json={})
    assert restored.status_code == 200, restored.text


def ids(response: dict[str, Any]) -> list[str]:
    return [r["id"] for r in response["recomms"]]


def test_a_plugin_algorithm_serves_a_scenario(configured: RunningServer) -> None:
    response = configured.client().send(RecommendItemsToItem("f00", "u0", 5, scenario="related"))
    recommended = ids(response)
    assert recommended
    assert "f00" not in recommended
    # The scenario's filter holds: no drama (genre index 2).
    assert all(int(i[1:]) % 3 != 2 for i in recommended)
    # Co-occurrence with f00 (action) ranks action films first.
    assert int(recommended[0][1:]) % 3 == 0
    listed = configured.client().send(ListScenarios())
    assert {"id": "related", "endpoint": "recommendItemsToItem", "model": "cooc"} in listed


@pytest.mark.parametrize("model", ["ease", "vae", "dae"])
def test_the_autoencoders_serve_from_the_history_of_the_request(
    configured: RunningServer, model: str
) -> None:
    """A user unseen in training views two action films; the model folds them in at once."""
    client = configured.client()
    client.send(AddDetailView(f"new-{model}", "f00", cascade_create=True))
    client.send(AddDetailView(f"new-{model}", "f03"))
    recommended = ids(client.send(RecommendItemsToUser(f"new-{model}", 3, logic=model)))
    assert len(recommended) == 3
    assert not {"f00", "f03"} & set(recommended)
    assert sum(int(i[1:]) % 3 == 0 for i in recommended) >= 2, recommended


def test_a_request_filter_is_anded_with_the_scenarios(configured: RunningServer) -> None:
    response = configured.client().send(
        RecommendItemsToItem("f00", "u0", 10, scenario="related", filter="'genre' != \"action\"")
    )
    assert all(int(i[1:]) % 3 == 1 for i in ids(response))


def test_reload_applies_a_changed_scenario(reloadable: RunningServer) -> None:
    configured = reloadable
    changed = yaml.safe_load(configured.config_path.read_text())
    changed["scenarios"]["related"]["filter"] = "'genre' == \"drama\""
    configured.config_path.write_text(yaml.safe_dump(changed))
    response = configured.request("POST", "/reload", database="-", json={}, signed=False)
    # /-/reload reloads every database: it takes the admin token, not a database's signature.
    assert response.status_code == 401
    token = configured.tokens["test"]
    signed = configured.request("POST", "/reload", database="-", json={}, token=token)
    assert signed.status_code == 401
    assert configured.admin("POST", "reload", token=token).status_code == 401
    reloaded = configured.admin("POST", "reload", json={})
    assert reloaded.status_code == 200, reloaded.text
    assert "related" in reloaded.json()["scenarios"]
    recommended = ids(
        configured.client().send(RecommendItemsToItem("f00", "u0", 4, scenario="related"))
    )
    assert recommended
    assert all(int(i[1:]) % 3 == 2 for i in recommended)


def test_sighup_reloads_and_a_bad_file_is_refused(reloadable: RunningServer) -> None:
    configured = reloadable
    bad = yaml.safe_load(configured.config_path.read_text())
    bad["scenarios"]["related"]["model"] = "no-such-model"
    configured.config_path.write_text(yaml.safe_dump(bad))
    refused = configured.admin("POST", "reload", json={})
    assert refused.status_code == 400
    assert "scenarios.related.model" in refused.json()["error"]
    good = yaml.safe_load(configured.config_path.read_text())
    good["scenarios"]["related"]["model"] = "knn"
    good["scenarios"]["new-one"] = {"endpoint": "items-to-user"}
    configured.config_path.write_text(yaml.safe_dump(good))
    assert configured.process is not None
    os.kill(configured.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listed = configured.request("GET", "/scenarios/").json()
        if any(s["id"] == "new-one" for s in listed):
            break
        time.sleep(0.1)
    else:
        pytest.fail("SIGHUP did not reload the configuration")
    response = configured.client().send(RecommendItemsToUser("u1", 3, scenario="homepage"))
    assert len(ids(response)) == 3


def test_unknown_logic_and_unconfigured_scenarios(configured: RunningServer) -> None:
    client = configured.client()
    # Any scenario name is accepted; an unconfigured one uses the defaults.
    assert ids(client.send(RecommendItemsToUser("u2", 3, scenario="anything")))
    assert ids(client.send(RecommendItemsToUser("u2", 3, logic={"name": "recombee:popular"})))
    with pytest.raises(ResponseException) as caught:
        client.send(RecommendItemsToUser("u2", 3, logic="nonsense"))
    assert caught.value.status_code == 400
    assert "unknown model or logic 'nonsense'" in caught.value.description


def test_train_every_publishes_new_versions(tmp_path: Path) -> None:
    # Only the default models: the schedule retrains every model each second.
    server = RunningServer(tmp_path, free_port(), {"test": "t0123456789"}, extra={"train_every": 1})
    server.start()
    try:
        client = server.client()
        client.send(AddDetailView("u", "i", cascade_create=True))
        home = tmp_path / "data" / "models" / "test" / "popularity"
        deadline = time.monotonic() + 20
        versions: set[str] = set()
        while time.monotonic() < deadline and len(versions) < 2:
            if (home / "current").exists():
                versions.add((home / "current").read_text())
            time.sleep(0.2)
        assert len(versions) >= 2, "no second version within 20 s"
        assert ids(client.send(RecommendItemsToUser("someone", 1, cascade_create=True))) == ["i"]
    finally:
        server.stop()
