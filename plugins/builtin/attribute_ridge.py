"""attribute-ridge: closed-form ridge regressions from attributes and content to interactions,
the cold-start model that scores new items and new users.

Two linear maps, each fitted in closed form on the training interactions (x_ui = 1 where user u
interacted with item i, among the items that have interactions):

- **Items, from a user's history** (new items): a user's taste is a weight vector over the
  items' content features f_i (text embedding, image embedding, categorical properties one-hot,
  numbers in quantile bins, an intercept), the ridge regression of the user's row x_u on the
  items' features, shrunk towards the population's weights rather than towards zero:

      w_u = A Fᵀ x_u + (A₀ - A) Fᵀ x̄,   A = (FᵀF + λ I)⁻¹,   A₀ = (FᵀF + λ₀ I)⁻¹

  x̄ being each item's rate among the users (λ₀ small: the population's taste is known well,
  one user's much less). Any item is scored f_i · w_u, whether or not anybody interacted with it:
  a new item gets the score its content earns with the user. It is folded in from the history
  at each request (a d x d product), so a new interaction counts at once.
- **Users, from their properties** (new users): the ridge regression of x_u on the user's
  property values as one-hot features g_u (strings, booleans, set values; numbers in quantile
  bins), centred: s(u) = x̄ + (g_u - ḡ) W, W = (GᵀG + μ I)⁻¹ Gᵀ (X - x̄). An item without
  interactions takes the ridge projection of its content onto the columns of [x̄; W].

A user with n known items in the history is scored n / (n + k) by the first and the rest by the
second (`history_prior` k): properties alone without interactions, the history alone once it
says much more. Items to item: f_j A fᵢ, the similarity of the items' content under the metric
the users' choices taught (the history map with a one-item history, without the population).

Why ridge regressions: on MovieLens-100K both fit in a fraction of a second and beat LightFM
with the same attributes on new items and new users (BENCHMARKS.md, `python -m
bench.cold_start`); the numeric properties binned (a film's year) catch what a linear term
cannot (new films and old classics are both popular).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from plugins.algorithm import Algorithm, Parameter, UserHistory
from plugins.builtin.baselines import Attributes, property_keys
from plugins.builtin.content_features import embedding_blocks
from plugins.builtin.content_mf import history_rows
from plugins.builtin.image_embedders import DEFAULT_EMBEDDER
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData

Array = np.ndarray[Any, Any]


class AttributeRidge(Algorithm):
    """Ridge maps from item content (with the user's history) and from user properties to
    interactions: scores new items and new users."""

    name = "attribute-ridge"
    uses_user_properties = True
    description = (
        "ridge regressions from item content and user properties to interactions: new items "
        "scored from their text, image and properties, new users from their properties"
    )
    parameters = (
        Parameter(
            "item_l2", float, 30.0, "ridge penalty of a user's weights over item features", 0.0
        ),
        Parameter(
            "population_l2",
            float,
            1.0,
            "ridge penalty of the population's weights, towards which a user's are shrunk",
            0.0,
        ),
        Parameter(
            "user_l2", float, 30.0, "ridge penalty of the map from user properties to items", 0.0
        ),
        Parameter(
            "history_prior",
            float,
            5.0,
            "interactions at which a user's history and properties weigh the same",
            0.0,
        ),
        Parameter("bins", int, 10, "quantile bins of a numeric property", 2, 1000),
        Parameter(
            "embedding_dimensions",
            int,
            64,
            "principal components kept of each text or image embedding (0: all): the cost of "
            "scoring grows with them",
            0,
        ),
        Parameter(
            "max_values",
            int,
            100,
            "string and set properties with more distinct values are not attributes",
            2,
        ),
        Parameter(
            "text_embedder", str, "minilm", "the items' text embedder, '' for no text vectors"
        ),
        Parameter(
            "image_property",
            str,
            "image",
            "the image (or imageList) property embedded where items have it, '' for none",
        ),
        Parameter("image_embedder", str, DEFAULT_EMBEDDER, "the image embedder"),
        Parameter("image_embedder_settings", dict, {}, "the image embedder's parameters"),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.features = np.zeros((0, 1), dtype=np.float32)
        """items x d: each item's content features (the last column the intercept)."""
        self.taste: Array = np.eye(1)
        """A = (FᵀF + λ I)⁻¹ over the items with interactions: d x d."""
        self.population: Array = np.zeros(1)
        """(A₀ - A) Fᵀ x̄: what a user's weights are shrunk towards, d."""
        self.rates = np.zeros(0, dtype=np.float32)
        """x̄: each item's rate among the users (from content for an item without any)."""
        self.user_map = np.zeros((0, 0), dtype=np.float32)
        """W: property values x items."""
        self.user_mean = np.zeros(0)
        self.value_keys = np.zeros(0, dtype=str)
        self.bin_names = np.zeros(0, dtype=str)
        self.bin_edges = np.zeros((0, 0))

    # -- fitting --------------------------------------------------------------------------------

    def fit(self, data: TrainingData) -> None:
        s = self.settings
        self.n_items = data.n_items
        seen = history_rows_of(data)
        warm = np.asarray(seen.sum(axis=0)).ravel() > 0
        features = self.item_features(data)
        on_warm = features[warm]
        gram = on_warm.T @ on_warm
        eye = np.eye(gram.shape[0])
        self.taste = np.linalg.inv(gram + max(float(s["item_l2"]), 1e-6) * eye)
        loose = np.linalg.inv(gram + max(float(s["population_l2"]), 1e-6) * eye)
        active = np.asarray(seen.sum(axis=1)).ravel() > 0
        rates = np.asarray(seen[active].mean(axis=0)).ravel() if active.any() else warm * 0.0
        self.population = (loose - self.taste) @ (features.T @ rates)
        self.features = features.astype(np.float32)
        self._fit_users(data, seen, active)
        # An item without interactions: its rate and its column of W from its content, by the
        # ridge projection that the warm items' columns teach.
        columns = np.vstack([rates[None, :], self.user_map.astype(np.float64)])
        projection = loose @ (on_warm.T @ columns[:, warm].T)
        guessed = (features[~warm] @ projection).T
        columns[:, ~warm] = guessed
        self.rates = columns[0].astype(np.float32)
        self.user_map = columns[1:].astype(np.float32)

    def item_features(self, data: TrainingData) -> Array:
        """items x d: the text and image embeddings (centred, unit length), each categorical
        or binned numeric property one-hot at unit length, and a column of ones."""
        s = self.settings
        dimensions = int(s["embedding_dimensions"])
        blocks = [reduced(vectors, dimensions) for vectors, _ in embedding_blocks(data, s)]
        values = Attributes.of(
            data.item_properties, data.n_items, int(s["max_values"]), int(s["bins"])
        )
        blocks.append(values.unit_by_property())
        blocks.append(np.ones((data.n_items, 1)))
        return np.hstack(blocks)

    def _fit_users(self, data: TrainingData, seen: sp.csr_matrix, active: Array) -> None:
        s = self.settings
        values = Attributes.of(
            data.user_properties, data.n_users, int(s["max_values"]), int(s["bins"])
        )
        self.value_keys = np.array(values.keys, dtype=str)
        self.bin_names = np.array(list(values.edges), dtype=str)
        self.bin_edges = np.array(list(values.edges.values()), dtype=np.float64).reshape(
            len(values.edges), int(s["bins"]) - 1
        )
        onehot = values.matrix.tocsr().astype(np.float64)
        known = active & (np.diff(onehot.indptr) > 0)
        width = len(values.keys)
        if not known.any() or not width:
            self.user_mean = np.zeros(width)
            self.user_map = np.zeros((width, data.n_items), dtype=np.float32)
            return
        rows = onehot[known].toarray()
        self.user_mean = rows.mean(axis=0)
        centred = rows - self.user_mean
        # Gᵀ(X - x̄) = GᵀX for centred G: X stays sparse.
        right = np.asarray((seen[known].T @ centred).T)
        gram = centred.T @ centred + max(float(s["user_l2"]), 1e-6) * np.eye(width)
        self.user_map = np.linalg.solve(gram, right).astype(np.float32)

    # -- scoring --------------------------------------------------------------------------------

    def property_row(self, properties: Mapping[str, Any]) -> Array | None:
        """A user's one-hot property values, None where none of them is known."""
        column = {key: n for n, key in enumerate(self.value_keys.tolist())}
        edges = {name: self.bin_edges[n] for n, name in enumerate(self.bin_names.tolist())}
        row = np.zeros(len(column))
        for name, value in properties.items():
            for key in property_keys(name, value, edges.get(name)):
                if key in column:
                    row[column[key]] = 1.0
        return row if row.any() else None

    def user_scores(self, histories: Sequence[UserHistory]) -> Array:
        rows = history_rows(histories, self.n_items).astype(np.float32)
        rows.data[:] = 1.0
        counts = np.diff(rows.indptr).astype(np.float64)
        prior = float(self.settings["history_prior"])
        share = np.divide(
            counts, counts + prior, out=np.ones_like(counts), where=counts + prior > 0
        )
        scores = np.zeros((len(histories), self.n_items), dtype=np.float32)
        told = np.flatnonzero(share > 0)  # a user without history is its properties alone
        if len(told):
            weights = np.asarray(rows[told] @ self.features, dtype=np.float64)
            weights = weights @ self.taste + self.population
            # In float32, as the features are kept: a float64 product would copy them.
            scores[told] = weights.astype(np.float32) @ self.features.T
        for row, history in enumerate(histories):
            if share[row] >= 1.0:
                continue
            values = self.property_row(history.properties)
            by_properties = self.rates
            if values is not None:
                shift = (values - self.user_mean).astype(np.float32)
                by_properties = by_properties + shift @ self.user_map
            scores[row] = share[row] * scores[row] + (1.0 - share[row]) * by_properties
        return scores.astype(np.float32)

    def item_scores(self, items: Sequence[int]) -> Array:
        """The items' content similarity under the learned metric: f_j A fᵢ (zeros for an
        item the model does not know)."""
        scores = np.zeros((len(items), self.n_items), dtype=np.float32)
        known = [row for row, item in enumerate(items) if 0 <= item < self.n_items]
        if known:
            context = self.features[[int(items[row]) for row in known]].astype(np.float64)
            scores[known] = (context @ self.taste).astype(np.float32) @ self.features.T
        return scores

    # -- persistence ----------------------------------------------------------------------------

    def state(self) -> dict[str, Array]:
        return {
            "features": self.features,
            "taste": self.taste,
            "population": self.population,
            "rates": self.rates,
            "user_map": self.user_map,
            "user_mean": self.user_mean,
            "value_keys": self.value_keys,
            "bin_names": self.bin_names,
            "bin_edges": self.bin_edges,
        }

    def restore(self, arrays: Mapping[str, Array]) -> None:
        self.features = np.asarray(arrays["features"], dtype=np.float32)
        self.taste = np.asarray(arrays["taste"], dtype=np.float64)
        self.population = np.asarray(arrays["population"], dtype=np.float64)
        self.rates = np.asarray(arrays["rates"], dtype=np.float32)
        self.user_map = np.asarray(arrays["user_map"], dtype=np.float32)
        self.user_mean = np.asarray(arrays["user_mean"], dtype=np.float64)
        self.value_keys = np.asarray(arrays["value_keys"]).astype(str)
        self.bin_names = np.asarray(arrays["bin_names"]).astype(str)
        self.bin_edges = np.asarray(arrays["bin_edges"], dtype=np.float64)


def reduced(vectors: Array, dimensions: int) -> Array:
    """The vectors' coordinates on their `dimensions` principal axes (all of the vectors where
    0, or at least as many as they have): the directions in which the catalog's items differ
    most, at a fraction of the scoring cost."""
    if not dimensions or dimensions >= vectors.shape[1] or not vectors.any():
        return vectors
    # The vectors are centred already (content_features._centred): no mean to take out. The
    # axes are the eigenvectors of the d x d scatter matrix, far cheaper than an SVD of the
    # items x d matrix.
    _, axes = np.linalg.eigh(vectors.T @ vectors)
    return np.asarray(vectors @ axes[:, ::-1][:, :dimensions])


def history_rows_of(data: TrainingData) -> sp.csr_matrix:
    """users x items: 1 where the user's summed weight for the item is positive."""
    seen = sp.csr_matrix(data.matrix, dtype=np.float64, copy=True)
    seen.data[seen.data < 0] = 0.0
    seen.eliminate_zeros()
    seen.data[:] = 1.0
    return seen


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [AttributeRidge]
