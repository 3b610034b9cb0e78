"""`reqo dataset load fashion-mnist`, on a small dataset directory written by the test (the
real dataset's load is tested in tests/storage/test_fashion_mnist.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from server.cli.main import main
from storage.database import Database
from storage.fashion_mnist import item_count
from tests.storage.test_fashion_mnist import write_dataset


def test_load_then_skip_then_refuse_then_replace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "reqo.yaml"
    config.write_text(yaml.safe_dump({"data_dir": "data", "databases": {"shop": {"token": "t"}}}))
    files = write_dataset(tmp_path / "files", train=7, test=3)
    load = ["dataset", "load", "fashion-mnist", "--config", str(config), "--db", "shop"]
    load += ["--path", str(files), "--no-progress"]

    assert main(load) == 0
    out = capsys.readouterr().out
    assert f"Fashion-MNIST from {files}" in out
    assert "imported 10 items" in out
    images = tmp_path / "data" / "images" / "shop"
    assert f"PNGs under {images}: 10 written, 0 already there" in out
    assert sorted(p.name for p in images.iterdir())[:2] == ["test-00000.png", "test-00001.png"]

    assert main([*load, "--skip-if-loaded"]) == 0
    assert "shop: holds items already; not loading fashion-mnist" in capsys.readouterr().out

    assert main(load) == 1
    assert "already holds 10 items" in capsys.readouterr().err

    assert main([*load, "--replace"]) == 0
    assert ": 0 written, 10 already there" in capsys.readouterr().out

    database = Database("shop", tmp_path / "data" / "shop.duckdb")
    try:
        assert database.read_sync(item_count) == 10
    finally:
        database.close()


def test_a_directory_without_the_files_fails_with_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "reqo.yaml"
    config.write_text(yaml.safe_dump({"data_dir": "data", "databases": {"shop": {"token": "t"}}}))
    empty = tmp_path / "empty"
    empty.mkdir()
    load = ["dataset", "load", "fashion-mnist", "--config", str(config), "--db", "shop"]
    assert main([*load, "--path", str(empty), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"reqo dataset: {empty} lacks train-images-idx3-ubyte.gz" in err
    assert not (tmp_path / "data" / "images").exists()


def test_fashion_sessions_loads_a_catalog_with_synthetic_views(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from storage.movielens import interaction_count

    config = tmp_path / "reqo.yaml"
    config.write_text(yaml.safe_dump({"data_dir": "data", "databases": {"shop": {"token": "t"}}}))
    files = write_dataset(tmp_path / "files", train=30, test=10)
    load = ["dataset", "load", "fashion-sessions", "--config", str(config), "--db", "shop"]
    load += ["--path", str(files), "--no-progress", "--users", "12", "--seed", "3"]
    assert main(load) == 0
    out = capsys.readouterr().out
    assert "imported 40 items" in out
    assert "SYNTHETIC sessions (seed 3)" in out
    database = Database("shop", tmp_path / "data" / "shop.duckdb")
    try:
        assert database.read_sync(interaction_count) > 12
    finally:
        database.close()
    assert main([*load, "--skip-if-loaded"]) == 0
    assert "holds interactions already" in capsys.readouterr().out
    assert main([*load, "--users", "0"]) == 2
    assert "--limit and --users must be at least 1" in capsys.readouterr().err
