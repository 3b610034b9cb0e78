"""The contract that every registered algorithm passes, built-in or from a plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from plugins.algorithm import Algorithm, ParameterError, UserHistory
from plugins.builtin.members import MemberModel
from plugins.manager import collect, get_plugin_manager
from plugins.training import TrainingData
from storage.snapshot import take_snapshot
from tests.plugins.catalog import build_catalog

REGISTRY = collect(get_plugin_manager())
ALGORITHMS = sorted(REGISTRY.algorithms)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> TrainingData:
    database = build_catalog(tmp_path_factory.mktemp("contract") / "catalog.duckdb")
    snapshot = database.read_sync(take_snapshot)
    database.close()
    return TrainingData.from_snapshot(snapshot)


MEMBERS: dict[str, tuple[str, dict[str, Any]]] = {
    "knn": ("item-knn", {"neighbours": 10}),
    "pop": ("popularity", {}),
}
"""What a model over other models (ensemble, stacker) is built on here: configured models."""


def member(name: str) -> Algorithm:
    """A fresh member, as the host's factory makes one."""
    algorithm, params = MEMBERS[name]
    return REGISTRY.algorithm(algorithm)(**params)


_SERVED: dict[int, dict[str, Algorithm]] = {}


def bound(model: Algorithm, data: TrainingData) -> Algorithm:
    """The model bound to the members the host would serve (fitted on `data`), where it needs
    them to score."""
    if isinstance(model, MemberModel) and not model.scores_alone:
        if id(data) not in _SERVED:
            _SERVED[id(data)] = {name: member(name) for name in MEMBERS}
            for served in _SERVED[id(data)].values():
                served.fit(data)
        model.bind(_SERVED[id(data)].__getitem__)
    return model


def fitted(name: str, data: TrainingData) -> Algorithm:
    params: dict[str, Any] = {"seed": 3} if _has(name, "seed") else {}
    cls = REGISTRY.algorithm(name)
    if issubclass(cls, MemberModel):
        params["members"] = list(MEMBERS)
    model = cls(**params)
    if isinstance(model, MemberModel):
        model.bind_factory(member)
    model.fit(data)
    return bound(model, data)


def _has(name: str, parameter: str) -> bool:
    return any(p.name == parameter for p in REGISTRY.algorithm(name).parameters)


def histories(data: TrainingData) -> list[UserHistory]:
    out = []
    for user in (0, 5, 17):
        start, end = data.indptr[user], data.indptr[user + 1]
        kinds = tuple(("detail_views", "purchases")[int(k == 2)] for k in data.kinds[start:end])
        out.append(
            UserHistory(
                data.items[start:end], kinds, data.timestamps[start:end], data.weights[start:end]
            )
        )
    return out


def valid(scores: np.ndarray[Any, Any], rows: int, n_items: int) -> None:
    assert scores.shape == (rows, n_items)
    assert scores.dtype == np.float32
    assert not np.isnan(scores).any()
    assert not np.isposinf(scores).any()


@pytest.mark.parametrize("name", ALGORITHMS)
def test_scores_have_the_promised_shape(name: str, data: TrainingData) -> None:
    model = fitted(name, data)
    assert model.n_items == data.n_items
    valid(model.score_users(histories(data), data.n_items), 3, data.n_items)
    valid(model.score_items([0, 4], data.n_items), 2, data.n_items)


def best_is_relevant(model: Algorithm, data: TrainingData) -> bool:
    """Where a model's scores prefer some candidates, its best-scored one counts as relevant
    (by its `relevance_threshold`): otherwise serving would replace its list by popularity, or
    give nothing with minRelevance high."""
    for scores in model.score_users(histories(data), data.n_items):
        finite = scores[np.isfinite(scores)]
        if len(finite) and finite.max() > finite.min():
            best = int(np.argmax(np.where(np.isfinite(scores), scores, -np.inf)))
            if not model.relevant(scores)[best]:
                return False
    return True


@pytest.mark.parametrize("name", ALGORITHMS)
def test_the_best_scored_candidates_are_relevant(name: str, data: TrainingData) -> None:
    assert best_is_relevant(fitted(name, data), data)


class LogPopularity(Algorithm):
    """Scores every item by the log of its share of the interactions: all negative."""

    name = "log-popularity"
    relevance_threshold: ClassVar[float | None] = None

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items
        counts = np.bincount(data.items, minlength=data.n_items) + 1.0
        self.log_share = np.log(counts / counts.sum()).astype(np.float32)

    def user_scores(self, histories: Any) -> np.ndarray[Any, Any]:
        return np.tile(self.log_share, (len(histories), 1))

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        return {"log_share": self.log_share}

    def restore(self, arrays: Any) -> None:
        self.log_share = arrays["log_share"]


def test_a_model_whose_scores_are_all_negative_needs_its_threshold(data: TrainingData) -> None:
    model = LogPopularity()
    model.fit(data)
    assert (model.log_share < 0).all()
    assert best_is_relevant(model, data)

    class Undeclared(LogPopularity):
        relevance_threshold = 0.0  # the default, wrong for these scores

    undeclared = Undeclared()
    undeclared.fit(data)
    assert not best_is_relevant(undeclared, data)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_candidates_are_respected(name: str, data: TrainingData) -> None:
    model = fitted(name, data)
    candidates = np.zeros(data.n_items, dtype=np.bool_)
    candidates[::2] = True
    for scores in (
        model.score_users(histories(data), data.n_items, candidates),
        model.score_items([1], data.n_items, candidates),
    ):
        assert np.isneginf(scores[:, ~candidates]).all()


@pytest.mark.parametrize("name", ALGORITHMS)
def test_fitting_is_deterministic(name: str, data: TrainingData) -> None:
    first = fitted(name, data).score_users(histories(data), data.n_items)
    second = fitted(name, data).score_users(histories(data), data.n_items)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_save_then_load_gives_the_same_scores(
    name: str, data: TrainingData, tmp_path: Path
) -> None:
    model = fitted(name, data)
    model.save(tmp_path / name)
    assert not list((tmp_path / name).glob("*.pkl"))
    loaded = bound(type(model).load(tmp_path / name), data)
    assert loaded.settings == model.settings
    np.testing.assert_array_equal(
        model.score_users(histories(data), data.n_items),
        loaded.score_users(histories(data), data.n_items),
    )
    np.testing.assert_array_equal(
        model.score_items([3], data.n_items), loaded.score_items([3], data.n_items)
    )


@pytest.mark.parametrize("name", ALGORITHMS)
def test_a_user_with_no_history(name: str, data: TrainingData) -> None:
    model = fitted(name, data)
    valid(model.score_users([UserHistory.empty()], data.n_items), 1, data.n_items)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_an_item_added_after_training(name: str, data: TrainingData) -> None:
    model = fitted(name, data)
    new_item = data.n_items + 2
    grown = data.n_items + 3
    history = UserHistory.of_items([0, new_item])
    valid(model.score_users([history], grown), 1, grown)
    valid(model.score_items([new_item], grown), 1, grown)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_unknown_parameters_are_refused(name: str) -> None:
    with pytest.raises(ParameterError, match="unknown parameter"):
        REGISTRY.algorithm(name)(no_such_parameter=1)
