"""Sessions for the next-item models: users' time-ordered interactions cut where the user paused,
GRU4Rec's session-parallel mini-batches over them (also walked in parts, shard after shard,
the slots carried from one part to the next), and the histories a model is validated on.

Plain numpy: the plugins that use these import torch only when they build a network.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plugins.algorithm import UserHistory
from plugins.training import TrainingData

Int64s = np.ndarray[Any, np.dtype[np.int64]]
Bools = np.ndarray[Any, np.dtype[np.bool_]]


def sessions(
    indptr: Int64s, timestamps: np.ndarray[Any, np.dtype[np.float64]], gap: float
) -> tuple[Int64s, Int64s]:
    """The sessions of every user as [start, end) positions into the interaction arrays, in
    position order: each user's interactions (`indptr[u]:indptr[u + 1]`, oldest first) cut
    wherever two consecutive ones lie more than `gap` seconds apart (`gap` <= 0: each user's
    whole history is one session). Sessions of one interaction are left out: they hold no
    (item, next item) pair to learn from."""
    n = int(indptr[-1]) if len(indptr) else 0
    begins = np.zeros(n, dtype=np.bool_)
    firsts = indptr[:-1][np.diff(indptr) > 0]
    begins[firsts] = True
    if gap > 0 and n > 1:
        begins[1:] |= np.diff(timestamps[:n]) > gap
    starts = np.flatnonzero(begins).astype(np.int64)
    ends = np.append(starts[1:], n).astype(np.int64)
    long_enough = ends - starts >= 2
    return starts[long_enough], ends[long_enough]


def latest_session(history: UserHistory, gap: float) -> int:
    """Where the latest session of a history begins: after its last pause of more than `gap`
    seconds (0 with `gap` <= 0, or where the history has no timestamps for its items)."""
    times = history.timestamps
    if gap <= 0 or len(times) != len(history.items) or len(times) < 2:
        return 0
    pauses = np.flatnonzero(np.diff(times) > gap)
    return int(pauses[-1]) + 1 if len(pauses) else 0


def recent_items(history: UserHistory, n_items: int, gap: float, limit: int) -> Int64s:
    """The items a sequence model reads for a history: those of its latest session (see
    `latest_session`) that the model knows (0 <= item < n_items), the last `limit` of them."""
    items = np.asarray(history.items[latest_session(history, gap) :], dtype=np.int64)
    items = items[(items >= 0) & (items < n_items)]
    return items[-limit:] if limit > 0 else items[:0]


@dataclass(frozen=True)
class Step:
    """One step of session-parallel training, over the slots that are still busy.

    Before the step, the caller first keeps the hidden state of the slots in `keep` (a mask
    over the previous step's slots; None: all of them), then zeroes it where `reset` (a mask
    over this step's slots): there a new session begins. `inputs` are the positions of each
    slot's current interaction; its target is the next one, at `inputs + 1`."""

    inputs: Int64s
    reset: Bools
    keep: Bools | None


@dataclass
class Pause:
    """Asks `session_parallel` to pause rather than drain (for a walk that another follows):
    once slots finish and too few sessions are left to take for all of them, it stops and
    records here the slots still busy (`positions` of their next input, their sessions'
    `ends`, and which of the last step's slots they are: `busy`) and the sessions never taken
    (`untaken`, indexes into starts/ends)."""

    paused: bool = False
    positions: Int64s = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ends: Int64s = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    busy: Bools = field(default_factory=lambda: np.zeros(0, dtype=np.bool_))
    untaken: Int64s = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def carried(self, items: Int64s, starts: Int64s, ends: Int64s) -> Carried:
        """What is left of the paused walk (over `items`), for the next walk to take first."""
        parts = [items[p:e] for p, e in zip(self.positions, self.ends, strict=True)]
        parts += [items[starts[s] : ends[s]] for s in self.untaken]
        return Carried.of(parts, len(self.positions))


@dataclass(frozen=True)
class Carried:
    """Sessions, or what is left of them, that a paused walk hands to the next: their items
    back to back, `lengths[k]` each; the first `busy` were under way (their hidden state goes
    on), the others were never taken."""

    items: Int64s
    lengths: Int64s
    busy: int

    @classmethod
    def of(cls, parts: Sequence[Int64s], busy: int = 0) -> Carried:
        """Sessions' items, one array each, the first `busy` under way."""
        lengths = np.array([len(part) for part in parts], dtype=np.int64)
        joined = np.concatenate(parts) if len(parts) else np.zeros(0, dtype=np.int64)
        return cls(joined.astype(np.int64), lengths, busy)

    def before(
        self, items: Int64s, starts: Int64s, ends: Int64s, order: Int64s
    ) -> tuple[Int64s, Int64s, Int64s, Int64s]:
        """A walk's items, sessions and order with these sessions first (in order)."""
        offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=offsets[1:])
        shift, count = len(self.items), len(self.lengths)
        return (
            np.concatenate([self.items, items]).astype(np.int64),
            np.concatenate([offsets[:-1], starts + shift]).astype(np.int64),
            np.concatenate([offsets[1:], ends + shift]).astype(np.int64),
            np.concatenate([np.arange(count), np.asarray(order) + count]).astype(np.int64),
        )


def session_parallel(
    starts: Int64s,
    ends: Int64s,
    order: Int64s,
    batch_size: int,
    *,
    carried: int = 0,
    pause: Pause | None = None,
) -> Iterator[Step]:
    """GRU4Rec's session-parallel mini-batches (Hidasi et al., ICLR 2016): `batch_size` slots
    each walk through one session at a time, in `order` (indexes into `starts`/`ends`), one
    (item, next item) pair per step; a slot whose session has no next pair takes the next
    session in order, and its hidden state starts over. Once no session is left to take, the
    finished slots drop out and the batch shrinks, until every pair was produced once.

    For a walk in parts (shard after shard): the first `carried` sessions of `order` go on from
    the previous part (their first step does not reset the state), and with `pause` the walk
    stops where it would start to shrink, leaving the rest in `pause` (see Pause)."""
    order = np.asarray(order, dtype=np.int64)
    taken = min(batch_size, len(order))
    if taken == 0:
        return
    position = starts[order[:taken]].copy()
    end = ends[order[:taken]].copy()
    reset = np.ones(taken, dtype=np.bool_)
    reset[:carried] = False
    keep: Bools | None = None
    while True:
        yield Step(position.copy(), reset, keep)
        position += 1
        finished = position + 1 >= end
        if not finished.any():
            reset, keep = np.zeros(len(position), dtype=np.bool_), None
            continue
        slots = np.flatnonzero(finished)
        if pause is not None and len(order) - taken < len(slots):
            pause.paused, pause.busy, pause.untaken = True, ~finished, order[taken:]
            pause.positions, pause.ends = position[~finished], end[~finished]
            return
        refill = slots[: len(order) - taken]
        chosen = order[taken : taken + len(refill)]
        taken += len(refill)
        position[refill], end[refill] = starts[chosen], ends[chosen]
        keep_mask = np.ones(len(position), dtype=np.bool_)
        keep_mask[slots[len(refill) :]] = False
        reset = np.zeros(len(position), dtype=np.bool_)
        reset[refill] = True
        position, end, reset = position[keep_mask], end[keep_mask], reset[keep_mask]
        if not len(position):
            return
        keep = None if keep_mask.all() else keep_mask


def popularity_distribution(
    items: Int64s, n_items: int, alpha: float
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The negative sampling distribution of GRU4Rec: each item's count in `items` to the power
    `alpha`, normalised; items never seen get nothing, whatever alpha (0: uniform over the items
    seen)."""
    return count_distribution(np.bincount(items, minlength=n_items), alpha)


def count_distribution(
    counts: np.ndarray[Any, Any], alpha: float
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """`popularity_distribution` from each item's count (as SnapshotShards.item_counts gives
    them, without the interactions at hand)."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = np.where(counts > 0, counts**alpha, 0.0)
    total = weights.sum()
    return weights / total if total > 0 else weights


def histories_of(data: TrainingData, users: Sequence[int]) -> list[UserHistory]:
    """The users' training interactions as histories (items and times): what a next-item model
    reads to score a validation user, as the server hands it the user's history."""
    out = []
    for user in users:
        start, end = int(data.indptr[user]), int(data.indptr[user + 1])
        out.append(UserHistory(data.items[start:end], timestamps=data.timestamps[start:end]))
    return out


class NegativeSampler:
    """GRU4Rec's extra negatives: `n_sample` items per step drawn by `distribution` (see
    `popularity_distribution`), shared by the whole mini-batch. As the original does, they are
    drawn in bulk (`chunk` steps at once) and handed out step by step."""

    def __init__(
        self,
        distribution: np.ndarray[Any, np.dtype[np.float64]],
        n_sample: int,
        rng: np.random.Generator,
        chunk: int = 256,
    ) -> None:
        self.cumulative = np.cumsum(distribution)
        self.n_sample = n_sample
        self.rng = rng
        self.chunk = max(1, chunk)
        self._cache = np.zeros((0, n_sample), dtype=np.int64)
        self._next = 0

    def draw(self) -> Int64s:
        """The next step's negatives (empty where `n_sample` is 0 or no item has a count)."""
        if self.n_sample == 0 or not len(self.cumulative) or self.cumulative[-1] <= 0:
            return np.zeros(0, dtype=np.int64)
        if self._next >= len(self._cache):
            # Uniform draws through the cumulative distribution; scaled by its total, which
            # rounding leaves a little off 1.
            uniform = self.rng.random(self.chunk * self.n_sample) * self.cumulative[-1]
            drawn = np.searchsorted(self.cumulative, uniform, side="right")
            drawn = np.minimum(drawn, len(self.cumulative) - 1).astype(np.int64)
            self._cache = drawn.reshape(self.chunk, self.n_sample)
            self._next = 0
        sample: Int64s = self._cache[self._next]
        self._next += 1
        return sample
