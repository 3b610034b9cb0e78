"""TrainingData: what an algorithm learns from, built from a storage snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from storage.snapshot import KIND_NAMES, Snapshot

DEFAULT_WEIGHTS: dict[str, float] = {
    "detail_views": 1.0,
    "view_portions": 1.0,
    "bookmarks": 2.0,
    "cart_additions": 3.0,
    "ratings": 2.0,
    "purchases": 4.0,
}
"""How much one interaction of each kind counts. A rating counts weight * (rating + 1), so a -1
rating counts nothing; a view portion counts weight * portion."""


class WeightError(ValueError):
    """Interaction kind weights that are not a map of known kinds to numbers >= 0."""


def validate_weights(weights: Mapping[str, Any] | None) -> dict[str, float]:
    merged = dict(DEFAULT_WEIGHTS)
    for kind, weight in (weights or {}).items():
        if kind not in DEFAULT_WEIGHTS:
            raise WeightError(
                f"unknown interaction kind '{kind}' (known: {', '.join(DEFAULT_WEIGHTS)})"
            )
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise WeightError(f"the weight of '{kind}' must be a number >= 0, not {weight!r}")
        merged[kind] = float(weight)
    return merged


@dataclass(frozen=True)
class TrainingData:
    """A snapshot, ready to learn from.

    - `matrix`: users x items (dense indexes), the summed weights of each user's interactions;
    - `users`, `items`, `kinds`, `timestamps`, `weights`: every interaction, ordered by user, then
      time (so each user's sequence is a contiguous slice, `indptr[u]:indptr[u + 1]`);
    - `item_ids` / `user_ids`: dense index -> id (None where deleted);
    - `item_properties`: the item table (an Arrow table with "$idx", "$id" and the properties).
    """

    matrix: sp.csr_matrix
    users: np.ndarray[Any, np.dtype[np.int64]]
    items: np.ndarray[Any, np.dtype[np.int64]]
    kinds: np.ndarray[Any, np.dtype[np.uint8]]
    timestamps: np.ndarray[Any, np.dtype[np.float64]]
    weights: np.ndarray[Any, np.dtype[np.float32]]
    indptr: np.ndarray[Any, np.dtype[np.int64]]
    item_ids: list[str | None]
    user_ids: list[str | None]
    item_properties: pa.Table
    kind_weights: Mapping[str, float]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def sequence(self, user: int) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The items of one user's interactions, oldest first."""
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    @classmethod
    def from_snapshot(
        cls, snapshot: Snapshot, weights: Mapping[str, Any] | None = None
    ) -> TrainingData:
        kind_weights = validate_weights(weights)
        per_code = np.zeros(256, dtype=np.float32)
        for code, name in KIND_NAMES.items():
            per_code[code] = kind_weights[name]
        interaction_weights = per_code[snapshot.kinds]
        ratings = np.nan_to_num(snapshot.ratings, nan=0.0)
        portions = np.nan_to_num(snapshot.portions, nan=1.0)
        codes = {name: code for code, name in KIND_NAMES.items()}
        is_rating = snapshot.kinds == codes["ratings"]
        is_portion = snapshot.kinds == codes["view_portions"]
        interaction_weights = np.where(
            is_rating, interaction_weights * np.maximum(ratings + 1.0, 0.0), interaction_weights
        )
        interaction_weights = np.where(
            is_portion, interaction_weights * np.clip(portions, 0.0, 1.0), interaction_weights
        ).astype(np.float32)
        n_users, n_items = snapshot.n_users, snapshot.n_items
        matrix = sp.csr_matrix(
            (interaction_weights, (snapshot.users, snapshot.items)),
            shape=(n_users, n_items),
            dtype=np.float32,
        )
        matrix.sum_duplicates()
        counts = np.bincount(snapshot.users, minlength=n_users)
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(
            matrix=matrix,
            users=snapshot.users,
            items=snapshot.items,
            kinds=snapshot.kinds,
            timestamps=snapshot.timestamps,
            weights=interaction_weights,
            indptr=indptr,
            item_ids=snapshot.item_ids,
            user_ids=snapshot.user_ids,
            item_properties=snapshot.item_properties,
            kind_weights=kind_weights,
        )
