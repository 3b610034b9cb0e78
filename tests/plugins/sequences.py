"""Synthetic sequences for the next-item models' tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from plugins.training import Holdout, ItemVectors, TrainingData

CYCLE = 20
"""Items of the cycle: item i is always followed by item (i + 1) mod CYCLE."""


def sequence_data(
    sequences: list[list[int]],
    n_items: int,
    *,
    times: list[list[float]] | None = None,
    validation: Holdout | None = None,
    item_properties: pa.Table | None = None,
    item_vectors: ItemVectors | None = None,
) -> TrainingData:
    """TrainingData with one detail view per item of each user's sequence, one minute apart
    (or at `times`)."""
    users = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences]).astype(np.int64)
    items = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
    if times is None:
        times = [[60.0 * k for k in range(len(s))] for s in sequences]
    timestamps = np.concatenate([np.asarray(t, dtype=np.float64) for t in times])
    indptr = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in sequences], out=indptr[1:])
    weights = np.ones(len(items), dtype=np.float32)
    matrix = sp.csr_matrix((weights, (users, items)), shape=(len(sequences), n_items))
    matrix.sum_duplicates()
    return TrainingData(
        matrix=matrix,
        users=users,
        items=items,
        kinds=np.zeros(len(items), dtype=np.uint8),
        timestamps=timestamps,
        weights=weights,
        indptr=indptr,
        item_ids=[f"i{i}" for i in range(n_items)],
        user_ids=[f"u{u}" for u in range(len(sequences))],
        item_properties=item_properties if item_properties is not None else pa.table({}),
        kind_weights={},
        validation=validation,
        item_vectors=item_vectors,
    )


def cyclic(
    users: int = 60, length: int = 12, seed: int = 0, *, holdout: bool = False, **kwargs: Any
) -> TrainingData:
    """Users who each walk `length` steps along the cycle from a random item. With `holdout`,
    each user's next step is the validation holdout."""
    rng = np.random.default_rng(seed)
    sequences = [
        [int(x) for x in (rng.integers(CYCLE) + np.arange(length)) % CYCLE] for _ in range(users)
    ]
    validation = None
    if holdout:
        following = np.array([(s[-1] + 1) % CYCLE for s in sequences])
        validation = Holdout.of(np.arange(users), following, users)
    return sequence_data(sequences, CYCLE, validation=validation, **kwargs)


def next_item_accuracy(scores: np.ndarray[Any, Any]) -> float:
    """The share of rows i (a history ending in item i) whose top item is i + 1."""
    rows = np.arange(len(scores))
    return float(np.mean(scores.argmax(axis=1) == (rows + 1) % CYCLE))
