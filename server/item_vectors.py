"""The host's provider of item image embeddings (plugins.training.ItemVectorProvider).

`provider_for` binds a database, the plugin registry and a snapshot's item table; the provider
it returns reads each item's image (an `image` property, or the first of an `imageList`), resolves
relative paths against the database file's directory, loads the images with limits, and embeds
them through the vector cache in the database (storage/embeddings.py), so that re-training
re-embeds only the images that changed. A failed image is logged and counted, never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from plugins.embedders import Embedder
from plugins.images import ImageError, image_sources, load_images
from plugins.manager import PluginError, Registry
from plugins.training import ItemEmbeddings, ItemVectorProvider
from storage.database import Database
from storage.embeddings import embed_with_cache

log = logging.getLogger("reqo")

LOGGED_ERRORS = 5
"""How many failed images are logged one by one (then only their count)."""
CHUNK = 4096
"""Images decoded at a time: 70,000 decoded pictures at once would hold gigabytes."""


def provider_for(
    database: Database, registry: Registry, items: pa.Table, n_items: int
) -> ItemVectorProvider:
    """A provider of the embeddings of the items of `items` (a snapshot's item table, with
    "$idx"), over `n_items` dense item indexes."""
    base_dir = database.path.parent if database.path is not None else None

    def provide(
        *, embedder: str, settings: Mapping[str, Any], image_property: str
    ) -> ItemEmbeddings:
        model = make_embedder(registry, embedder, settings)
        vectors = np.zeros((n_items, model.dimensions), dtype=np.float32)
        present = np.zeros(n_items, dtype=np.bool_)
        if image_property not in items.column_names:
            return ItemEmbeddings(vectors, present, 0)
        indexes = items.column("$idx").to_pylist()
        values = items.column(image_property).to_pylist()
        wanted: list[tuple[int, str]] = []
        for index, value in zip(indexes, values, strict=True):
            sources = image_sources(value)
            if sources and index is not None and index < n_items:
                wanted.append((int(index), sources[0]))
        errors = 0
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            loaded = load_images([source for _, source in chunk], base_dir=base_dir)
            by_hash: dict[str, Image.Image] = {}
            rows: list[tuple[int, str]] = []
            for (index, _), result in zip(chunk, loaded, strict=True):
                if isinstance(result, ImageError):
                    if errors < LOGGED_ERRORS:
                        log.warning("item image skipped: %s", result)
                    errors += 1
                    continue
                by_hash[result.sha256] = result.image
                rows.append((index, result.sha256))
            embedded = embed_with_cache(database, model, by_hash)
            for index, digest in rows:
                vectors[index] = embedded[digest]
            present[[index for index, _ in rows]] = True
        if errors:
            log.warning(
                "%d of %d item images could not be loaded (property '%s'); those items have no "
                "embedding",
                errors,
                len(wanted),
                image_property,
            )
        # An all-zero vector (a blank image with pixels) has no direction: no neighbours.
        present &= np.any(vectors != 0, axis=1)
        return ItemEmbeddings(vectors, present, errors)

    return provide


def make_embedder(registry: Registry, name: str, settings: Mapping[str, Any]) -> Embedder:
    """An embedder from the registry; ValueError for an unknown name or bad settings."""
    try:
        return registry.embedder(name)(**dict(settings))
    except PluginError as error:
        raise ValueError(str(error)) from None
