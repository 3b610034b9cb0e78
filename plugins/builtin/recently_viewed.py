"""Recently viewed: the items the user interacted with, most recent first (Recombee's
"recombee:recently-viewed")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from plugins.algorithm import Algorithm, Parameter, UserHistory
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData


class RecentlyViewed(Algorithm):
    name = "recently-viewed"
    description = "the user's own recent items, the latest first"
    parameters = (
        Parameter(
            "kinds",
            list,
            ["detail_views", "view_portions"],
            "which interaction kinds count as having seen an item",
        ),
    )

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        kinds = set(self.settings["kinds"])
        scores = np.full((len(histories), self.n_items), -np.inf, dtype=np.float32)
        for row, history in enumerate(histories):
            for position, (item, kind) in enumerate(zip(history.items, history.kinds, strict=True)):
                if kind in kinds and 0 <= item < self.n_items:
                    # Later interactions score higher; the latest of an item's views wins.
                    scores[row, item] = float(position + 1)
        return scores

    def item_scores(self, items: Sequence[int]) -> np.ndarray[Any, Any]:
        # There is nothing "recently viewed" about an item without a user.
        return np.full((len(items), self.n_items), -np.inf, dtype=np.float32)

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        return {}

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        return None


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [RecentlyViewed]
