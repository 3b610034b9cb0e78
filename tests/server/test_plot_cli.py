"""`reqo plot embeddings` on a real DuckDB file holding a small Fashion-MNIST catalog, with a
model version directory written by the test in the layout the visual-similarity model saves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from server.cli.main import main
from storage.catalog import add_property, set_values
from storage.database import Database, WriteContext
from storage.fashion_mnist import DEBIAN_DIRECTORY, load
from storage.schema import Entity

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ITEMS = 60  # 30 per split


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose database `fashion` holds 60 Fashion-MNIST items, and a model `visual`
    whose current version holds one vector per item, grouped by label (an item without a
    vector too)."""
    if not (DEBIAN_DIRECTORY / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("the Debian package dataset-fashion-mnist is not installed")
    path = tmp_path / "reqo.yaml"
    path.write_text(yaml.safe_dump({"data_dir": "data", "databases": {"fashion": {"token": "t"}}}))
    database = Database("fashion", tmp_path / "data" / "fashion.duckdb")
    try:
        load(database, limit=ITEMS // 2, progress=False)
        rows = database.read_sync(
            lambda ctx: ctx.conn.execute('SELECT "$idx", label FROM items').fetchall()
        )

        def add_prices(ctx: WriteContext) -> None:
            # A numeric property with many values (a colour scale), unset on the test items.
            add_property(ctx, Entity.ITEM, "price", "double")
            for index in range(ITEMS // 2):
                values = {"price": 10.0 + index}
                set_values(ctx, Entity.ITEM, f"train-{index:05d}", values, cascade_create=False)

        database.write_sync(add_prices)
    finally:
        database.close()
    labels = np.zeros(ITEMS, dtype=np.int64)
    for index, label in rows:
        labels[index] = label
    rng = np.random.default_rng(0)
    vectors = (np.eye(16, dtype=np.float32)[labels] + 0.05 * rng.normal(size=(ITEMS, 16))).astype(
        np.float32
    )
    present = np.ones(ITEMS, dtype=bool)
    present[7] = False
    version = tmp_path / "data" / "models" / "fashion" / "visual" / "20260101T000000"
    version.mkdir(parents=True)
    np.save(version / "vectors.npy", vectors)
    np.save(version / "present.npy", present)
    (version.parent / "current").write_text(version.name)
    return path


def _plot(config: Path, output: Path, *extra: str) -> list[str]:
    common = ["plot", "embeddings", "--config", str(config), "--db", "fashion"]
    return [*common, "-o", str(output), *extra]


def test_writes_a_png_coloured_by_a_category(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "maps" / "map.png"
    code = main(_plot(config, output, "--model", "visual", "--color-by", "category"))
    assert code == 0, capsys.readouterr().err
    assert output.read_bytes().startswith(PNG_SIGNATURE)
    out = capsys.readouterr().out
    # One item has no vector: 59 plotted.
    assert f"wrote {output}: 59 items of fashion/visual (version 20260101T000000)" in out

    from PIL import Image

    with Image.open(output) as image:
        assert image.size == (1320, 960)
        # Not a blank canvas: the scatter and the legend draw many colours.
        assert len(image.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 50


def test_the_sample_is_seeded_and_a_numeric_property_gets_a_colour_scale(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    arguments = ["--model", "visual", "--color-by", "label", "--sample", "20", "--seed", "5"]
    assert main(_plot(config, first, *arguments)) == 0
    assert main(_plot(config, second, *arguments)) == 0
    assert "wrote" in capsys.readouterr().out
    assert first.read_bytes() == second.read_bytes()
    other = tmp_path / "c.png"
    assert main(_plot(config, other, *arguments[:-1], "6")) == 0
    assert other.read_bytes() != first.read_bytes()

    price = tmp_path / "price.png"
    assert main(_plot(config, price, "--model", "visual", "--color-by", "price")) == 0
    assert price.read_bytes().startswith(PNG_SIGNATURE)


def test_a_missing_model_is_named(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "map.png"
    assert main(_plot(config, output, "--model", "nope", "--color-by", "category")) == 1
    err = capsys.readouterr().err
    assert "reqo plot: model 'nope' has no trained version" in err
    assert not output.exists()


def test_a_version_without_vectors_is_named(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "data" / "models" / "fashion" / "ease"
    (home / "v1").mkdir(parents=True)
    (home / "current").write_text("v1")
    assert main(_plot(config, tmp_path / "m.png", "--model", "ease", "--color-by", "label")) == 1
    assert "model 'ease': version 'v1' holds no vectors.npy" in capsys.readouterr().err


def test_a_missing_or_unplottable_property_is_named(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "map.png"
    assert main(_plot(config, output, "--model", "visual", "--color-by", "colour")) == 1
    err = capsys.readouterr().err
    assert (
        "reqo plot: no item property 'colour' (the items have: category, image, label, price" in err
    )
    assert main(_plot(config, output, "--model", "visual", "--color-by", "image")) == 1
    assert "'image' is of type image, which cannot colour a plot" in capsys.readouterr().err
    assert not output.exists()


def test_an_unknown_database_is_a_configuration_error(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = _plot(config, tmp_path / "m.png", "--model", "visual", "--color-by", "label")
    arguments[arguments.index("fashion")] = "shop"
    assert main(arguments) == 2
    assert "databases.shop" in capsys.readouterr().err


def test_without_an_output_the_map_goes_where_the_console_shows_it(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["plot", "embeddings", "--config", str(config), "--db", "fashion"]
    code = main([*common, "--model", "visual", "--color-by", "category", "--sample", "20"])
    assert code == 0, capsys.readouterr().err
    written = tmp_path / "data" / "maps" / "fashion" / "visual-category.png"
    assert written.read_bytes().startswith(PNG_SIGNATURE)
    assert f"wrote {written}" in capsys.readouterr().out
