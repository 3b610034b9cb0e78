"""Co-occurrence: "users who interacted with this also interacted with that".

Two items co-occur in a user's history when the user interacted with both, within `window`
interactions of each other (0: anywhere in the history). Fitting counts, for every pair of
distinct items, the users in whose histories they co-occur, and drops the pairs with fewer than
`min_users` users. A history scores each item by the sum of its counts with the distinct items of
the history; a context item scores each item by its count with it. Every interaction counts, of
whatever kind. The counts are whole numbers, so fitting and scoring are exactly deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from plugins.algorithm import Algorithm, Parameter, UserHistory
from plugins.training import TrainingData


class CoOccurrence(Algorithm):
    name = "co-occurrence"
    description = "items that co-occur with the user's items or the context item, by user count"
    parameters = (
        Parameter(
            "window",
            int,
            0,
            "items co-occur when at most this many interactions apart (0: anywhere in a history)",
            minimum=0,
        ),
        Parameter(
            "min_users",
            int,
            1,
            "pairs of items that fewer users share are dropped",
            minimum=1,
        ),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.counts = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items
        window = int(self.settings["window"])
        if window == 0:
            counts = _anywhere(data.users, data.items, data.n_users, data.n_items)
        else:
            counts = _within(data.users, data.items, data.n_items, window)
        counts.data[counts.data < int(self.settings["min_users"])] = 0
        counts.eliminate_zeros()
        counts.sort_indices()
        self.counts = counts

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        rows: list[np.ndarray[Any, Any]] = []
        columns: list[np.ndarray[Any, Any]] = []
        for row, history in enumerate(histories):
            items = np.unique(history.items[(history.items >= 0) & (history.items < self.n_items)])
            rows.append(np.full(len(items), row, dtype=np.int64))
            columns.append(items)
        row_index = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        column_index = np.concatenate(columns) if columns else np.zeros(0, dtype=np.int64)
        profile = sp.csr_matrix(
            (np.ones(len(row_index), dtype=np.float32), (row_index, column_index)),
            shape=(len(histories), self.n_items),
            dtype=np.float32,
        )
        return np.asarray((profile @ self.counts).todense(), dtype=np.float32)

    def item_scores(self, items: Sequence[int]) -> np.ndarray[Any, Any]:
        scores = np.zeros((len(items), self.n_items), dtype=np.float32)
        for row, item in enumerate(items):
            if 0 <= item < self.n_items:
                start, end = self.counts.indptr[item], self.counts.indptr[item + 1]
                scores[row, self.counts.indices[start:end]] = self.counts.data[start:end]
        return scores

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        return {
            "indptr": self.counts.indptr,
            "indices": self.counts.indices,
            "counts": self.counts.data,
        }

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self.counts = sp.csr_matrix(
            (arrays["counts"], arrays["indices"], arrays["indptr"]),
            shape=(self.n_items, self.n_items),
            dtype=np.float32,
        )


def _anywhere(
    users: np.ndarray[Any, Any], items: np.ndarray[Any, Any], n_users: int, n_items: int
) -> sp.csr_matrix:
    """Users x items, 1 where the user interacted with the item; its Gram matrix counts users."""
    seen = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)),
        shape=(n_users, n_items),
        dtype=np.float32,
    )
    seen.sum_duplicates()
    seen.data[:] = 1.0
    counts = (seen.T @ seen).tocsr()
    counts.setdiag(0)
    return sp.csr_matrix(counts, dtype=np.float32)


def _within(
    users: np.ndarray[Any, Any], items: np.ndarray[Any, Any], n_items: int, window: int
) -> sp.csr_matrix:
    """The interactions are ordered by user, then time: position k and k + d (d <= window) are
    `d` interactions apart in one history when they have the same user."""
    triples = [np.zeros((0, 3), dtype=np.int64)]
    for distance in range(1, min(window, max(len(users) - 1, 0)) + 1):
        first, second = slice(0, len(users) - distance), slice(distance, len(users))
        same = (users[first] == users[second]) & (items[first] != items[second])
        a, b = items[first][same], items[second][same]
        triples.append(np.stack([users[first][same], np.minimum(a, b), np.maximum(a, b)], axis=1))
    # Each user counts once per pair, however often the two items meet in the history.
    pairs = np.unique(np.concatenate(triples).astype(np.int64), axis=0)[:, 1:]
    low, high = pairs[:, 0], pairs[:, 1]
    counts = sp.csr_matrix(
        (
            np.ones(2 * len(pairs), dtype=np.float32),
            (np.concatenate([low, high]), np.concatenate([high, low])),
        ),
        shape=(n_items, n_items),
        dtype=np.float32,
    )
    counts.sum_duplicates()
    return counts
