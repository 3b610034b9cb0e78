"""Popularity: the weighted count of each item's interactions (optionally decayed with time). The
same list for everyone, so it is the fallback for users with no history.

No decay by default: after a historical import (MovieLens' 1998 ratings, say), a decay counted in
days would let a handful of live interactions outweigh every imported one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from plugins.algorithm import Algorithm, Parameter, UserHistory
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData

DAY = 86_400.0


class Popularity(Algorithm):
    name = "popularity"
    description = (
        "items by their weighted interactions (with `half_life_days`, each halved every that "
        "many days before the training)"
    )
    parameters = (
        Parameter(
            "half_life_days",
            float,
            0.0,
            "an interaction counts half as much this many days before the training (0, the "
            "default: no decay)",
            minimum=0,
        ),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.popularity = np.zeros(0, dtype=np.float32)

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items
        weights = data.weights.astype(np.float64)
        half_life = float(self.settings["half_life_days"]) * DAY
        if half_life > 0 and len(data.timestamps):
            # Ages from the newest interaction rather than the clock: the same ranking as from
            # the training time (every weight scales alike), without every weight of an old
            # import underflowing to 0.
            age = data.timestamps.max() - data.timestamps
            weights = weights * np.exp2(-age / half_life)
        counts = np.bincount(data.items, weights=weights, minlength=data.n_items)
        self.popularity = counts.astype(np.float32)

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        return np.tile(self.popularity, (len(histories), 1))

    def item_scores(self, items: Sequence[int]) -> np.ndarray[Any, Any]:
        return np.tile(self.popularity, (len(items), 1))

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        return {"popularity": self.popularity}

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self.popularity = arrays["popularity"].astype(np.float32)


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [Popularity]
