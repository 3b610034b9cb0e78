"""Splits of a snapshot's interactions into train, validation and test parts.

Each function returns one part code per interaction (TRAIN, VALID or TEST), in the order of the
arrays it was given, so that the caller can mask the snapshot's arrays with `parts == TRAIN`.

- `random_split`: per user, shuffled, cut by ratio exactly as RecBole 1.2.1 cuts
  (`Dataset.split_by_ratio` with `group_by=user` after a shuffle, the "RO" order);
- `leave_one_out`: each user's last interaction is the test, the one before it the validation;
- `temporal_split`: one global cut in time; what follows it is the test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2
PART_NAMES = ("train", "valid", "test")

Int64s = np.ndarray[Any, np.dtype[np.int64]]
Floats = np.ndarray[Any, np.dtype[np.float64]]
Parts = np.ndarray[Any, np.dtype[np.uint8]]


class SplitError(ValueError):
    """Split settings that cannot be used, or a split that leaves a part it needs empty."""


def normalise_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Three ratios (train, valid, test) scaled to sum to 1, as RecBole scales them."""
    if len(ratios) != 3:
        raise SplitError(f"a split is three ratios (train, valid, test), not {len(ratios)}")
    if any(not math.isfinite(r) or r < 0 for r in ratios):
        raise SplitError(f"split ratios must be numbers >= 0, not {list(ratios)}")
    total = sum(ratios)
    if ratios[0] <= 0 or ratios[2] <= 0:
        raise SplitError("the train and test ratios of a split must be above 0")
    train, valid, test = (r / total for r in ratios)
    return train, valid, test


def ratio_counts(total: int, ratios: Sequence[float]) -> list[int]:
    """How many of a user's `total` interactions go to each part: RecBole 1.2.1's
    `_calcu_split_ids`, which floors every part but the first, then moves one interaction from
    the first part to each later part whose share is below one interaction (while the first part
    keeps more than one)."""
    counts = [int(r * total) for r in ratios]
    counts[0] = total - sum(counts[1:])
    for i in range(1, len(ratios)):
        if counts[0] <= 1:
            break
        if 0 < ratios[-i] * total < 1:
            counts[-i] += 1
            counts[0] -= 1
    return counts


def random_split(users: Int64s, ratios: Sequence[float], seed: int) -> Parts:
    """Per user, the interactions in a seeded random order, cut by `ratio_counts`.

    Like RecBole, the whole interaction list is shuffled once, then grouped by user (keeping the
    shuffled order within each user)."""
    ratios = normalise_ratios(ratios)
    n = len(users)
    order = np.random.default_rng(seed).permutation(n)
    order = order[np.argsort(users[order], kind="stable")]
    grouped = users[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    ends = np.r_[starts[1:], n]
    parts = np.zeros(n, dtype=np.uint8)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        train, valid, _ = ratio_counts(end - start, ratios)
        # Positions in the shuffled, grouped order -> the interactions they stand for.
        parts[order[start + train : start + train + valid]] = VALID
        parts[order[start + train + valid : end]] = TEST
    return parts


def leave_one_out(users: Int64s, timestamps: Floats) -> Parts:
    """Each user's last interaction (by time; the later position breaks ties) is the test, the
    one before it the validation; users with fewer than 3 interactions keep all in train."""
    n = len(users)
    order = np.lexsort((np.arange(n), timestamps, users))
    grouped = users[order]
    last = np.r_[grouped[1:] != grouped[:-1], True] if n else np.zeros(0, dtype=bool)
    counts = np.bincount(users, minlength=int(users.max()) + 1 if n else 0)
    eligible = counts[grouped] >= 3
    parts = np.zeros(n, dtype=np.uint8)
    test = np.flatnonzero(last & eligible)
    parts[order[test]] = TEST
    parts[order[test - 1]] = VALID
    return parts


def parse_time(text: str) -> float:
    """Epoch seconds from a number or an ISO 8601 date or time (UTC where it names no zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SplitError(f"{text!r} is neither epoch seconds nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def quantile_time(timestamps: Floats, quantile: float) -> float:
    """The time before which a `quantile` share of the interactions lie: the timestamp of the
    interaction at that position in time order."""
    if not 0 < quantile < 1:
        raise SplitError(f"a time quantile must be between 0 and 1 (exclusive), not {quantile}")
    if not len(timestamps):
        raise SplitError("there are no interactions to cut")
    ordered = np.sort(timestamps)
    return float(ordered[min(int(quantile * len(ordered)), len(ordered) - 1)])


def temporal_split(timestamps: Floats, cut: float, valid_share: float) -> Parts:
    """Interactions at or after `cut` are the test; of those before it, the latest `valid_share`
    (by time, at or after the time at that position) the validation; the rest train."""
    if not 0 <= valid_share < 1:
        raise SplitError(f"the validation share must be in [0, 1), not {valid_share}")
    parts = np.zeros(len(timestamps), dtype=np.uint8)
    before = timestamps < cut
    parts[~before] = TEST
    if not before.any():
        raise SplitError("no interaction lies before the cut: nothing is left to train on")
    if not (~before).any():
        raise SplitError("no interaction lies at or after the cut: the test would be empty")
    if valid_share > 0:
        earlier = np.sort(timestamps[before])
        position = round((1 - valid_share) * len(earlier))
        if position < len(earlier):
            parts[before & (timestamps >= earlier[position])] = VALID
    if not (parts == TRAIN).any():
        raise SplitError("the validation takes every interaction before the cut")
    return parts


def part_sizes(parts: Parts) -> dict[str, int]:
    """How many interactions each part holds, by name."""
    counts = np.bincount(parts, minlength=3)
    return {name: int(counts[code]) for code, name in enumerate(PART_NAMES)}
