"""Text embedders: the built-in all-MiniLM-L6-v2 (weights from its package, nothing downloaded)
gives unit vectors whose cosine follows meaning, and every algorithm gets the items' text vectors
through `TrainingData.item_text_vectors`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from plugins.manager import collect, get_plugin_manager
from plugins.text_embedders import TextEmbedder
from plugins.training import TrainingData
from server.search.semantic import text_hash
from server.training.item_vectors import text_provider_for
from storage import catalog
from storage.database import Database, WriteContext
from storage.schema import Entity
from storage.snapshot import take_snapshot
from storage.text_vectors import store


def test_minilm_vectors_follow_meaning() -> None:
    registry = collect(get_plugin_manager())
    embedder = registry.text_embedder("minilm")()
    assert isinstance(embedder, TextEmbedder)
    vectors = embedder.embed_texts(["space adventure", "a voyage among the stars", "tax law", ""])
    assert vectors.shape == (4, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, rtol=1e-5)
    assert not vectors[3].any()  # an empty text has no direction
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.2


def test_a_query_takes_the_short_path_to_the_same_vector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`embed_query` (its own tokenizer, the network exported to ONNX and run by ONNX Runtime)
    gives what a batch of one gives through torch, whatever else the batch holds (padding must
    not leak into the pooling)."""
    from plugins.builtin.text_embedders import MiniLM

    monkeypatch.setenv("REQO_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(MiniLM, "_sessions", {})  # export afresh, into tmp_path
    embedder = collect(get_plugin_manager()).text_embedder("minilm")(device="cpu")
    assert isinstance(embedder, MiniLM)
    assert embedder._session() is not None
    assert list(tmp_path.glob("*.onnx")), "the export is kept in the cache directory"
    texts = ["star wars", "a much longer text about a voyage among the stars, with robots"]
    batch = embedder.embed_texts(texts)
    for text, row in zip(texts, batch, strict=True):
        query = embedder.embed_query(text)
        assert query.shape == (384,)
        assert query.dtype == np.float32
        np.testing.assert_allclose(query, row, atol=1e-5)
    assert not embedder.embed_query("   ").any()
    assert embedder.key.name == "minilm"
    assert embedder.key == type(embedder)(device="cpu").key  # where it runs changes nothing


def test_training_data_gives_every_algorithm_the_items_text_vectors(tmp_path: Path) -> None:
    database = Database("films", tmp_path / "films.duckdb")

    def fill(ctx: WriteContext) -> None:
        catalog.add_property(ctx, Entity.ITEM, "title", "string")
        catalog.add_property(ctx, Entity.ITEM, "genres", "set")
        catalog.add_property(ctx, Entity.ITEM, "year", "int")
        for item, title, genres in (
            ("sw", "Star Wars", ["Sci-Fi"]),
            ("alien", "Alien", ["Horror", "Sci-Fi"]),
            ("fargo", "Fargo", ["Crime"]),
        ):
            values = {"title": title, "genres": genres, "year": 1990}
            catalog.set_values(ctx, Entity.ITEM, item, values, cascade_create=True)
        catalog.add_entity(ctx, Entity.ITEM, "untitled")

    try:
        database.write_sync(fill)
        data = TrainingData.from_snapshot(database.read_sync(take_snapshot))
    finally:
        database.close()
    registry = collect(get_plugin_manager())
    provider = text_provider_for(registry, data.item_properties, data.n_items)
    embeddings = provider(embedder="minilm")
    index = {item: position for position, item in enumerate(data.item_ids)}
    assert embeddings.vectors.shape == (data.n_items, 384)
    assert embeddings.present[[index["sw"], index["alien"], index["fargo"]]].all()
    assert not embeddings.present[index["untitled"]]
    space = registry.text_embedder("minilm")().embed_texts(["science fiction in space"])[0]
    scores = embeddings.vectors @ space
    assert scores[index["sw"]] > scores[index["fargo"]]
    with pytest.raises(ValueError, match="unknown text embedder"):
        provider(embedder="nope")


def test_training_takes_text_vectors_from_the_database_cache(tmp_path: Path) -> None:
    """A text that a server embedded (its vector in the database's cache) is not embedded again
    for training: the cached vector is the one the algorithm gets."""
    database = Database("films", tmp_path / "films.duckdb")
    registry = collect(get_plugin_manager())
    model = registry.text_embedder("minilm")()
    marker = np.zeros(384, dtype=np.float32)
    marker[7] = 1.0  # no sentence embeds to this
    try:

        def fill(ctx: WriteContext) -> None:
            catalog.add_property(ctx, Entity.ITEM, "title", "string")
            for item, title in (("sw", "Star Wars"), ("fargo", "Fargo")):
                catalog.set_values(ctx, Entity.ITEM, item, {"title": title}, cascade_create=True)
            key = model.key
            store(ctx, key.name, key.settings_digest, {text_hash("Star Wars"): marker})

        database.write_sync(fill)
        data = TrainingData.from_snapshot(database.read_sync(take_snapshot))
        provider = text_provider_for(registry, data.item_properties, data.n_items, database)
        embeddings = provider(embedder="minilm")
    finally:
        database.close()
    index = {item: position for position, item in enumerate(data.item_ids)}
    np.testing.assert_array_equal(embeddings.vectors[index["sw"]], marker)
    fargo = model.embed_texts(["Fargo"])[0]
    np.testing.assert_allclose(embeddings.vectors[index["fargo"]], fargo, atol=1e-5)
