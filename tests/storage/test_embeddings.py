"""The cache of image vectors by content hash, in a real DuckDB file: re-embedding only what
changed, across reopening the database, and per embedder settings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from plugins.algorithm import Parameter
from plugins.builtin.image_embedders import Pixels
from plugins.embedders import Embedder
from plugins.hookspecs import hookimpl
from plugins.images import LoadedImage, load_images
from plugins.manager import collect, get_plugin_manager
from storage.database import Database
from storage.embeddings import cached, embed_with_cache, store


class Counting(Embedder):
    """The mean colour and the size, counting the batches it is asked to embed."""

    name = "counting"
    parameters = (Parameter("scale", float, 1.0, "multiplies the size component"),)
    batches: ClassVar[list[int]] = []

    @property
    def dimensions(self) -> int:
        return 4

    def _embed(self, images: Sequence[Image.Image]) -> np.ndarray[Any, Any]:
        Counting.batches.append(len(images))
        rows = [
            [
                *np.asarray(i.convert("RGB"), dtype=np.float32).mean(axis=(0, 1)),
                i.width * self.settings["scale"],
            ]
            for i in images
        ]
        return np.asarray(rows, dtype=np.float32)


class CountingPlugin:
    @hookimpl
    def register_embedders(self) -> list[type[Embedder]]:
        return [Counting]


def counting_embedder(**settings: Any) -> Embedder:
    manager = get_plugin_manager()
    manager.register(CountingPlugin(), name="counting-plugin")
    return collect(manager).embedder("counting")(**settings)


def pictures(directory: Path, colours: Sequence[tuple[int, int, int]]) -> dict[str, Image.Image]:
    """PNG files of the colours, loaded as the training job loads them: by content hash."""
    directory.mkdir(exist_ok=True)
    paths = []
    for n, colour in enumerate(colours):
        path = directory / f"{n}.png"
        Image.new("RGB", (10 + n, 10), colour).save(path)
        paths.append(str(path))
    loaded = [r for r in load_images(paths) if isinstance(r, LoadedImage)]
    assert len(loaded) == len(colours)
    return {r.sha256: r.image for r in loaded}


def test_only_new_images_are_embedded(tmp_path: Path) -> None:
    Counting.batches.clear()
    images = pictures(tmp_path / "a", [(255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9), (1, 2, 3)])
    path = tmp_path / "shop.duckdb"
    database = Database("shop", path)
    embedder = counting_embedder()
    first = embed_with_cache(database, embedder, images, batch_size=2, progress=False)
    assert Counting.batches == [2, 2, 1]
    assert list(first) == list(images)
    assert all(v.shape == (4,) and v.dtype == np.float32 for v in first.values())
    np.testing.assert_allclose([np.linalg.norm(v) for v in first.values()], 1.0, atol=1e-6)

    # Two of the same pictures and a new one: only the new one is embedded.
    Counting.batches.clear()
    new = pictures(tmp_path / "b", [(200, 100, 50)])
    (new_hash,) = new
    some = {h: images[h] for h in list(images)[:2]} | new
    second = embed_with_cache(database, embedder, some, batch_size=2, progress=False)
    assert Counting.batches == [1]
    for h in list(images)[:2]:
        np.testing.assert_array_equal(second[h], first[h])
    database.close()

    # The cache is in the file: reopened, nothing is embedded again.
    Counting.batches.clear()
    database = Database("shop", path)
    third = embed_with_cache(database, embedder, images | new, batch_size=64, progress=False)
    assert Counting.batches == []
    np.testing.assert_array_equal(third[new_hash], second[new_hash])
    assert set(third) == set(images) | {new_hash}

    # Other settings are another key: everything is embedded for them.
    embed_with_cache(database, counting_embedder(scale=2.0), images, progress=False)
    assert Counting.batches == [5]
    database.close()


def test_cached_and_store(tmp_path: Path) -> None:
    database = Database("shop", tmp_path / "shop.duckdb")
    key = Pixels().key
    assert cached(database, key, ["a" * 64]) == {}
    assert cached(database, key, []) == {}
    store(
        database, key, {"h1": np.array([1, 0, 0], np.float32), "h2": np.array([0, 1], np.float32)}
    )
    found = cached(database, key, ["h1", "h2", "h3", "h1"])
    assert set(found) == {"h1", "h2"}
    np.testing.assert_array_equal(found["h1"], [1, 0, 0])
    np.testing.assert_array_equal(found["h2"], [0, 1])
    assert found["h1"].dtype == np.float32
    # Another embedder's key does not see them; storing again replaces.
    assert cached(database, Pixels(size=8).key, ["h1"]) == {}
    store(database, key, {"h1": np.array([0.5, 0.5], np.float32)})
    np.testing.assert_array_equal(cached(database, key, ["h1"])["h1"], [0.5, 0.5])
    database.close()


def test_real_embedder_through_the_cache(tmp_path: Path) -> None:
    database = Database("shop", tmp_path / "shop.duckdb")
    images = pictures(tmp_path / "p", [(255, 255, 255), (0, 0, 0), (128, 128, 128)])
    vectors = embed_with_cache(database, Pixels(size=4), images, progress=False)
    again = cached(database, Pixels(size=4).key, list(images))
    for h, vector in vectors.items():
        assert vector.shape == (16,)
        np.testing.assert_array_equal(again[h], vector)
    database.close()
