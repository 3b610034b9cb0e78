"""The TextEmbedder base class: what turns item text (and search queries) into vectors.

Text embedders are registered through the same hook as image embedders (`register_embedders`);
the host tells them apart by their base class. A text embedder takes a batch of strings and
returns one L2-normalised float32 row per string, so that the dot product of two rows is their
cosine. Search Items embeds each item's searchable text once (and again when it changes) and
each query at request time.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from plugins.algorithm import Parameter
from plugins.embedders import EmbedderKey, Vectors, normalise


class TextEmbedder(ABC):
    """Base class of text embedders.

    Subclasses set `name`, `description` and `parameters`, and implement `dimensions` and
    `_embed`; the host calls `embed_texts`, which checks the shape and L2-normalises the rows.
    A subclass may also implement `_embed_query`, a faster path for one short text (a search
    query, embedded while a client waits); by default a query is a batch of one.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    not_in_key: ClassVar[frozenset[str]] = frozenset({"device"})
    """Settings that do not change the vectors, left out of `key` (where the network runs)."""

    def __init__(self, **settings: Any) -> None:
        self.settings: Mapping[str, Any] = settings

    @property
    @abstractmethod
    def dimensions(self) -> int:
        """The length of each vector."""

    @abstractmethod
    def _embed(self, texts: Sequence[str]) -> np.ndarray[Any, Any]:
        """One row per text (any float dtype; the host normalises them)."""

    @property
    def key(self) -> EmbedderKey:
        """The cache key: the name and a digest of the settings that change the vectors."""
        relevant = {k: v for k, v in sorted(self.settings.items()) if k not in self.not_in_key}
        text = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
        return EmbedderKey(self.name, hashlib.sha256(text.encode()).hexdigest()[:16])

    def _embed_query(self, text: str) -> np.ndarray[Any, Any]:
        """One text's row (any float dtype); by default `_embed` of a batch of one."""
        row: np.ndarray[Any, Any] = np.asarray(self._embed([text]))[0]
        return row

    def embed_query(self, text: str) -> Vectors:
        """One L2-normalised float32 vector of a query (zero for an empty text)."""
        if not text.strip():
            return np.zeros(self.dimensions, dtype=np.float32)
        raw = np.asarray(self._embed_query(text), dtype=np.float32).reshape(1, -1)
        if raw.shape != (1, self.dimensions):
            raise ValueError(
                f"text embedder '{self.name}' returned shape {raw.shape[1:]} for a query, "
                f"expected ({self.dimensions},)"
            )
        vector: Vectors = normalise(raw)[0]
        return vector

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised float32 row per text (a zero row for an empty text)."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        raw = np.asarray(self._embed(list(texts)), dtype=np.float32)
        if raw.shape != (len(texts), self.dimensions):
            raise ValueError(
                f"text embedder '{self.name}' returned shape {raw.shape}, "
                f"expected ({len(texts)}, {self.dimensions})"
            )
        vectors = normalise(raw)
        vectors[[i for i, text in enumerate(texts) if not text.strip()]] = 0.0
        return vectors
