"""The stacker: a LambdaRank model over members' top lists that learns something real, saved
without pickle, bound by the host or scoring alone, and checked parameters."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plugins.algorithm import Algorithm, ParameterError, UserHistory
from plugins.builtin.ensemble import Ensemble
from plugins.builtin.members import MembersUnbound
from plugins.builtin.stacker import Stacker
from plugins.builtin.stacker_features import standardise
from plugins.builtin.stacker_items import PropertyError
from plugins.builtin.stacker_learning import hold_out
from plugins.manager import collect, get_plugin_manager
from plugins.training import Holdout, TrainingData
from storage.snapshot import take_snapshot
from tests.plugins.catalog import build_catalog

REGISTRY = collect(get_plugin_manager())
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "knn": ("item-knn", {"neighbours": 20}),
    "noise": ("random", {"seed": 5}),
    "pop": ("popularity", {}),
}
FAST = {"rounds": 1, "n_estimators": 40, "early_stopping": 0, "min_data_in_leaf": 20}
"""Settings that fit in a blink (the tests that are not about ranking well)."""


def fresh(name: str) -> Algorithm:
    """The factory of members a host would bind: a configured model, unfitted."""
    algorithm, params = CONFIGS[name]
    return REGISTRY.algorithm(algorithm)(**params)


def stacker(**params: Any) -> Stacker:
    model = Stacker(**{**FAST, **params})
    model.bind_factory(fresh)
    return model


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> TrainingData:
    # Users prefer one genre of three (item i's genre is i % 3), with some noise.
    database = build_catalog(
        tmp_path_factory.mktemp("stacker") / "catalog.duckdb",
        users=150,
        items=60,
        interactions=3000,
        seed=11,
    )
    snapshot = database.read_sync(take_snapshot)
    database.close()
    return TrainingData.from_snapshot(snapshot)


@pytest.fixture(scope="module")
def split(data: TrainingData) -> tuple[TrainingData, Holdout]:
    """A fifth of each user's items held out for the test."""
    users = np.arange(data.n_users)
    return hold_out(data, users, 0.2, np.random.default_rng(3))


def histories(data: TrainingData, users: list[int]) -> list[UserHistory]:
    out = []
    for user in users:
        start, end = data.indptr[user], data.indptr[user + 1]
        out.append(
            UserHistory(
                data.items[start:end],
                ("detail_views",) * int(end - start),
                data.timestamps[start:end],
                data.weights[start:end],
            )
        )
    return out


def ndcg(model: Algorithm, train: TrainingData, test: Holdout) -> float:
    return test.mean_ndcg(
        lambda users: model.score_users(histories(train, users.tolist()), train.n_items),
        train.matrix,
    )


def test_it_learns_to_follow_the_informative_member_and_ignore_the_noise(
    split: tuple[TrainingData, Holdout],
) -> None:
    train, test = split
    members = {name: fresh(name) for name in ("knn", "noise")}
    for member in members.values():
        member.fit(train)
    blend = Ensemble(members=["knn", "noise"])
    blend.fit(train)
    blend.bind(members.__getitem__)
    # Small trees for a small catalog (the defaults' 31 leaves overfit 150 users).
    model = Stacker(members=["knn", "noise"], candidates=20, num_leaves=4, n_estimators=100, seed=2)
    model.bind_factory(fresh)
    model.fit(train)
    knn, noise = ndcg(members["knn"], train, test), ndcg(members["noise"], train, test)
    blended, stacked = ndcg(blend, train, test), ndcg(model, train, test)
    assert knn > noise + 0.1  # the data has something to learn
    assert stacked > noise + 0.1
    assert stacked > blended + 0.02  # the equal blend follows the noise half-way; the ranker not
    assert stacked >= knn - 0.02


def test_pooled_candidates_rank_above_the_rest_and_every_score_is_relevant(
    data: TrainingData,
) -> None:
    model = stacker(members=["knn", "pop"], candidates=5)
    model.fit(data)
    candidates = np.zeros(data.n_items, dtype=np.bool_)
    candidates[::2] = True
    given = histories(data, [0, 1, 2])
    scores = model.score_users(given, data.n_items, candidates)
    assert np.isneginf(scores[:, ~candidates]).all()
    assert (scores[:, candidates] > 0).all()  # relevant by the host's rule
    for row, history in enumerate(given):
        inside = np.zeros(data.n_items, dtype=np.bool_)
        outside = candidates.copy()
        outside[history.items] = False
        for member in ("knn", "pop"):
            own = model._own[member].score_users([history], data.n_items, candidates)[0]
            own[history.items] = -np.inf
            fifth = np.sort(own[np.isfinite(own)])[-5]
            inside |= own > fifth  # surely among the member's best 5: pooled
            outside &= own < fifth  # surely not
        assert inside.any()
        assert outside.any()
        assert scores[row, inside].min() > scores[row, outside].max()


def test_a_batch_scores_as_its_users_one_by_one(data: TrainingData) -> None:
    model = stacker(members=["knn", "pop"], item_properties=True)
    model.fit(data)
    given = histories(data, list(range(12)))
    batch = model.score_users(given, data.n_items)
    alone = np.vstack([model.score_users([h], data.n_items) for h in given])
    np.testing.assert_array_equal(batch, alone)
    items = model.score_items([0, 4, 9], data.n_items)
    np.testing.assert_array_equal(
        items, np.vstack([model.score_items([i], data.n_items) for i in (0, 4, 9)])
    )


def test_save_and_load_give_the_same_scores_without_pickle(
    data: TrainingData, tmp_path: Path
) -> None:
    model = stacker(members=["knn", "pop"], item_properties=["genre"])
    model.fit(data)
    model.save(tmp_path / "stacked")
    files = sorted(p.name for p in (tmp_path / "stacked").iterdir())
    assert not [f for f in files if f.endswith((".pkl", ".pickle"))]
    ranker = np.load(tmp_path / "stacked" / "ranker.npy", allow_pickle=False)
    assert ranker.dtype == np.uint8
    assert ranker.tobytes().startswith(b"tree")
    assert any(f.startswith("member0.") for f in files)  # its own members, to score alone
    loaded = Stacker.load(tmp_path / "stacked")  # unbound: it scores with its own members
    given = histories(data, [3, 7, 11])
    np.testing.assert_array_equal(
        loaded.score_users(given, data.n_items), model.score_users(given, data.n_items)
    )
    np.testing.assert_array_equal(
        loaded.score_items([2], data.n_items), model.score_items([2], data.n_items)
    )


def test_a_hosted_stacker_keeps_no_members_and_scores_with_the_hosts(
    data: TrainingData, tmp_path: Path
) -> None:
    model = Stacker(members=["knn", "pop"], **FAST)
    model.bind_factory(fresh, hosted=True)
    model.fit(data)
    assert not model.scores_alone
    model.save(tmp_path / "hosted")
    assert not list((tmp_path / "hosted").glob("member*"))
    loaded = Stacker.load(tmp_path / "hosted")
    given = histories(data, [0, 1])
    with pytest.raises(MembersUnbound, match="member 'knn' is not bound"):
        loaded.score_users(given, data.n_items)
    served = {name: fresh(name) for name in ("knn", "pop")}
    for member in served.values():
        member.fit(data)
    loaded.bind(served.__getitem__)
    scores = loaded.score_users(given, data.n_items)
    assert np.isfinite(scores).all()
    # Bound, it scores with the host's members, not copies: a retrained member counts at once.
    served["pop"] = fresh("noise")
    served["pop"].fit(data)
    assert not np.array_equal(loaded.score_users(given, data.n_items), scores)


def test_fitting_without_a_factory_of_members_is_refused(data: TrainingData) -> None:
    with pytest.raises(MembersUnbound, match="no factory of members is bound"):
        Stacker(members=["knn"]).fit(data)
    bound = Stacker.with_factory(fresh)
    assert bound.name == "stacker"
    model = bound(members=["knn"], **FAST)
    model.fit(data)
    assert np.isfinite(model.score_users(histories(data, [0]), data.n_items)).any()


def test_without_members_it_scores_nothing(data: TrainingData) -> None:
    model = Stacker()
    model.fit(data)
    assert np.isneginf(model.score_users(histories(data, [0]), data.n_items)).all()
    assert np.isneginf(model.score_items([1], data.n_items)).all()


def test_an_unknown_item_property_is_refused_when_fitting(data: TrainingData) -> None:
    with pytest.raises(PropertyError, match="'colour' is not an item property"):
        stacker(members=["knn"], item_properties=["colour"]).fit(data)


def test_hold_out_keeps_at_least_one_item_of_each_user(data: TrainingData) -> None:
    users = np.flatnonzero(np.diff(data.indptr) > 0)
    for validation in (0.5, 3.0):
        train, held = hold_out(data, users, validation, np.random.default_rng(1))
        for user in users.tolist():
            mine = set(data.sequence(user).tolist())
            out = set(held.of_user(user).tolist())
            kept = set(train.sequence(user).tolist())
            assert kept
            assert out <= mine
            assert not out & kept
            expected = round(validation * len(mine)) if validation < 1 else 3
            assert len(out) == min(max(1, expected), len(mine) - 1)
    _, first = hold_out(data, users, 0.5, np.random.default_rng(1))
    _, again = hold_out(data, users, 0.5, np.random.default_rng(1))
    np.testing.assert_array_equal(first.items, again.items)


@pytest.mark.parametrize(
    ("params", "parameter", "problem"),
    [
        ({"members": ["a", "a"]}, "members", "lists a model twice"),
        ({"members": ["a", ""]}, "members", "must be a list of model names"),
        ({"validation": 0}, "validation", "must be a share in"),
        ({"validation": 2.5}, "validation", "a whole count"),
        ({"candidates": 0}, "candidates", "below the minimum"),
        ({"rounds": 0}, "rounds", "below the minimum"),
        ({"item_properties": "genre"}, "item_properties", "true, false or a list"),
        ({"item_properties": ["genre", 3]}, "item_properties", "must name item properties"),
        ({"learning_rate": 2.0}, "learning_rate", "above the maximum"),
        ({"weights": {"a": 1}}, "weights", "unknown parameter"),
    ],
)
def test_bad_parameters_name_the_parameter(
    params: dict[str, Any], parameter: str, problem: str
) -> None:
    with pytest.raises(ParameterError, match=problem) as raised:
        Stacker(**params)
    assert raised.value.parameter == parameter


def test_tiny_scores_keep_their_order_when_standardised() -> None:
    """A member that knows little of a user may score every item about 1e-26 (iALS folding in
    a short history): squared in float32 those would underflow to a row without spread."""
    scores = np.array([[3e-26, 1e-26, -np.inf, 2e-26, 5e-26]], dtype=np.float32)
    z = standardise(scores, np.array([0]), np.array([4]))  # item 4 is the user's own
    assert np.isneginf(z[0, 2])
    assert z[0, 0] > z[0, 3] > z[0, 1]
    np.testing.assert_allclose(z[0, [0, 1, 3]], [1.2247449, -1.2247449, 0.0], atol=1e-5)
    assert z[0, 4] > z[0, 0]  # left out of the statistics, standardised all the same


def test_an_offline_validation_part_is_learnt_from_where_the_data_has_one(
    split: tuple[TrainingData, Holdout],
) -> None:
    train, held = split
    offline = replace(train, validation=held)  # as the harness hands over its validation part

    def ranker(params: dict[str, Any], data: TrainingData) -> bytes:
        model = stacker(members=["knn", "pop"], **params)
        model.fit(data)
        return bytes(model.state()["ranker"].tobytes())

    own = ranker({"holdout": "own"}, offline)
    assert ranker({}, train) == own  # without a validation part, `auto` learns as `own`
    assert ranker({}, offline) != own
