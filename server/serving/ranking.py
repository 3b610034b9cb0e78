"""Ranking over score vectors: pure numpy functions that the pipeline composes.

Ranking keys: a relevant candidate (by its model's `relevance_threshold`) gets a key in (2, 3]
in the order of its score (`relevance_keys`), so that it ranks above every padded one (a
candidate without evidence, ranked by popularity below 1.01); boosters then multiply the keys.
Ties at the cut keep the lower index, so a ranking is the same however it was computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]

PADDED_CEILING = 1.02
"""Above any padded candidate's key before boosters (0.01 + popularity / (peak + 1) < 1.01)."""


def top_positions(indexes: Array, keys: Array, count: int) -> Array:
    """Positions (into `indexes` and `keys`) of the `count` largest keys, best first; where keys
    tie, the lower index first. `indexes` ascend."""
    if count <= 0:
        return np.empty(0, dtype=np.int64)
    if len(keys) > count:
        cut = -np.partition(-keys, count - 1)[count - 1]
        above = keys > cut
        tied = np.flatnonzero(keys == cut)[: count - int(np.count_nonzero(above))]
        positions = np.union1d(np.flatnonzero(above), tied)
    else:
        positions = np.arange(len(keys))
    order = np.lexsort((indexes[positions], -keys[positions]))
    return positions[order]


def top(keys: Array, count: int) -> Array:
    """Indexes of the `count` largest finite keys of a dense vector, best first."""
    finite = np.flatnonzero(np.isfinite(keys))
    return finite[top_positions(finite, keys[finite], count)]


def relevance_keys(values: Array) -> Array:
    """Keys in (2, 3] for relevant candidates' finite scores, in their order: 2 + score / best
    where every score is above 0 (evidence that counts up from nothing), else the scores
    spread linearly from 2.01 (the lowest) to 3 (the best), whatever their sign."""
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if low > 0:
        return 2.0 + values / high
    span = high - low
    if span <= 0:
        return np.full(len(values), 3.0)
    return 2.01 + 0.99 * (values - low) / span


def relevant_top(
    relevant: Array,
    values: Array,
    boosts: Sequence[tuple[Array, float, float]],
    pool: int,
    padded: bool,
) -> tuple[Array, Array] | None:
    """The top `pool` candidates and their keys, from the relevant candidates alone (ascending
    indexes); None where padded candidates may rank among them.

    `boosts` are the booster vectors with their minimum and maximum. With positive boosters, a
    padded candidate's key stays below PADDED_CEILING times the product of the maxima: when the
    pool-th best relevant key is above that (or nothing is padded), the top is that of the
    relevant candidates alone, and padding (popularity over every candidate) need not be
    computed. The pick and the keys are those of ranking every candidate.
    """
    if not len(relevant) or not np.isfinite(values).all():
        return None
    keys = relevance_keys(values)
    ceiling = PADDED_CEILING
    for array, low, high in boosts:
        if not (low > 0 and np.isfinite(high)):
            return None
        ceiling *= high
        keys = keys * array[relevant]
    if padded and len(relevant) < pool:
        return None
    positions = top_positions(relevant, keys, pool)
    chosen, chosen_keys = relevant[positions], keys[positions]
    if padded and not float(chosen_keys[-1]) > ceiling:
        return None
    return chosen, chosen_keys


def normalized(scores: Array) -> Array:
    """Finite scores scaled to [0, 1]; others kept."""
    finite = np.isfinite(scores)
    if not finite.any():
        return scores
    low, high = float(scores[finite].min()), float(scores[finite].max())
    span = high - low or 1.0
    return np.where(finite, (scores - low) / span, scores)


def rotate(keys: Array, shown: Mapping[int, int], rate: float) -> Array:
    """Keys lowered for candidates shown lately (index -> times shown)."""
    if not shown:
        return keys
    keys = keys.copy()
    for index, times in shown.items():
        if index < len(keys) and np.isfinite(keys[index]):
            # Each recent showing lowers the item below the ones not shown, in proportion.
            keys[index] = keys[index] * (1.0 - rate) ** times - 3.0 * rate
    return keys


def maximal_marginal_relevance(
    pool: Array, pool_keys: Array, similarity: Array, diversity: float, count: int
) -> Array:
    """`count` of the pool (best first), each chosen for its key less `diversity` times its
    similarity to those chosen before it. `similarity` is (len(pool), len(pool))."""
    sims = np.where(np.isfinite(similarity), similarity, 0.0)
    peak = float(sims.max()) if sims.size else 0.0
    if peak > 0:
        sims = sims / peak
    relevance = (pool_keys - pool_keys.min()) / (np.ptp(pool_keys) or 1.0)
    selected = [0]
    remaining = list(range(1, len(pool)))
    while remaining and len(selected) < count:
        penalty = sims[np.ix_(remaining, selected)].max(axis=1)
        marginal = (1 - diversity) * relevance[remaining] - diversity * penalty
        best = remaining[int(np.argmax(marginal))]
        selected.append(best)
        remaining.remove(best)
    return pool[selected]
