"""EASE (Steck, WWW 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): an item-item
weight matrix B with a zero diagonal, in closed form from the binarised interaction matrix X:

    G = XᵀX + λI,  P = G⁻¹,  B = -P / diag(P) (column-wise),  diag(B) = 0.

A history's scores are its binarised row times B, so a new interaction counts at once. B is dense
(items x items), so the item count is capped by `max_items`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from plugins.algorithm import Algorithm, Parameter, UserHistory
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData

# Fitting holds the float64 Gram matrix (inverted in place) and the float32 weights at once.
BYTES_PER_CELL = 8 + 4
# Columns of the Gram matrix built (and rows of B written) at a time: bounds the temporaries.
BLOCK = 2048


class TooManyItemsError(ValueError):
    """A catalog too large for a dense items x items model."""

    def __init__(self, algorithm: str, n_items: int, limit: int) -> None:
        needed = BYTES_PER_CELL * n_items * n_items
        super().__init__(
            f"algorithm '{algorithm}': {n_items:,} items need a dense {n_items:,} x {n_items:,} "
            f"matrix, about {_size(needed)} of memory to fit; that is above the parameter "
            f"'max_items' ({limit:,}): raise it if the machine has the memory"
        )
        self.n_items = n_items
        self.limit = limit
        self.needed_bytes = needed


class EASE(Algorithm):
    name = "ease"
    description = "items that a closed-form linear item-item autoencoder predicts from a history"
    parameters = (
        Parameter(
            "l2", float, 350.0, "L2 regularisation λ, added to the Gram matrix's diagonal", 0.0
        ),
        Parameter(
            "max_items",
            int,
            30_000,
            "refuse to fit above this many items (fitting needs 12 bytes x items²)",
            minimum=1,
        ),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.weights = np.zeros((0, 0), dtype=np.float32)

    def fit(self, data: TrainingData) -> None:
        n = data.n_items
        if n > self.settings["max_items"]:
            raise TooManyItemsError(self.name, n, int(self.settings["max_items"]))
        self.n_items = n
        self.weights = ease_weights(binarised(data.matrix), float(self.settings["l2"]))

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        """The histories' binarised rows times B, as one sparse-dense product."""
        rows = history_matrix(histories, self.n_items)
        return np.asarray(rows @ self.weights, dtype=np.float32)

    def item_scores(self, items: Sequence[int]) -> np.ndarray[Any, Any]:
        """Row i of B: the scores of a one-item history."""
        scores = np.zeros((len(items), self.n_items), dtype=np.float32)
        for row, item in enumerate(items):
            if 0 <= item < self.n_items:
                scores[row] = self.weights[item]
        return scores

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        return {"weights": self.weights}

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self.weights = np.asarray(arrays["weights"], dtype=np.float32)


def ease_weights(matrix: sp.csr_matrix, l2: float) -> np.ndarray[Any, np.dtype[np.float32]]:
    """B for a binary users x items matrix: float64 for the inverse, float32 weights."""
    n = matrix.shape[1]
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    x = sp.csr_matrix(matrix, dtype=np.float64)
    xt = x.T.tocsr()
    columns = x.tocsc()
    gram = np.empty((n, n), dtype=np.float64)
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        gram[:, start:stop] = (xt @ columns[:, start:stop]).toarray()
    gram[np.diag_indices(n)] += l2
    # G is symmetric positive definite (λ > 0, or X of full column rank): a Cholesky inverse,
    # in place, is cheaper than a general one and needs no second n x n float64 array. An item
    # nobody interacted with makes G singular when λ = 0; fall back to the pseudo-inverse then.
    factor, info = scipy.linalg.lapack.dpotrf(gram, lower=0, overwrite_a=1, clean=0)
    if info == 0:
        inverse, info = scipy.linalg.lapack.dpotri(factor, lower=0, overwrite_c=1)
    if info != 0:
        gram = (xt @ x).toarray() + l2 * np.eye(n)
        return _weights_from_inverse(np.linalg.pinv(gram, hermitian=True), upper_only=False)
    return _weights_from_inverse(inverse, upper_only=True)


def _weights_from_inverse(
    inverse: np.ndarray[Any, np.dtype[np.float64]], upper_only: bool
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """B = -P / diag(P) column-wise, zero diagonal, from P (or only its upper triangle)."""
    n = inverse.shape[0]
    diagonal = inverse.diagonal().copy()
    # An item nobody used (with λ = 0) has a pseudo-inverse diagonal of rounding noise: its
    # column stays zero rather than noise over noise.
    usable = diagonal > 1e-12 * max(float(diagonal.max()), 0.0)
    scale = np.divide(-1.0, diagonal, out=np.zeros(n), where=usable)
    weights = np.empty((n, n), dtype=np.float32)
    columns = np.arange(n)
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        block = inverse[start:stop]
        if upper_only:
            # Below the diagonal, P[i, j] is P[j, i], which lies in the upper triangle.
            lower = columns[None, :] < np.arange(start, stop)[:, None]
            block = np.where(lower, inverse[:, start:stop].T, block)
        weights[start:stop] = block * scale[None, :]
    weights[np.diag_indices(n)] = 0.0
    return weights


def binarised(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """1.0 (float32) where the summed weight is positive (the matrix may hold explicit zeros)."""
    positive = sp.csr_matrix(matrix > 0, dtype=np.float32)
    positive.eliminate_zeros()
    return positive


def history_matrix(histories: Sequence[UserHistory], n_items: int) -> sp.csr_matrix:
    """len(histories) x n_items: 1 where a history's summed weight of an item is positive
    (all weights count 1 when a history carries none); unknown items are left out."""
    users, items, weights = [], [], []
    for row, history in enumerate(histories):
        known = (history.items >= 0) & (history.items < n_items)
        weight = history.weights if len(history.weights) else np.ones(len(history.items))
        items.append(np.asarray(history.items, dtype=np.int64)[known])
        weights.append(np.asarray(weight, dtype=np.float32)[known])
        users.append(np.full(int(known.sum()), row, dtype=np.int64))
    summed = sp.csr_matrix(
        (
            np.concatenate(weights) if weights else np.zeros(0, dtype=np.float32),
            (
                np.concatenate(users) if users else np.zeros(0, dtype=np.int64),
                np.concatenate(items) if items else np.zeros(0, dtype=np.int64),
            ),
        ),
        shape=(len(histories), n_items),
        dtype=np.float32,
    )
    summed.sum_duplicates()
    return binarised(summed)


def _size(n_bytes: int) -> str:
    """A byte count for people: "10.1 GiB"."""
    size = float(n_bytes)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} TiB"


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [EASE]
