"""visual-similarity: items that look alike, by the cosine of their image embeddings.

Items to item: the items nearest to the context item's embedding. Items to user: the items
nearest to a recency-weighted mean of the embeddings of the user's last few items. The embeddings
come from the host's provider (TrainingData.item_vectors, cached by image content); the
index is exact below `exact_below` items and Annoy above (plugins/ann.py), where only the `pool`
nearest candidates get a score. A catalog without the image property (or a host without a
provider) gives an empty model that scores nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from plugins.algorithm import Algorithm, EmbedderLookup, Parameter, UserHistory, restrict
from plugins.ann import EXACT_BELOW, Indexes, Mask, VectorIndex, Vectors
from plugins.builtin.image_embedders import DEFAULT_EMBEDDER
from plugins.embedders import Embedder, normalise
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData

EMBEDDER_PREFIX = "embedder."
"""The state arrays of a trainable embedder are saved under this prefix."""


class VisualSimilarity(Algorithm):
    name = "visual-similarity"
    description = (
        "items whose pictures look alike: cosine of CNN image embeddings, with an Annoy index "
        "for large catalogs; for users, from their recent items"
    )
    parameters = (
        Parameter(
            "embedder", str, DEFAULT_EMBEDDER, "the image embedder (reqo plugins lists them)"
        ),
        Parameter("embedder_settings", dict, {}, "the embedder's parameters (e.g. image_size)"),
        Parameter("image_property", str, "image", "the item property (image or imageList) to use"),
        Parameter("recent", int, 10, "how many of a user's latest items make the user's query", 1),
        Parameter("half_life", float, 3.0, "items back at which a user's item counts half", 0.01),
        Parameter("trees", int, 50, "trees of the Annoy index (more: better recall)", 1, 1000),
        Parameter(
            "exact_below", int, EXACT_BELOW, "exact search below this many items, else Annoy", 0
        ),
        Parameter(
            "pool", int, 500, "with Annoy, how many nearest candidates are scored", 1, 100_000
        ),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.index = _empty(0)
        self.errors = 0
        self._embedder: Embedder | None = None
        self._embedder_state: dict[str, np.ndarray[Any, Any]] = {}

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items
        self._embedder = None
        self._embedder_state = {}
        if data.item_vectors is None:
            self.index = _empty(data.n_items)
            return
        embeddings = data.item_vectors(
            embedder=self.settings["embedder"],
            settings=self.settings["embedder_settings"],
            image_property=self.settings["image_property"],
        )
        self.errors = embeddings.errors
        self._embedder_state = dict(embeddings.embedder_state)
        self.index = VectorIndex.build(
            embeddings.vectors,
            embeddings.present,
            trees=self.settings["trees"],
            exact_below=self.settings["exact_below"],
        )

    # -- queries --------------------------------------------------------------------------------

    def item_vector(self, item: int) -> Vectors | None:
        """The embedding of a (dense) item, or None where it has none."""
        if 0 <= item < len(self.index) and self.index.present[item]:
            return np.asarray(self.index.vectors[item], dtype=np.float32)
        return None

    def user_vector(self, history: UserHistory) -> Vectors | None:
        """The user's query: the mean of the embeddings of their last `recent` items that have
        one, weighted 2 ** (-age / half_life) with age 0 for the latest; None without any."""
        items = history.items[(history.items >= 0) & (history.items < len(self.index))]
        items = items[self.index.present[items]][-self.settings["recent"] :]
        if not len(items):
            return None
        ages = np.arange(len(items) - 1, -1, -1, dtype=np.float32)
        weights = np.exp2(-ages / np.float32(self.settings["half_life"]))
        mean = weights @ np.asarray(self.index.vectors[items], dtype=np.float32)
        vector = normalise(mean.reshape(1, -1))[0]
        return vector if np.any(vector) else None

    embeds_images = True

    def embed_images(
        self, images: Sequence[Any], embedders: EmbedderLookup | None = None
    ) -> np.ndarray[Any, Any]:
        """Query vectors for pictures (PIL images), by the embedder the model was fitted with
        (with the weights it learned, for a trainable one). `embedders` finds an embedder class
        by name: the host's registry, which knows the configuration's plugins; without it, the
        built-in and installed plugins. ValueError where the embedder cannot embed a picture."""
        if self._embedder is None:
            lookup = embedders if embedders is not None else _installed_embedders()
            embedder = lookup(self.settings["embedder"])(**self.settings["embedder_settings"])
            if not embedder.embeds_pictures:
                raise ValueError(f"the model's embedder '{embedder.name}' cannot embed a picture")
            if embedder.trainable:
                if not self._embedder_state:
                    raise ValueError(
                        f"the model's embedder '{embedder.name}' learns from the catalog, and "
                        "this model holds no weights for it (no images when it was trained); "
                        "train it again"
                    )
                embedder.restore(self._embedder_state)
            self._embedder = embedder
        return self._embedder.embed(images)

    def query_scores(self, vectors: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The cosine of every item to each query vector (normalised here): (len(vectors),
        n_items), -inf where an item has no embedding. For "more like this picture"."""
        queries = normalise(np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1))
        return self._rows(list(queries))

    def nearest(
        self, vector: Vectors, k: int, allowed: Mask | None = None
    ) -> tuple[Indexes, Vectors]:
        """The k items nearest to a query vector among the `allowed` ones: indexes and cosines,
        best first (see VectorIndex.nearest)."""
        query = normalise(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]
        return self.index.nearest(query, k, allowed)

    def _rows(self, queries: Sequence[Vectors | None]) -> np.ndarray[Any, Any]:
        out = np.full((len(queries), self.n_items), -np.inf, dtype=np.float32)
        for row, query in enumerate(queries):
            # An empty model (no images) has no dimensions to compare a picture's vector with.
            if query is not None and self.index.dimensions:
                out[row, : len(self.index)] = self.index.cosines(query)[: self.n_items]
        return out

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        return self._rows([self.user_vector(history) for history in histories])

    def item_scores(self, items: Sequence[int]) -> np.ndarray[Any, Any]:
        return self._rows([self.item_vector(int(item)) for item in items])

    # With an Annoy index, only the `pool` nearest candidates are scored (the rest -inf): the
    # point of the index is not to compute every cosine of a large catalog.

    def score_users(
        self,
        histories: Sequence[UserHistory],
        n_items: int,
        candidates: Mask | None = None,
    ) -> np.ndarray[Any, Any]:
        if self.index.annoy is None:
            return super().score_users(histories, n_items, candidates)
        return self._pooled([self.user_vector(h) for h in histories], n_items, candidates)

    def score_items(
        self, items: Sequence[int], n_items: int, candidates: Mask | None = None
    ) -> np.ndarray[Any, Any]:
        if self.index.annoy is None:
            return super().score_items(items, n_items, candidates)
        return self._pooled([self.item_vector(int(i)) for i in items], n_items, candidates)

    def _pooled(
        self, queries: Sequence[Vectors | None], n_items: int, candidates: Mask | None
    ) -> np.ndarray[Any, Any]:
        out = np.full((len(queries), n_items), -np.inf, dtype=np.float32)
        for row, query in enumerate(queries):
            if query is not None:
                indexes, cosines = self.index.nearest(query, self.settings["pool"], candidates)
                keep = indexes < n_items
                out[row, indexes[keep]] = cosines[keep]
        return restrict(out, candidates)

    # -- persistence ----------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        # Saved as vectors.npy and present.npy (the plot command reads vectors.npy), and a
        # trainable embedder's weights as embedder.<name>.npy.
        arrays = {"vectors": np.asarray(self.index.vectors), "present": self.index.present}
        arrays.update({EMBEDDER_PREFIX + k: v for k, v in self._embedder_state.items()})
        return arrays

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self.index = VectorIndex(
            arrays["vectors"], arrays["present"], exact_below=self.settings["exact_below"]
        )
        self._restore_embedder(arrays)

    def _restore_embedder(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self._embedder = None
        self._embedder_state = {
            k.removeprefix(EMBEDDER_PREFIX): np.asarray(v)
            for k, v in arrays.items()
            if k.startswith(EMBEDDER_PREFIX)
        }

    def save(self, directory: Path) -> None:
        """The arrays and meta.json (Algorithm.save), and the Annoy file beside them."""
        super().save(directory)
        self.index.save(directory)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """A saved model, its vectors and Annoy file memory-mapped rather than read."""
        model, meta = cls.unloaded(directory)
        model.index = VectorIndex.load(directory, exact_below=model.settings["exact_below"])
        model._restore_embedder(
            {
                key: np.load(directory / f"{key}.npy", allow_pickle=False)
                for key in meta["arrays"]
                if key.startswith(EMBEDDER_PREFIX)
            }
        )
        return model


def _installed_embedders() -> EmbedderLookup:
    from plugins.manager import collect, get_plugin_manager

    return collect(get_plugin_manager()).embedder


def _empty(n_items: int) -> VectorIndex:
    """An index of no vectors: every item without an embedding."""
    return VectorIndex(
        np.zeros((n_items, 0), dtype=np.float32), np.zeros(n_items, dtype=np.bool_), None
    )


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [VisualSimilarity]
