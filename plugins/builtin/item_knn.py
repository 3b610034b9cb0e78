"""Item-kNN: items similar to the ones in the user's history, by shrunk cosine similarity of
their interaction vectors, keeping the `neighbours` most similar items of each item."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from plugins.algorithm import Algorithm, Parameter, UserHistory
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData


class ItemKNN(Algorithm):
    name = "item-knn"
    description = "items similar (cosine with shrinkage) to the user's or the context item"
    parameters = (
        Parameter("neighbours", int, 100, "similar items kept per item", minimum=1),
        Parameter("shrinkage", float, 10.0, "added to the cosine's denominator", minimum=0),
        Parameter(
            "binary", bool, False, "count each user-item pair once instead of by its weights"
        ),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)
        """Each item's `neighbours` most similar items (row i: item i's neighbours)."""
        self.neighbour_of = sp.csr_matrix((0, 0), dtype=np.float32)
        """The transpose: row i holds the items that have i among their neighbours."""

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items
        matrix = data.matrix.astype(np.float32)
        if self.settings["binary"]:
            matrix.data[:] = 1.0
        items_by_users = matrix.T.tocsr()
        co = (items_by_users @ items_by_users.T).tocsr()
        norms = np.sqrt(np.asarray(items_by_users.multiply(items_by_users).sum(axis=1)).ravel())
        co.setdiag(0)
        co.eliminate_zeros()
        coo = co.tocoo()
        denominator = norms[coo.row] * norms[coo.col] + float(self.settings["shrinkage"])
        values = np.divide(
            coo.data, denominator, out=np.zeros_like(coo.data), where=denominator > 0
        )
        similarity = sp.csr_matrix((values, (coo.row, coo.col)), shape=co.shape, dtype=np.float32)
        self.similarity = _top_k_per_row(similarity, int(self.settings["neighbours"]))
        self.neighbour_of = self.similarity.T.tocsr()

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        """The profile (the history's summed weight per item) times the similarity matrix, in
        which each candidate keeps its own nearest neighbours: a candidate's score sums its
        similarity to those of its neighbours the user has (RecBole's ItemKNN), so that an
        item's score does not depend on how many other items crowd its neighbourhood.

        Computed as scipy's sparse product computes it (the same float32 sums, added in the
        same order), by gathering the rows of the history's items: building sparse matrices
        for one history cost more than the product itself.
        """
        scores = np.zeros((len(histories), self.n_items), dtype=np.float32)
        indptr, indices, data = (
            self.neighbour_of.indptr,
            self.neighbour_of.indices,
            self.neighbour_of.data,
        )
        for row, history in enumerate(histories):
            items = np.asarray(history.items, dtype=np.int64)
            known = (items >= 0) & (items < self.n_items)
            weights = history.weights if len(history.weights) else np.ones(len(items))
            weights = np.asarray(weights, dtype=np.float32)[known]
            # The profile row: one entry per item, duplicates summed, by column; an entry that
            # sums to zero is dropped, as scipy drops it.
            columns, inverse = np.unique(items[known], return_inverse=True)
            values = np.zeros(len(columns), dtype=np.float32)
            np.add.at(values, inverse, weights)
            kept = values != 0
            columns, values = columns[kept], values[kept]
            starts = indptr[columns].astype(np.int64)
            lengths = indptr[columns + 1] - starts
            total = int(lengths.sum())
            if not total:
                continue
            # Positions of every neighbour of every profile item, row after row.
            offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
            offsets += np.arange(total)
            contributions = np.repeat(values, lengths) * data[offsets]
            np.add.at(scores[row], indices[offsets], contributions)
        return scores

    def item_scores(self, items: Sequence[int]) -> np.ndarray[Any, Any]:
        scores = np.zeros((len(items), self.n_items), dtype=np.float32)
        for row, item in enumerate(items):
            if 0 <= item < self.n_items:
                start, end = self.similarity.indptr[item], self.similarity.indptr[item + 1]
                scores[row, self.similarity.indices[start:end]] = self.similarity.data[start:end]
        return scores

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        return {
            "indptr": self.similarity.indptr,
            "indices": self.similarity.indices,
            "data": self.similarity.data,
        }

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self.similarity = sp.csr_matrix(
            (arrays["data"], arrays["indices"], arrays["indptr"]),
            shape=(self.n_items, self.n_items),
            dtype=np.float32,
        )
        self.neighbour_of = self.similarity.T.tocsr()


def _top_k_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest values of each row (ties broken by the lower column, deterministic)."""
    indptr, indices, data = [0], [], []
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        columns, values = matrix.indices[start:end], matrix.data[start:end]
        if len(values) > k:
            order = np.lexsort((columns, -values))[:k]
            columns, values = columns[order], values[order]
        order = np.argsort(columns, kind="stable")
        indices.append(columns[order])
        data.append(values[order])
        indptr.append(indptr[-1] + len(order))
    return sp.csr_matrix(
        (
            np.concatenate(data) if data else np.zeros(0, dtype=np.float32),
            np.concatenate(indices) if indices else np.zeros(0, dtype=np.int32),
            np.asarray(indptr),
        ),
        shape=matrix.shape,
        dtype=np.float32,
    )


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [ItemKNN]
