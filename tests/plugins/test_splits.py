"""Splits: RecBole's ratio arithmetic, seeded shuffles, leave-one-out and temporal cuts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from plugins.evaluation.splits import (
    TEST,
    TRAIN,
    VALID,
    SplitError,
    leave_one_out,
    normalise_ratios,
    parse_time,
    part_sizes,
    quantile_time,
    random_split,
    ratio_counts,
    temporal_split,
)

RATIOS = (0.8, 0.1, 0.1)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        # int(0.1 * 20) = 2 for valid and test; train = 20 - 4 = 16.
        (20, [16, 2, 2]),
        # int(0.1 * 10) = 1 each; train = 8.
        (10, [8, 1, 1]),
        # int(0.1 * 15) = int(1.5) = 1 each; train = 13 (1.5 is not below 1: no adjustment).
        (15, [13, 1, 1]),
        # int(0.1 * 25) = 2 each; train = 21.
        (25, [21, 2, 2]),
        # int(0.7) = 0 each, train = 7; then, train > 1 and 0 < 0.7 < 1: test + 1, train 6;
        # again for valid: valid + 1, train 5.
        (7, [5, 1, 1]),
        # int(0.2) = 0 each, train = 2; test takes one (train 1); train <= 1 stops the loop.
        (2, [1, 0, 1]),
        # train = 1 <= 1 at once: all in train.
        (1, [1, 0, 0]),
        # int(0.3) = 0 each, train 3 -> test 1 (train 2) -> valid 1 (train 1).
        (3, [1, 1, 1]),
    ],
)
def test_recbole_ratio_counts(n: int, expected: list[int]) -> None:
    assert ratio_counts(n, RATIOS) == expected


def test_ratio_counts_with_no_validation_part() -> None:
    # Ratios 0.8 / 0 / 0.2 on 7: int(1.4) = 1 for test, 0 for valid; train = 6. Valid's share
    # is 0, which is not above 0: it stays empty.
    assert ratio_counts(7, (0.8, 0.0, 0.2)) == [6, 0, 1]


def test_ratios_are_scaled_to_sum_to_one() -> None:
    assert normalise_ratios([8, 1, 1]) == pytest.approx(RATIOS)
    assert normalise_ratios([0.7, 0.0, 0.3]) == pytest.approx((0.7, 0.0, 0.3))
    for bad in (
        [0.8, 0.2],
        [0.8, -0.1, 0.3],
        [0.0, 0.5, 0.5],
        [0.9, 0.1, 0.0],
        [1, float("nan"), 1],
    ):
        with pytest.raises(SplitError):
            normalise_ratios(bad)


def interleaved_users(sizes: list[int]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """User u appears sizes[u] times, the users' interactions interleaved (as times would be)."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(len(sizes)), sizes)
    return np.asarray(rng.permutation(users), dtype=np.int64)


def test_random_split_cuts_each_user_by_the_recbole_counts() -> None:
    sizes = [20, 7, 2, 1, 10, 3]
    users = interleaved_users(sizes)
    parts = random_split(users, RATIOS, seed=1)
    for user, size in enumerate(sizes):
        mine = parts[users == user]
        counts = [int((mine == code).sum()) for code in (TRAIN, VALID, TEST)]
        assert counts == ratio_counts(size, RATIOS), user
    # Every interaction is in exactly one part, and the parts hold them all.
    assert set(np.unique(parts).tolist()) <= {TRAIN, VALID, TEST}
    assert sum(part_sizes(parts).values()) == len(users) == sum(sizes)


def test_random_split_is_seeded() -> None:
    users = interleaved_users([20, 15, 30, 9])
    first = random_split(users, RATIOS, seed=3)
    assert np.array_equal(first, random_split(users, RATIOS, seed=3))
    assert not np.array_equal(first, random_split(users, RATIOS, seed=4))


def test_random_split_is_a_shuffle_not_a_time_cut() -> None:
    # One user with 20 interactions in time order: over ten seeds, the two test interactions
    # are not always the last two.
    users = np.zeros(20, dtype=np.int64)
    tests = {tuple(np.flatnonzero(random_split(users, RATIOS, seed) == TEST)) for seed in range(10)}
    assert len(tests) > 1
    assert all(len(positions) == 2 for positions in tests)


def test_leave_one_out_holds_out_each_users_last_interactions() -> None:
    # User 0: four interactions given out of time order (times 3, 1, 2, 4): test is the one at
    # time 4 (position 3), valid the one at time 3 (position 0).
    # User 1: two interactions: fewer than 3, all train.
    # User 2: three interactions at the same time: the later positions go last.
    users = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2], dtype=np.int64)
    times = np.array([3, 1, 2, 4, 5, 6, 7, 7, 7], dtype=np.float64)
    parts = leave_one_out(users, times)
    assert parts.tolist() == [VALID, TRAIN, TRAIN, TEST, TRAIN, TRAIN, TRAIN, VALID, TEST]


def test_leave_one_out_with_nothing() -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert len(leave_one_out(empty, np.zeros(0))) == 0


def test_temporal_split_cuts_at_a_time() -> None:
    times = np.arange(10, dtype=np.float64)  # 0, 1, …, 9
    # Cut at 7: test = times >= 7 (7, 8, 9). Before it, times 0..6 (7 interactions): the valid
    # share 0.25 starts at position round(0.75 * 7) = 5, time 5: valid = 5, 6; train 0..4.
    parts = temporal_split(times, 7.0, 0.25)
    assert parts.tolist() == [TRAIN] * 5 + [VALID] * 2 + [TEST] * 3
    # No validation share: everything before the cut trains.
    assert temporal_split(times, 7.0, 0.0).tolist() == [TRAIN] * 7 + [TEST] * 3


def test_temporal_split_keeps_equal_times_together() -> None:
    # Times 0, 1, 1, 1, 2: cut at 1 puts all three 1s in the test.
    times = np.array([0, 1, 1, 1, 2], dtype=np.float64)
    assert temporal_split(times, 1.0, 0.0).tolist() == [TRAIN, TEST, TEST, TEST, TEST]


def test_temporal_cut_that_leaves_a_part_empty_is_refused() -> None:
    times = np.arange(10, dtype=np.float64)
    with pytest.raises(SplitError, match="nothing is left to train on"):
        temporal_split(times, 0.0, 0.1)
    with pytest.raises(SplitError, match="test would be empty"):
        temporal_split(times, 10.0, 0.1)


def test_quantile_time() -> None:
    times = np.arange(10, dtype=np.float64)[::-1].copy()  # 9, 8, …, 0: order does not matter
    # 0.9 * 10 = 9 -> the 10th time in order, 9; 0.7 * 10 -> position 7, time 7.
    assert quantile_time(times, 0.9) == 9.0
    assert quantile_time(times, 0.7) == 7.0
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(SplitError):
            quantile_time(times, bad)


def test_parse_time() -> None:
    # 1,700,000,000 s after the epoch is 2023-11-14 22:13:20 UTC.
    assert parse_time("1700000000") == 1_700_000_000
    assert parse_time("2023-11-14T22:13:20") == 1_700_000_000
    assert parse_time("2023-11-14T23:13:20+01:00") == 1_700_000_000
    assert parse_time("2023-11-15") == 1_700_000_000 + 6_400  # midnight: 1h46m40s later
    with pytest.raises(SplitError, match="neither epoch seconds nor an ISO 8601 time"):
        parse_time("yesterday")
