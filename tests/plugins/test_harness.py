"""The evaluation harness on a seeded synthetic catalog in a real DuckDB file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pytest

from plugins.algorithm import Algorithm, Parameter, UserHistory
from plugins.builtin.item_knn import ItemKNN
from plugins.builtin.popularity import Popularity
from plugins.evaluation.harness import (
    ModelSpec,
    Protocol,
    evaluate,
    make_holdouts,
    rank,
    split_parts,
)
from plugins.evaluation.splits import TEST, TRAIN, VALID, part_sizes, quantile_time
from plugins.hookspecs import hookimpl
from plugins.manager import collect, get_plugin_manager
from plugins.training import DEFAULT_WEIGHTS, TrainingData, interaction_weights
from storage.snapshot import Snapshot, take_snapshot
from tests.plugins.catalog import build_catalog


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """60 users who each prefer one genre of 45 items, 2,000 interactions."""
    path = tmp_path_factory.mktemp("harness") / "catalog.duckdb"
    database = build_catalog(path, users=60, items=45, interactions=2000)
    try:
        return database.read_sync(take_snapshot)
    finally:
        database.close()


class Probe(Algorithm):
    """Popularity that records what the harness hands it, and validates as early stopping
    would."""

    name = "probe"
    parameters = (Parameter("seed", int, 0, "recorded"),)
    fitted: ClassVar[list[TrainingData]] = []
    validation_ndcg: ClassVar[list[float]] = []
    scored: ClassVar[list[UserHistory]] = []
    seeds: ClassVar[list[int]] = []

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items
        self.counts = np.asarray(data.matrix.sum(axis=0), dtype=np.float32).ravel()
        Probe.fitted.append(data)
        Probe.seeds.append(self.settings["seed"])
        if data.validation is not None:
            ndcg = data.validation.mean_ndcg(
                lambda users: np.tile(self.counts, (len(users), 1)), data.matrix
            )
            Probe.validation_ndcg.append(ndcg)

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        Probe.scored.extend(histories)
        return np.tile(self.counts, (len(histories), 1))

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        return {"counts": self.counts}

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self.counts = arrays["counts"]


class ProbePlugin:
    @hookimpl
    def register_algorithms(self) -> list[type[Algorithm]]:
        return [Probe]


@pytest.fixture
def probe() -> ModelSpec:
    """The probe, registered through a plugin object as a third-party plugin would be."""
    manager = get_plugin_manager()
    manager.register(ProbePlugin(), name="probe-plugin")
    for record in (Probe.fitted, Probe.validation_ndcg, Probe.scored, Probe.seeds):
        record.clear()
    return ModelSpec("probe", collect(manager).algorithm("probe"))


def keys(users: np.ndarray[Any, Any], items: np.ndarray[Any, Any], n_items: int) -> set[int]:
    return set((users * n_items + items).tolist())


def test_figures_lie_in_0_1_and_item_knn_beats_popularity(snapshot: Snapshot) -> None:
    models = [ModelSpec("popularity", Popularity), ModelSpec("item-knn", ItemKNN)]
    evaluation = evaluate(snapshot, models, Protocol(ks=(5, 10), seeds=(1, 2)))
    assert [(run.model, run.seed) for run in evaluation.runs] == [
        ("popularity", 1),
        ("item-knn", 1),
        ("popularity", 2),
        ("item-knn", 2),
    ]
    for run in evaluation.runs:
        assert set(run.figures) == set(evaluation.figure_names)
        assert all(0.0 <= value <= 1.0 for value in run.figures.values()), run
        assert run.train_seconds >= 0
        assert run.score_seconds >= 0
    # recall@10 >= recall@5, hit@10 >= hit@5: a longer list only adds items.
    for run in evaluation.runs:
        assert run.figures["recall@10"] >= run.figures["recall@5"]
        assert run.figures["hit@10"] >= run.figures["hit@5"]
    # The planted genres: item-kNN finds them, popularity cannot.
    for seed in (1, 2):
        by_model = {run.model: run.figures for run in evaluation.runs if run.seed == seed}
        assert by_model["item-knn"]["ndcg@10"] > by_model["popularity"]["ndcg@10"] + 0.05
    assert evaluation.dataset == {"users": 60, "items": 45, "interactions": 2000}
    assert [info.seed for info in evaluation.splits] == [1, 2]
    assert all(sum(info.sizes.values()) == 2000 for info in evaluation.splits)


def test_fitting_gets_the_validation_holdout_and_never_the_test(
    snapshot: Snapshot, probe: ModelSpec
) -> None:
    protocol = Protocol(seeds=(5,))
    evaluation = evaluate(snapshot, [probe], protocol)
    parts, _ = split_parts(snapshot, protocol, 5)
    holdouts = make_holdouts(snapshot, parts)
    (data,) = Probe.fitted
    n_items = snapshot.n_items

    # The train data is exactly the train part.
    train = parts == TRAIN
    assert len(data.users) == part_sizes(parts)["train"] == evaluation.splits[0].sizes["train"]
    assert keys(data.users, data.items, n_items) == keys(
        snapshot.users[train], snapshot.items[train], n_items
    )
    # The validation holdout is the validation part's items (the ones not in train)...
    assert data.validation is not None
    assert np.array_equal(data.validation.indptr, holdouts.valid.indptr)
    assert np.array_equal(data.validation.items, holdouts.valid.items)
    valid = parts == VALID
    held = keys(snapshot.users[valid], snapshot.items[valid], n_items)
    given = {
        int(u) * n_items + int(i) for u in data.validation.users for i in data.validation.of_user(u)
    }
    assert given
    assert given <= held
    assert Probe.validation_ndcg
    assert 0.0 <= Probe.validation_ndcg[0] <= 1.0
    # ...and no test interaction is in the train matrix.
    rows = data.matrix.tocsr()
    test_users = holdouts.test.users
    assert len(test_users) == evaluation.splits[0].test_users > 0
    for user in test_users:
        trained_on = set(rows.indices[rows.indptr[user] : rows.indptr[user + 1]].tolist())
        assert not trained_on & set(holdouts.test.of_user(int(user)).tolist())

    # The histories scored are the test users' train interactions, oldest first, weight 1.
    assert len(Probe.scored) == len(test_users)
    for user, history in zip(test_users, Probe.scored, strict=True):
        assert np.array_equal(history.items, data.sequence(int(user)))
        assert np.all(np.diff(history.timestamps) >= 0)
        assert len(history.kinds) == len(history.items)
        assert np.all(history.weights == 1.0)


def test_each_seed_seeds_the_algorithm_unless_the_model_sets_it(
    snapshot: Snapshot, probe: ModelSpec
) -> None:
    evaluate(snapshot, [probe], Protocol(seeds=(3, 4)))
    assert Probe.seeds == [3, 4]
    fixed = ModelSpec("fixed", probe.algorithm, {"seed": 9})
    evaluate(snapshot, [fixed], Protocol(seeds=(3, 4)))
    assert Probe.seeds == [3, 4, 9, 9]


def test_no_validation_part_means_no_validation_holdout(
    snapshot: Snapshot, probe: ModelSpec
) -> None:
    evaluation = evaluate(snapshot, [probe], Protocol(split=(0.8, 0.0, 0.2)))
    assert Probe.fitted[0].validation is None
    assert evaluation.splits[0].sizes["valid"] == 0
    assert evaluation.splits[0].valid_users == 0


def test_weighted_feedback_uses_the_models_kind_weights(
    snapshot: Snapshot, probe: ModelSpec
) -> None:
    weights = {"purchases": 10.0}
    spec = ModelSpec("probe", probe.algorithm, weights=weights)
    protocol = Protocol(feedback="weighted", seeds=(2,))
    evaluate(snapshot, [spec], protocol)
    parts, _ = split_parts(snapshot, protocol, 2)
    expected = interaction_weights(snapshot, {**DEFAULT_WEIGHTS, **weights})[parts == TRAIN]
    (data,) = Probe.fitted
    assert np.array_equal(data.weights, expected)
    assert data.kind_weights["purchases"] == 10.0
    assert len(np.unique(data.weights)) > 1  # not all ones: the kinds count


def test_leave_one_out(snapshot: Snapshot, probe: ModelSpec) -> None:
    evaluation = evaluate(snapshot, [probe], Protocol(name="loo", seeds=(1, 2)))
    counts = np.bincount(snapshot.users, minlength=snapshot.n_users)
    eligible = int((counts >= 3).sum())
    for info in evaluation.splits:
        assert info.sizes["test"] == info.sizes["valid"] == eligible
    # The split does not depend on the seed.
    assert evaluation.splits[0].sizes == evaluation.splits[1].sizes
    assert Probe.fitted[0].users.tolist() == Probe.fitted[1].users.tolist()
    # Each evaluated user has one test item, the latest of their interactions.
    holdouts = make_holdouts(snapshot, split_parts(snapshot, Protocol(name="loo"), 1)[0])
    for user in holdouts.test.users:
        (item,) = holdouts.test.of_user(int(user))
        last = snapshot.users == user
        assert snapshot.items[last][np.argmax(snapshot.timestamps[last])] == item


def test_temporal_cut(snapshot: Snapshot, probe: ModelSpec) -> None:
    evaluation = evaluate(snapshot, [probe], Protocol(name="temporal", quantile=0.8))
    cut = quantile_time(snapshot.timestamps, 0.8)
    assert evaluation.cut == cut
    (data,) = Probe.fitted
    # Everything trained on, and validated on, lies before the cut; the test is after it.
    assert data.timestamps.max() < cut
    assert evaluation.splits[0].sizes["test"] == int((snapshot.timestamps >= cut).sum())
    at = float(np.sort(snapshot.timestamps)[1000])
    evaluation = evaluate(snapshot, [probe], Protocol(name="temporal", at=at))
    assert evaluation.cut == at
    assert Probe.fitted[1].timestamps.max() < at


def test_held_out_items_seen_earlier_are_dropped() -> None:
    # User 0: item 1 in train and again in test; item 3 in valid and again in test; item 2
    # only in test. User 1: item 0 in train and valid, item 4 in test.
    users = np.array([0, 0, 0, 0, 0, 1, 1, 1], dtype=np.int64)
    items = np.array([1, 3, 1, 2, 3, 0, 0, 4], dtype=np.int64)
    parts = np.array([TRAIN, VALID, TEST, TEST, TEST, TRAIN, VALID, TEST], dtype=np.uint8)
    snapshot = Snapshot(
        item_ids=[f"i{i}" for i in range(5)],
        user_ids=["u0", "u1"],
        users=users,
        items=items,
        kinds=np.zeros(8, dtype=np.uint8),
        timestamps=np.arange(8, dtype=np.float64),
        ratings=np.full(8, np.nan),
        portions=np.full(8, np.nan),
        item_properties=pa.table({"$idx": list(range(5))}),
        user_properties=pa.table({"$idx": [0, 1]}),
    )
    holdouts = make_holdouts(snapshot, parts)
    assert holdouts.test.of_user(0).tolist() == [2]
    assert holdouts.test.of_user(1).tolist() == [4]
    assert holdouts.valid.of_user(0).tolist() == [3]
    assert holdouts.valid.of_user(1).tolist() == []  # item 0 was in train
    assert holdouts.seen_before_test.of_user(0).tolist() == [1, 3]
    assert holdouts.seen_before_test.of_user(1).tolist() == [0]


def test_rankings_leave_out_seen_items_and_non_candidates(snapshot: Snapshot) -> None:
    parts, _ = split_parts(snapshot, Protocol(), 1)
    holdouts = make_holdouts(snapshot, parts)
    ones = np.ones(len(snapshot.users), dtype=np.float32)
    data = TrainingData.from_interactions(snapshot, ones, keep=parts == TRAIN)
    model = Popularity(half_life_days=0.0)
    model.fit(data)
    candidates = np.ones(snapshot.n_items, dtype=bool)
    best = int(np.argmax(model.popularity))
    candidates[best] = False
    users = holdouts.test.users
    ranked = rank(model, data, users, holdouts.seen_before_test, 10, candidates)
    assert ranked.shape == (len(users), 10)
    for user, row in zip(users, ranked, strict=True):
        shown = set(row[row >= 0].tolist())
        assert not shown & set(holdouts.seen_before_test.of_user(int(user)).tolist())
        assert best not in shown


def test_include_seen_ranks_earlier_items_and_providers_reach_the_model(
    snapshot: Snapshot, probe: ModelSpec
) -> None:
    """With `exclude_seen` off, a popularity ranking spends places on the popular items the
    user had before, so it scores lower; the item-vector providers (images and text) given to
    `evaluate` reach the model's training data."""
    from plugins.training import ItemEmbeddings

    def provider(**_: Any) -> ItemEmbeddings:
        return ItemEmbeddings(np.zeros((0, 0), np.float32), np.zeros(0, bool))

    calls: list[str] = []
    text_vectors = ItemEmbeddings(np.ones((3, 2), np.float32), np.ones(3, bool))

    def text_provider(*, embedder: str) -> ItemEmbeddings:
        calls.append(embedder)
        return text_vectors

    ndcg = {}
    for exclude_seen in (True, False):
        protocol = Protocol(name="loo", ks=(10,), exclude_seen=exclude_seen)
        evaluation = evaluate(
            snapshot, [probe], protocol, item_vectors=provider, item_text_vectors=text_provider
        )
        assert Probe.fitted[-1].item_vectors is provider
        given = Probe.fitted[-1].item_text_vectors
        assert given is not None
        # The harness remembers each embedder's vectors: one embedding for every model and seed.
        assert given(embedder="minilm") is text_vectors
        assert given(embedder="minilm") is text_vectors
        ndcg[exclude_seen] = evaluation.runs[0].figures["ndcg@10"]
    assert ndcg[True] > ndcg[False]
    assert calls == ["minilm", "minilm"]  # once per evaluation, not once per call


def test_leave_one_out_scores_test_users_with_their_validation_item(
    snapshot: Snapshot, probe: ModelSpec
) -> None:
    """Under leave-last-one-out the history scored for the test includes the validation
    interaction (it happened before the test); under the random protocol it does not."""
    for name, includes in (("loo", True), ("random", False)):
        Probe.scored.clear()
        protocol = Protocol(name=name, ks=(10,))
        evaluate(snapshot, [probe], protocol)
        parts, _ = split_parts(snapshot, protocol, 1)
        holdouts = make_holdouts(snapshot, parts)
        fitted = Probe.fitted[-1]
        users = holdouts.test.users
        scored = Probe.scored[-len(users) :]
        grew = 0
        for user, history in zip(users.tolist(), scored, strict=True):
            train = fitted.sequence(user)
            assert history.items[: len(train)].tolist() == train.tolist()
            grew += len(history.items) > len(train)
            valid = set(holdouts.valid.of_user(user).tolist())
            assert valid <= set(history.items.tolist()) if includes else True
        assert (grew > 0) is includes
