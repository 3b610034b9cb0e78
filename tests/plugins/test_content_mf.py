"""content-mf: a new item is scored from its content, warm items from their interactions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from plugins.algorithm import UserHistory
from plugins.builtin.content_mf import ContentMF
from plugins.training import ItemEmbeddings, TrainingData, validate_weights
from storage import catalog
from storage.database import WriteContext
from storage.schema import Entity
from storage.snapshot import take_snapshot
from tests.plugins.catalog import build_catalog

GENRE_ITEMS = 20
"""Items 0-19 are genre X, 20-39 genre Y; 40 is a new X item, 41 a new Y item."""
NEW_X, NEW_Y = 2 * GENRE_ITEMS, 2 * GENRE_ITEMS + 1
N_ITEMS = 2 * GENRE_ITEMS + 2
PAIR = (3, 4)
"""Two X items that the same users always take together."""


def training_data(pairs: Sequence[tuple[int, int]], n_users: int, text: bool) -> TrainingData:
    """TrainingData over N_ITEMS items from (user, item) pairs, with the host's text provider
    replaced by a function giving each item its genre's direction plus a little noise."""
    users = np.array([u for u, _ in pairs], dtype=np.int64)
    items = np.array([i for _, i in pairs], dtype=np.int64)
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]
    weights = np.ones(len(users), dtype=np.float32)
    matrix = sp.csr_matrix((weights, (users, items)), shape=(n_users, N_ITEMS))
    matrix.sum_duplicates()
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    ids = [f"i{i}" for i in range(N_ITEMS)]
    rng = np.random.default_rng(0)
    genre_x = np.array([i < GENRE_ITEMS or i == NEW_X for i in range(N_ITEMS)])
    vectors = np.where(genre_x[:, None], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0])
    vectors = (vectors + 0.1 * rng.standard_normal(vectors.shape)).astype(np.float32)

    def provide(*, embedder: str) -> ItemEmbeddings:
        assert embedder == "minilm"
        return ItemEmbeddings(vectors, np.ones(N_ITEMS, dtype=np.bool_))

    return TrainingData(
        matrix=matrix,
        users=users,
        items=items,
        kinds=np.zeros(len(users), dtype=np.uint8),
        timestamps=np.arange(len(users), dtype=np.float64),
        weights=weights,
        indptr=indptr,
        item_ids=list[str | None](ids),
        user_ids=list[str | None]([f"u{u}" for u in range(n_users)]),
        item_properties=pa.table({"$idx": np.arange(N_ITEMS), "$id": ids}),
        kind_weights=validate_weights(None),
        item_text_vectors=provide if text else None,
    )


def genre_catalog(n_users: int = 40, seed: int = 1) -> list[tuple[int, int]]:
    """Users 0..n/2-1 take X items, the others Y items (5 % of the time the other genre);
    half the X users take both PAIR items, and no one takes one without the other. Items NEW_X
    and NEW_Y: no one."""
    rng = np.random.default_rng(seed)
    pairs = []
    for user in range(n_users):
        likes_x = user < n_users // 2
        for _ in range(12):
            genre_x = likes_x != (rng.random() < 0.05)
            item = int(rng.integers(GENRE_ITEMS)) + (0 if genre_x else GENRE_ITEMS)
            if item not in PAIR:
                pairs.append((user, item))
        if likes_x and user % 2 == 0:
            pairs += [(user, PAIR[0]), (user, PAIR[1])]
    return pairs


@pytest.fixture(scope="module")
def with_text() -> TrainingData:
    return training_data(genre_catalog(), 40, text=True)


def fitted(data: TrainingData, **settings: Any) -> ContentMF:
    model = ContentMF(**{"factors": 8, "epochs": 8, "regularisation": 1.0, **settings})
    model.fit(data)
    return model


def rank_of(scores: np.ndarray[Any, Any], item: int, exclude: Sequence[int] = ()) -> int:
    """0 for the best-scored item, among all but `exclude`."""
    row = scores.astype(np.float64).copy()
    row[list(exclude)] = -np.inf
    return int((row > row[item]).sum())


X_USER = UserHistory.of_items([0, 1, 2, 5, 6])
Y_USER = UserHistory.of_items([20, 21, 22, 25, 26])


def test_a_new_item_is_ranked_by_its_content(with_text: TrainingData) -> None:
    model = fitted(with_text)
    x_scores, y_scores = model.user_scores([X_USER, Y_USER])
    # The new X item, which nobody took, is among the X user's best, and below every Y item
    # (the 15 not in the history, and the new one) for the Y user.
    assert rank_of(x_scores, NEW_X, X_USER.items.tolist()) < 8
    assert rank_of(y_scores, NEW_X, Y_USER.items.tolist()) >= GENRE_ITEMS - 5 + 1
    assert rank_of(y_scores, NEW_Y, Y_USER.items.tolist()) < 8
    # Items to item: the new X item is next to X items, far from Y items.
    related = model.item_scores([NEW_X])[0]
    assert related[:GENRE_ITEMS].mean() > 0.5 > related[GENRE_ITEMS : 2 * GENRE_ITEMS].mean()


def test_without_content_a_new_item_has_no_evidence(with_text: TrainingData) -> None:
    blind = fitted(with_text, text_embedder="", properties=False)
    x_scores = blind.user_scores([X_USER])[0]
    assert x_scores[NEW_X] == 0.0
    assert x_scores[NEW_Y] == 0.0
    assert not blind.item_scores([NEW_X]).any()


def test_warm_items_follow_co_occurrence(with_text: TrainingData) -> None:
    model = fitted(with_text)
    # PAIR[1] is the nearest item to PAIR[0], and the best for a user who took PAIR[0] alone,
    # though its content is that of every other X item.
    related = model.item_scores([PAIR[0]])[0]
    assert rank_of(related, PAIR[1], [PAIR[0]]) == 0
    scores = model.user_scores([UserHistory.of_items([PAIR[0]])])[0]
    assert rank_of(scores, PAIR[1], [PAIR[0]]) == 0


def test_a_new_user_is_folded_in_from_a_few_interactions(with_text: TrainingData) -> None:
    model = fitted(with_text)
    scores = model.user_scores([UserHistory.of_items([30, 31])])[0]
    assert scores[GENRE_ITEMS : 2 * GENRE_ITEMS].mean() > scores[:GENRE_ITEMS].mean()
    # Unknown items of a history are ignored; an empty history has no evidence.
    same = model.user_scores([UserHistory.of_items([30, 31, N_ITEMS + 5])])[0]
    np.testing.assert_array_equal(scores, same)
    assert not model.user_scores([UserHistory.empty()]).any()


def test_save_and_load_give_identical_scores(with_text: TrainingData, tmp_path: Path) -> None:
    model = fitted(with_text)
    model.save(tmp_path / "model")
    loaded = ContentMF.load(tmp_path / "model")
    assert loaded.settings == model.settings
    histories = [X_USER, Y_USER, UserHistory.of_items([NEW_X])]
    np.testing.assert_array_equal(model.user_scores(histories), loaded.user_scores(histories))
    np.testing.assert_array_equal(model.item_scores([NEW_X, 3]), loaded.item_scores([NEW_X, 3]))


def test_a_seed_gives_the_same_model_and_another_seed_another(with_text: TrainingData) -> None:
    first, second = fitted(with_text, seed=4), fitted(with_text, seed=4)
    np.testing.assert_array_equal(first.item_factors, second.item_factors)
    assert not np.array_equal(first.item_factors, fitted(with_text, seed=5).item_factors)


def test_categorical_properties_place_a_new_item(tmp_path: Path) -> None:
    """From a real catalog: an item with a genre and no interactions is scored as its genre's
    items, with no text vectors at all (the multi-hot of the `genre` property)."""
    database = build_catalog(tmp_path / "catalog.duckdb", users=60, items=30, interactions=1500)

    def add(ctx: WriteContext) -> None:
        catalog.set_values(ctx, Entity.ITEM, "new", {"genre": "g1"}, cascade_create=True)

    database.write_sync(add)
    data = TrainingData.from_snapshot(database.read_sync(take_snapshot))
    database.close()
    new = data.item_ids.index("new")
    model = ContentMF(factors=8, epochs=8, regularisation=1.0)
    model.fit(data)
    # Users u1, u4, … prefer g1 items (i1, i4, …); u0, u3, … g0 items.
    g1_user = UserHistory.of_items([data.item_ids.index(f"i{i}") for i in (1, 4, 7)])
    g0_user = UserHistory.of_items([data.item_ids.index(f"i{i}") for i in (0, 3, 6)])
    g1_scores, g0_scores = model.user_scores([g1_user, g0_user])
    # Among the g1 user's best (without properties it would be 20th or worse), and below the
    # seven other g0 items for the g0 user.
    assert rank_of(g1_scores, new, g1_user.items.tolist()) < 3
    assert rank_of(g0_scores, new, g0_user.items.tolist()) >= 7
