"""Top-K ranking metrics over full rankings, per user.

Each function takes `ranked` (users x K: item indexes, best first, -1 where a list is shorter)
and `relevant` (the held-out items of the same users, one array each) and returns one value per
user; the harness averages them over the users that have held-out items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


def hits(ranked: Array, relevant: Sequence[Array]) -> Array:
    """users x K booleans: whether the item at each rank is relevant."""
    out = np.zeros(ranked.shape, dtype=bool)
    for row, items in enumerate(relevant):
        out[row] = np.isin(ranked[row], items) & (ranked[row] >= 0)
    return out


def recall_at(ranked: Array, relevant: Sequence[Array], k: int) -> Array:
    """Relevant items in the top k, over the number of relevant items (RecBole's recall)."""
    found = hits(ranked[:, :k], relevant).sum(axis=1)
    sizes = np.array([len(items) for items in relevant], dtype=np.float64)
    return np.asarray(np.divide(found, sizes, out=np.zeros(len(sizes)), where=sizes > 0))


def precision_at(ranked: Array, relevant: Sequence[Array], k: int) -> Array:
    """Relevant items in the top k, over k."""
    return np.asarray(hits(ranked[:, :k], relevant).sum(axis=1) / k)


def hit_at(ranked: Array, relevant: Sequence[Array], k: int) -> Array:
    """1 where any relevant item is in the top k."""
    return np.asarray(hits(ranked[:, :k], relevant).any(axis=1), dtype=np.float64)


def mrr_at(ranked: Array, relevant: Sequence[Array], k: int) -> Array:
    """1 / rank of the first relevant item in the top k (0 where none is)."""
    found = hits(ranked[:, :k], relevant)
    first = found.argmax(axis=1)
    return np.where(found.any(axis=1), 1.0 / (first + 1.0), 0.0)


def ndcg_at(ranked: Array, relevant: Sequence[Array], k: int) -> Array:
    """Binary-relevance NDCG@k: DCG of the top k over the ideal DCG of min(k, |relevant|) hits."""
    found = hits(ranked[:, :k], relevant)
    discounts = 1.0 / np.log2(np.arange(2, found.shape[1] + 2))
    dcg = (found * discounts).sum(axis=1)
    ideal_counts = np.minimum([len(items) for items in relevant], found.shape[1])
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[ideal_counts]
    return np.asarray(np.divide(dcg, ideal, out=np.zeros(len(dcg)), where=ideal > 0))


def item_coverage(ranked: Array, n_items: int) -> float:
    """The share of all items that appear in at least one top list."""
    shown = np.unique(ranked[ranked >= 0])
    return len(shown) / n_items if n_items else 0.0


METRICS = {
    "recall": recall_at,
    "ndcg": ndcg_at,
    "hit": hit_at,
    "mrr": mrr_at,
    "precision": precision_at,
}
"""The per-user metrics by name (item coverage is one figure for the whole ranking)."""


def top_k(scores: Array, k: int, excluded: Sequence[Array] | None = None) -> Array:
    """users x k: the indexes of each row's k best scores, best first (equal scores: lower index
    first, within the list), leaving out `excluded[row]` (the user's training items) and
    non-finite scores; -1 pads a row with fewer than k."""
    scores = np.array(scores, dtype=np.float64)
    if excluded is not None:
        for row, items in enumerate(excluded):
            scores[row, items] = -np.inf
    scores[~np.isfinite(scores)] = -np.inf
    rows, columns = scores.shape
    k = min(k, columns)
    if k <= 0:
        return np.zeros((rows, 0), dtype=np.int64)
    if k < columns:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        # argpartition picks any of the items tied with the k-th best score; where some of them
        # were left out, take the lowest indexes instead, so that ties are broken the same way
        # inside and at the edge of the list.
        kth = part_scores.min(axis=1)
        tied = (scores == kth[:, None]).sum(axis=1)
        tied_inside = (part_scores == kth[:, None]).sum(axis=1)
        for spilled in np.flatnonzero(tied > tied_inside):
            line, edge = scores[spilled], kth[spilled]
            above = np.flatnonzero(line > edge)
            equal = np.flatnonzero(line == edge)[: k - above.size]
            part[spilled] = np.concatenate([above, equal])
    else:
        part = np.tile(np.arange(columns), (rows, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    # A stable sort of the part by score (the index breaks ties).
    order = np.lexsort((part, -part_scores), axis=1)
    ranked = np.take_along_axis(part, order, axis=1)
    ranked_scores = np.take_along_axis(part_scores, order, axis=1)
    return np.where(np.isfinite(ranked_scores), ranked, -1)
