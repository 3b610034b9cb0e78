"""The ensemble algorithm: normalisation, blending, members bound by the host, validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plugins.algorithm import Algorithm, ParameterError, UserHistory
from plugins.builtin.ease import EASE
from plugins.builtin.ensemble import Ensemble, MembersUnbound, combine, normalise
from plugins.builtin.item_knn import ItemKNN
from plugins.builtin.popularity import Popularity
from plugins.training import TrainingData
from storage.snapshot import take_snapshot
from tests.plugins.catalog import build_catalog

INF = np.inf


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> TrainingData:
    database = build_catalog(tmp_path_factory.mktemp("ensemble") / "catalog.duckdb")
    snapshot = database.read_sync(take_snapshot)
    database.close()
    return TrainingData.from_snapshot(snapshot)


@pytest.fixture(scope="module")
def members(data: TrainingData) -> dict[str, Algorithm]:
    fitted: dict[str, Algorithm] = {
        "ease": EASE(l2=5.0),
        "knn": ItemKNN(neighbours=10),
        "pop": Popularity(),
    }
    for model in fitted.values():
        model.fit(data)
    return fitted


def ensemble(models: dict[str, Algorithm], data: TrainingData, **params: Any) -> Ensemble:
    model = Ensemble(**params)
    model.fit(data)
    model.bind(models.__getitem__)
    return model


HISTORIES = [UserHistory.of_items([0, 3, 6]), UserHistory.of_items([1, 4]), UserHistory.empty()]


def test_rank_normalisation_gives_rank_shares_with_ties_and_keeps_minus_inf() -> None:
    scores = np.array([[3.0, -INF, 1.0, 1.0, 7.0]], dtype=np.float32)
    got = normalise(scores, "rank")
    # Four scored entries: 7 is best (4/4), 3 next (3/4), the tied 1s share ranks 1 and 2.
    np.testing.assert_allclose(got[0, [0, 2, 3, 4]], [0.75, 0.375, 0.375, 1.0])
    assert np.isneginf(got[0, 1])


def test_zscore_normalisation_standardises_the_scored_entries() -> None:
    scores = np.array([[2.0, 4.0, -INF, 6.0], [5.0, 5.0, 5.0, -INF]], dtype=np.float32)
    got = normalise(scores, "zscore")
    spread = float(np.std([2.0, 4.0, 6.0]))
    np.testing.assert_allclose(got[0, [0, 1, 3]], [-2 / spread, 0.0, 2 / spread], rtol=1e-6)
    np.testing.assert_array_equal(got[1, :3], [0.0, 0.0, 0.0])  # all equal: no spread
    assert np.isneginf(got[0, 2])
    assert np.isneginf(got[1, 3])


def test_unknown_normalisation_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown normalisation 'minmax'"):
        normalise(np.zeros((1, 2), dtype=np.float32), "minmax")


def test_combine_weighs_counts_missing_entries_at_the_floor_and_keeps_unscored_out() -> None:
    first = np.array([[1.0, 0.5, -INF, -INF]], dtype=np.float32)
    second = np.array([[0.25, -INF, 1.0, -INF]], dtype=np.float32)
    got = combine([(first, 2.0), (second, 1.0)], "rank", (1, 4))
    # Rank shares: a member's missing entry counts 0.
    np.testing.assert_allclose(got[0, :3], [2.25, 1.0, 1.0], atol=1e-5)
    assert np.isneginf(got[0, 3])
    z = combine([(np.array([[-1.0, 1.0, -INF]], dtype=np.float32), 1.0)], "zscore", (1, 3))
    assert z[0, 0] > 0
    assert z[0, 1] > z[0, 0]
    assert np.isneginf(z[0, 2])


@pytest.mark.parametrize("normalisation", ["rank", "zscore"])
def test_scores_are_the_weighted_blend_of_the_members(
    members: dict[str, Algorithm], data: TrainingData, normalisation: str
) -> None:
    weights = {"ease": 1.0, "knn": 0.5, "pop": 0.25}
    model = ensemble(
        members, data, members=["ease", "knn", "pop"], weights=weights, normalisation=normalisation
    )
    got = model.score_users(HISTORIES, data.n_items)
    parts = [
        (normalise(members[m].score_users(HISTORIES, data.n_items), normalisation), w)
        for m, w in weights.items()
    ]
    np.testing.assert_allclose(got, combine(parts, normalisation, got.shape), rtol=1e-6)
    # Not any one member's order: the blend differs from EASE's alone.
    alone = ensemble(members, data, members=["ease"], normalisation=normalisation)
    assert not np.array_equal(
        np.argsort(-got[0], kind="stable"),
        np.argsort(-alone.score_users(HISTORIES, data.n_items)[0], kind="stable"),
    )


def test_one_member_keeps_its_order_and_candidates_are_respected(
    members: dict[str, Algorithm], data: TrainingData
) -> None:
    model = ensemble(members, data, members=["ease"])
    candidates = np.zeros(data.n_items, dtype=np.bool_)
    candidates[::2] = True
    got = model.score_users(HISTORIES[:1], data.n_items, candidates)[0]
    own = members["ease"].score_users(HISTORIES[:1], data.n_items, candidates)[0]
    assert np.isneginf(got[~candidates]).all()
    assert (got[candidates] > 0).all()
    kept = np.flatnonzero(candidates)
    np.testing.assert_array_equal(
        np.argsort(-got[kept], kind="stable"), np.argsort(-own[kept], kind="stable")
    )
    items = model.score_items([2], data.n_items, candidates)
    assert np.isneginf(items[0, ~candidates]).all()


def test_weighted_overrides_some_weights_and_skips_members_that_weigh_nothing(
    members: dict[str, Algorithm], data: TrainingData
) -> None:
    asked: list[str] = []

    def lookup(name: str) -> Algorithm:
        asked.append(name)
        return members[name]

    model = Ensemble(members=["ease", "knn"], weights={"knn": 2.0})
    model.fit(data)
    model.bind(lookup)
    only_ease = model.weighted({"knn": 0.0})
    assert only_ease.member_weights == {"ease": 1.0, "knn": 0.0}
    assert model.member_weights == {"ease": 1.0, "knn": 2.0}  # the original is untouched
    got = only_ease.score_users(HISTORIES, data.n_items)
    assert asked == ["ease"]
    plain = ensemble(members, data, members=["ease"]).score_users(HISTORIES, data.n_items)
    np.testing.assert_array_equal(got, plain)
    with pytest.raises(ParameterError, match="'pop' is not a member"):
        model.weighted({"pop": 1.0})


def test_a_member_that_cannot_score_new_items_does_not_drop_them(
    members: dict[str, Algorithm], data: TrainingData
) -> None:
    class Short(Algorithm):
        """Knows only the first five items."""

        name = "short"

        def fit(self, data: TrainingData) -> None:
            self.n_items = 5

        def user_scores(self, histories: Any) -> np.ndarray[Any, Any]:
            return np.tile(np.arange(5, dtype=np.float32), (len(histories), 1))

        def state(self) -> dict[str, np.ndarray[Any, Any]]:
            return {}

        def restore(self, arrays: Any) -> None:
            pass

    short = Short()
    short.fit(data)
    model = ensemble({**members, "short": short}, data, members=["short", "pop"])
    got = model.score_users(HISTORIES[:1], data.n_items)
    assert np.isfinite(got).all()  # popularity scores every item; "short" counts its floor


def test_without_members_it_scores_nothing(data: TrainingData) -> None:
    model = Ensemble()
    model.fit(data)
    assert np.isneginf(model.score_users(HISTORIES, data.n_items)).all()
    assert np.isneginf(model.score_items([1], data.n_items)).all()


def test_unbound_members_raise(data: TrainingData) -> None:
    model = Ensemble(members=["ease"])
    model.fit(data)
    with pytest.raises(MembersUnbound, match="member 'ease' is not bound"):
        model.score_users(HISTORIES, data.n_items)


def test_save_and_load_keep_the_settings_and_need_binding_again(
    members: dict[str, Algorithm], data: TrainingData, tmp_path: Path
) -> None:
    model = ensemble(members, data, members=["ease", "knn"], weights={"knn": 0.3})
    model.save(tmp_path / "blend")
    loaded = Ensemble.load(tmp_path / "blend")
    assert loaded.settings == model.settings
    assert loaded.n_items == data.n_items
    with pytest.raises(MembersUnbound):
        loaded.score_users(HISTORIES, data.n_items)
    loaded.bind(members.__getitem__)
    np.testing.assert_array_equal(
        loaded.score_users(HISTORIES, data.n_items), model.score_users(HISTORIES, data.n_items)
    )


@pytest.mark.parametrize(
    ("params", "parameter", "problem"),
    [
        ({"members": ["a", "a"]}, "members", "lists a model twice"),
        ({"members": ["a", ""]}, "members", "must be a list of model names"),
        ({"members": ["a"], "weights": {"b": 1}}, "weights", "'b' is not a member"),
        ({"members": ["a"], "weights": {"a": -1}}, "weights", "must be a number >= 0"),
        ({"members": ["a"], "weights": {"a": "x"}}, "weights", "must be a number >= 0"),
        ({"members": ["a", "b"], "weights": {"a": 0, "b": 0}}, "weights", "at least one"),
        ({"normalisation": "minmax"}, "normalisation", "is not one of"),
        ({"members": "a"}, "members", "must be list"),
    ],
)
def test_bad_parameters_name_the_parameter(
    params: dict[str, Any], parameter: str, problem: str
) -> None:
    with pytest.raises(ParameterError, match=problem) as raised:
        Ensemble(**params)
    assert raised.value.parameter == parameter
