"""item-kNN's neighbourhoods: a candidate is scored by the user's items among its own nearest
neighbours (RecBole's ItemKNN), not by the candidates among the user's items' neighbours."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from plugins.algorithm import UserHistory
from plugins.builtin.item_knn import ItemKNN
from plugins.training import DEFAULT_WEIGHTS, TrainingData


def _data(pairs: list[tuple[int, int]], n_users: int, n_items: int) -> TrainingData:
    users = np.array([u for u, _ in pairs], dtype=np.int64)
    items = np.array([i for _, i in pairs], dtype=np.int64)
    weights = np.ones(len(pairs), dtype=np.float32)
    matrix = sp.csr_matrix((weights, (users, items)), shape=(n_users, n_items), dtype=np.float32)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return TrainingData(
        matrix=matrix,
        users=users,
        items=items,
        kinds=np.zeros(len(pairs), dtype=np.uint8),
        timestamps=np.zeros(len(pairs)),
        weights=weights,
        indptr=indptr,
        item_ids=[f"i{i}" for i in range(n_items)],
        user_ids=[f"u{u}" for u in range(n_users)],
        item_properties=pa.table({}),
        kind_weights=DEFAULT_WEIGHTS,
    )


def test_a_candidate_counts_only_its_own_neighbours() -> None:
    # Users 0-2 have items 0 and 1; users 3-7 have items 1 and 2. With one neighbour each:
    # item 0's nearest is 1, item 2's nearest is 1, and item 1's nearest is 2 (more co-views).
    pairs = [(u, i) for u in range(3) for i in (0, 1)] + [
        (u, i) for u in range(3, 8) for i in (1, 2)
    ]
    model = ItemKNN(neighbours=1, shrinkage=0.0)
    model.fit(_data(pairs, 8, 3))
    from_item_0 = model.user_scores([UserHistory.of_items([0])])[0]
    from_item_2 = model.user_scores([UserHistory.of_items([2])])[0]
    # Item 1 is item 0's nearest, but item 0 is not among item 1's: no score from item 0.
    assert from_item_0[1] == 0.0
    # Item 2 is among item 1's neighbours: item 1 scores its cosine with item 2.
    assert from_item_2[1] > 0.0
    np.testing.assert_allclose(from_item_2[1], 5 / np.sqrt(8 * 5), rtol=1e-6)
    # Items to Item lists the context item's own nearest neighbours.
    assert model.item_scores([0])[0].argmax() == 1
