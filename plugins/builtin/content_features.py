"""Items' content as vectors, for models that learn from content (content-mf): text and image
embeddings from the host's providers, and the item properties as multi-hot and standardised
numbers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from plugins.embedders import normalise
from plugins.training import ItemEmbeddings, TrainingData

Array = np.ndarray[Any, Any]
MIN_CATEGORY_ITEMS = 2
"""A categorical value held by fewer items says nothing about any other item: left out."""


def item_content(data: TrainingData, settings: Mapping[str, Any]) -> tuple[Array, Array]:
    """Every item's content vector, (n_items, d) float64, and whether it has any content.

    Blocks, each scaled to unit length per item so that none outweighs the others by its
    dimensions: the text embedding (where the host provides text vectors), the image embedding
    (where it provides image vectors and the items have `image_property`), and the categorical
    and numeric properties. An item without a block has zeros there."""
    blocks = embedding_blocks(data, settings)
    if settings["properties"]:
        blocks.append(property_vectors(data.item_properties, data.n_items, settings))
    if not blocks:
        return np.zeros((data.n_items, 0)), np.zeros(data.n_items, dtype=np.bool_)
    content = np.hstack([vectors for vectors, _ in blocks])
    present = np.logical_or.reduce([present for _, present in blocks])
    return content, present


def embedding_blocks(data: TrainingData, settings: Mapping[str, Any]) -> list[tuple[Array, Array]]:
    """The items' text embedding (`text_embedder`, where the host provides text vectors) and
    image embedding (`image_property` with `image_embedder` and `image_embedder_settings`, where
    it provides image vectors and the items have the property), each centred and at unit
    length (see `_centred`), with which items have it."""
    blocks: list[tuple[Array, Array]] = []
    if settings["text_embedder"] and data.item_text_vectors is not None:
        blocks.append(_centred(data.item_text_vectors(embedder=settings["text_embedder"]), data))
    prop = settings["image_property"]
    if prop and data.item_vectors is not None and prop in data.item_properties.column_names:
        embeddings = data.item_vectors(
            embedder=settings["image_embedder"],
            settings=settings["image_embedder_settings"],
            image_property=prop,
        )
        blocks.append(_centred(embeddings, data))
    return blocks


def _centred(embeddings: ItemEmbeddings, data: TrainingData) -> tuple[Array, Array]:
    """The embeddings centred on the catalog's mean and scaled to unit length again: one
    catalog's embeddings share a large common part, and what tells items apart is the rest."""
    rows = min(data.n_items, len(embeddings.vectors))
    vectors = np.zeros((data.n_items, embeddings.vectors.shape[1]))
    present = np.zeros(data.n_items, dtype=np.bool_)
    present[:rows] = embeddings.present[:rows]
    if present.any():
        given = np.asarray(embeddings.vectors[:rows], dtype=np.float64)
        centred = normalise(given - given[present[:rows]].mean(axis=0))
        vectors[:rows] = np.where(present[:rows, None], centred, 0.0)
    return vectors, present


def property_vectors(
    table: pa.Table, n_items: int, settings: Mapping[str, Any]
) -> tuple[Array, Array]:
    """Categorical properties as multi-hot (set values, booleans, and strings with at most
    `max_categories` distinct values that repeat: not titles or URLs), then numeric ones
    standardised and clipped to ±3; the categorical part and the numeric part each scaled to
    unit length per item. Values held by fewer than two items are left out."""
    indexes = np.asarray(table.column("$idx").to_pylist(), dtype=np.int64)
    inside = indexes < n_items
    categorical: list[Array] = []
    numeric: list[Array] = []
    for name, kind in zip(table.schema.names, table.schema.types, strict=True):
        if name.startswith("$"):
            continue
        values = table.column(name).to_pylist()
        if pa.types.is_list(kind) or pa.types.is_boolean(kind) or pa.types.is_string(kind):
            columns = _multi_hot(values, kind, int(settings["max_categories"]))
            if columns is not None:
                categorical.append(columns)
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
            column = np.array([np.nan if v is None else float(v) for v in values])
            known = np.isfinite(column)
            if known.sum() >= MIN_CATEGORY_ITEMS and np.std(column[known]) > 0:
                z = (column - column[known].mean()) / column[known].std()
                numeric.append(np.where(known, np.clip(z, -3.0, 3.0), 0.0)[:, None])
    parts = [np.hstack(part) for part in (categorical, numeric) if part]
    by_row = np.hstack([normalise(part).astype(np.float64) for part in parts]) if parts else None
    vectors = np.zeros((n_items, 0 if by_row is None else by_row.shape[1]))
    if by_row is not None:
        vectors[indexes[inside]] = by_row[inside]
    return vectors, np.any(vectors != 0, axis=1)


def _multi_hot(values: list[Any], kind: pa.DataType, max_categories: int) -> Array | None:
    """Rows x categories, 1 where a row holds the value; None where the property is not
    categorical (a string with too many distinct values, or none that repeats)."""
    held = [
        ([] if v is None else [str(x) for x in v])
        if pa.types.is_list(kind)
        else ([] if v is None else [str(v)])
        for v in values
    ]
    counts: dict[str, int] = {}
    for row_values in held:
        for value in set(row_values):
            counts[value] = counts.get(value, 0) + 1
    if pa.types.is_string(kind):
        with_value = sum(1 for row_values in held if row_values)
        # Mostly distinct strings (titles, URLs, descriptions) are not categories.
        if len(counts) > max_categories or len(counts) > with_value / 2:
            return None
    kept = sorted(value for value, count in counts.items() if count >= MIN_CATEGORY_ITEMS)
    if not kept:
        return None
    column_of = {value: column for column, value in enumerate(kept)}
    matrix = np.zeros((len(held), len(kept)))
    for row, row_values in enumerate(held):
        for value in row_values:
            if value in column_of:
                matrix[row, column_of[value]] = 1.0
    return matrix
