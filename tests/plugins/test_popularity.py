"""Popularity after a historical import: by default the count of interactions, whenever they
happened; a half-life is the operator's choice of recency."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from plugins.algorithm import UserHistory
from plugins.builtin.popularity import Popularity
from plugins.training import TrainingData, validate_weights

IMPORTED = 891_000_000.0
"""A moment in 1998 (MovieLens-100K's time)."""
NOW = 1_796_000_000.0


def data(events: list[tuple[int, float]]) -> TrainingData:
    """Interactions (item, time) of one user each, weight 1, over 3 items."""
    items = np.array([item for item, _ in events], dtype=np.int64)
    users = np.arange(len(events), dtype=np.int64)
    weights = np.ones(len(events), dtype=np.float32)
    return TrainingData(
        matrix=sp.csr_matrix((weights, (users, items)), shape=(len(events), 3)),
        users=users,
        items=items,
        kinds=np.zeros(len(events), dtype=np.uint8),
        timestamps=np.array([t for _, t in events], dtype=np.float64),
        weights=weights,
        indptr=np.arange(len(events) + 1, dtype=np.int64),
        item_ids=["old-hit", "new-item", "never"],
        user_ids=[f"u{u}" for u in users],
        item_properties=pa.table({"$idx": [0, 1, 2]}),
        kind_weights=validate_weights(None),
    )


def ranking(model: Popularity, training: TrainingData) -> list[int]:
    model.fit(training)
    scores = model.user_scores([UserHistory.empty()])[0]
    return [int(i) for i in np.argsort(-scores, kind="stable")]


def test_live_writes_after_an_import_do_not_bury_the_imported_counts() -> None:
    # 50 imported interactions with the old hit, then 3 live ones with a new item.
    events = [(0, IMPORTED + i * 3600.0) for i in range(50)] + [(1, NOW + i) for i in range(3)]
    training = data(events)
    counts = ranking(Popularity(), training)
    assert counts == [0, 1, 2]
    scores = Popularity()
    scores.fit(training)
    assert scores.popularity.tolist() == [50.0, 3.0, 0.0]
    # With a 30-day half-life, by the operator's choice, recency wins (28 years is ~340
    # half-lives: the import counts nothing next to today's writes).
    assert ranking(Popularity(half_life_days=30.0), training)[0] == 1


def test_the_default_is_no_decay_and_says_so() -> None:
    assert Popularity.validate({})["half_life_days"] == 0.0
    assert "0, the default: no decay" in next(
        p.description for p in Popularity.parameters if p.name == "half_life_days"
    )
