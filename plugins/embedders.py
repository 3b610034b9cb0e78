"""The Embedder base class: what turns item images into vectors, built in or from a plugin.

An embedder takes a batch of PIL images and returns one L2-normalised float32 row per image (the
index searches by angle). Its `key` (name and a digest of the settings that change the vectors)
keys the cache of vectors by image content hash (storage/embeddings.py), so that re-training
re-embeds only the images that changed.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from plugins.algorithm import Parameter, ParameterError

if TYPE_CHECKING:
    from PIL import Image

Vectors = np.ndarray[Any, np.dtype[np.float32]]
"""Embeddings: one row per image, float32, each row of unit length (or zero)."""

DEVICE = Parameter(
    "device",
    str,
    "auto",
    "where the network runs: auto (CUDA when available, else CPU), cpu or cuda",
    choices=("auto", "cpu", "cuda"),
)
"""The device parameter that embedders running a torch network list among their parameters."""


class EmbedderParameterError(ParameterError):
    """An embedder's settings do not fit its parameters."""

    def __init__(self, embedder: str, parameter: str, problem: str) -> None:
        ValueError.__init__(self, f"embedder '{embedder}', parameter '{parameter}': {problem}")
        self.algorithm = embedder
        self.embedder = embedder
        self.parameter = parameter
        self.problem = problem


@dataclass(frozen=True)
class EmbedderKey:
    """What a cached vector was computed with: the embedder's name and a digest of its settings
    (those that change the vectors)."""

    name: str
    settings_digest: str


class Embedder(ABC):
    """Base class of image embedders.

    Subclasses set `name`, `description` and `parameters`, and implement `dimensions` and
    `_embed`; the host calls `embed`, which checks the shape and L2-normalises the rows.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    not_in_key: ClassVar[frozenset[str]] = frozenset({"device"})
    """Settings that do not change the vectors, left out of `key` (where the network runs)."""

    trainable: ClassVar[bool] = False
    """Whether the embedder learns from the catalog (a small CNN): then the host preprocesses
    the catalog's images (`preprocess`), fits it on them with the labels of its `label_property`
    (`fit_arrays`), embeds them (`embed_inputs`), and the model that uses it saves its `state`,
    so that it can embed pictures later with the same weights (`restore`)."""
    reads_property: ClassVar[bool] = False
    """Whether the embedder reads vectors stored on the items instead of images: then the host
    gives it each item's value of its `source_property` (`vector_of`)."""
    embeds_pictures: ClassVar[bool] = True
    """Whether it can embed a picture that is not in the catalog ("more like this picture")."""

    def __init__(self, **settings: Any) -> None:
        self.settings = self.validate(settings)

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The settings with defaults filled in; EmbedderParameterError names an unknown or bad
        one."""
        known = {p.name: p for p in cls.parameters}
        for key in settings:
            if key not in known:
                listed = ", ".join(known) or "none"
                raise EmbedderParameterError(cls.name, key, f"unknown parameter (known: {listed})")
        validated = {}
        for name, parameter in known.items():
            if name not in settings:
                validated[name] = parameter.default
                continue
            try:
                validated[name] = parameter.validate(cls.name, settings[name])
            except ParameterError as error:
                raise EmbedderParameterError(cls.name, name, error.problem) from None
        return validated

    @property
    @abstractmethod
    def dimensions(self) -> int:
        """The length of each vector."""

    @abstractmethod
    def _embed(self, images: Sequence[Image.Image]) -> np.ndarray[Any, Any]:
        """The raw vectors of a batch: (len(images), self.dimensions); `embed` normalises them."""

    @property
    def key(self) -> EmbedderKey:
        """The cache key: the name and a digest of the settings that change the vectors."""
        relevant = {k: v for k, v in sorted(self.settings.items()) if k not in self.not_in_key}
        text = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
        return EmbedderKey(self.name, hashlib.sha256(text.encode()).hexdigest()[:16])

    def embed(self, images: Sequence[Image.Image]) -> Vectors:
        """Unit-length float32 vectors of the images, one row each: (len(images), dimensions).
        An all-zero raw vector stays zero."""
        if not images:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        raw = np.asarray(self._embed(images), dtype=np.float32)
        return self.checked(raw, len(images))

    def checked(self, raw: np.ndarray[Any, Any], count: int) -> Vectors:
        """Raw vectors checked (`count` rows of `dimensions`, finite) and L2-normalised."""
        expected = (count, self.dimensions)
        if raw.shape != expected:
            raise ValueError(
                f"embedder '{self.name}' returned vectors of shape {raw.shape}, not {expected}"
            )
        if not np.isfinite(raw).all():
            raise ValueError(f"embedder '{self.name}' returned NaN or infinite values")
        return normalise(raw)

    # -- embedders that learn from the catalog (trainable) ---------------------------------------

    @property
    def label_property(self) -> str | None:
        """The item property whose values a trainable embedder learns to tell apart."""
        value = self.settings.get("label_property")
        return str(value) if value is not None else None

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray[Any, Any]:
        """The network's input for a batch of images (trainable embedders)."""
        raise NotImplementedError(f"embedder '{self.name}' does not preprocess to arrays")

    def fit_arrays(
        self,
        inputs: np.ndarray[Any, Any],
        labels: Sequence[Any] | np.ndarray[Any, Any],
        *,
        progress: bool = False,
    ) -> Self:
        """Learn from preprocessed images and their labels (trainable embedders)."""
        raise NotImplementedError(f"embedder '{self.name}' does not learn from the catalog")

    def embed_arrays(self, inputs: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The raw vectors of preprocessed images (trainable embedders)."""
        raise NotImplementedError(f"embedder '{self.name}' does not embed arrays")

    def embed_inputs(self, inputs: np.ndarray[Any, Any]) -> Vectors:
        """Unit-length vectors of preprocessed images, as `embed` gives for the images."""
        if not len(inputs):
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return self.checked(np.asarray(self.embed_arrays(inputs), np.float32), len(inputs))

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        """What a trainable embedder learned, as plain arrays (empty for the others)."""
        return {}

    def restore(self, state: Mapping[str, np.ndarray[Any, Any]]) -> Self:
        """Take back what `state` returned (nothing to do for embedders that do not learn)."""
        return self

    # -- embedders of vectors stored on the items (reads_property) -------------------------------

    @property
    def source_property(self) -> str | None:
        """The item property a `reads_property` embedder reads its vectors from."""
        value = self.settings.get("property")
        return str(value) if value is not None else None

    def vector_of(self, value: Any) -> np.ndarray[Any, Any] | None:
        """The raw vector of a property value (None where the item has none); ValueError for a
        value that is not a vector."""
        raise NotImplementedError(f"embedder '{self.name}' does not read item properties")


def normalise(vectors: np.ndarray[Any, Any]) -> Vectors:
    """The rows scaled to unit length (zero rows stay zero), as float32."""
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    unit: Vectors = np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)
    return unit.astype(np.float32, copy=False)


def resolve_device(setting: str) -> str:
    """The torch device of a `device` setting: "auto" is CUDA when available, else the CPU."""
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but CUDA is not available")
    return setting
