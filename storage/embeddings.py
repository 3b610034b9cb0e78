"""The cache of image vectors in the database file, keyed by the embedder (its name and settings
digest) and the sha256 of the image's bytes: re-training re-embeds only the images that changed.

The table (`image_embeddings`) is created with the database (storage/database.py's bootstrap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from storage.database import Database, ReadContext, WriteContext

if TYPE_CHECKING:
    from PIL import Image

Vector = np.ndarray[Any, np.dtype[np.float32]]


class CacheKey(Protocol):
    """What vectors are cached under (plugins.embedders.EmbedderKey)."""

    @property
    def name(self) -> str: ...

    @property
    def settings_digest(self) -> str: ...


class ImageEmbedder(Protocol):
    """What `embed_with_cache` needs of an embedder (plugins.embedders.Embedder)."""

    @property
    def name(self) -> str: ...

    @property
    def key(self) -> CacheKey: ...

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray[Any, Any]: ...


FLUSH_EVERY = 2048
"""`embed_with_cache` stores new vectors at least this often (images), so that an interrupted
job keeps most of its work."""


def cached(database: Database, key: CacheKey, hashes: Sequence[str]) -> dict[str, Vector]:
    """The cached vectors of the given image hashes (those the cache has) for the embedder."""
    if not hashes:
        return {}

    def read(ctx: ReadContext) -> pa.Table:
        return ctx.conn.sql(
            "SELECT e.image_sha256, e.vector FROM image_embeddings e "
            "JOIN (SELECT DISTINCT unnest(?::VARCHAR[]) AS h) wanted ON e.image_sha256 = wanted.h "
            "WHERE e.embedder = ? AND e.settings_digest = ?",
            params=[list(hashes), key.name, key.settings_digest],
        ).to_arrow_table()

    return vectors_by_key(database.read_sync(read))


def vectors_by_key(table: pa.Table) -> dict[str, Vector]:
    """A (key, vector) table's vectors by key (a cache's rows, read as Arrow)."""
    if table.num_rows == 0:
        return {}
    names = table.column(0).to_pylist()
    lists = table.column(1).combine_chunks()
    values = lists.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    offsets = lists.offsets.to_numpy()
    return {name: values[offsets[i] : offsets[i + 1]].copy() for i, name in enumerate(names)}


def vector_table(key_column: str, vectors: Mapping[str, Vector]) -> pa.Table:
    """Vectors by key as a (key, vector) Arrow table, to insert into a cache table."""
    keys = list(vectors)
    rows = [np.asarray(vectors[k], dtype=np.float32).reshape(-1) for k in keys]
    lengths = np.array([len(row) for row in rows], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = pa.array(np.concatenate(rows), type=pa.float32())
    return pa.table(
        {
            key_column: pa.array(keys, type=pa.string()),
            "vector": pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), values),
        }
    )


def store(database: Database, key: CacheKey, vectors: Mapping[str, Vector]) -> None:
    """Cache vectors by image hash for the embedder (one write job; a hash already there is
    replaced)."""
    if not vectors:
        return
    table = vector_table("image_sha256", vectors)

    def write(ctx: WriteContext) -> None:
        view = "reqo_new_image_embeddings"
        ctx.conn.register(view, table)
        try:
            ctx.conn.execute(
                "INSERT OR REPLACE INTO image_embeddings "
                f"SELECT ?, ?, image_sha256, vector FROM {view}",
                [key.name, key.settings_digest],
            )
        finally:
            ctx.conn.unregister(view)

    database.write_sync(write)


def added_since(database: Database, snapshot: Path) -> dict[tuple[str, str], dict[str, Vector]]:
    """The vectors a database loaded from a snapshot directory has cached since (what a
    trainer embedded), by (embedder, settings digest), then image hash."""
    parquet = snapshot / "image_embeddings.parquet"

    def read(ctx: ReadContext) -> pa.Table:
        sql = "SELECT embedder, settings_digest, image_sha256, vector FROM image_embeddings"
        if parquet.exists():
            quoted = str(parquet).replace("'", "''")
            sql += (
                f" ANTI JOIN read_parquet('{quoted}') s "
                "USING (embedder, settings_digest, image_sha256)"
            )
        return ctx.conn.sql(sql).to_arrow_table()

    table = database.read_sync(read)
    found: dict[tuple[str, str], dict[str, Vector]] = {}
    pairs = set(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))
    for embedder, digest in sorted(pairs):
        mask = pc.and_(pc.equal(table.column(0), embedder), pc.equal(table.column(1), digest))
        found[(embedder, digest)] = vectors_by_key(table.filter(mask).select([2, 3]))
    return found


def embed_with_cache(
    database: Database,
    embedder: ImageEmbedder,
    images_by_hash: Mapping[str, Image.Image],
    *,
    batch_size: int = 64,
    progress: bool | None = None,
) -> dict[str, Vector]:
    """The vector of every image: from the cache where it has one, otherwise embedded (in batches
    of `batch_size`) and stored. `progress`: a progress bar over the images embedded (None: on a
    terminal only)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    key = embedder.key
    found = cached(database, key, list(images_by_hash))
    missing = [h for h in images_by_hash if h not in found]
    pending: dict[str, Vector] = {}
    disable = None if progress is None else not progress
    with tqdm(total=len(missing), desc=f"embedding ({embedder.name})", disable=disable) as bar:
        for start in range(0, len(missing), batch_size):
            batch = missing[start : start + batch_size]
            vectors = embedder.embed([images_by_hash[h] for h in batch])
            for h, vector in zip(batch, vectors, strict=True):
                pending[h] = vector
            bar.update(len(batch))
            if len(pending) >= FLUSH_EVERY:
                store(database, key, pending)
                found.update(pending)
                pending = {}
    store(database, key, pending)
    found.update(pending)
    return {h: found[h] for h in images_by_hash}
