"""Cold-start protocols (new items, new users) and the baselines random, attribute-popularity
and content-knn."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from plugins.algorithm import UserHistory
from plugins.builtin.baselines import AttributePopularity, RandomScores
from plugins.builtin.content_knn import ContentKNN
from plugins.evaluation.cold import UserPropertyRows, cold_items_split, cold_users_split
from plugins.evaluation.harness import ModelSpec, Protocol, evaluate, prepare_split
from plugins.evaluation.splits import TEST, TRAIN, SplitError
from plugins.training import ItemEmbeddings, TrainingData, validate_weights
from storage.snapshot import Snapshot


def synthetic(n_users: int = 40, n_items: int = 50, per_user: int = 12, seed: int = 3) -> Snapshot:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    n = len(users)
    return Snapshot(
        item_ids=[f"i{i}" for i in range(n_items)],
        user_ids=[f"u{u}" for u in range(n_users)],
        users=users.astype(np.int64),
        items=items.astype(np.int64),
        kinds=np.zeros(n, dtype=np.uint8),
        timestamps=rng.permutation(n).astype(np.float64),
        ratings=np.full(n, np.nan),
        portions=np.full(n, np.nan),
        item_properties=pa.table({"$idx": list(range(n_items))}),
        user_properties=pa.table(
            {"$idx": list(range(n_users)), "gender": ["F", "M"] * (n_users // 2)}
        ),
    )


def test_cold_items_are_absent_from_training_and_all_in_the_test() -> None:
    snapshot = synthetic()
    parts, cold = cold_items_split(snapshot.items, 0.1, seed=4)
    assert len(cold) == 5  # 10 % of 50 items
    assert not np.isin(snapshot.items[parts == TRAIN], cold).any()
    assert np.isin(snapshot.items[parts == TEST], cold).all()
    assert (parts[np.isin(snapshot.items, cold)] == TEST).all()
    again, same = cold_items_split(snapshot.items, 0.1, seed=4)
    np.testing.assert_array_equal(parts, again)
    np.testing.assert_array_equal(cold, same)
    assert not np.array_equal(cold, cold_items_split(snapshot.items, 0.1, seed=5)[1])


def test_cold_users_keep_their_first_interactions_only() -> None:
    snapshot = synthetic()
    for keep in (0, 3):
        parts, cold = cold_users_split(snapshot.users, snapshot.timestamps, 0.1, keep, seed=2)
        assert len(cold) == 4
        for user in range(snapshot.n_users):
            mine = snapshot.users == user
            trained = snapshot.timestamps[mine & (parts == TRAIN)]
            if user in cold:
                assert len(trained) == keep
                # The kept ones are the earliest.
                tested = snapshot.timestamps[mine & (parts == TEST)]
                assert keep == 0 or trained.max() < tested.min()
            else:
                assert (parts[mine] == TRAIN).all()
        np.testing.assert_array_equal(
            parts, cold_users_split(snapshot.users, snapshot.timestamps, 0.1, keep, seed=2)[0]
        )


def test_cold_users_need_more_interactions_than_they_keep() -> None:
    snapshot = synthetic(per_user=3)
    with pytest.raises(SplitError, match="nothing to choose"):
        cold_users_split(snapshot.users, snapshot.timestamps, 0.1, 3, seed=1)


def test_cold_items_rank_among_cold_items_unless_told() -> None:
    snapshot = synthetic()
    split = prepare_split(snapshot, Protocol(name="cold-items"), 1)
    assert split.candidates is not None
    cold = np.flatnonzero(split.candidates)
    assert set(cold) == set(np.unique(snapshot.items[split.parts == TEST]))
    wide = prepare_split(snapshot, Protocol(name="cold-items", rank_among="all"), 1)
    assert wide.candidates is None
    # Among 5 cold items, a random ranking finds most of each user's held-out items in its 10.
    among_cold = evaluate(snapshot, [ModelSpec("random", RandomScores)], Protocol("cold-items"))
    among_all = evaluate(
        snapshot, [ModelSpec("random", RandomScores)], Protocol("cold-items", rank_among="all")
    )
    assert among_cold.runs[0].figures["recall@10"] == 1.0
    assert among_all.runs[0].figures["recall@10"] < 0.6


def test_user_properties_reach_the_models_of_an_evaluation() -> None:
    snapshot = synthetic()
    rows = UserPropertyRows(snapshot.user_properties, snapshot.n_users)
    assert rows.of([0, 3]) == [{"gender": "F"}, {"gender": "M"}]
    figures = evaluate(
        snapshot,
        [ModelSpec("attribute-popularity", AttributePopularity)],
        Protocol(name="cold-users", seeds=(1, 2), cold_user_interactions=2),
    )
    assert len(figures.runs) == 2
    assert all(0 <= run.figures["ndcg@10"] <= 1 for run in figures.runs)


def data_with(
    items: list[int],
    users: list[int],
    n_items: int,
    item_properties: pa.Table,
    user_properties: pa.Table | None = None,
    vectors: np.ndarray[Any, Any] | None = None,
) -> TrainingData:
    n_users = max(users) + 1
    order = np.argsort(users, kind="stable")
    user_array, item_array = np.array(users)[order], np.array(items)[order]
    weights = np.ones(len(items), dtype=np.float32)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_array, minlength=n_users), out=indptr[1:])

    def provide(*, embedder: str) -> ItemEmbeddings:
        assert vectors is not None
        return ItemEmbeddings(vectors.astype(np.float32), np.ones(n_items, dtype=bool))

    return TrainingData(
        matrix=sp.csr_matrix((weights, (user_array, item_array)), shape=(n_users, n_items)),
        users=user_array.astype(np.int64),
        items=item_array.astype(np.int64),
        kinds=np.zeros(len(items), dtype=np.uint8),
        timestamps=np.arange(len(items), dtype=np.float64),
        weights=weights,
        indptr=indptr,
        item_ids=[str(i) for i in range(n_items)],
        user_ids=[str(u) for u in range(n_users)],
        item_properties=item_properties,
        kind_weights=validate_weights(None),
        item_text_vectors=provide if vectors is not None else None,
        user_properties=user_properties,
    )


def test_content_knn_ranks_the_item_with_similar_text_first() -> None:
    # Items 0 and 3 point the same way; item 3 has no interactions at all (a new item).
    vectors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.9, 0.1, 0], [0, 0.7, 0.7]])
    data = data_with(
        [0, 1, 2, 1, 2], [0, 1, 1, 2, 2], 5, pa.table({"$idx": range(5)}), None, vectors
    )
    model = ContentKNN()
    model.fit(data)
    scores = model.score_users([UserHistory.of_items([0])], 5)[0]
    scores[0] = -np.inf  # the user's own item
    assert int(np.argmax(scores)) == 3
    assert int(np.argmax(model.score_items([2], 5)[0][[0, 1, 3, 4]])) == 3  # item 4
    # Without a history, popularity decides (items 1 and 2 have two interactions each).
    empty = model.score_users([UserHistory.empty()], 5)[0]
    assert set(np.argsort(-empty)[:2]) == {1, 2}


def test_attribute_popularity_prefers_the_popular_genre_and_the_users_segment() -> None:
    genres = pa.table(
        {"$idx": range(6), "genre": ["drama", "drama", "comedy", "comedy", "drama", "comedy"]}
    )
    users = pa.table({"$idx": range(4), "gender": ["F", "F", "M", "M"]})
    # Women watch dramas 0 and 1, men comedy 2; items 4 (drama) and 5 (comedy) are new.
    data = data_with([0, 1, 0, 1, 2, 2, 0], [0, 0, 1, 1, 2, 3, 3], 6, genres, users)
    model = AttributePopularity()
    model.fit(data)
    everyone, women, men = model.score_users(
        [
            UserHistory.empty(),
            UserHistory(np.zeros(0, dtype=np.int64), properties={"gender": "F"}),
            UserHistory(np.zeros(0, dtype=np.int64), properties={"gender": "M"}),
        ],
        6,
    )
    assert everyone[4] > everyone[5]  # dramas are the more popular genre overall
    assert women[4] > women[5]
    assert men[5] > men[4]  # but not among men
    assert men[2] > men[0]
    assert women[3] == 0.0  # a warm comedy that no woman watched
