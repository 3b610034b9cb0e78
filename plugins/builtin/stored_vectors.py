"""The `stored-vectors` embedder: vectors that the catalog already holds, one per item.

A shop may compute embeddings elsewhere (a vendor's image model, text embeddings of the
descriptions) and send them as an item property. Recombee's property types have no vector, so
the vector is a `string` property holding a JSON array (`"[0.12, -0.5, 3]"`) or numbers separated
by commas or spaces. The visual-similarity model (and any plugin asking the host for item
vectors) then indexes those instead of embedding images. Such vectors cannot be computed for a
new picture, so "more like this picture" is not available with them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from plugins.algorithm import Parameter
from plugins.embedders import Embedder
from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from PIL import Image

_SEPARATORS = re.compile(r"[\s,;]+")


class StoredVectors(Embedder):
    name = "stored-vectors"
    description = (
        "vectors stored on the items: a string property holding a JSON array or numbers "
        "separated by commas or spaces"
    )
    parameters = (
        Parameter("property", str, "vector", "the item property that holds each item's vector"),
        Parameter(
            "dimensions",
            int,
            0,
            "the length of every vector (0: the length of the first one found)",
            0,
            1_000_000,
        ),
    )
    reads_property: ClassVar[bool] = True
    embeds_pictures: ClassVar[bool] = False

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._dimensions = int(self.settings["dimensions"])

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def vector_of(self, value: Any) -> np.ndarray[Any, Any] | None:
        """The vector of a property value; None for a missing or empty one; ValueError for a
        value that is not a list of finite numbers."""
        if value is None:
            return None
        numbers: list[Any]
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return None
            if text.startswith("["):
                try:
                    parsed = json.loads(text)
                except json.JSONDecodeError as error:
                    raise ValueError(f"not a JSON array: {error.msg}") from None
                if not isinstance(parsed, list):
                    raise ValueError("not a JSON array")
                numbers = parsed
            else:
                numbers = _SEPARATORS.split(text)
        elif isinstance(value, list | tuple):
            numbers = list(value)
        else:
            raise ValueError(f"a {type(value).__name__}, not a vector")
        try:
            vector = [float(number) for number in numbers]
        except (TypeError, ValueError):
            raise ValueError("holds something that is not a number") from None
        if not all(math.isfinite(x) for x in vector):
            raise ValueError("holds NaN or an infinite number")
        if not vector:
            return None
        if self._dimensions == 0:
            self._dimensions = len(vector)  # "the length of the first one found"
        if len(vector) != self._dimensions:
            raise ValueError(f"has {len(vector)} numbers, not {self._dimensions}")
        return np.asarray(vector, dtype=np.float32)

    def _embed(self, images: Sequence[Image.Image]) -> np.ndarray[Any, Any]:
        raise ValueError(
            "the stored-vectors embedder reads vectors from the items; it cannot embed a picture"
        )


@hookimpl
def register_embedders() -> list[type[Embedder]]:
    return [StoredVectors]
