"""SLIM (Ning & Karypis, ICDM 2011, "SLIM: Sparse Linear Methods for Top-N Recommender
Systems"): a sparse item-item weight matrix W, each column j the elastic-net regression of item
j's column of the binarised interaction matrix X on the other items' columns, with weights >= 0:

    min_w  ½‖X[:, j] - X w‖² + ½ l2 ‖w‖² + l1 Σ w,   w >= 0,   w[j] = 0.

A history's scores are its binarised row times W, as EASE's are (EASE is the same regression,
dense, signed and without L1, in closed form).

Why it is fitted this way (figures: NDCG@10 on MovieLens-100K's validation part, protocol (a),
seed 1, where the dense EASE scores 0.271):

- Each item's regression may use only its `neighbours` nearest items by cosine, the candidates
  (the paper's fsSLIM, which preselects features by item-kNN). This is what makes it scale:
  fitting needs XᵀX only among an item's candidates (m x m), never items x items, so it fits
  catalogs above EASE's 30,000-item limit. It costs no accuracy: 200 candidates score 0.274;
  candidates by co-count (the most co-consumed items: mostly the popular ones) scored 0.262
  where cosine's scored 0.268 (100 candidates).
- The regression is solved in its Gram form (XᵀX among the candidates, not X), by cyclic
  coordinate descent batched over a few hundred items: each coordinate is one vectorised update
  of every item of the batch, where a per-item ElasticNet fit (scikit-learn's, as common
  reimplementations do) costs a Python-level call and a pass over X per item. Each system
  leaves the batch once its weights settle. About 3.5 s on MovieLens-100K on two cores.
- Nonnegative weights (SLIM's constraint) score 0.274, signed ones at most 0.272 (at a larger
  l2), and leave W sparser than its candidates (about 125 weights per item of 200);
  `nonnegative: false` fits signed weights: EASE restricted to each item's candidates (exactly
  EASE when every item is a candidate). L1 (0.0 by default) made no difference on validation.

Memory is bounded whatever the catalog: a batch's Gram matrix covers the union of its items'
candidates, at most UNION_MAX items, and its stacked m x m systems at most BATCH_CELLS cells;
W holds at most items x `neighbours` weights.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from plugins.algorithm import Algorithm, Parameter, UserHistory
from plugins.builtin.ease import binarised, history_matrix
from plugins.builtin.sparse_items import BLOCK_CELLS, SparseItemModel, row_blocks, top_k_per_row
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData

UNION_MAX = 4096
"""Most items whose Gram matrix (dense float32, 64 MiB at this size) a batch computes."""
BATCH_CELLS = 1 << 23
"""Most cells of a batch's stacked m x m systems (float32, 32 MiB, each of a few copies)."""
TOLERANCE = 1e-4
"""Coordinate descent stops when no weight of a sweep moved by more than this share of the
batch's largest weight."""


class SLIM(SparseItemModel):
    name = "slim"
    description = "items a sparse nonnegative item-item regression predicts from a history"
    parameters = (
        Parameter(
            "neighbours",
            int,
            200,
            "candidate items of each item's regression (its nearest by cosine)",
            minimum=1,
        ),
        Parameter("l2", float, 100.0, "L2 regularisation (½ l2 ‖w‖²)", minimum=0.0),
        Parameter("l1", float, 0.0, "L1 regularisation (l1 ‖w‖₁): fewer weights", 0.0),
        Parameter(
            "nonnegative", bool, True, "keep every weight >= 0 (SLIM's); false: signed weights"
        ),
        Parameter("sweeps", int, 50, "most coordinate-descent sweeps per batch", minimum=1),
    )

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items
        self.weights = slim_weights(
            binarised(data.matrix),
            int(self.settings["neighbours"]),
            float(self.settings["l2"]),
            float(self.settings["l1"]),
            bool(self.settings["nonnegative"]),
            int(self.settings["sweeps"]),
        )

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        """The histories' binarised rows times W, as one sparse product."""
        rows = history_matrix(histories, self.n_items)
        return np.asarray((rows @ self.weights).toarray(), dtype=np.float32)


def slim_weights(
    matrix: sp.csr_matrix, neighbours: int, l2: float, l1: float, nonnegative: bool, sweeps: int
) -> sp.csr_matrix:
    """W (float32, items x items) for a binary users x items matrix."""
    n = matrix.shape[1]
    x = sp.csr_matrix(matrix, dtype=np.float32)
    candidates = nearest_by_cosine(x, neighbours)
    columns = x.tocsc()
    position = np.full(n, -1, dtype=np.int64)
    everything: np.ndarray[Any, Any] | None = None
    sources, targets, values = [], [], []
    # Systems as wide as the longest candidate list: a small catalog has fewer than asked for.
    width = int(np.diff(candidates.indptr).max(initial=0))
    for batch in batches(candidates, UNION_MAX, max(1, BATCH_CELLS // (width + 1) ** 2)):
        lists = [candidates.indices[candidates.indptr[t] : candidates.indptr[t + 1]] for t in batch]
        if n < UNION_MAX:  # one Gram matrix for every batch
            union = np.arange(n)
            if everything is None:
                everything = gram_matrix(columns)
            gram = everything
        else:
            union = np.unique(np.concatenate([batch, *lists]))
            gram = gram_matrix(columns[:, union])
        position[union] = np.arange(len(union))
        # Each item's candidates as places in the union, padded (with place 0) to `width`; the
        # padding's rows and columns are zeroed, and it gets a weight of 0.
        places = np.zeros((len(batch), width), dtype=np.int64)
        real = np.zeros((len(batch), width), dtype=bool)
        for row, items in enumerate(lists):
            places[row, : len(items)] = position[items]
            real[row, : len(items)] = True
        systems = gram[places[:, :, None], places[:, None, :]]
        systems *= real[:, :, None] & real[:, None, :]
        systems[:, np.arange(width), np.arange(width)] += np.float32(l2)
        right = gram[places, position[batch][:, None]] * real
        position[union] = -1
        weights = coordinate_descent(systems, right, l1, nonnegative, sweeps)
        kept = weights != 0
        sources.append(union[places[kept]])  # the padding keeps no weight
        targets.append(np.broadcast_to(np.asarray(batch)[:, None], kept.shape)[kept])
        values.append(weights[kept])
    if not values:
        return sp.csr_matrix((n, n), dtype=np.float32)
    out = sp.csr_matrix(
        (np.concatenate(values), (np.concatenate(sources), np.concatenate(targets))),
        shape=(n, n),
        dtype=np.float32,
    )
    out.sort_indices()
    return out


def nearest_by_cosine(x: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Row j: the k items most similar to item j by the cosine of their columns of X, among
    those it shares a user with (itself left out); values: the cosines."""
    n = x.shape[1]
    xt = x.T.tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0), dtype=np.float64).ravel())
    inverse = np.divide(1.0, norms, out=np.zeros(n), where=norms > 0)
    counts = xt.copy()
    counts.data[:] = 1.0
    paths = np.minimum(counts @ np.diff(x.indptr).astype(np.float64), n)
    blocks = []
    for start, stop in row_blocks(paths, BLOCK_CELLS):
        block = sp.csr_matrix(xt[start:stop] @ x, dtype=np.float64)
        rows = np.repeat(np.arange(start, stop), np.diff(block.indptr))
        block.data *= inverse[rows] * inverse[block.indices]
        block.data[block.indices == rows] = 0.0
        block.eliminate_zeros()
        blocks.append(top_k_per_row(block, k))
    if not blocks:
        return sp.csr_matrix((n, n))
    return sp.csr_matrix(sp.vstack(blocks, format="csr"))


def batches(candidates: sp.csr_matrix, union_max: int, size: int) -> Iterator[np.ndarray[Any, Any]]:
    """The items in batches of at most `size`, each with at most `union_max` items among them
    and their candidates (one beyond a lone item's, if it has that many). Items go in order of
    their most similar candidate, so that a batch's candidates overlap and its union stays
    small."""
    n = candidates.shape[0]
    if n < union_max:
        for start in range(0, n, size):
            yield np.arange(start, min(n, start + size))
        return
    nearest = np.asarray(candidates.argmax(axis=1)).ravel()
    nearest[np.diff(candidates.indptr) == 0] = n
    taken = np.zeros(n, dtype=bool)
    batch: list[int] = []
    union: list[np.ndarray[Any, Any]] = []
    held = 0
    for item in np.lexsort((np.arange(n), nearest)).tolist():
        items = candidates.indices[candidates.indptr[item] : candidates.indptr[item + 1]]
        new = np.append(items[~taken[items]], [item] if not taken[item] else [])
        if batch and (held + len(new) > union_max or len(batch) == size):
            yield np.asarray(batch)
            for part in union:
                taken[part] = False
            batch, union, held = [], [], 0
            new = np.append(items, item)
        batch.append(item)
        new = new.astype(np.int64)
        taken[new] = True
        union.append(new)
        held += len(new)
    if batch:
        yield np.asarray(batch)


def gram_matrix(columns: sp.csc_matrix) -> np.ndarray[Any, np.dtype[np.float32]]:
    """XᵀX of the columns, dense float32 (co-counts: exact up to 2²⁴ users)."""
    return np.asarray((columns.T @ columns).toarray(), dtype=np.float32)


def coordinate_descent(
    systems: np.ndarray[Any, Any],
    right: np.ndarray[Any, Any],
    l1: float,
    nonnegative: bool,
    sweeps: int,
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """argmin_w ½ wᵀAw - bᵀw + l1 ‖w‖₁ (w >= 0 where `nonnegative`) for a stack of symmetric
    positive semidefinite systems A (batch x m x m) and right-hand sides b (batch x m), every
    system's coordinate k updated at once; `residual` is b - Aw throughout. A system stops when
    a sweep moved none of its weights by more than TOLERANCE of its largest; once half of those
    still running have stopped, they leave the stack, so that a few slow ones do not cost a
    whole batch's work per sweep."""
    count, m = right.shape
    out = np.zeros((count, m), dtype=np.float32)
    if not m:
        return out
    running = np.arange(count)
    residual = np.array(right, dtype=np.float32)
    # Coordinate-major, so that coordinate k of every system is one contiguous row.
    weights = np.zeros((m, count), dtype=np.float32)
    diagonal = np.ascontiguousarray(systems[:, np.arange(m), np.arange(m)].T)
    inverse = np.divide(1.0, diagonal, out=np.zeros_like(diagonal), where=diagonal > 0)
    for _ in range(sweeps):
        moved = np.zeros(len(running), dtype=np.float32)
        for k in range(m):
            old = weights[k]
            target = residual[:, k] + diagonal[k] * old
            if nonnegative:
                new = np.maximum(target - l1, 0.0) * inverse[k]
            else:
                new = np.sign(target) * np.maximum(np.abs(target) - l1, 0.0) * inverse[k]
            delta = new - old
            if not delta.any():
                continue
            residual -= systems[:, k, :] * delta[:, None]  # A's row k is its column k
            weights[k] = new
            np.maximum(moved, np.abs(delta), out=moved)
        settled = moved <= TOLERANCE * np.maximum(np.abs(weights).max(axis=0), 1e-30)
        if settled.all():
            break
        if 2 * int(settled.sum()) >= len(running):
            out[running[settled]] = weights[:, settled].T
            left = ~settled
            running, systems, residual = running[left], systems[left], residual[left]
            weights, diagonal, inverse = weights[:, left], diagonal[:, left], inverse[:, left]
    out[running] = weights.T
    return out


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [SLIM]
