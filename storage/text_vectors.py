"""The cache of item text vectors in the database, keyed by the text embedder (its name and
settings digest) and the SHA-256 of the text: a server that starts (or a trainer) embeds only
the texts that no process has embedded before.

Servers embed item text (Search Items' semantic index) and send what they embedded to the writer
as a `text-vectors` write (server/writer/commands.py); it lands in the writer's file, so every
snapshot after it (a server's start, a trainer's round) carries the vectors. It is a cache, not
catalog state: the change feed does not carry it, and Reset Database keeps it.

The vectors travel as `encode_vectors` writes them: float32 rows, little-endian, base64.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from storage.contexts import ReadContext, WriteContext
from storage.embeddings import vector_table, vectors_by_key
from storage.errors import InvalidInput

Vector = np.ndarray[Any, np.dtype[np.float32]]

MAX_VECTORS = 10_000
"""Vectors one `text-vectors` write may carry."""


def encode_vectors(vectors: Sequence[Vector]) -> str:
    """Rows of equal length as base64 of their float32 little-endian bytes."""
    matrix = np.ascontiguousarray(np.stack(list(vectors)), dtype="<f4")
    return base64.b64encode(matrix.tobytes()).decode("ascii")


def decode_vectors(text: str, count: int, dimensions: int) -> np.ndarray[Any, Any]:
    """What `encode_vectors` wrote, as a (count, dimensions) float32 matrix."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise InvalidInput("text vectors: 'vectors' is not base64") from None
    if len(raw) != 4 * count * dimensions:
        raise InvalidInput(
            f"text vectors: {len(raw)} bytes do not hold {count} vectors of {dimensions} floats"
        )
    return np.frombuffer(raw, dtype="<f4").reshape(count, dimensions).astype(np.float32)


def cached(
    ctx: ReadContext, embedder: str, digest: str, hashes: Sequence[str]
) -> dict[str, Vector]:
    """The cached vectors of the given text hashes (those the cache has)."""
    if not hashes:
        return {}
    table: pa.Table = ctx.conn.sql(
        "SELECT e.text_sha256, e.vector FROM text_embeddings e "
        "JOIN (SELECT DISTINCT unnest(?::VARCHAR[]) AS h) wanted ON e.text_sha256 = wanted.h "
        "WHERE e.embedder = ? AND e.settings_digest = ?",
        params=[list(hashes), embedder, digest],
    ).to_arrow_table()
    return vectors_by_key(table)


CACHES = {"text": ("text_embeddings", "text_sha256"), "image": ("image_embeddings", "image_sha256")}
"""The vector caches by kind: their table and key column."""


def store(
    ctx: WriteContext,
    embedder: str,
    digest: str,
    vectors: Mapping[str, Vector],
    kind: str = "text",
) -> None:
    """Cache vectors by content hash in the cache of `kind` (a hash already there is
    replaced)."""
    if not vectors:
        return
    table_name, key_column = CACHES[kind]
    table = vector_table(key_column, vectors)
    view = f"reqo_new_{table_name}"
    ctx.conn.register(view, table)
    try:
        ctx.conn.execute(
            f"INSERT OR REPLACE INTO {table_name} SELECT ?, ?, {key_column}, vector FROM {view}",
            [embedder, digest],
        )
    finally:
        ctx.conn.unregister(view)


def payloads(
    embedder: str, digest: str, vectors: Mapping[str, Vector], at_once: int = 1_000
) -> list[dict[str, Any]]:
    """Vectors by hash as the payloads of `text-vectors` (or `image-vectors`) writes, `at_once`
    vectors each."""
    hashes = list(vectors)
    found = []
    for start in range(0, len(hashes), at_once):
        chunk = hashes[start : start + at_once]
        found.append(
            {
                "embedder": embedder,
                "digest": digest,
                "dimensions": int(np.asarray(vectors[chunk[0]]).size),
                "hashes": chunk,
                "vectors": encode_vectors([vectors[h] for h in chunk]),
            }
        )
    return found


def store_payload(ctx: WriteContext, payload: Mapping[str, Any], kind: str = "text") -> int:
    """Cache the vectors of a `text-vectors` (or `image-vectors`, `kind` "image") write
    (`embedder`, `digest`, `hashes`, `dimensions`, `vectors`); how many. A malformed payload
    stores nothing (InvalidInput)."""
    embedder, digest = payload.get("embedder"), payload.get("digest")
    hashes, dimensions = payload.get("hashes"), payload.get("dimensions")
    if not isinstance(embedder, str) or not isinstance(digest, str):
        raise InvalidInput("text vectors: 'embedder' and 'digest' must be strings")
    if not isinstance(hashes, list) or not all(isinstance(h, str) and h for h in hashes):
        raise InvalidInput("text vectors: 'hashes' must be a list of hashes")
    if len(hashes) > MAX_VECTORS:
        raise InvalidInput(f"text vectors: at most {MAX_VECTORS} at a time, not {len(hashes)}")
    if not isinstance(dimensions, int) or not 0 < dimensions <= 16_384:
        raise InvalidInput("text vectors: 'dimensions' must be an integer in [1, 16384]")
    text = payload.get("vectors")
    if not isinstance(text, str):
        raise InvalidInput("text vectors: 'vectors' must be a base64 string")
    matrix = decode_vectors(text, len(hashes), dimensions)
    if not np.all(np.isfinite(matrix)):
        raise InvalidInput("text vectors: a vector holds a value that is not finite")
    store(ctx, embedder, digest, dict(zip(hashes, matrix, strict=True)), kind)
    return len(hashes)
