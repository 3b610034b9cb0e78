"""The stacker's features: what it knows of each (user, candidate) pair of a pool, computed the
same way when it learns and when it serves.

For a batch of histories, each member's scores of the candidates are standardised per row (the
z-score of plugins.builtin.ensemble, its statistics taken without the user's own items, which
the server leaves out of the candidates); the *pool* of a row is the union of each member's
`depth` best candidates (the user's own items left out). Each pooled pair gets

- per member: its z-score (missing where the member cannot score the item), its rank among
  the member's best (0 the best; `depth` beyond them) and its margin (its z-score less that of
  the member's 10th best);
- of the item, from the training data (plugins.builtin.stacker_items): the log of its
  interactions, and its age (days from its first interaction to the newest training one);
- of the pair, from the history's times (missing where it has none): how many days after the
  user's latest interaction the item first appeared, how many days before the user's first
  interaction it was last interacted with, how often it was interacted with between the two
  (log, and as a share of its interactions) and in the week before the latest: whether the item
  was around, and popular, while the user was; and how much more popular the item is than the
  user's items are on average;
- of the user: the log of the history's length, the mean log popularity of its items;
- optionally the item's properties, and each property's affinity to the user's items.

Missing values are NaN, which LightGBM treats as missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plugins.algorithm import UserHistory
from plugins.builtin.ensemble import FLOOR
from plugins.builtin.stacker_items import ItemSide

Array = np.ndarray[Any, Any]
DAY = 86_400.0
RECENT_DAYS = 7.0
"""The window before the user's latest interaction that an item's recent popularity counts."""
PER_MEMBER = ("z", "rank", "margin")
CUTOFF = 10
"""A member's margin is an item's z-score less that of the member's 10th best item."""
PAIR = (
    "item_log_count",
    "item_age_days",
    "item_after_user_days",
    "item_before_user_days",
    "item_popularity_gap",
    "item_window_log_count",
    "item_window_share",
    "item_recent_log_count",
)
USER = ("user_log_activity", "user_mean_log_count")


def feature_names(n_members: int, side: ItemSide) -> list[str]:
    """The features' names, in column order (safe for LightGBM: no JSON characters)."""
    names = [f"member{m}_{what}" for m in range(n_members) for what in PER_MEMBER]
    names += [*PAIR, *USER]
    names += [f"property{c}" for c in range(len(side.sources))]
    names += [f"affinity{s}" for s in range(len(side.names))]
    return names


def categorical_columns(n_members: int, side: ItemSide) -> list[int]:
    """The feature columns that hold category codes."""
    base = n_members * len(PER_MEMBER) + len(PAIR) + len(USER)
    return [base + c for c in side.categorical]


@dataclass(frozen=True)
class Pools:
    """A batch's pooled pairs (sorted by row, then item), their features, and the equal-weight
    blend of the members' z-scores over every item (what ranks the candidates outside the pool:
    above 0 where a member scores the item, -inf elsewhere)."""

    rows: Array
    items: Array
    features: Array
    blend: Array


def history_cells(histories: Sequence[UserHistory], n_items: int) -> tuple[Array, Array]:
    """(row, item) of each history's known items."""
    rows, items = [], []
    for row, history in enumerate(histories):
        known = np.unique(history.items[(history.items >= 0) & (history.items < n_items)])
        rows.append(np.full(len(known), row, dtype=np.int64))
        items.append(known.astype(np.int64))
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows), np.concatenate(items)


def standardise(scores: Array, rows: Array, items: Array) -> Array:
    """Each row's finite scores as z-scores (float32, -inf stays -inf), mean and deviation
    taken without the (rows, items) cells; 0 where a row's counted scores are all equal."""
    scores = np.asarray(scores, dtype=np.float32)
    n_rows = len(scores)
    finite = np.isfinite(scores)
    left = finite[rows, items]  # the cells left out of the statistics, where finite
    count = finite.sum(axis=1) - np.bincount(rows[left], minlength=n_rows)
    count = np.maximum(count, 1)
    total = np.sum(scores, axis=1, where=finite, dtype=np.float64)
    total -= np.bincount(rows[left], scores[rows[left], items[left]], minlength=n_rows)
    mean = (total / count).astype(np.float32)[:, None]
    centred = scores - mean  # -inf stays -inf
    # Squared in float64: float32 squares of tiny scores (1e-26: iALS's for a user it knows
    # little of) underflow to 0, as if the row had no spread.
    squares = np.sum(np.square(centred, dtype=np.float64), axis=1, where=finite)
    squares -= np.bincount(
        rows[left], np.square(centred[rows[left], items[left]], dtype=np.float64), n_rows
    )
    spread = np.sqrt(np.maximum(squares, 0.0) / count).astype(np.float32)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(spread > 0, centred / spread, np.where(finite, np.float32(0.0), -np.inf))
    return np.asarray(z, dtype=np.float32)


def blend(zs: Sequence[Array]) -> Array:
    """The equal-weight sum of the members' z-scores (ensemble.combine's z-score blend, in
    float32): an entry a member cannot score counts at that member's lowest z-score of the
    row; shifted to be above 0 where any member scores, -inf elsewhere."""
    total = np.zeros(zs[0].shape, dtype=np.float32)
    scored = np.zeros(zs[0].shape, dtype=np.bool_)
    for z in zs:
        finite = np.isfinite(z)
        scored |= finite
        lowest = np.min(z, axis=1, where=finite, initial=np.inf, keepdims=True)
        total += np.where(finite, z, np.where(np.isfinite(lowest), lowest, 0.0))
    lowest = np.min(total, axis=1, where=scored, initial=np.inf, keepdims=True)
    total -= np.where(np.isfinite(lowest), lowest, 0.0)
    total += np.float32(FLOOR)
    total[~scored] = -np.inf
    return total


def pools(
    raw: Sequence[Array], histories: Sequence[UserHistory], depth: int, side: ItemSide
) -> Pools:
    """The pools and features of a batch, from each member's scores (rows x items, -inf where
    it cannot score or the item is no candidate)."""
    n_rows, n_items = raw[0].shape
    hist_rows, hist_items = history_cells(histories, n_items)
    zs = [standardise(scores, hist_rows, hist_items) for scores in raw]
    k = min(depth, n_items)
    pooled = np.zeros((n_rows, n_items), dtype=np.bool_)
    ranks, cutoffs = [], []
    for z in zs:
        saved = z[hist_rows, hist_items]
        z[hist_rows, hist_items] = -np.inf  # the user's own items are no candidates to pool
        if k < n_items:
            top = np.argpartition(-z, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(n_items), (n_rows, n_items))
        values = np.take_along_axis(z, top, axis=1)
        order = np.lexsort((top, -values), axis=1)  # best first; ties by the lower item
        top = np.take_along_axis(top, order, axis=1)
        values = np.take_along_axis(values, order, axis=1)
        scored = np.isfinite(values)
        where = np.broadcast_to(np.arange(n_rows)[:, None], top.shape)
        pooled[where[scored], top[scored]] = True
        rank = np.full((n_rows, n_items), float(depth), dtype=np.float32)
        positions = np.broadcast_to(np.arange(k, dtype=np.float32), top.shape)
        rank[where[scored], top[scored]] = positions[scored]
        ranks.append(rank)
        cutoffs.append(values[:, min(CUTOFF, k) - 1] if k else np.full(n_rows, -np.inf))
        z[hist_rows, hist_items] = saved
    rows, items = np.nonzero(pooled)
    features = np.empty((len(rows), len(feature_names(len(zs), side))), dtype=np.float32)
    column = 0
    for z, rank, cutoff in zip(zs, ranks, cutoffs, strict=True):
        values = np.where(np.isfinite(z[rows, items]), z[rows, items], np.nan)
        features[:, column] = values
        features[:, column + 1] = rank[rows, items]
        line = cutoff[rows]
        features[:, column + 2] = np.where(np.isfinite(line), values - line, np.nan)
        column += len(PER_MEMBER)
    known = items < side.n_items
    at = np.where(known, items, 0)
    first = np.where(known, side.first_seen[at], np.nan)
    last = np.where(known, side.last_seen[at], np.nan)
    popularity = np.where(known, side.log_count[at], 0.0)
    user_first, user_last, activity = _user_times(histories)
    inside = hist_items < side.n_items
    held = np.bincount(hist_rows[inside], minlength=n_rows)
    popular = np.bincount(hist_rows[inside], side.log_count[hist_items[inside]], n_rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        mainstream = popular / held
    features[:, column] = popularity
    features[:, column + 1] = (side.reference - first) / DAY
    features[:, column + 2] = (first - user_last[rows]) / DAY
    features[:, column + 3] = (user_first[rows] - last) / DAY
    features[:, column + 4] = popularity - mainstream[rows]
    window = side.interactions_between(items, user_first[rows], user_last[rows])
    recent = side.interactions_between(items, user_last[rows] - RECENT_DAYS * DAY, user_last[rows])
    timed = np.isfinite(user_last[rows])
    features[:, column + 5] = np.where(timed, np.log1p(window), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        features[:, column + 6] = np.where(timed, window / np.expm1(popularity), np.nan)
    features[:, column + 7] = np.where(timed, np.log1p(recent), np.nan)
    features[:, column + 8] = activity[rows]
    features[:, column + 9] = mainstream[rows]
    column += len(PAIR) + len(USER)
    width = side.properties.shape[1]
    if width:
        features[:, column : column + width] = side.column_values(items)
        column += width
    if side.names:
        features[:, column:] = side.affinities((hist_rows, hist_items), n_rows, rows, items)
    return Pools(rows, items, features, blend(zs))


def _user_times(histories: Sequence[UserHistory]) -> tuple[Array, Array, Array]:
    """Each history's first and latest time (NaN without times) and log(1 + its length)."""
    first = np.full(len(histories), np.nan)
    last = np.full(len(histories), np.nan)
    for row, history in enumerate(histories):
        if len(history.timestamps):
            first[row] = float(np.min(history.timestamps))
            last[row] = float(np.max(history.timestamps))
    activity = np.log1p(np.array([len(h) for h in histories], dtype=np.float64))
    return first, last, activity.astype(np.float32)
