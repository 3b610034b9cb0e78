"""Semantic retrieval: the items' searchable text as sentence embeddings, searched by cosine.

Each server keeps, per database and text embedder, one vector per item (its string and set
properties joined, as full-text search indexes them). Embedding is slow next to a request (about
4 ms an item on one core for all-MiniLM-L6-v2), so it runs on a background thread at a lower
CPU priority: at start-up every item is queued, and an item that a write sets or changes is
queued again and searchable within seconds. Until an item is embedded, only full-text retrieval
finds it.

Vectors are kept by the text's SHA-256: in this process, and in the database's cache
(storage/text_vectors.py, through `VectorCache`), so that a server that starts again, or another
server, embeds only texts that nobody embedded before.

The search uses the vector index of image similarity (plugins/ann.py, Annoy above 20,000
vectors): it is built over the vectors as they were at one moment, on a background thread, and
what changed since (new items, changed or deleted ones, told apart by a version per slot) is
searched exactly beside it, until the next build takes them in.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from plugins.ann import EXACT_BELOW, VectorIndex, top_k
from plugins.text_embedders import TextEmbedder
from server.search.fulltext import Hit, searchable_properties, searchable_rows
from storage.contexts import ReadContext

logger = logging.getLogger("reqo")

Vector = np.ndarray[Any, np.dtype[np.float32]]

BATCH = 256
"""Items embedded at a time by the background thread."""
MIN_SIMILARITY = 0.25
"""Below this cosine an item is not a semantic match (every item is some distance away)."""
CACHE_LIMIT = 1_000_000
"""Vectors kept in process by text hash (beyond it the cache starts again)."""
TREES = 25
"""Annoy trees: at 100,000 clustered 384-d vectors, recall@50 1.0 and 0.8 ms a search, built in
4.4 s on this machine's two cores (10 trees: recall 0.99, 0.5 ms, 2.9 s)."""
REBUILD_AT = 2_000
"""Vectors changed since the last build that make it worth building again (the exact search of
them costs about 0.1 ms a thousand)."""
MIN_FETCH = 100
"""The fewest nearest items asked of the vector index, however few are wanted."""
BACKGROUND_NICENESS = 10
"""How much lower than a request's the CPU priority of embedding and index builds is."""


class VectorCache(Protocol):
    """Where text vectors are kept beyond this process (the database's cache)."""

    def lookup(self, hashes: Sequence[str]) -> dict[str, Vector]:
        """The vectors the cache holds of these text hashes."""
        ...

    def keep(self, vectors: Mapping[str, Vector]) -> None:
        """Hand new vectors to the cache (without waiting for them to be stored)."""
        ...


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


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class _Built:
    """A vector index over the slots as they were when it was built."""

    index: VectorIndex
    versions: np.ndarray[Any, np.dtype[np.int64]]
    """Each slot's version then: a slot whose version moved on is searched exactly."""

    @property
    def size(self) -> int:
        return len(self.versions)


class SemanticIndex:
    """One database's item vectors of one text embedder (thread-safe)."""

    def __init__(
        self, embedder: TextEmbedder, cache: VectorCache | None = None, database: str = ""
    ) -> None:
        self.embedder = embedder
        self.cache = cache
        self.database = database
        dimensions = embedder.dimensions
        self._vectors = np.zeros((0, dimensions), dtype=np.float32)
        self._dense = np.zeros(0, dtype=np.int64)
        """Each slot's item's dense index."""
        self._versions = np.zeros(0, dtype=np.int64)
        self._ids: list[str | None] = []
        self._slots: dict[str, int] = {}
        self._built: _Built | None = None
        self._lock = threading.Lock()
        self._known: dict[str, Vector] = {}
        self._pending: queue.SimpleQueue[tuple[int, list[tuple[str, int, str]]] | None] = (
            queue.SimpleQueue()
        )
        self._generation = 0
        """Counts rebuilds: a batch queued before the latest one is dropped."""
        self._queued = 0
        self._closed = False
        self._build_wanted = threading.Event()
        self.builds = 0
        """Vector indexes built so far (the tests watch it)."""
        self._worker = threading.Thread(target=self._embed_forever, daemon=True)
        self._worker.start()
        self._builder = threading.Thread(target=self._build_forever, daemon=True)
        self._builder.start()

    @property
    def waiting(self) -> int:
        """Items queued for embedding."""
        return self._queued

    def __len__(self) -> int:
        """Items that have a vector."""
        with self._lock:
            return len(self._slots)

    def snapshot(self) -> tuple[list[str], np.ndarray[Any, Any]]:
        """The items that have a vector, and their vectors (a copy)."""
        with self._lock:
            slots = [slot for slot, item in enumerate(self._ids) if item is not None]
            return [str(self._ids[s]) for s in slots], self._vectors[slots].copy()

    def states(self) -> dict[str, int]:
        """Items by state: `indexed` (in the built vector index), `exact` (new or changed since
        its build: searched exactly) and `queued` (waiting to be embedded)."""
        with self._lock:
            delta = self._delta(self._built, len(self._ids))
            exact = sum(1 for slot in delta.tolist() if self._ids[slot] is not None)
            live = len(self._slots)
        return {"indexed": live - exact, "exact": exact, "queued": self._queued}

    @property
    def unindexed(self) -> int:
        """Vectors that the search scans exactly: those new or changed since the last build."""
        with self._lock:
            return len(self._delta(self._built, len(self._ids)))

    def rebuild(self, ctx: ReadContext) -> None:
        """Queue every item (at start-up, or after a snapshot replaced the copy)."""
        rows = _rows(ctx, None)
        with self._lock:
            self._generation += 1
            self._vectors = np.zeros((0, self.embedder.dimensions), dtype=np.float32)
            self._dense = np.zeros(0, dtype=np.int64)
            self._versions = np.zeros(0, dtype=np.int64)
            self._ids = []
            self._slots = {}
            self._built = None
        self._enqueue(rows)

    def update(self, ctx: ReadContext, item_ids: set[str]) -> None:
        """Queue the items of `item_ids` again; the deleted ones leave at once."""
        rows = _rows(ctx, sorted(item_ids))
        self.remove(item_ids - {row[0] for row in rows})
        self._enqueue(rows)

    def _enqueue(self, rows: list[tuple[str, int, str]]) -> None:
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            self._queued += len(chunk)
            self._pending.put((self._generation, chunk))

    def close(self) -> None:
        self._closed = True
        self._pending.put(None)
        self._build_wanted.set()

    def embed_query(self, text: str) -> Vector:
        return self.embedder.embed_query(text)

    def search(self, vectors: np.ndarray[Any, Any], limit: int) -> list[Hit]:
        """The `limit` items nearest to a query vector, or to the nearest of several (rows;
        a query and its synonyms' variants), at cosine at least MIN_SIMILARITY."""
        queries = np.asarray(vectors, dtype=np.float32).reshape(-1, self.embedder.dimensions)
        found: list[np.ndarray[Any, Any]] = []
        scores: list[np.ndarray[Any, Any]] = []
        with self._lock:
            count = len(self._ids)
            if not count or limit <= 0:
                return []
            built = self._built
            if built is None or count < EXACT_BELOW:
                slots = np.arange(count, dtype=np.int64)
            else:
                slots = self._delta(built, count)
                # Annoy looks at `trees x fetch` nodes: a short list would be a rough one.
                fetch = max(limit, MIN_FETCH) + (len(slots) - (count - built.size))
                for query in queries:
                    near, cosines = built.index.nearest(query, fetch)
                    # What changed since the build is in `slots`, searched below: the two
                    # parts never hold the same slot.
                    fresh = self._versions[near] == built.versions[near]
                    found.append(near[fresh])
                    scores.append(cosines[fresh])
            if len(slots):
                similarities = (self._vectors[slots] @ queries.T).max(axis=1)
                best = top_k(similarities, min(limit, len(slots)))
                found.append(slots[best])
                scores.append(similarities[best])
            every = np.concatenate(found)
            cosines = np.concatenate(scores).astype(np.float32)
            # Best first; a slot that several queries found keeps its best cosine.
            order = np.lexsort((every, -cosines))
            every, cosines = every[order], cosines[order]
            _, first = np.unique(every, return_index=True)
            keep = np.sort(first)[:limit]
            hits = []
            for slot, cosine in zip(every[keep].tolist(), cosines[keep].tolist(), strict=True):
                item_id = self._ids[slot]
                if item_id is not None and cosine >= MIN_SIMILARITY:
                    hits.append(Hit(int(self._dense[slot]), item_id, float(cosine)))
        return hits

    def _delta(self, built: _Built | None, count: int) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The slots that `built` does not hold as they are now (under the lock)."""
        if built is None:
            return np.arange(count, dtype=np.int64)
        size = min(built.size, count)
        changed = np.flatnonzero(self._versions[:size] != built.versions[:size])
        return np.concatenate([changed, np.arange(size, count)]).astype(np.int64)

    # -- the background threads --------------------------------------------------------------

    def _embed_forever(self) -> None:
        _lower_priority()
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
            if not self._queued:
                self._maybe_build()

    def _embed(self, chunk: list[tuple[str, int, str]], generation: int) -> None:
        keys = [text_hash(text) for _, _, text in chunk]
        texts = {key: text for key, (_, _, text) in zip(keys, chunk, strict=True)}
        found = {key: self._known[key] for key in texts if key in self._known}
        if self.cache is not None and len(found) < len(texts):
            found.update(self.cache.lookup([key for key in texts if key not in found]))
        missing = [key for key in texts if key not in found]
        new: dict[str, Vector] = {}
        if missing:
            embedded = self.embedder.embed_texts([texts[key] for key in missing])
            new = dict(zip(missing, embedded, strict=True))
            found.update(new)
            if self.cache is not None:
                self.cache.keep(new)
        _count(self.database, self.embedder.name, len(texts) - len(missing), len(missing))
        if len(self._known) + len(found) > CACHE_LIMIT:
            self._known.clear()
        self._known.update(found)
        items = [(item_id, dense) for item_id, dense, _ in chunk]
        self.put(items, np.stack([found[key] for key in keys]), generation)

    def remove(self, item_ids: Iterable[str]) -> None:
        """Take items out of the search at once (deleted, or left without text)."""
        with self._lock:
            for item_id in item_ids:
                slot = self._slots.pop(item_id, None)
                if slot is not None:
                    self._ids[slot] = None
                    self._vectors[slot] = 0.0
                    self._versions[slot] += 1

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
                self._versions[slot] += 1
        self._maybe_build()

    def _grow(self, size: int) -> None:
        if size <= len(self._vectors):
            return
        capacity = max(size, 2 * len(self._vectors), 1024)
        vectors = np.zeros((capacity, self.embedder.dimensions), dtype=np.float32)
        vectors[: len(self._vectors)] = self._vectors
        dense = np.zeros(capacity, dtype=np.int64)
        dense[: len(self._dense)] = self._dense
        versions = np.zeros(capacity, dtype=np.int64)
        versions[: len(self._versions)] = self._versions
        self._vectors, self._dense, self._versions = vectors, dense, versions

    def _maybe_build(self) -> None:
        """Ask for a build when the exact part has grown: past REBUILD_AT once the queue is
        empty, past the size of the built part while items still arrive (a start-up)."""
        with self._lock:
            count = len(self._ids)
            if count < EXACT_BELOW:
                return
            delta = len(self._delta(self._built, count))
            built = self._built.size if self._built is not None else 0
        if delta >= max(REBUILD_AT, built) or (self._queued == 0 and delta >= REBUILD_AT):
            self._build_wanted.set()

    def _build_forever(self) -> None:
        _lower_priority()
        while True:
            self._build_wanted.wait()
            self._build_wanted.clear()
            if self._closed:
                return
            try:
                self._build()
            except Exception:
                logger.exception("building the semantic search index failed")

    def _build(self) -> None:
        with self._lock:
            count = len(self._ids)
            generation = self._generation
            vectors = self._vectors[:count].copy()
            versions = self._versions[:count].copy()
            present = np.array([item is not None for item in self._ids], dtype=np.bool_)
        index = VectorIndex.build(vectors, present, trees=TREES)
        with self._lock:
            if generation == self._generation:
                self._built = _Built(index, versions)
                self.builds += 1


def _count(database: str, embedder: str, cached: int, embedded: int) -> None:
    from server.telemetry.metrics import TEXT_VECTORS

    if cached:
        TEXT_VECTORS.labels(database, embedder, "cache").inc(cached)
    if embedded:
        TEXT_VECTORS.labels(database, embedder, "embedded").inc(embedded)


def _lower_priority() -> None:
    """Lower this thread's CPU priority (Linux: niceness is per thread, and the threads it
    starts, such as torch's and Annoy's, inherit it)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)


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
