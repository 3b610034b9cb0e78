"""Item-item models whose weights are one sparse items x items matrix W (rp3beta, slim): what
they share to score, save and build W in bounded blocks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from plugins.algorithm import Algorithm

BLOCK_CELLS = 1 << 22
"""Nonzeros of the product computed at a time (at most, counting every path as a cell): bounds
the memory of a block to some 100 MiB whatever the catalog's size."""


class SparseItemModel(Algorithm):
    """A model scoring a history as its rows times W (W sparse, float32, items x items): Items to
    Item is W's row, and W is saved as its three CSR arrays."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.weights = sp.csr_matrix((0, 0), dtype=np.float32)
        """W: row i holds what item i in a history adds to each item's score."""

    def item_scores(self, items: Sequence[int]) -> np.ndarray[Any, Any]:
        """Row i of W: the scores of a one-item history."""
        scores = np.zeros((len(items), self.n_items), dtype=np.float32)
        indptr, indices, values = self.weights.indptr, self.weights.indices, self.weights.data
        for row, item in enumerate(items):
            if 0 <= item < self.n_items:
                start, end = indptr[item], indptr[item + 1]
                scores[row, indices[start:end]] = values[start:end]
        return scores

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        return {
            "indptr": self.weights.indptr,
            "indices": self.weights.indices,
            "data": self.weights.data,
        }

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self.weights = sp.csr_matrix(
            (arrays["data"], arrays["indices"], arrays["indptr"]),
            shape=(self.n_items, self.n_items),
            dtype=np.float32,
        )


def row_blocks(costs: np.ndarray[Any, Any], budget: float) -> Iterator[tuple[int, int]]:
    """Consecutive (start, stop) row ranges whose costs sum to at most `budget` (a row above it
    alone)."""
    total = np.concatenate([[0.0], np.cumsum(costs)])
    start, n = 0, len(costs)
    while start < n:
        stop = int(np.searchsorted(total, total[start] + budget, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        yield start, stop
        start = stop


def top_k_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """The k largest values of each row (ties go to the lower column), columns sorted. A
    partition per long row: linear in its length, where sorting a whole block cost seconds."""
    matrix = matrix.copy()
    matrix.sort_indices()
    indptr, indices, values = matrix.indptr, matrix.indices, matrix.data
    keep = np.ones(len(values), dtype=bool)
    for row in np.flatnonzero(np.diff(indptr) > k):
        start, end = int(indptr[row]), int(indptr[row + 1])
        row_values = values[start:end]
        kth = np.partition(row_values, end - start - k)[end - start - k]  # the k-th largest
        above = row_values > kth
        tied = np.flatnonzero(row_values == kth)  # by column, as the row is
        above[tied[: k - int(above.sum())]] = True
        keep[start:end] = above
    if keep.all():
        return matrix
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(indptr))
    out = sp.csr_matrix((values[keep], (rows[keep], indices[keep])), shape=matrix.shape)
    out.sort_indices()
    return out
