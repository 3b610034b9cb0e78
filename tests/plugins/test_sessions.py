"""Sessions for the next-item models: cut at pauses, GRU4Rec's session-parallel mini-batches
(slots, resets, every pair once) and its negatives by popularity^alpha."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from plugins.algorithm import UserHistory
from plugins.builtin.sessions import (
    NegativeSampler,
    latest_session,
    popularity_distribution,
    recent_items,
    session_parallel,
    sessions,
)

# -- sessions ---------------------------------------------------------------------------------


def test_sessions_are_cut_where_the_user_paused() -> None:
    # User 0: 0 10 20 | 500 510 | 2000 (alone: dropped); user 1: 5 | 900 (both alone);
    # user 2: nothing; user 3: 0 50 100.
    times = np.array([0, 10, 20, 500, 510, 2000, 5, 900, 0, 50, 100], dtype=np.float64)
    indptr = np.array([0, 6, 8, 8, 11], dtype=np.int64)
    starts, ends = sessions(indptr, times, gap=100.0)
    assert starts.tolist() == [0, 3, 8]
    assert ends.tolist() == [3, 5, 11]
    # A gap of 0 (or below): each user's whole history is one session.
    for gap in (0.0, -1.0):
        starts, ends = sessions(indptr, times, gap=gap)
        assert starts.tolist() == [0, 6, 8]
        assert ends.tolist() == [6, 8, 11]
    # A gap exactly as long as the pause does not cut.
    starts, ends = sessions(indptr, times, gap=480.0)
    assert starts.tolist() == [0, 8]


def test_serving_reads_the_latest_session() -> None:
    history = UserHistory(
        np.array([1, 2, 3, 4, 99, 5]), timestamps=np.array([0.0, 10, 5000, 5010, 5020, 5030])
    )
    assert latest_session(history, 1800.0) == 2
    assert latest_session(history, 0.0) == 0
    # Unknown items (99 here) are left out, and the latest `limit` kept.
    assert recent_items(history, 10, 1800.0, 50).tolist() == [3, 4, 5]
    assert recent_items(history, 10, 1800.0, 2).tolist() == [4, 5]
    assert recent_items(history, 10, 0.0, 50).tolist() == [1, 2, 3, 4, 5]
    # A history without times is one session; of_items' times (one second apart) do not cut.
    assert recent_items(UserHistory(np.array([1, 2])), 10, 1800.0, 50).tolist() == [1, 2]
    assert latest_session(UserHistory.of_items([1, 2, 3]), 0.5) == 2
    assert latest_session(UserHistory.of_items([1, 2, 3]), 1800.0) == 0


# -- session-parallel mini-batches ------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 2, 3, 10])
def test_session_parallel_batches(batch_size: int) -> None:
    lengths = [3, 5, 2, 4, 2, 6, 3]
    ends = np.cumsum(lengths).astype(np.int64)
    starts = ends - np.array(lengths)
    order = np.array([4, 0, 6, 2, 1, 5, 3], dtype=np.int64)
    session_of = np.repeat(np.arange(len(lengths)), lengths)
    pairs: list[int] = []
    slots: np.ndarray[Any, Any] = np.zeros(0, dtype=np.int64)  # the previous step's inputs
    first_sessions: list[int] = []
    for number, step in enumerate(session_parallel(starts, ends, order, batch_size)):
        if step.keep is not None:
            assert len(step.keep) == len(slots)
            assert not step.keep.all()
            slots = slots[step.keep]
        assert len(step.inputs) <= batch_size
        if number == 0:
            assert step.reset.all()
        else:
            assert len(step.inputs) == len(slots)
            # A slot either goes on with its session (the next position, state kept) or has
            # its state reset exactly where a new session starts.
            goes_on = step.inputs == slots + 1
            np.testing.assert_array_equal(step.reset, ~goes_on)
        np.testing.assert_array_equal(step.reset, np.isin(step.inputs, starts))
        first_sessions += session_of[step.inputs[step.reset]].tolist()
        # Each input has its target, the next position, in the same session.
        assert (session_of[step.inputs + 1] == session_of[step.inputs]).all()
        pairs += step.inputs.tolist()
        slots = step.inputs
    # Every (item, next item) pair of every session once, the sessions taken in order.
    expected = [p for s, e in zip(starts, ends, strict=True) for p in range(s, e - 1)]
    assert sorted(pairs) == expected
    assert first_sessions == order.tolist()


def test_no_sessions_no_steps() -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert list(session_parallel(empty, empty, empty, 4)) == []


# -- negatives ----------------------------------------------------------------------------------


def test_negatives_are_drawn_by_popularity_to_the_alpha() -> None:
    items = np.repeat(np.arange(5), [1, 4, 9, 16, 0])  # item 4 never seen
    distribution = popularity_distribution(items, 6, alpha=0.5)
    np.testing.assert_allclose(distribution, [0.1, 0.2, 0.3, 0.4, 0.0, 0.0])
    sampler = NegativeSampler(distribution, 500, np.random.default_rng(3), chunk=7)
    drawn = np.concatenate([sampler.draw() for _ in range(40)])  # over several chunks
    assert len(drawn) == 20_000
    shares = np.bincount(drawn, minlength=6) / len(drawn)
    np.testing.assert_allclose(shares, distribution, atol=0.01)
    # Alpha 0: uniform over the items seen.
    np.testing.assert_allclose(popularity_distribution(items, 6, 0.0), [0.25] * 4 + [0.0] * 2)
    assert len(NegativeSampler(distribution, 0, np.random.default_rng(0)).draw()) == 0
