"""The cold-start peers of bench.cold_start, wrapped as reqo algorithms so that the harness
splits, scores and measures them exactly as it does reqo's models.

- `lightfm`: LightFM 1.17 (PyPI `lightfm`, the `reference` extra) with item features (identity,
  genres, release-year bin) and user features (identity, gender, occupation, age bin), WARP
  loss. A user or item without training interactions is represented by its attribute features
  alone (its identity feature is left out: it was never trained), as LightFM's paper does for
  cold start.

Only for the benchmark: not registered as a plugin (nothing in reqo imports lightfm).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from plugins.algorithm import Algorithm, Parameter, UserHistory
from plugins.builtin.baselines import _Attributes, _keys
from plugins.training import TrainingData


class LightFMPeer(Algorithm):
    """LightFM with item and user features (hybrid matrix factorisation)."""

    name = "lightfm"
    description = "LightFM 1.17 with item/user features (WARP), a reference peer"
    parameters = (
        Parameter("components", int, 64, "latent dimensions", minimum=1),
        Parameter("epochs", int, 20, "training epochs", minimum=1),
        Parameter("threads", int, 2, "training threads", minimum=1),
        Parameter("seed", int, 0, "the generator's seed"),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.model: Any = None
        self.item_features = sp.csr_matrix((0, 0))
        self.user_keys: dict[str, int] = {}
        self.user_edges: dict[str, np.ndarray[Any, Any]] = {}
        self.n_user_ids = 0
        self.warm_users = np.zeros(0, dtype=bool)

    def fit(self, data: TrainingData) -> None:
        from lightfm import LightFM

        self.n_items = data.n_items
        counts_i = np.bincount(data.items, minlength=data.n_items)
        counts_u = np.bincount(data.users, minlength=data.n_users)
        self.warm_users = counts_u > 0
        items = _Attributes.of(data.item_properties, data.n_items, 100, 5)
        users = _Attributes.of(data.user_properties, data.n_users, 100, 5)
        self.item_features = _features(items.matrix.tocsr(), counts_i > 0)
        self.user_keys = {key: n for n, key in enumerate(users.keys)}
        self.user_edges = {name: np.asarray(edges) for name, edges in users.edges.items()}
        self.n_user_ids = data.n_users
        user_features = _features(users.matrix.tocsr(), self.warm_users)
        interactions = data.matrix.tocoo()
        interactions.data[:] = 1.0
        self.model = LightFM(
            no_components=int(self.settings["components"]),
            loss="warp",
            random_state=int(self.settings["seed"]),
        )
        self.model.fit(
            interactions,
            user_features=user_features,
            item_features=self.item_features,
            epochs=int(self.settings["epochs"]),
            num_threads=int(self.settings["threads"]),
        )

    def _user_row(self, history: UserHistory) -> sp.csr_matrix:
        """A user's feature row: its identity where it trained, and its property values."""
        columns = []
        user = history.user
        if user is not None and user < len(self.warm_users) and self.warm_users[user]:
            columns.append(user)
        for name, value in history.properties.items():
            for key in _keys(name, value, self.user_edges.get(name)):
                if key in self.user_keys:
                    columns.append(self.n_user_ids + self.user_keys[key])
        width = self.n_user_ids + len(self.user_keys)
        row = np.zeros(width, dtype=np.float32)
        row[columns] = 1.0
        return sp.csr_matrix(row / max(len(columns), 1))

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        item_bias, item_vectors = self.model.get_item_representations(self.item_features)
        rows = sp.vstack([self._user_row(history) for history in histories]).tocsr()
        user_bias, user_vectors = self.model.get_user_representations(rows)
        scores = user_vectors @ item_vectors.T + item_bias[None, :] + user_bias[:, None]
        return np.asarray(scores, dtype=np.float32)

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        raise NotImplementedError("a benchmark peer is not saved")

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        raise NotImplementedError("a benchmark peer is not saved")


def _features(attributes: sp.csr_matrix, warm: np.ndarray[Any, Any]) -> sp.csr_matrix:
    """[identity (warm rows only) | attribute values], each row normalised to sum 1."""
    n = attributes.shape[0]
    identity = sp.diags(warm.astype(np.float32), shape=(n, n), format="csr")
    features = sp.hstack([identity, attributes.astype(np.float32)]).tocsr()
    sums = np.asarray(features.sum(axis=1)).ravel()
    scale = sp.diags(1.0 / np.maximum(sums, 1.0))
    return (scale @ features).tocsr().astype(np.float32)
