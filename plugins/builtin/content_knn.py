"""Content-kNN: items similar in content to the user's or the context item, by cosine similarity
of the items' text embeddings (their string and set properties joined, embedded by the host's
text embedder through `TrainingData.item_text_vectors`).

It needs no interactions to score an item, so a new item is recommended as soon as it has a
text: the baseline of item cold start. A user's profile is the weighted mean of the vectors of
the items in their history; a user without history (or without any item that has a text) gets
the items by popularity, which otherwise only breaks ties.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from plugins.algorithm import Algorithm, Parameter, UserHistory
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData

TIE_BREAK = 1e-4
"""How much popularity (scaled to [0, 1]) adds to a similarity: it orders equal similarities
(and a user without a profile) without changing the order of different ones."""


class ContentKNN(Algorithm):
    name = "content-knn"
    description = (
        "items similar in content (cosine of text embeddings) to the user's or the context "
        "item; scores new items from their text"
    )
    parameters = (
        Parameter("embedder", str, "minilm", "the text embedder of the item texts"),
        Parameter(
            "recent",
            int,
            0,
            "build the profile from the user's last this many items (0: all of them)",
            minimum=0,
        ),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        """Unit text vectors, one row per item (zero where an item has no text)."""
        self.popularity = np.zeros(0, dtype=np.float32)
        """Interaction counts scaled to [0, 1]: the tie-break and the no-profile fallback."""

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items
        provider = data.item_text_vectors
        if provider is None:
            # No host to embed texts (hand-built data): no content, popularity alone.
            self.vectors = np.zeros((data.n_items, 1), dtype=np.float32)
        else:
            embeddings = provider(embedder=str(self.settings["embedder"]))
            vectors = np.asarray(embeddings.vectors, dtype=np.float32)[: data.n_items]
            vectors = np.where(embeddings.present[: data.n_items, None], vectors, 0.0)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            self.vectors = np.divide(
                vectors, norms, out=np.zeros_like(vectors), where=norms > 0
            ).astype(np.float32)
        counts = np.bincount(data.items, minlength=data.n_items).astype(np.float32)
        self.popularity = counts / counts.max() if counts.size and counts.max() > 0 else counts

    def profiles(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        """One unit profile per history (zero where none of its items has a vector): the mean of
        its items' vectors weighted by the history's weights."""
        profiles = np.zeros((len(histories), self.vectors.shape[1]), dtype=np.float32)
        recent = int(self.settings["recent"])
        for row, history in enumerate(histories):
            items = np.asarray(history.items, dtype=np.int64)
            weights = np.asarray(
                history.weights if len(history.weights) else np.ones(len(items)), dtype=np.float32
            )
            if recent:
                items, weights = items[-recent:], weights[-recent:]
            known = (items >= 0) & (items < self.n_items)
            profiles[row] = weights[known] @ self.vectors[items[known]]
        norms = np.linalg.norm(profiles, axis=1, keepdims=True)
        unit: np.ndarray[Any, Any] = np.divide(
            profiles, norms, out=np.zeros_like(profiles), where=norms > 0
        )
        return unit

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        similarity = self.profiles(histories) @ self.vectors.T
        # Cosines lie in [-1, 1]; shifted to [0, 2], so that every content match is evidence
        # (relevance threshold 0) and popularity orders the rest.
        scores: np.ndarray[Any, Any] = np.where(similarity != 0, similarity + 1.0, 0.0)
        out: np.ndarray[Any, Any] = (scores + TIE_BREAK * self.popularity).astype(np.float32)
        return out

    def item_scores(self, items: Sequence[int]) -> np.ndarray[Any, Any]:
        return self.user_scores([UserHistory.of_items([item]) for item in items])

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        return {"vectors": self.vectors, "popularity": self.popularity}

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self.vectors = np.asarray(arrays["vectors"], dtype=np.float32)
        self.popularity = np.asarray(arrays["popularity"], dtype=np.float32)


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [ContentKNN]
