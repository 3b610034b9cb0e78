"""Semantic retrieval: the items' searchable text as sentence embeddings, searched by cosine.

Each server keeps, per database and text embedder, one vector per item (its string and set
properties joined, as full-text search indexes them). Embedding is slow next to a request (about
4 ms an item on one core for all-MiniLM-L6-v2), so it runs on a background thread: at start-up
every item is queued, and an item that a write sets or changes is queued again and searchable
within seconds. Vectors are kept by the text's SHA-256 as well, so that text seen before (an
index built again after a property was added) costs nothing. Until an item is embedded, only
full-text retrieval finds it.

The search is exact (a matrix product over the vectors, a few milliseconds at 100,000 items);
a query is embedded at request time.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from plugins.text_embedders import TextEmbedder
from server.search.fulltext import Hit, searchable_properties, searchable_rows
from storage.contexts import ReadContext

logger = logging.getLogger("reqo")

BATCH = 256
"""Items embedded at a time by the background thread."""
MIN_SIMILARITY = 0.25
"""Below this cosine an item is not a semantic match (every item is some distance away)."""
CACHE_LIMIT = 1_000_000
"""Vectors kept by text hash (beyond it the cache starts again)."""


def item_text(values: Sequence[Any]) -> str:
    """An item's searchable text: its string and set values, in property order."""
    parts: list[str] = []
    for value in values:
        if value is None:
            continue
        if isinstance(value, list):
            parts.extend(str(v) for v in value)
        else:
            parts.append(str(value))
    return " ; ".join(parts)


class SemanticIndex:
    """One database's item vectors of one text embedder (thread-safe)."""

    def __init__(self, embedder: TextEmbedder) -> None:
        self.embedder = embedder
        dimensions = embedder.dimensions
        self._vectors = np.zeros((0, dimensions), dtype=np.float32)
        self._dense = np.zeros(0, dtype=np.int64)
        """Each slot's item's dense index."""
        self._ids: list[str | None] = []
        self._slots: dict[str, int] = {}
        self._lock = threading.Lock()
        self._cache: dict[bytes, np.ndarray[Any, Any]] = {}
        self._pending: queue.SimpleQueue[tuple[int, list[tuple[str, int, str]]] | None] = (
            queue.SimpleQueue()
        )
        self._generation = 0
        """Counts rebuilds: a batch queued before the latest one is dropped."""
        self._queued = 0
        self._worker = threading.Thread(target=self._embed_forever, daemon=True)
        self._worker.start()

    @property
    def waiting(self) -> int:
        """Items queued for embedding."""
        return self._queued

    def rebuild(self, ctx: ReadContext) -> None:
        """Queue every item (at start-up, or after a snapshot replaced the copy)."""
        rows = _rows(ctx, None)
        with self._lock:
            self._generation += 1
            self._vectors = np.zeros((0, self.embedder.dimensions), dtype=np.float32)
            self._dense = np.zeros(0, dtype=np.int64)
            self._ids = []
            self._slots = {}
        self._enqueue(rows)

    def update(self, ctx: ReadContext, item_ids: set[str]) -> None:
        """Queue the items of `item_ids` again; the deleted ones leave at once."""
        rows = _rows(ctx, sorted(item_ids))
        present = {row[0] for row in rows}
        with self._lock:
            for item_id in item_ids - present:
                slot = self._slots.pop(item_id, None)
                if slot is not None:
                    self._ids[slot] = None
                    self._vectors[slot] = 0.0
        self._enqueue(rows)

    def _enqueue(self, rows: list[tuple[str, int, str]]) -> None:
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            self._queued += len(chunk)
            self._pending.put((self._generation, chunk))

    def close(self) -> None:
        self._pending.put(None)

    def embed_query(self, text: str) -> np.ndarray[Any, Any]:
        vector: np.ndarray[Any, Any] = self.embedder.embed_texts([text])[0]
        return vector

    def search(self, vector: np.ndarray[Any, Any], limit: int) -> list[Hit]:
        """The `limit` items nearest to a query vector (cosine at least MIN_SIMILARITY)."""
        with self._lock:
            ids = list(self._ids)
            vectors, dense = self._vectors[: len(ids)], self._dense[: len(ids)]
        if not len(vectors):
            return []
        similarities = vectors @ vector
        count = min(limit, len(similarities))
        best = np.argpartition(-similarities, count - 1)[:count]
        best = best[np.argsort(-similarities[best], kind="stable")]
        hits = []
        for slot in best:
            item_id = ids[slot]
            if item_id is None or similarities[slot] < MIN_SIMILARITY:
                continue
            hits.append(Hit(int(dense[slot]), item_id, float(similarities[slot])))
        return hits

    # -- the background thread ---------------------------------------------------------------

    def _embed_forever(self) -> None:
        while True:
            queued = self._pending.get()
            if queued is None:
                return
            generation, chunk = queued
            try:
                if generation == self._generation:
                    self._embed(chunk, generation)
            except Exception:  # a failed batch must not stop the ones after it
                logger.exception("embedding item text for search failed")
            finally:
                self._queued -= len(chunk)

    def _embed(self, chunk: list[tuple[str, int, str]], generation: int) -> None:
        keys = [hashlib.sha256(text.encode()).digest() for _, _, text in chunk]
        missing = [i for i, key in enumerate(keys) if key not in self._cache]
        if missing:
            fresh = self.embedder.embed_texts([chunk[i][2] for i in missing])
            if len(self._cache) + len(missing) > CACHE_LIMIT:
                self._cache.clear()
            for position, i in enumerate(missing):
                self._cache[keys[i]] = fresh[position]
        items = [(item_id, dense) for item_id, dense, _ in chunk]
        self.put(items, np.stack([self._cache[key] for key in keys]), generation)

    def put(
        self,
        items: Sequence[tuple[str, int]],
        vectors: np.ndarray[Any, Any],
        generation: int | None = None,
    ) -> None:
        """Store the vectors of items (id, dense index); those of a rebuild's older generation
        are dropped (the rebuild queued them again)."""
        with self._lock:
            if generation is not None and generation != self._generation:
                return
            for (item_id, dense), vector in zip(items, vectors, strict=True):
                slot = self._slots.get(item_id)
                if slot is None:
                    slot = len(self._ids)
                    self._slots[item_id] = slot
                    self._ids.append(item_id)
                    self._grow(slot + 1)
                self._vectors[slot] = vector
                self._dense[slot] = dense

    def _grow(self, size: int) -> None:
        if size <= len(self._vectors):
            return
        capacity = max(size, 2 * len(self._vectors), 1024)
        vectors = np.zeros((capacity, self.embedder.dimensions), dtype=np.float32)
        vectors[: len(self._vectors)] = self._vectors
        dense = np.zeros(capacity, dtype=np.int64)
        dense[: len(self._dense)] = self._dense
        self._vectors, self._dense = vectors, dense


def _rows(ctx: ReadContext, item_ids: Sequence[str] | None) -> list[tuple[str, int, str]]:
    """(id, dense index, searchable text) of the items that have text (all, or of `item_ids`)."""
    properties = searchable_properties(ctx)
    if not properties:
        return []
    found = []
    for row in searchable_rows(ctx, properties, item_ids):
        text = item_text(row[2:])
        if text.strip():
            found.append((str(row[0]), int(row[1]), text))
    return found


FUSION_K = 60
"""Reciprocal rank fusion's constant (the usual 60: ranks deep in a list still count a little)."""


def fuse(*rankings: Sequence[Hit]) -> list[Hit]:
    """Reciprocal rank fusion: each item scores the sum of 1 / (FUSION_K + its rank) over the
    rankings that hold it; best first."""
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking):
            scores[hit.item_id] = scores.get(hit.item_id, 0.0) + 1.0 / (FUSION_K + rank + 1)
            first.setdefault(hit.item_id, hit)
    ordered = sorted(scores, key=lambda item: -scores[item])
    return [Hit(first[item].index, item, scores[item]) for item in ordered]
