"""Ensembles in the server: configuration checks, members trained once and bound by the host
(a retrained member counts at once), per-scenario weights and overlays over HTTP with the
official Recombee client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from recombee_api_client.api_requests import (
    RecommendItemsToUser,
)

from plugins.algorithm import UserHistory
from plugins.builtin.ensemble import Ensemble, combine, normalise
from plugins.manager import collect, get_plugin_manager
from server.config import Config, ConfigError, parse_config
from server.serving.live_models import LiveModels, check_models
from server.training.artifacts import current_version, training_order
from storage.interactions import InteractionKind, apply_interaction_writes, parse_interaction
from tests.plugins.catalog import build_catalog
from tests.server.films import view_films
from tests.serving import RunningServer, free_port

REGISTRY = collect(get_plugin_manager())
MODELS: dict[str, Any] = {
    "ease": {"algorithm": "ease", "params": {"l2": 1.0}},
    "knn": {"algorithm": "item-knn", "params": {"neighbours": 20}},
    "blend": {
        "algorithm": "ensemble",
        "params": {"members": ["ease", "knn"], "weights": {"ease": 1.0, "knn": 1.0}},
    },
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
        ({"blend": {"algorithm": "ensemble", "params": {"members": ["ease", "nope"]}}},
         "models.blend.params.members", "'nope' is not a configured model"),
        ({"blend": {"algorithm": "ensemble", "params": {"members": ["ease", "blend"]}}},
         "models.blend.params.members", "cannot contain itself: blend -> blend"),
        ({"a": {"algorithm": "ensemble", "params": {"members": ["b"]}},
          "b": {"algorithm": "ensemble", "params": {"members": ["a"]}}},
         "models.a.params.members", "cannot contain itself: a -> b -> a"),
        ({"blend": {"algorithm": "ensemble", "params": {"members": ["ease"],
                                                         "weights": {"knn": 1}}}},
         "models.blend.params.weights", "'knn' is not a member"),
        ({"blend": {"algorithm": "ensemble", "params": {"members": ["ease"],
                                                         "weights": {"ease": -2}}}},
         "models.blend.params.weights", "must be a number >= 0"),
    ],
)  # fmt: skip
def test_bad_ensembles_are_refused_at_start_up(
    tmp_path: Path, models: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        configured(tmp_path, models={**MODELS, **models})
    assert raised.value.key == key


@pytest.mark.parametrize(
    ("scenario", "key", "problem"),
    [
        ({"model": "ease", "ensemble_weights": {"ease": 1}}, "scenarios.s.ensemble_weights",
         "needs a scenario model of algorithm ensemble, not model 'ease'"),
        ({"model": "blend", "ensemble_weights": {"vae": 1}}, "scenarios.s.ensemble_weights.vae",
         "is not a member of ensemble 'blend'"),
        ({"model": "blend", "ensemble_weights": {"ease": -1}}, "scenarios.s.ensemble_weights.ease",
         "must be a number >= 0"),
        ({"model": "blend", "ensemble_weights": {"ease": 0, "knn": 0}},
         "scenarios.s.ensemble_weights", "at least one member must weigh more than 0"),
        ({"model": "blend", "ensemble_weights": [1, 2]}, "scenarios.s.ensemble_weights",
         "must be a mapping"),
    ],
)  # fmt: skip
def test_bad_scenario_weights_are_refused(
    tmp_path: Path, scenario: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        configured(tmp_path, scenarios={"s": scenario})
    assert raised.value.key == key


def test_scenario_weights_are_parsed(tmp_path: Path) -> None:
    config = configured(
        tmp_path, scenarios={"s": {"model": "blend", "ensemble_weights": {"knn": 0}}}
    )
    assert config.scenarios["s"].ensemble_weights == {"knn": 0.0}


def test_members_are_trained_before_their_ensemble() -> None:
    models = parse_config(
        {"databases": {"t": {"token": "t"}}, "models": MODELS}, source="x", base_dir=Path(".")
    ).models
    order = training_order(["blend", "knn", "ease", "popularity"], models, REGISTRY)
    assert order.index("blend") > order.index("knn")
    assert order.index("blend") > order.index("ease")
    assert sorted(order) == sorted(["blend", "knn", "ease", "popularity"])


# -- the host binds members ---------------------------------------------------------------------


def test_a_loaded_ensemble_trains_missing_members_and_uses_their_current_versions(
    tmp_path: Path,
) -> None:
    database = build_catalog(tmp_path / "shop.duckdb")
    config = configured(tmp_path)
    directory = tmp_path / "models"
    live = LiveModels(database, dict(config.models), REGISTRY, directory)
    try:
        blend = live.get("blend").algorithm
        assert isinstance(blend, Ensemble)
        # Training the ensemble on first use trained its members first, once each.
        assert current_version(directory, "ease") is not None
        assert current_version(directory, "knn") is not None
        history = [UserHistory.of_items([0, 3])]
        n_items = blend.n_items

        def expected() -> np.ndarray[Any, Any]:
            parts = [
                (normalise(live.get(m).algorithm.score_users(history, n_items), "zscore"), 1.0)
                for m in ("ease", "knn")
            ]
            return combine(parts, "zscore", (1, n_items))

        before = blend.score_users(history, n_items)
        np.testing.assert_allclose(before, expected(), rtol=1e-6)

        # New interactions, then only EASE is retrained: the loaded ensemble uses it at once.
        def more(ctx: Any) -> None:
            writes = [
                parse_interaction(
                    InteractionKind.DETAIL_VIEW,
                    {"userId": f"u{u}", "itemId": "i0", "cascadeCreate": True},
                )
                for u in range(0, 40, 2)
            ]
            writes += [
                parse_interaction(
                    InteractionKind.DETAIL_VIEW,
                    {"userId": f"u{u}", "itemId": "i7", "cascadeCreate": True},
                )
                for u in range(0, 40, 2)
            ]
            apply_interaction_writes(ctx, writes)

        database.write_sync(more)
        old_ease = live.get("ease").version
        live.train("ease")
        assert live.get("ease").version != old_ease
        after = blend.score_users(history, n_items)
        assert not np.allclose(before, after)
        np.testing.assert_allclose(after, expected(), rtol=1e-6)
    finally:
        database.close()


# -- over HTTP ------------------------------------------------------------------------------------

FILMS = 24
USERS = 16
SCENARIOS: dict[str, Any] = {
    "ease": {"model": "ease", "min_relevance": "high"},
    "knn": {"model": "knn", "min_relevance": "high"},
    "blend": {"model": "blend"},
    "blend-ease": {"model": "blend", "ensemble_weights": {"knn": 0}},
    "blend-knn": {"model": "blend", "ensemble_weights": {"ease": 0}},
    "tuned": {"model": "blend"},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("ensemble-http")
    # An overlay such as `reqo optimize` writes: the "tuned" scenario keeps only knn.
    (directory / "optimized.yaml").write_text(
        "scenarios:\n  tuned:\n    ensemble_weights: {ease: 0.0, knn: 1.0}\n"
    )
    extra = {"models": MODELS, "scenarios": SCENARIOS, "overlays": ["optimized.yaml"]}
    running = RunningServer(directory, free_port(), {"test": "ensemble-token"}, extra=extra)
    running.start()
    view_films(running, films=FILMS, users=USERS, seed=5, off_taste=0.1)
    assert running.request("POST", "/-/train", json={}).status_code == 200
    yield running
    running.stop()


def recommend(server: RunningServer, user: str, scenario: str, count: int = 4) -> list[str]:
    response = server.client().send(RecommendItemsToUser(user, count, scenario=scenario))
    return [r["id"] for r in response["recomms"]]


def test_scenario_weights_pick_the_members_over_http(server: RunningServer) -> None:
    users = [f"u{u}" for u in range(USERS)]
    ease = {u: recommend(server, u, "ease") for u in users}
    knn = {u: recommend(server, u, "knn") for u in users}
    assert ease != knn  # the members disagree, so that the weights can be told apart
    # One member weighing 0: the blend ranks as the other member alone.
    for user in users:
        if len(ease[user]) == 4:
            assert recommend(server, user, "blend-ease") == ease[user]
        if len(knn[user]) == 4:
            assert recommend(server, user, "blend-knn") == knn[user]
    both = {u: recommend(server, u, "blend") for u in users}
    assert both != ease or both != knn
    assert all(len(found) == 4 for found in both.values())


def test_an_overlay_sets_a_scenarios_weights(server: RunningServer) -> None:
    users = [f"u{u}" for u in range(USERS)]
    tuned = {u: recommend(server, u, "tuned") for u in users}
    assert tuned == {u: recommend(server, u, "blend-knn") for u in users}
    assert tuned != {u: recommend(server, u, "blend") for u in users}


def test_training_every_model_trains_each_member_once(server: RunningServer) -> None:
    """The fixture's POST /-/train trains every model; "blend" sorts before its members, and
    is trained after them all the same, so that each member has exactly one version."""
    models = server.directory / "data" / "models" / "test"
    for member in ("ease", "knn"):
        versions = [p for p in (models / member).iterdir() if p.is_dir()]
        assert len(versions) == 1, versions
