"""The small CNN embedder, trained on a few hundred real Fashion-MNIST images (the Debian package
`dataset-fashion-mnist`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from plugins.builtin.small_cnn import CLASSES_KEY, NotFittedError, SmallCNN
from plugins.manager import collect, get_plugin_manager
from storage.fashion_mnist import CATEGORIES, DEBIAN_DIRECTORY, read_idx

TRAIN, TEST = 600, 200
# Few epochs of a narrow network: a few seconds on two cores.
SETTINGS: dict[str, Any] = {"epochs": 4, "width": 16, "batch_size": 64}


def _split(prefix: str, count: int) -> tuple[list[Image.Image], list[str]]:
    images = read_idx(DEBIAN_DIRECTORY / f"{prefix}-images-idx3-ubyte.gz")[:count]
    labels = read_idx(DEBIAN_DIRECTORY / f"{prefix}-labels-idx1-ubyte.gz")[:count]
    return [Image.fromarray(np.asarray(a, dtype=np.uint8)) for a in images], [
        CATEGORIES[int(label)] for label in labels
    ]


@pytest.fixture(scope="module")
def data() -> tuple[list[Image.Image], list[str], list[Image.Image], list[str]]:
    if not (DEBIAN_DIRECTORY / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("the Debian package dataset-fashion-mnist is not installed")
    return (*_split("train", TRAIN), *_split("t10k", TEST))


@pytest.fixture(scope="module")
def fitted(data: tuple[list[Image.Image], list[str], list[Image.Image], list[str]]) -> SmallCNN:
    images, labels, _, _ = data
    return SmallCNN(**SETTINGS).fit(images, labels, seed=3)


def precision_at_10(
    queries: npt.NDArray[np.float32],
    query_labels: list[str],
    gallery: npt.NDArray[np.float32],
    gallery_labels: list[str],
) -> float:
    neighbours = np.argsort(-(queries @ gallery.T), axis=1)[:, :10]
    hits = np.asarray(gallery_labels)[neighbours] == np.asarray(query_labels)[:, None]
    return float(hits.mean())


def test_same_category_neighbours_well_above_chance(
    data: tuple[list[Image.Image], list[str], list[Image.Image], list[str]], fitted: SmallCNN
) -> None:
    images, labels, test_images, test_labels = data
    gallery, queries = fitted.embed(images), fitted.embed(test_images)
    assert gallery.shape == (TRAIN, 128)
    assert gallery.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, rtol=1e-5)
    # Ten balanced categories: chance is about 0.1; raw pixels reach about 0.7 here.
    assert precision_at_10(queries, test_labels, gallery, labels) > 0.5
    assert fitted.classes == tuple(sorted(set(labels)))
    accuracy = np.mean(np.asarray(fitted.predict(test_images)) == np.asarray(test_labels))
    assert accuracy > 0.5


def test_the_same_seed_gives_the_same_weights_and_another_seed_others(
    data: tuple[list[Image.Image], list[str], list[Image.Image], list[str]], fitted: SmallCNN
) -> None:
    images, labels, test_images, _ = data
    again = SmallCNN(**SETTINGS).fit(images, labels, seed=3)
    np.testing.assert_array_equal(again.embed(test_images), fitted.embed(test_images))
    assert again.key == fitted.key
    other = SmallCNN(**SETTINGS).fit(images, labels, seed=4)
    assert not np.array_equal(other.embed(test_images), fitted.embed(test_images))
    assert other.key != fitted.key


def test_state_restore_round_trip_through_npy_files_without_pickle(
    data: tuple[list[Image.Image], list[str], list[Image.Image], list[str]],
    fitted: SmallCNN,
    tmp_path: Path,
) -> None:
    _, _, test_images, _ = data
    state = fitted.state()
    assert all(isinstance(array, np.ndarray) for array in state.values())
    assert state[CLASSES_KEY].dtype.kind == "U"
    # One .npy per array, as model artifacts are saved, read back without pickle.
    for index, array in enumerate(state.values()):
        np.save(tmp_path / f"{index}.npy", array, allow_pickle=False)
    saved = {
        name: np.load(tmp_path / f"{index}.npy", allow_pickle=False)
        for index, name in enumerate(state)
    }
    restored = SmallCNN(**SETTINGS).restore(saved)
    np.testing.assert_array_equal(restored.embed(test_images), fitted.embed(test_images))
    assert restored.classes == fitted.classes
    assert restored.key == fitted.key


def test_a_state_for_other_settings_is_refused_with_the_reason(fitted: SmallCNN) -> None:
    with pytest.raises(ValueError, match="has shape"):
        SmallCNN(**{**SETTINGS, "width": 8}).restore(fitted.state())
    partial = {k: v for k, v in fitted.state().items() if k != CLASSES_KEY}
    with pytest.raises(ValueError, match=f"lacks '{CLASSES_KEY}'"):
        SmallCNN(**SETTINGS).restore(partial)


def test_unfitted_embedder_says_so_and_one_class_is_refused() -> None:
    image = Image.new("L", (28, 28))
    with pytest.raises(NotFittedError, match="has not been fitted"):
        SmallCNN().embed([image])
    with pytest.raises(ValueError, match="at least two classes"):
        SmallCNN(epochs=1).fit([image, image], ["a", "a"])
    with pytest.raises(ValueError, match="2 images but 1 labels"):
        SmallCNN(epochs=1).fit([image, image], ["a"])


def test_registered_as_a_built_in_embedder() -> None:
    registry = collect(get_plugin_manager())
    assert registry.embedders["small-cnn"] is SmallCNN
