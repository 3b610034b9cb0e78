"""The semantic index's search (server/search/semantic.py): the vector index that a background
thread builds (Annoy above 20,000 vectors) and the exact search of what changed since, together
give what the vectors hold now; and the database's text vector cache."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plugins.ann import EXACT_BELOW
from plugins.embedders import normalise
from plugins.text_embedders import TextEmbedder
from server.search.semantic import REBUILD_AT, SemanticIndex, text_hash
from storage.database import Database
from storage.errors import InvalidInput
from storage.text_vectors import cached, encode_vectors, store_payload
from tests.server.test_search import eventually

DIMENSIONS = 32


class Seeded(TextEmbedder):
    """A text embedder for tests: a text's vector is drawn from a generator seeded by it."""

    name = "seeded"

    @property
    def dimensions(self) -> int:
        return DIMENSIONS

    def _embed(self, texts: Sequence[str]) -> np.ndarray[Any, Any]:
        rows = [
            np.random.default_rng(int(text_hash(t)[:8], 16)).normal(size=DIMENSIONS) for t in texts
        ]
        return np.stack(rows)


def unit(rng: np.random.Generator, rows: int) -> np.ndarray[Any, Any]:
    return normalise(rng.normal(size=(rows, DIMENSIONS)))


def ids(hits: Sequence[Any]) -> list[str]:
    return [hit.item_id for hit in hits]


def test_built_and_changed_vectors_are_searched_as_they_are_now() -> None:
    index = SemanticIndex(Seeded())
    try:
        rng = np.random.default_rng(18)
        count = EXACT_BELOW + 5_000
        vectors = unit(rng, count)
        index.put([(f"i{n}", n) for n in range(count)], vectors)
        eventually(lambda: index.builds >= 1 and index.unindexed == 0, "the index built")
        # The built part: an item's own vector finds it first.
        for n in (0, 777, count - 1):
            assert ids(index.search(vectors[n], 5))[0] == f"i{n}"
        # Changed since the build: found by the new vector, never by the old one.
        query = unit(rng, 1)[0]
        changed = [f"i{n}" for n in range(100, 200)]
        index.put([(item, int(item[1:])) for item in changed], np.tile(query, (100, 1)))
        assert index.unindexed == 100 < REBUILD_AT  # searched exactly, not built again yet
        assert set(ids(index.search(query, 100))) == set(changed)
        assert "i150" not in ids(index.search(vectors[150], 5))
        # Removed: gone at once, built or not.
        index.remove([*changed[:50], "i5"])
        found = ids(index.search(query, 100))
        assert set(found) >= set(changed[50:])
        assert not set(found) & set(changed[:50])
        assert "i5" not in ids(index.search(vectors[5], 5))
        # New since the build (past the built slots): found too.
        fresh = unit(rng, 1)[0]
        index.put([("new", count)], fresh[None, :])
        assert ids(index.search(fresh, 1)) == ["new"]
        # Several query vectors (a query and its synonyms' variants): the nearest of them counts.
        both = ids(index.search(np.stack([vectors[3], fresh]), 2))
        assert set(both) == {"i3", "new"}
    finally:
        index.close()


def test_past_the_threshold_the_changes_are_built_in() -> None:
    index = SemanticIndex(Seeded())
    try:
        rng = np.random.default_rng(7)
        count = EXACT_BELOW + 1_000
        index.put([(f"i{n}", n) for n in range(count)], unit(rng, count))
        eventually(lambda: index.builds >= 1 and index.unindexed == 0, "the first build")
        builds = index.builds
        moved = unit(rng, REBUILD_AT)
        index.put([(f"i{n}", n) for n in range(REBUILD_AT)], moved)
        eventually(lambda: index.builds > builds and index.unindexed == 0, "a build of the changes")
        assert ids(index.search(moved[10], 1)) == ["i10"]
    finally:
        index.close()


class Cache:
    """A VectorCache over a real database file, keeping synchronously."""

    def __init__(self, database: Database, embedder: TextEmbedder) -> None:
        self.database = database
        self.embedder = embedder
        self.kept = 0

    def lookup(self, hashes: Sequence[str]) -> dict[str, Any]:
        key = self.embedder.key
        return self.database.read_sync(
            lambda ctx: cached(ctx, key.name, key.settings_digest, hashes)
        )

    def keep(self, vectors: Mapping[str, Any]) -> None:
        key = self.embedder.key
        payload = {
            "embedder": key.name,
            "digest": key.settings_digest,
            "dimensions": DIMENSIONS,
            "hashes": list(vectors),
            "vectors": encode_vectors(list(vectors.values())),
        }
        self.kept += self.database.write_sync(lambda ctx: store_payload(ctx, payload))


class Counting(Seeded):
    texts = 0

    def _embed(self, texts: Sequence[str]) -> np.ndarray[Any, Any]:
        Counting.texts += len(texts)
        return super()._embed(texts)


def test_vectors_in_the_database_cache_are_not_embedded_again(tmp_path: Path) -> None:
    from storage import catalog
    from storage.schema import Entity

    database = Database("films", tmp_path / "films.duckdb")
    try:

        def fill(ctx: Any) -> None:
            catalog.add_property(ctx, Entity.ITEM, "title", "string")
            for n in range(30):
                values = {"title": f"film number {n % 20}"}  # 20 distinct texts
                catalog.set_values(ctx, Entity.ITEM, f"f{n}", values, cascade_create=True)

        database.write_sync(fill)
        Counting.texts = 0
        embedder = Counting()
        first = SemanticIndex(embedder, Cache(database, embedder))
        database.read_sync(first.rebuild)
        eventually(lambda: first.waiting == 0 and len(first) == 30, "embedded")
        assert Counting.texts == 20
        first.close()
        # Another process (a restart): everything from the cache, nothing embedded.
        second = SemanticIndex(embedder, Cache(database, embedder))
        database.read_sync(second.rebuild)
        eventually(lambda: second.waiting == 0 and len(second) == 30, "taken from the cache")
        assert Counting.texts == 20
        query = second.embed_query("film number 3")
        assert {"f3", "f23"} <= set(ids(second.search(query, 2)))
        second.close()
    finally:
        database.close()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"hashes": "abc"}, "'hashes' must be a list"),
        ({"dimensions": 0}, "'dimensions'"),
        ({"vectors": "not base64!"}, "not base64"),
        ({"vectors": encode_vectors([np.zeros(DIMENSIONS + 1, dtype=np.float32)])}, "do not hold"),
        ({"vectors": encode_vectors([np.full(DIMENSIONS, np.nan, dtype=np.float32)])}, "finite"),
        ({"embedder": 3}, "must be strings"),
    ],
)
def test_a_malformed_text_vectors_write_stores_nothing(
    tmp_path: Path, change: dict[str, Any], words: str
) -> None:
    database = Database("films", tmp_path / "films.duckdb")
    try:
        payload = {
            "embedder": "seeded",
            "digest": "d",
            "dimensions": DIMENSIONS,
            "hashes": ["h1"],
            "vectors": encode_vectors([np.ones(DIMENSIONS, dtype=np.float32)]),
            **change,
        }
        with pytest.raises(InvalidInput, match=words):
            database.write_sync(lambda ctx: store_payload(ctx, payload))
        rows = database.read_sync(
            lambda ctx: ctx.conn.execute("SELECT count(*) FROM text_embeddings").fetchone()
        )
        assert rows == (0,)
    finally:
        database.close()
