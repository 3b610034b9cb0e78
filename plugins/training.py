"""TrainingData: what an algorithm learns from, built from a storage snapshot."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

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
class ItemEmbeddings:
    """Image embeddings of the items: `vectors` (n_items, d) float32 with unit rows, zero rows
    where `present` is false (the item has no image, or its image failed); `errors`: how many
    images failed to load or decode; `embedder_state`: what a trainable embedder learned from
    the catalog (plugins.embedders.Embedder.state), for a model to save so that it can embed
    pictures later with the same weights (empty for embedders that do not learn)."""

    vectors: np.ndarray[Any, np.dtype[np.float32]]
    present: np.ndarray[Any, np.dtype[np.bool_]]
    errors: int = 0
    embedder_state: Mapping[str, np.ndarray[Any, Any]] = field(default_factory=dict)


class ItemVectorProvider(Protocol):
    """How every plugin gets item embeddings (the visual-similarity model, a sequence model
    that feeds them to its network, ...): the host (server/item_vectors.py) passes one in
    `TrainingData.item_vectors`, so that plugins never import the server. Call it with keyword
    arguments: `provider(embedder="efficientnet-lite0", settings={"image_size": 112},
    image_property="image")`; vectors are cached by image content, so asking twice is cheap.
    Raises ValueError for an unknown embedder or bad settings."""

    def __call__(
        self, *, embedder: str, settings: Mapping[str, Any], image_property: str
    ) -> ItemEmbeddings: ...


class ItemTextVectorProvider(Protocol):
    """How every plugin gets the items' text embeddings (a content-based or cold-start model):
    the host passes one in `TrainingData.item_text_vectors`. Call it with keyword arguments:
    `provider(embedder="minilm")`; each item's string and set properties are joined and
    embedded (`present` false where an item has no text). Raises ValueError for an unknown
    text embedder."""

    def __call__(self, *, embedder: str) -> ItemEmbeddings: ...


ItemVectors = Callable[..., ItemEmbeddings]
"""Any callable with the provider's keyword arguments (a Protocol for the checker, this for
plain functions)."""


@dataclass(frozen=True)
class TrainingData:
    """A snapshot, ready to learn from.

    - `matrix`: users x items (dense indexes), the summed weights of each user's interactions;
    - `users`, `items`, `kinds`, `timestamps`, `weights`: every interaction, ordered by user, then
      time (so each user's sequence is a contiguous slice, `indptr[u]:indptr[u + 1]`);
    - `item_ids` / `user_ids`: dense index -> id (None where deleted);
    - `item_properties`: the item table (an Arrow table with "$idx", "$id" and the properties);
    - `user_properties`: the user table, likewise (models of new users learn from it: age,
      occupation, ...); None where the caller has none (hand-built data in tests);
    - `validation`: in an offline evaluation, the validation holdout (for early stopping);
    - `item_vectors`: where the host can embed item images, the provider of item embeddings
      (ItemVectorProvider); None elsewhere (offline tests), where image models score nothing;
    - `item_text_vectors`: where the host trains, the provider of the items' text embeddings
      (ItemTextVectorProvider); None in offline evaluations.
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
    validation: Holdout | None = None
    """Held-out interactions to validate on while fitting (offline evaluation only)."""
    item_vectors: ItemVectorProvider | None = None
    """The host's provider of item image embeddings (see ItemVectorProvider)."""
    item_text_vectors: ItemTextVectorProvider | None = None
    """The host's provider of item text embeddings (see ItemTextVectorProvider)."""
    user_properties: pa.Table | None = None
    """The user table ("$idx", "$id" and the properties), None where unknown."""

    @property
    def n_users(self) -> int:
        """How many user indexes there are (`matrix`'s rows)."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """How many item indexes there are (`matrix`'s columns)."""
        return len(self.item_ids)

    def sequence(self, user: int) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The items of one user's interactions, oldest first."""
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    @classmethod
    def from_snapshot(
        cls, snapshot: Snapshot, weights: Mapping[str, Any] | None = None
    ) -> TrainingData:
        """Every interaction of the snapshot, weighted by its kind (see DEFAULT_WEIGHTS)."""
        kind_weights = validate_weights(weights)
        return cls.from_interactions(
            snapshot, interaction_weights(snapshot, kind_weights), kind_weights=kind_weights
        )

    @classmethod
    def from_interactions(
        cls,
        snapshot: Snapshot,
        weights: np.ndarray[Any, np.dtype[np.float32]],
        *,
        keep: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
        kind_weights: Mapping[str, float] | None = None,
        validation: Holdout | None = None,
    ) -> TrainingData:
        """The snapshot's interactions where `keep` (all by default), with the given weights
        (one per interaction of the snapshot), on the snapshot's full id maps: what an offline
        evaluation trains on."""
        users, items = snapshot.users, snapshot.items
        kinds, timestamps = snapshot.kinds, snapshot.timestamps
        if keep is not None:
            users, items, kinds = users[keep], items[keep], kinds[keep]
            timestamps, weights = timestamps[keep], weights[keep]
        n_users, n_items = snapshot.n_users, snapshot.n_items
        matrix = sp.csr_matrix(
            (weights, (users, items)), shape=(n_users, n_items), dtype=np.float32
        )
        matrix.sum_duplicates()
        counts = np.bincount(users, minlength=n_users)
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(
            matrix=matrix,
            users=users,
            items=items,
            kinds=kinds,
            timestamps=timestamps,
            weights=np.asarray(weights, dtype=np.float32),
            indptr=indptr,
            item_ids=snapshot.item_ids,
            user_ids=snapshot.user_ids,
            item_properties=snapshot.item_properties,
            user_properties=snapshot.user_properties,
            kind_weights=dict(kind_weights or validate_weights(None)),
            validation=validation,
        )


def interaction_weights(
    snapshot: Snapshot, kind_weights: Mapping[str, float]
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Each interaction's weight: its kind's, times rating + 1 for ratings and the portion for
    view portions."""
    per_code = np.zeros(256, dtype=np.float32)
    for code, name in KIND_NAMES.items():
        per_code[code] = kind_weights[name]
    weights = per_code[snapshot.kinds]
    ratings = np.nan_to_num(snapshot.ratings, nan=0.0)
    portions = np.nan_to_num(snapshot.portions, nan=1.0)
    codes = {name: code for code, name in KIND_NAMES.items()}
    is_rating = snapshot.kinds == codes["ratings"]
    is_portion = snapshot.kinds == codes["view_portions"]
    weights = np.where(is_rating, weights * np.maximum(ratings + 1.0, 0.0), weights)
    weighted: np.ndarray[Any, np.dtype[np.float32]] = np.where(
        is_portion, weights * np.clip(portions, 0.0, 1.0), weights
    ).astype(np.float32)
    return weighted


@dataclass(frozen=True)
class Holdout:
    """Held-out interactions of an offline evaluation, per user: `items[indptr[u]:indptr[u+1]]`
    are user u's (dense indexes). A model may use the validation holdout while it fits (early
    stopping); the test holdout is scored once, after."""

    indptr: np.ndarray[Any, np.dtype[np.int64]]
    items: np.ndarray[Any, np.dtype[np.int64]]

    @classmethod
    def of(
        cls,
        users: np.ndarray[Any, np.dtype[np.int64]],
        items: np.ndarray[Any, np.dtype[np.int64]],
        n_users: int,
    ) -> Holdout:
        order = np.argsort(users, kind="stable")
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
        return cls(indptr, np.asarray(items, dtype=np.int64)[order])

    @property
    def users(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The users with at least one held-out item."""
        return np.flatnonzero(np.diff(self.indptr) > 0)

    def of_user(self, user: int) -> np.ndarray[Any, np.dtype[np.int64]]:
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def mean_ndcg(
        self,
        scores: Callable[[np.ndarray[Any, np.dtype[np.int64]]], np.ndarray[Any, Any]],
        train: sp.csr_matrix,
        k: int = 10,
        batch: int = 1024,
    ) -> float:
        """Mean NDCG@k over the held-out users, ranking every item but the user's training
        items. `scores(users)` gives (len(users), n_items) scores for dense user indexes."""
        from plugins.evaluation.metrics import ndcg_at, top_k

        users = self.users
        values = []
        for start in range(0, len(users), batch):
            chunk = users[start : start + batch]
            excluded = [train.indices[train.indptr[u] : train.indptr[u + 1]] for u in chunk]
            ranked = top_k(scores(chunk), k, excluded)
            values.append(ndcg_at(ranked, [self.of_user(int(u)) for u in chunk], k))
        return float(np.concatenate(values).mean()) if values else 0.0
