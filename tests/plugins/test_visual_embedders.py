"""visual-similarity with embedders other than pretrained networks: a small CNN that the model
trains on the catalog's own images, and vectors stored on the items; and the cache that spares
decoding images whose vectors it has."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from plugins.builtin.visual import VisualSimilarity
from plugins.images import ImageBytes, LoadedImage, load_image
from plugins.manager import collect, get_plugin_manager
from plugins.training import TrainingData
from storage import catalog, fashion_mnist
from storage.database import Database, WriteContext
from storage.schema import Entity
from storage.snapshot import take_snapshot
from tests.plugins.catalog import with_item_vectors

REGISTRY = collect(get_plugin_manager())
SMALL_CNN = {"embedder": "small-cnn", "embedder_settings": {"epochs": 4, "device": "cpu"}}


@pytest.fixture(scope="module")
def fashion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    directory = tmp_path_factory.mktemp("fashion")
    database = Database("fashion", directory / "fashion.duckdb")
    fashion_mnist.load(database, progress=False, limit=400)
    yield database
    database.close()


def training_data(database: Database) -> TrainingData:
    return with_item_vectors(database)


def same_category_share(model: VisualSimilarity, data: TrainingData, k: int = 10) -> float:
    table = data.item_properties
    labels = np.empty(data.n_items, dtype=object)
    labels[table.column("$idx").to_numpy()] = table.column("category").to_pylist()
    shares = []
    for item in range(0, data.n_items, 5):
        scores = model.score_items([item], data.n_items)[0]
        scores[item] = -np.inf
        top = np.argsort(-scores)[:k]
        shares.append(np.mean(labels[top] == labels[item]))
    return float(np.mean(shares))


@pytest.fixture(scope="module")
def trained(fashion: Database) -> tuple[VisualSimilarity, TrainingData]:
    data = training_data(fashion)
    model = VisualSimilarity(**SMALL_CNN)
    model.fit(data)
    return model, data


def test_the_small_cnn_is_trained_by_the_model(
    trained: tuple[VisualSimilarity, TrainingData],
) -> None:
    model, data = trained
    assert bool(model.index.present.all())
    assert model.index.dimensions == 128
    assert any(key.startswith("embedder.") for key in model.state())
    # Trained on the categories, its neighbours share the category far more often than chance
    # (10 categories: 0.1).
    assert same_category_share(model, data) > 0.6


def test_pictures_are_embedded_with_the_learned_weights_after_load(
    trained: tuple[VisualSimilarity, TrainingData], tmp_path: Path
) -> None:
    model, data = trained
    model.save(tmp_path / "m")
    loaded = VisualSimilarity.load(tmp_path / "m")
    sources = data.item_properties.column("image").to_pylist()
    indexes = data.item_properties.column("$idx").to_pylist()
    for row in (0, 17, 123):
        picture = load_image(sources[row]).image
        vector = loaded.embed_images([picture], REGISTRY.embedder)[0]
        # The catalog's own picture, embedded again, is the item's vector: the same weights.
        np.testing.assert_allclose(vector, model.index.vectors[indexes[row]], atol=1e-5)


def test_a_trained_model_without_weights_says_so(fashion: Database) -> None:
    model = VisualSimilarity(**SMALL_CNN)
    model.fit(replace(training_data(fashion), item_vectors=None))
    with pytest.raises(ValueError, match="holds no weights"):
        model.embed_images([load_image(_first_image(fashion)).image], REGISTRY.embedder)


def test_a_missing_label_property_is_named(fashion: Database) -> None:
    settings = {"epochs": 1, "label_property": "colour"}
    model = VisualSimilarity(embedder="small-cnn", embedder_settings=settings)
    with pytest.raises(ValueError, match="'colour'"):
        model.fit(training_data(fashion))


def test_cached_images_are_not_decoded_again(
    fashion: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"embedder": "pixels", "embedder_settings": {"size": 10}}
    VisualSimilarity(**settings).fit(training_data(fashion))
    decoded: list[str] = []
    original = ImageBytes.decode

    def counting(self: ImageBytes) -> LoadedImage:
        decoded.append(self.source)
        return original(self)

    monkeypatch.setattr(ImageBytes, "decode", counting)
    again = VisualSimilarity(**settings)
    again.fit(training_data(fashion))
    assert decoded == []
    assert bool(again.index.present.all())
    # A new size is another embedding: now every image is decoded.
    VisualSimilarity(embedder="pixels", embedder_settings={"size": 9}).fit(training_data(fashion))
    assert len(decoded) == training_data(fashion).n_items


def _first_image(database: Database) -> str:
    value: str = database.read_sync(take_snapshot).item_properties.column("image")[0].as_py()
    return value


# -- vectors stored on the items -------------------------------------------------------------------


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[Database]:
    """Items on two lines in 3-d (x axis, y axis), in the three spellings the embedder reads,
    and some without a vector or with a broken one."""
    database = Database("stored", tmp_path / "stored.duckdb")
    values: dict[str, str | None] = {}
    for n in range(10):
        values[f"x{n}"] = json.dumps([1.0, 0.01 * n, 0.0])
        values[f"y{n}"] = f"0.0, 1.0, {0.01 * n}" if n % 2 else f"0 1 {0.01 * n}"
    values["none"] = None
    values["broken"] = "[1, 2"
    values["short"] = "[1, 2]"

    def fill(ctx: WriteContext) -> None:
        catalog.add_property(ctx, Entity.ITEM, "embedding", "string")
        for item, value in values.items():
            catalog.set_values(ctx, Entity.ITEM, item, {"embedding": value}, cascade_create=True)

    database.write_sync(fill)
    yield database
    database.close()


def test_stored_vectors_are_indexed(stored: Database, caplog: pytest.LogCaptureFixture) -> None:
    data = training_data(stored)
    model = VisualSimilarity(embedder="stored-vectors", embedder_settings={"property": "embedding"})
    with caplog.at_level(logging.WARNING, logger="reqo"):
        model.fit(data)
    ids = data.item_ids
    index_of = {item: index for index, item in enumerate(ids)}
    assert model.index.dimensions == 3
    assert model.errors == 2
    assert "item 'broken', property 'embedding': not a JSON array" in caplog.text
    assert "item 'short', property 'embedding': has 2 numbers, not 3" in caplog.text
    for item in ("none", "broken", "short"):
        assert not model.index.present[index_of[item]]
    for probe, line in (("x3", "x"), ("y4", "y")):
        scores = model.score_items([index_of[probe]], data.n_items)[0]
        scores[index_of[probe]] = -np.inf
        top = [ids[i] for i in np.argsort(-scores)[:9]]
        assert all(str(item).startswith(line) for item in top), top


def test_stored_vectors_cannot_embed_a_picture(stored: Database) -> None:
    model = VisualSimilarity(embedder="stored-vectors", embedder_settings={"property": "embedding"})
    model.fit(training_data(stored))
    from PIL import Image

    with pytest.raises(ValueError, match="cannot embed a picture"):
        model.embed_images([Image.new("RGB", (8, 8))], REGISTRY.embedder)


def test_a_declared_length_is_enforced(stored: Database) -> None:
    model = VisualSimilarity(
        embedder="stored-vectors", embedder_settings={"property": "embedding", "dimensions": 2}
    )
    model.fit(training_data(stored))
    # Only "short" has two numbers.
    assert int(model.index.present.sum()) == 1
    assert model.errors == 21
