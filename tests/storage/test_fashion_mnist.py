"""The Fashion-MNIST loader: the IDX reader on files the tests write, a small dataset directory
written by the test, and the real dataset from the Debian package `dataset-fashion-mnist`."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from storage.database import Database
from storage.fashion_mnist import (
    CATEGORIES,
    DEBIAN_DIRECTORY,
    find_directory,
    item_count,
    load,
    read_idx,
)
from storage.movielens import DatasetError

_TYPE_CODES = {"u1": 0x08, "i1": 0x09, ">i2": 0x0B, ">i4": 0x0C, ">f4": 0x0D, ">f8": 0x0E}


def idx_bytes(array: npt.NDArray[np.generic]) -> bytes:
    """An array in the IDX format: 0, 0, type code, ndim, big-endian dimensions, data."""
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    code = _TYPE_CODES[dtype.str.lstrip("|")]
    header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(dtype).tobytes()


def write_dataset(directory: Path, train: int = 12, test: int = 5, *, seed: int = 0) -> Path:
    """A small Fashion-MNIST directory: random 28x28 images, labels cycling through 0-9."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            (directory / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(idx_bytes(array)))
    return directory


def _one(database: Database, sql: str) -> tuple[object, ...]:
    row = database.read_sync(lambda ctx: ctx.conn.execute(sql).fetchone())
    assert row is not None
    return tuple(row)


def _file_of(url: str) -> Path:
    parsed = urlparse(url)
    assert parsed.scheme == "file"
    return Path(unquote(parsed.path))


# -- the IDX reader --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["u1", ">i4", ">f8"])
@pytest.mark.parametrize("compressed", [True, False])
def test_idx_files_read_back_as_written(tmp_path: Path, dtype: str, compressed: bool) -> None:
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(dtype)
    data = idx_bytes(array)
    path = tmp_path / "a-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if compressed else data)
    read = read_idx(path)
    assert read.shape == (2, 3, 4)
    assert read.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(read, array)


def test_a_truncated_gzip_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    whole = gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8)))
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DatasetError, match=f"{re.escape(str(path))}: not a readable gzip file"):
        read_idx(path)


def test_data_shorter_than_its_header_says_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8))[:-1]))
    with pytest.raises(DatasetError, match=r"truncated: 3,935 bytes, the header \(5, 28, 28\)"):
        read_idx(path)
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8)) + b"\0"))
    with pytest.raises(DatasetError, match="longer than its header says"):
        read_idx(path)


def test_a_file_with_a_wrong_magic_number_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    # A PNG's signature where the IDX magic (0, 0, type, ndim) should be.
    path.write_bytes(gzip.compress(b"\x89PNG\r\n\x1a\n" + bytes(100)))
    with pytest.raises(
        DatasetError, match=re.escape(f"{path}: not an IDX file (magic number 89504e47)")
    ):
        read_idx(path)
    path.write_bytes(gzip.compress(bytes([0, 0, 0x07, 1, 0, 0, 0, 0])))  # 0x07: no such type
    with pytest.raises(DatasetError, match="not an IDX file"):
        read_idx(path)
    path.write_bytes(b"")
    with pytest.raises(DatasetError, match="magic number missing"):
        read_idx(path)


def test_a_directory_without_the_files_is_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"lacks t10k-labels-idx1-ubyte\.gz; pass --path"):
        find_directory(tmp_path / "d")


def test_labels_that_do_not_match_the_images_are_refused(tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "d")
    (directory / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(4, np.uint8)))
    )
    database = Database("small", tmp_path / "small.duckdb")
    try:
        with pytest.raises(DatasetError, match="expected 5 unsigned-byte labels"):
            load(database, directory, progress=False)
        assert database.read_sync(item_count) == 0
    finally:
        database.close()


# -- a small dataset written by the test -----------------------------------------------------------


def test_a_small_dataset_loads_with_its_images(tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "files")
    database = Database("small", tmp_path / "data" / "small.duckdb")
    try:
        report = load(database, directory, progress=False)
        assert "imported 17 items" in report
        assert ": 17 written, 0 already there" in report
        assert database.read_sync(item_count) == 17
        ids = database.read_sync(
            lambda ctx: [
                r[0] for r in ctx.conn.execute('SELECT "$id" FROM items ORDER BY 1').fetchall()
            ]
        )
        assert ids == [f"test-{i:05d}" for i in range(5)] + [f"train-{i:05d}" for i in range(12)]
        category, label, split, url = _one(
            database,
            "SELECT category, label, split, image FROM items WHERE \"$id\" = 'train-00011'",
        )
        assert (category, label, split) == ("Trouser", 1, "train")
        png = _file_of(str(url))
        assert png == (tmp_path / "data" / "images" / "small" / "train-00011.png").resolve()
        pixels = np.asarray(Image.open(png))
        np.testing.assert_array_equal(
            pixels, read_idx(directory / "train-images-idx3-ubyte.gz")[11]
        )

        with pytest.raises(DatasetError, match=r"already holds 17 items; .* --replace"):
            load(database, directory, progress=False)

        # A re-load keeps the PNGs that hold the right bytes, and rewrites one cut short.
        png.write_bytes(png.read_bytes()[:10])
        report = load(database, directory, replace=True, progress=False)
        assert ": 1 written, 16 already there" in report
        np.testing.assert_array_equal(np.asarray(Image.open(png)), pixels)

        # Other data under the same ids (here: another seed) replaces the stale images.
        write_dataset(directory, seed=1)
        report = load(database, directory, replace=True, progress=False)
        assert ": 17 written, 0 already there" in report
        assert database.read_sync(item_count) == 17
    finally:
        database.close()


def test_replace_empties_the_database_first(tmp_path: Path) -> None:
    database = Database("small", tmp_path / "small.duckdb")
    try:
        load(database, write_dataset(tmp_path / "big", train=12), progress=False)
        load(
            database,
            write_dataset(tmp_path / "less", train=3, test=1),
            replace=True,
            progress=False,
        )
        # Items of the first load beyond the second's (train-00003 ..) are gone, not left over.
        assert database.read_sync(item_count) == 4
    finally:
        database.close()


def test_an_in_memory_database_needs_an_images_directory(tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "files", train=2, test=1)
    database = Database("memory", None)
    try:
        with pytest.raises(DatasetError, match="in memory; pass an images directory"):
            load(database, directory, progress=False)
        load(database, directory, images=tmp_path / "pngs", progress=False)
        assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [
            "test-00000.png",
            "train-00000.png",
            "train-00001.png",
        ]
    finally:
        database.close()


# -- the real dataset ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database = Database("fashion", tmp_path_factory.mktemp("fashion") / "fashion.duckdb")
    load(database, progress=False)
    yield database
    database.close()


def test_all_seventy_thousand_images_become_items(loaded: Database) -> None:
    assert loaded.read_sync(item_count) == 70_000
    assert _one(loaded, "SELECT count(*) FROM items WHERE split = 'train'") == (60_000,)
    assert _one(loaded, 'SELECT min("$id"), max("$id") FROM items WHERE split = \'test\'') == (
        "test-00000",
        "test-09999",
    )
    counts = loaded.read_sync(
        lambda ctx: ctx.conn.execute(
            "SELECT label, category, count(*) FROM items GROUP BY ALL ORDER BY label"
        ).fetchall()
    )
    assert counts == [(label, name, 7_000) for label, name in enumerate(CATEGORIES)]
    types = {p.name: p.type.value for p in loaded.schema.items.properties}
    assert types == {"category": "string", "label": "int", "split": "string", "image": "image"}


def test_an_items_image_is_a_png_of_its_pixels(loaded: Database) -> None:
    category, url = _one(loaded, "SELECT category, image FROM items WHERE \"$id\" = 'test-01234'")
    png = _file_of(str(url))
    assert loaded.path is not None
    assert png == (loaded.path.parent / "images" / "fashion" / "test-01234.png").resolve()
    with Image.open(png) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "L", (28, 28))
        pixels = np.asarray(image)
    expected = read_idx(DEBIAN_DIRECTORY / "t10k-images-idx3-ubyte.gz")[1234]
    assert expected.any()  # a blank image would match a wrong one just as well
    np.testing.assert_array_equal(pixels, expected)
    label = int(read_idx(DEBIAN_DIRECTORY / "t10k-labels-idx1-ubyte.gz")[1234])
    assert category == CATEGORIES[label]


def test_a_limited_load_takes_the_first_images_of_each_split(tmp_path: Path) -> None:
    database = Database("few", tmp_path / "few.duckdb")
    try:
        report = load(database, limit=50, progress=False)
        assert "imported 100 items" in report
        assert "Fashion-MNIST from /usr/share/datasets/fashion-mnist" in report
        assert _one(database, "SELECT count(*) FROM items WHERE split = 'test'") == (50,)
        assert len(list((tmp_path / "images" / "few").iterdir())) == 100
    finally:
        database.close()
