"""The stacker in the server: configuration checks at start-up, members trained once (before the
stacker) and bound by the host, recommendations over HTTP under a ReQL filter with the official
Recombee client."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from recombee_api_client.api_requests import (
    RecommendItemsToUser,
)

from plugins.builtin.stacker import Stacker
from plugins.manager import collect, get_plugin_manager
from server.config import Config, ConfigError, parse_config
from server.serving.live_models import check_models
from server.training.artifacts import current_version, training_order
from tests.server.films import view_films
from tests.serving import REPO_ROOT, RunningServer, free_port

REGISTRY = collect(get_plugin_manager())
SMALL: dict[str, Any] = {"candidates": 8, "rounds": 1, "n_estimators": 30, "early_stopping": 0}
SMALL |= {"num_leaves": 4, "min_data_in_leaf": 5, "item_properties": ["genre"]}
MODELS: dict[str, Any] = {
    "ease": {"algorithm": "ease", "params": {"l2": 1.0}},
    "knn": {"algorithm": "item-knn", "params": {"neighbours": 20}},
    "stacked": {"algorithm": "stacker", "params": {"members": ["ease", "knn"], **SMALL}},
}


def configured(tmp_path: Path, **extra: Any) -> Config:
    data = {"databases": {"test": {"token": "t"}}, "models": MODELS, **extra}
    config = parse_config(data, source="reqo.yaml", base_dir=tmp_path)
    check_models(config, REGISTRY)
    return config


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("models", "key", "problem"),
    [
        ({"stacked": {"algorithm": "stacker", "params": {"members": ["ease", "nope"]}}},
         "models.stacked.params.members", "'nope' is not a configured model"),
        ({"stacked": {"algorithm": "stacker", "params": {"members": ["ease", "stacked"]}}},
         "models.stacked.params.members", "cannot contain itself: stacked -> stacked"),
        ({"stacked": {"algorithm": "stacker", "params": {"members": ["blend"]}},
          "blend": {"algorithm": "ensemble", "params": {"members": ["stacked"]}}},
         "models.stacked.params.members", "cannot contain itself: stacked -> blend -> stacked"),
        ({"stacked": {"algorithm": "stacker", "params": {"members": ["ease", "blend"]}},
          "blend": {"algorithm": "ensemble", "params": {"members": ["ease", "knn"]}}},
         "models.stacked.params.members", r"'blend' is a model over other models \(ensemble\)"),
        ({"stacked": {"algorithm": "stacker", "params": {"members": ["ease"],
                                                          "validation": 2.5}}},
         "models.stacked.params.validation", "a whole count"),
        ({"stacked": {"algorithm": "stacker", "params": {"members": ["ease"],
                                                          "item_properties": "genre"}}},
         "models.stacked.params.item_properties", "true, false or a list"),
    ],
)  # fmt: skip
def test_bad_stackers_are_refused_at_start_up(
    tmp_path: Path, models: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        configured(tmp_path, models={**MODELS, **models})
    assert raised.value.key == key


def test_a_mistyped_stacker_fails_the_start_up_checks(tmp_path: Path) -> None:
    """`reqo check` runs every start-up check of `reqo serve` (whose roles then exit with the
    same message)."""
    models = {**MODELS, "stacked": {"algorithm": "stacker", "params": {"members": ["ease", "knm"]}}}
    path = tmp_path / "reqo.yaml"
    path.write_text(
        yaml.safe_dump(
            {"data_dir": "data", "databases": {"test": {"token": "t"}}, "models": models}
        )
    )
    checked = subprocess.run(
        [sys.executable, "-m", "server.cli", "check", "--config", str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 1
    assert "models.stacked.params.members: 'knm' is not a configured model" in checked.stderr


def test_reqo_serve_stops_on_a_mistyped_stacker_rather_than_restarting_its_roles(
    tmp_path: Path,
) -> None:
    models = {**MODELS, "stacked": {"algorithm": "stacker", "params": {"members": ["ease", "knm"]}}}
    server = RunningServer(tmp_path, free_port(), {"test": "t0123456789"}, extra={"models": models})
    with pytest.raises(RuntimeError) as caught:
        server.start()
    assert "reqo exited with 2" in str(caught.value)
    assert "models.stacked.params.members: 'knm' is not a configured model" in str(caught.value)
    assert "refused the configuration; stopping" in str(caught.value)
    assert "restarting it" not in str(caught.value)


def test_members_are_trained_before_their_stacker() -> None:
    models = parse_config(
        {"databases": {"t": {"token": "t"}}, "models": MODELS}, source="x", base_dir=Path(".")
    ).models
    order = training_order(["stacked", "knn", "ease"], models, REGISTRY)
    assert order.index("stacked") > order.index("knn")
    assert order.index("stacked") > order.index("ease")


# -- over HTTP ------------------------------------------------------------------------------------

FILMS = 30
USERS = 40
SCENARIOS: dict[str, Any] = {
    "stacked": {"model": "stacked"},
    "stacked-action": {"model": "stacked", "filter": "'genre' == \"action\""},
}


@dataclass(frozen=True)
class Served:
    server: RunningServer
    seen: dict[str, set[str]]
    """Each user's viewed films."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("stacker-http")
    extra = {"models": MODELS, "scenarios": SCENARIOS}
    running = RunningServer(directory, free_port(), {"test": "stacker-token"}, extra=extra)
    running.start()
    seen = view_films(running, films=FILMS, users=USERS, seed=9, off_taste=0.06)
    assert running.request("POST", "/-/train", json={}).status_code == 200
    yield Served(running, seen)
    running.stop()


def recommend(server: RunningServer, user: str, count: int, **params: Any) -> list[str]:
    response = server.client().send(RecommendItemsToUser(user, count, **params))
    return [r["id"] for r in response["recomms"]]


def test_the_stacker_recommends_over_http_under_a_reql_filter(served: Served) -> None:
    server, seen = served.server, served.seen
    liked = 0
    users = [f"u{u}" for u in range(8)]
    for user in users:
        listed = recommend(server, user, 5, scenario="stacked")
        assert len(listed) == 5 == len(set(listed))
        assert not set(listed) & seen[user]  # the user's own items are left out
        genre = int(user[1:]) % 3
        liked += sum(int(film[1:]) % 3 == genre for film in listed)
        for params in (
            {"scenario": "stacked-action"},
            {"scenario": "stacked", "filter": "'genre' == \"action\""},
        ):
            action = recommend(server, user, 4, **params)
            assert len(action) == 4
            assert all(int(film[1:]) % 3 == 0 for film in action)
            assert not set(action) & seen[user]
    # It learned the tastes: most of the lists are the users' genres (a third by chance).
    assert liked >= 0.5 * 5 * len(users)


def test_the_server_trains_each_member_once_and_the_stacker_keeps_no_copies(
    served: Served,
) -> None:
    models = served.server.directory / "data" / "models" / "test"
    for member in ("ease", "knn"):
        versions = [p for p in (models / member).iterdir() if p.is_dir()]
        assert len(versions) == 1, versions
    version = current_version(models, "stacked")
    assert version is not None
    saved = models / "stacked" / version
    assert not list(saved.glob("member*"))  # the server serves the members itself
    ranker = np.load(saved / "ranker.npy", allow_pickle=False)
    assert ranker.dtype == np.uint8
    assert len(ranker) > 0
    loaded = Stacker.load(saved)
    assert loaded.members == ("ease", "knn")
    assert not loaded.scores_alone
