"""Image embedders: the interface, the built-ins (EfficientNet-Lite0 with its real pretrained
weights, raw pixels), parameter validation and registration through the plugin hook."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from PIL import Image

from plugins.builtin.image_embedders import DEFAULT_EMBEDDER, EfficientNetLite0, Pixels
from plugins.embedders import Embedder, EmbedderParameterError, normalise
from plugins.hookspecs import hookimpl
from plugins.manager import PluginError, collect, get_plugin_manager

SIZE = 224


def stripes(offset: int = 0, brightness: int = 0) -> Image.Image:
    """Vertical black and white stripes, 16 px wide."""
    x = (np.arange(SIZE) + offset) // 16 % 2
    row = np.where(x == 1, 230, 20) + brightness
    pixels = np.clip(np.tile(row, (SIZE, 1)), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([pixels] * 3, axis=-1), "RGB")


def checkerboard() -> Image.Image:
    cells = (np.arange(SIZE)[:, None] // 28 + np.arange(SIZE)[None, :] // 28) % 2
    pixels = np.where(cells == 1, 230, 20).astype(np.uint8)
    return Image.fromarray(np.stack([pixels] * 3, axis=-1), "RGB")


def solid(colour: tuple[int, int, int] = (200, 40, 40)) -> Image.Image:
    return Image.new("RGB", (SIZE, SIZE), colour)


def cosine(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    return float(np.dot(a, b))  # the vectors are unit length


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite0:
    """One embedder (the network loads once) for the module."""
    embedder = EfficientNetLite0(device="cpu")
    embedder.network()
    return embedder


def test_efficientnet_lite0_gives_1280_d_unit_vectors_deterministically(
    lite0: EfficientNetLite0,
) -> None:
    images = [stripes(), checkerboard(), solid()]
    vectors = lite0.embed(images)
    assert vectors.shape == (3, 1280) == (len(images), lite0.dimensions)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(lite0.embed(images), vectors, atol=1e-5)
    # A batch gives each image the vector it gets alone (eval mode: no batch statistics).
    np.testing.assert_allclose(lite0.embed([checkerboard()])[0], vectors[1], atol=1e-4)
    assert lite0.embed([]).shape == (0, 1280)


def test_efficientnet_lite0_puts_similar_pictures_closer(lite0: EfficientNetLite0) -> None:
    base, shifted, checker, plain = lite0.embed(
        [stripes(), stripes(offset=5, brightness=20), checkerboard(), solid()]
    )
    assert cosine(base, shifted) > cosine(base, checker)
    assert cosine(base, shifted) > cosine(base, plain)
    assert cosine(base, shifted) > cosine(base, checker) + 0.2  # measured: 0.68 vs 0.37


def test_efficientnet_lite0_takes_grayscale_small_and_non_square_images(
    lite0: EfficientNetLite0,
) -> None:
    rgb = stripes()
    gray = rgb.convert("L")
    small = gray.resize((28, 28))
    wide = Image.new("RGB", (448, SIZE), (20, 20, 20))
    wide.paste(rgb, (112, 0))  # the centre crop is the striped picture
    transparent = rgb.convert("RGBA")
    vectors = lite0.embed([rgb, gray, small, wide, transparent, checkerboard()])
    assert vectors.shape == (6, 1280)
    np.testing.assert_allclose(vectors[1], vectors[0], atol=1e-3)  # gray is the same picture
    np.testing.assert_allclose(vectors[3], vectors[0], atol=1e-3)
    np.testing.assert_allclose(vectors[4], vectors[0], atol=1e-3)
    assert cosine(vectors[0], vectors[2]) > cosine(vectors[0], vectors[5])


def test_pixels_embedder() -> None:
    embedder = Pixels()
    assert embedder.dimensions == 28 * 28
    gradient = Image.fromarray(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28) % 251, "L")
    vectors = embedder.embed([gradient, solid(), Image.new("L", (28, 28), 0)])
    assert vectors.shape == (3, 784)
    assert vectors.dtype == np.float32
    expected = normalise(np.asarray(gradient, dtype=np.float32).reshape(1, -1))[0]
    np.testing.assert_allclose(vectors[0], expected, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-5)
    assert not vectors[2].any()  # a black image stays the zero vector
    colour = Pixels(size=8, grayscale=False)
    assert colour.dimensions == 8 * 8 * 3
    assert colour.embed([solid((255, 0, 0))]).shape == (1, 192)
    # Similar pictures are closer in pixel space too, but a shift moves every stripe.
    base, checker = Pixels(size=32).embed([stripes(), checkerboard()])
    assert 0 < cosine(base, checker) < 1


def test_parameters_are_validated() -> None:
    with pytest.raises(EmbedderParameterError, match="embedder 'pixels', parameter 'size'"):
        Pixels(size=0)
    with pytest.raises(EmbedderParameterError, match="must be int"):
        Pixels(size="big")
    with pytest.raises(EmbedderParameterError, match="unknown parameter"):
        Pixels(colour=True)
    with pytest.raises(EmbedderParameterError, match="'tpu' is not one of"):
        EfficientNetLite0(device="tpu")
    assert Pixels().settings == {"size": 28, "grayscale": True}
    assert EfficientNetLite0().settings == {"image_size": 224, "device": "auto"}


def test_the_cache_key_follows_the_settings_that_change_vectors() -> None:
    assert Pixels().key == Pixels(size=28).key
    assert Pixels().key != Pixels(size=16).key
    assert Pixels().key.name == "pixels"
    # Where the network runs does not change its vectors.
    assert EfficientNetLite0(device="cpu").key == EfficientNetLite0(device="auto").key


class WrongShape(Embedder):
    name = "wrong-shape"

    @property
    def dimensions(self) -> int:
        return 4

    def _embed(self, images: Sequence[Image.Image]) -> np.ndarray[Any, Any]:
        return np.ones((len(images), 3), dtype=np.float32)


def test_embed_checks_the_shape_a_subclass_returns() -> None:
    with pytest.raises(ValueError, match=r"shape \(1, 3\), not \(1, 4\)"):
        WrongShape().embed([solid()])


class Average(Embedder):
    """The mean colour: a plugin's embedder."""

    name = "average-colour"
    description = "the mean RGB colour"

    @property
    def dimensions(self) -> int:
        return 3

    def _embed(self, images: Sequence[Image.Image]) -> np.ndarray[Any, Any]:
        return np.stack(
            [np.asarray(i.convert("RGB"), dtype=np.float32).mean(axis=(0, 1)) for i in images]
        )


class AveragePlugin:
    @hookimpl
    def register_embedders(self) -> list[type[Embedder]]:
        return [Average]


def test_hook_register_embedders() -> None:
    manager = get_plugin_manager()
    manager.register(AveragePlugin(), name="average-plugin")
    registry = collect(manager)
    assert registry.embedder(DEFAULT_EMBEDDER) is EfficientNetLite0
    assert registry.embedder("pixels") is Pixels
    assert registry.embedder("average-colour") is Average
    info = {plugin.name: plugin for plugin in registry.plugins}
    assert info["plugins.builtin.image_embedders"].embedders == ("efficientnet-lite0", "pixels")
    assert info["average-plugin"].embedders == ("average-colour",)
    assert info["average-plugin"].to_json()["embedders"] == ["average-colour"]
    vector = registry.embedder("average-colour")().embed([solid((255, 0, 0))])[0]
    np.testing.assert_allclose(vector, [1.0, 0.0, 0.0])
    with pytest.raises(PluginError, match=r"unknown embedder 'nope' .*efficientnet-lite0"):
        registry.embedder("nope")


def test_an_embedder_name_registered_twice_fails_naming_both_plugins() -> None:
    class Impostor(Pixels):
        pass

    class ImpostorPlugin:
        @hookimpl
        def register_embedders(self) -> list[type[Embedder]]:
            return [Impostor]

    manager = get_plugin_manager()
    manager.register(ImpostorPlugin(), name="impostor")
    with pytest.raises(
        PluginError,
        match=re.escape(
            "the embedder 'pixels' is registered twice: "
            "by plugin plugins.builtin.image_embedders and by plugin impostor"
        ),
    ):
        collect(manager)


def test_a_plugin_must_register_embedder_classes() -> None:
    class NotAClass:
        @hookimpl
        def register_embedders(self) -> list[Any]:
            return [Pixels()]

    manager = get_plugin_manager()
    manager.register(NotAClass(), name="instances")
    refused = r"plugin instances registers .*not an Embedder or TextEmbedder class"
    with pytest.raises(PluginError, match=refused):
        collect(manager)


def test_a_smaller_input_size_still_separates_patterns() -> None:
    """`image_size` trades detail for speed: at 112 the stripes stay closer to their shifted copy
    than to a checkerboard."""
    embedder = EfficientNetLite0(device="cpu", image_size=112)
    base, shifted, checker = embedder.embed(
        [stripes(), stripes(offset=5, brightness=20), checkerboard()]
    )
    assert base.shape == (1280,)
    assert cosine(base, shifted) > cosine(base, checker)
    with pytest.raises(EmbedderParameterError, match="image_size"):
        EfficientNetLite0(image_size=8)


def test_stored_vectors_read_json_and_separated_numbers() -> None:
    from plugins.builtin.stored_vectors import StoredVectors

    embedder = StoredVectors(property="v")
    assert embedder.dimensions == 0
    np.testing.assert_array_equal(embedder.vector_of("[1, 2.5, -3]"), [1.0, 2.5, -3.0])
    assert embedder.dimensions == 3  # the first vector fixes the length
    np.testing.assert_array_equal(embedder.vector_of(" 1, 2 ;3 "), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(embedder.vector_of("4 5 6"), [4.0, 5.0, 6.0])
    assert embedder.vector_of(None) is None
    assert embedder.vector_of("  ") is None
    for value, problem in (
        ("[1, 2", "not a JSON array"),
        ('["a"]', "not a number"),
        ("1 2 x", "not a number"),
        ("[1, NaN, 2]", "NaN"),
        ("1 2", "has 2 numbers, not 3"),
        (7, "a int, not a vector"),
    ):
        with pytest.raises(ValueError, match=problem):
            embedder.vector_of(value)
    assert not StoredVectors.embeds_pictures
    with pytest.raises(ValueError, match="cannot embed a picture"):
        embedder.embed([Image.new("RGB", (4, 4))])
