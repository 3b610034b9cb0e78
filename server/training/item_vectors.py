"""The host's provider of item embeddings (plugins.training.ItemVectorProvider).

`provider_for` binds a database, the plugin registry and a snapshot's item table; the provider
it returns reads each item's image (an `image` property, or the first of an `imageList`), resolves
relative paths against the database file's directory, and embeds the images in one of three ways,
by what the embedder is:

- a pretrained network (EfficientNet, pixels): through the vector cache in the database
  (storage/embeddings.py); images are read and hashed first, and only those without a cached
  vector are decoded and embedded, so that re-training costs little when the catalog is the same;
- a trainable one (the small CNN): fitted on the catalog's images and the labels of its label
  property, then every image embedded with the new weights (no cache: another training, other
  vectors); what it learned comes back in `ItemEmbeddings.embedder_state`;
- one that reads vectors stored on the items: parsed from the item property, no images at all.

A failed image (or a malformed stored vector) is logged and counted, never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image
from tqdm import tqdm

from plugins.embedders import Embedder
from plugins.images import ImageBytes, ImageError, image_sources, read_images
from plugins.manager import PluginError, Registry
from plugins.training import ItemEmbeddings, ItemTextVectorProvider, ItemVectorProvider
from server.search.semantic import item_text, text_hash
from storage.database import Database, ReadContext
from storage.embeddings import cached, embed_with_cache
from storage.text_vectors import cached as cached_text

log = logging.getLogger("reqo")

LOGGED_ERRORS = 5
"""How many failed images are logged one by one (then only their count)."""
CHUNK = 4096
"""Images read (and decoded) at a time: 70,000 decoded pictures at once would hold gigabytes."""
EMBED_BATCH = 1024
"""Preprocessed images embedded at a time by a trainable embedder."""


@dataclass
class _Failures:
    """The images (or stored vectors) that failed, logged one by one up to LOGGED_ERRORS."""

    what: str
    count: int = 0
    reasons: list[str] = field(default_factory=list)

    def add(self, reason: str) -> None:
        if self.count < LOGGED_ERRORS:
            log.warning("%s skipped: %s", self.what, reason)
        self.count += 1

    def report(self, total: int, prop: str) -> None:
        if self.count:
            log.warning(
                "%d of %d %ss could not be used (property '%s'); those items have no embedding",
                self.count,
                total,
                self.what,
                prop,
            )


def provider_for(
    database: Database, registry: Registry, items: pa.Table, n_items: int
) -> ItemVectorProvider:
    """A provider of the embeddings of the items of `items` (a snapshot's item table, with
    "$idx"), over `n_items` dense item indexes."""

    def provide(
        *, embedder: str, settings: Mapping[str, Any], image_property: str
    ) -> ItemEmbeddings:
        model = make_embedder(registry, embedder, settings)
        if model.reads_property:
            return _stored(model, items, n_items)
        if model.trainable:
            return _trained(database, model, items, n_items, image_property)
        return _cached(database, model, items, n_items, image_property)

    return provide


def text_provider_for(
    registry: Registry, items: pa.Table, n_items: int, database: Database | None = None
) -> ItemTextVectorProvider:
    """A provider of the text embeddings of the items of `items` (a snapshot's item table):
    each item's string and set values joined, as Search Items embeds them. With a `database`,
    vectors come from its text vector cache (storage/text_vectors.py, which the servers fill)
    where it has them; only the other texts are embedded."""

    def provide(*, embedder: str) -> ItemEmbeddings:
        try:
            model = registry.text_embedder(embedder)()
        except PluginError as error:
            raise ValueError(str(error)) from None
        columns = [
            name
            for name, kind in zip(items.schema.names, items.schema.types, strict=True)
            if _is_text(kind) and not name.startswith("$")
        ]
        indexes = items.column("$idx").to_pylist()
        values = [items.column(name).to_pylist() for name in columns]
        texts = [item_text([column[row] for column in values]) for row in range(len(indexes))]
        vectors = np.zeros((n_items, model.dimensions), dtype=np.float32)
        present = np.zeros(n_items, dtype=bool)
        chosen = [row for row, text in enumerate(texts) if text.strip() and indexes[row] < n_items]
        key = model.key
        for start in range(0, len(chosen), 1024):
            rows = chosen[start : start + 1024]
            hashes = [text_hash(texts[row]) for row in rows]
            found: dict[str, np.ndarray[Any, Any]] = {}
            if database is not None:
                found = _cached_texts(database, key.name, key.settings_digest, hashes)
            missing = [row for row, h in zip(rows, hashes, strict=True) if h not in found]
            embedded = model.embed_texts([texts[row] for row in missing])
            found.update(
                (text_hash(texts[row]), embedded[position]) for position, row in enumerate(missing)
            )
            for row, h in zip(rows, hashes, strict=True):
                vectors[indexes[row]] = found[h]
                present[indexes[row]] = True
        return ItemEmbeddings(vectors, present)

    return provide


def _cached_texts(
    database: Database, embedder: str, digest: str, hashes: list[str]
) -> dict[str, np.ndarray[Any, Any]]:
    def read(ctx: ReadContext) -> dict[str, np.ndarray[Any, Any]]:
        return dict(cached_text(ctx, embedder, digest, hashes))

    return database.read_sync(read)


def _is_text(kind: pa.DataType) -> bool:
    """A string column, or a list of strings (a set property)."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def make_embedder(registry: Registry, name: str, settings: Mapping[str, Any]) -> Embedder:
    """An embedder from the registry; ValueError for an unknown name or bad settings."""
    try:
        return registry.embedder(name)(**dict(settings))
    except PluginError as error:
        raise ValueError(str(error)) from None


def _wanted(items: pa.Table, n_items: int, prop: str) -> list[tuple[int, str]]:
    """(dense index, image source) of every item with an image in the property."""
    if prop not in items.column_names:
        return []
    wanted = []
    indexes = items.column("$idx").to_pylist()
    for index, value in zip(indexes, items.column(prop).to_pylist(), strict=True):
        sources = image_sources(value)
        if sources and index is not None and index < n_items:
            wanted.append((int(index), sources[0]))
    return wanted


def _read(
    database: Database, wanted: list[tuple[int, str]], failures: _Failures
) -> Iterator[list[tuple[int, ImageBytes]]]:
    """The images' bytes, CHUNK at a time, the failed ones counted and left out."""
    base_dir = database.path.parent if database.path is not None else None
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        read = read_images([source for _, source in chunk], base_dir=base_dir)
        good = []
        for (index, _), result in zip(chunk, read, strict=True):
            if isinstance(result, ImageError):
                failures.add(str(result))
            else:
                good.append((index, result))
        yield good


def _finish(
    vectors: np.ndarray[Any, np.dtype[np.float32]],
    present: np.ndarray[Any, np.dtype[np.bool_]],
    failures: _Failures,
    total: int,
    prop: str,
    state: Mapping[str, np.ndarray[Any, Any]] | None = None,
) -> ItemEmbeddings:
    failures.report(total, prop)
    # An all-zero vector (a blank image with pixels) has no direction: no neighbours.
    present &= np.any(vectors != 0, axis=1)
    return ItemEmbeddings(vectors, present, failures.count, dict(state or {}))


def _cached(
    database: Database, model: Embedder, items: pa.Table, n_items: int, prop: str
) -> ItemEmbeddings:
    vectors = np.zeros((n_items, model.dimensions), dtype=np.float32)
    present = np.zeros(n_items, dtype=np.bool_)
    wanted = _wanted(items, n_items, prop)
    failures = _Failures("item image")
    for chunk in _read(database, wanted, failures):
        found = cached(database, model.key, list({image.sha256 for _, image in chunk}))
        to_embed: dict[str, Image.Image] = {}
        rows: list[tuple[int, str]] = []
        for index, image in chunk:
            if image.sha256 not in found and image.sha256 not in to_embed:
                try:
                    to_embed[image.sha256] = image.decode().image
                except ImageError as error:
                    failures.add(str(error))
                    continue
            rows.append((index, image.sha256))
        found.update(embed_with_cache(database, model, to_embed))
        for index, digest in rows:
            if digest in found:
                vectors[index] = found[digest]
                present[index] = True
    return _finish(vectors, present, failures, len(wanted), prop)


def _trained(
    database: Database, model: Embedder, items: pa.Table, n_items: int, prop: str
) -> ItemEmbeddings:
    label_property = model.label_property
    if label_property is None or label_property not in items.column_names:
        raise ValueError(
            f"embedder '{model.name}' learns from the item property '{label_property}', which "
            "the catalog does not have (set its label_property)"
        )
    label_of = dict(
        zip(
            items.column("$idx").to_pylist(),
            items.column(label_property).to_pylist(),
            strict=True,
        )
    )
    wanted = _wanted(items, n_items, prop)
    failures = _Failures("item image")
    indexes: list[int] = []
    inputs: list[np.ndarray[Any, Any]] = []
    for chunk in _read(database, wanted, failures):
        decoded: list[tuple[int, Image.Image]] = []
        for index, image in chunk:
            try:
                decoded.append((index, image.decode().image))
            except ImageError as error:
                failures.add(str(error))
        if decoded:
            inputs.append(model.preprocess([picture for _, picture in decoded]))
            indexes.extend(index for index, _ in decoded)
    vectors = np.zeros((n_items, model.dimensions), dtype=np.float32)
    present = np.zeros(n_items, dtype=np.bool_)
    if not indexes:
        return _finish(vectors, present, failures, len(wanted), prop)
    arrays = np.concatenate(inputs)
    labels = [label_of.get(index) for index in indexes]
    labelled = np.array([label is not None for label in labels], dtype=np.bool_)
    log.info(
        "training embedder '%s' on %d labelled images of %d",
        model.name,
        labelled.sum(),
        len(labels),
    )
    model.fit_arrays(
        arrays[labelled], [label for label in labels if label is not None], progress=True
    )
    rows = np.asarray(indexes, dtype=np.int64)
    for start in tqdm(range(0, len(rows), EMBED_BATCH), desc=f"embedding ({model.name})"):
        stop = start + EMBED_BATCH
        vectors[rows[start:stop]] = model.embed_inputs(arrays[start:stop])
    present[rows] = True
    return _finish(vectors, present, failures, len(wanted), prop, model.state())


def _stored(model: Embedder, items: pa.Table, n_items: int) -> ItemEmbeddings:
    prop = model.source_property or ""
    failures = _Failures("stored vector")
    parsed: list[tuple[int, np.ndarray[Any, Any]]] = []
    if prop in items.column_names:
        columns = zip(
            items.column("$idx").to_pylist(),
            items.column("$id").to_pylist(),
            items.column(prop).to_pylist(),
            strict=True,
        )
        for index, item_id, value in columns:
            if index is None or index >= n_items:
                continue
            try:
                vector = model.vector_of(value)
            except ValueError as error:
                failures.add(f"item '{item_id}', property '{prop}': {error}")
                continue
            if vector is not None:
                parsed.append((int(index), vector))
    vectors = np.zeros((n_items, model.dimensions), dtype=np.float32)
    present = np.zeros(n_items, dtype=np.bool_)
    if parsed:
        rows = np.asarray([index for index, _ in parsed], dtype=np.int64)
        vectors[rows] = model.checked(np.stack([v for _, v in parsed]), len(parsed))
        present[rows] = True
    return _finish(vectors, present, failures, len(parsed) + failures.count, prop)
