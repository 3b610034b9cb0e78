"""visual-similarity on a small Fashion-MNIST catalog: neighbours of the same category, users
steered by their recent items, a cache that spares re-embedding, save and load."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from plugins.algorithm import UserHistory
from plugins.builtin.visual import VisualSimilarity
from plugins.manager import collect, get_plugin_manager
from plugins.training import TrainingData
from storage import fashion_mnist
from storage.database import Database
from tests.plugins.catalog import with_item_vectors

REGISTRY = collect(get_plugin_manager())
PIXELS = {"embedder": "pixels"}


@pytest.fixture(scope="module")
def fashion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    directory = tmp_path_factory.mktemp("fashion")
    database = Database("fashion", directory / "fashion.duckdb")
    fashion_mnist.load(database, progress=False, limit=300)
    yield database
    database.close()


def training_data(database: Database) -> TrainingData:
    return with_item_vectors(database)


def categories(data: TrainingData) -> np.ndarray:
    table = data.item_properties
    out = np.empty(data.n_items, dtype=object)
    out[table.column("$idx").to_numpy()] = table.column("category").to_pylist()
    return out


def same_category_share(model: VisualSimilarity, data: TrainingData, k: int = 10) -> float:
    labels = categories(data)
    shares = []
    for item in range(0, data.n_items, 7):
        scores = model.score_items([item], data.n_items)[0]
        scores[item] = -np.inf
        top = np.argsort(-scores)[:k]
        shares.append(np.mean(labels[top] == labels[item]))
    return float(np.mean(shares))


def test_neighbours_share_the_category(fashion: Database) -> None:
    data = training_data(fashion)
    model = VisualSimilarity(**PIXELS)
    model.fit(data)
    assert model.index.present.all()
    assert model.errors == 0
    # Ten balanced-ish categories: chance is about 0.1.
    assert same_category_share(model, data) > 0.5


@pytest.mark.parametrize("exact_below", [10**6, 0])
def test_recent_items_steer_the_user(fashion: Database, exact_below: int) -> None:
    data = training_data(fashion)
    model = VisualSimilarity(**PIXELS, exact_below=exact_below, trees=20)
    model.fit(data)
    labels = categories(data)
    trousers = np.flatnonzero(labels == "Trouser")
    bags = np.flatnonzero(labels == "Bag")
    # Long ago bags, lately trousers: trousers lead.
    history = UserHistory.of_items([*bags[:5], *trousers[:3]])
    scores = model.score_users([history], data.n_items)[0]
    top = labels[np.argsort(-scores)[:10]]
    assert np.sum(top == "Trouser") >= 5
    assert np.sum(top == "Trouser") > np.sum(top == "Bag")
    flipped = UserHistory.of_items([*trousers[:3], *bags[:5]])
    top = labels[np.argsort(-model.score_users([flipped], data.n_items)[0])[:10]]
    assert np.sum(top == "Bag") >= 5
    assert np.sum(top == "Bag") > np.sum(top == "Trouser")


def test_annoy_path_scores_only_the_pool_and_keeps_filters(fashion: Database) -> None:
    data = training_data(fashion)
    model = VisualSimilarity(**PIXELS, exact_below=0, trees=20, pool=30)
    model.fit(data)
    assert model.index.annoy is not None
    candidates = np.arange(data.n_items) % 2 == 0
    scores = model.score_items([4], data.n_items + 5, candidates)[0]
    assert np.count_nonzero(np.isfinite(scores)) == 30
    assert np.isneginf(scores[: data.n_items][~candidates]).all()
    assert np.isneginf(scores[data.n_items :]).all()


def test_retraining_embeds_nothing_again(
    fashion: Database, caplog: pytest.LogCaptureFixture
) -> None:
    data = training_data(fashion)
    VisualSimilarity(**PIXELS, embedder_settings={"size": 14}).fit(data)
    calls = []
    embedder = REGISTRY.embedder("pixels")
    original = embedder._embed

    def counting(self: object, images: list[object]) -> object:
        calls.append(len(images))
        return original(self, images)  # type: ignore[arg-type]

    embedder._embed = counting  # type: ignore[assignment,method-assign]
    try:
        model = VisualSimilarity(**PIXELS, embedder_settings={"size": 14})
        model.fit(training_data(fashion))
    finally:
        embedder._embed = original  # type: ignore[method-assign]
    assert calls == []
    assert model.index.dimensions == 14 * 14


def test_a_broken_image_is_counted_not_fatal(
    fashion: Database, caplog: pytest.LogCaptureFixture
) -> None:
    data = training_data(fashion)
    broken = data.item_properties.column("image").to_pylist()[3]
    path = Path(broken.removeprefix("file://"))
    saved = path.read_bytes()
    path.write_bytes(b"not a png")
    try:
        with caplog.at_level(logging.WARNING, logger="reqo"):
            model = VisualSimilarity(**PIXELS, embedder_settings={"size": 8})
            model.fit(training_data(fashion))
    finally:
        path.write_bytes(saved)
    assert model.errors == 1
    assert int(np.count_nonzero(~model.index.present)) == 1
    assert "not a readable image" in caplog.text
    missing = int(np.flatnonzero(~model.index.present)[0])
    assert np.isneginf(model.score_items([missing], data.n_items)).all()


def test_save_and_load(fashion: Database, tmp_path: Path) -> None:
    data = training_data(fashion)
    model = VisualSimilarity(**PIXELS, exact_below=0, trees=10)
    model.fit(data)
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / "vectors.npy").exists()
    assert (tmp_path / "m" / "annoy.ann").exists()
    loaded = VisualSimilarity.load(tmp_path / "m")
    history = UserHistory.of_items([1, 2, 3])
    np.testing.assert_array_equal(
        model.score_items([5], data.n_items), loaded.score_items([5], data.n_items)
    )
    np.testing.assert_array_equal(
        model.score_users([history], data.n_items), loaded.score_users([history], data.n_items)
    )
    picture = model.query_scores(model.index.vectors[[5]])
    assert int(np.argmax(picture[0])) == 5


def test_without_a_provider_or_property_scores_nothing(fashion: Database) -> None:
    data = training_data(fashion)
    for model, fitted_on in (
        (VisualSimilarity(), replace(data, item_vectors=None)),
        (VisualSimilarity(image_property="photo"), data),
    ):
        model.fit(fitted_on)
        assert np.isneginf(model.score_items([0], data.n_items)).all()
        assert np.isneginf(model.query_scores(np.ones((1, 1280), np.float32))).all()


def test_efficientnet_neighbours_share_the_category(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    database = Database("small", tmp_path_factory.mktemp("small") / "small.duckdb")
    try:
        fashion_mnist.load(database, progress=False, limit=30)
        data = training_data(database)
        model = VisualSimilarity(embedder_settings={"image_size": 64})
        model.fit(data)
        assert model.index.dimensions == 1280
        assert same_category_share(model, data, k=3) > 0.3
    finally:
        database.close()
