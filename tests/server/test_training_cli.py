"""`reqo train` and `reqo plugins`, offline and against a running server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from recombee_api_client.api_requests import AddDetailView, RecommendItemsToUser

from tests.plugins.catalog import build_catalog
from tests.serving import RunningServer, free_port


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "reqo.yaml"
    path.write_text(yaml.safe_dump({"data_dir": "data", "databases": {"shop": {"token": "tok"}}}))
    return path


def test_train_offline_then_serve_the_trained_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli.main import main

    path = config_file(tmp_path)
    build_catalog(tmp_path / "data" / "shop.duckdb").close()
    assert main(["train", "--config", str(path), "--model", "item-knn"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("shop/item-knn: ")
    current = tmp_path / "data" / "models" / "shop" / "item-knn" / "current"
    version = current.read_text()
    assert (current.parent / version / "meta.json").exists()
    assert not (tmp_path / "data" / "models" / "shop" / "popularity").exists()

    server = RunningServer(tmp_path, free_port(), {"shop": "tok"})
    server.start()
    try:
        response = server.client("shop").send(RecommendItemsToUser("u1", 3))
        assert len(response["recomms"]) == 3
        assert current.read_text() == version  # served as trained, not retrained
        # While the server holds the database, `reqo train` asks it to train.
        assert main(["train", "--config", str(server.config_path), "--model", "item-knn"]) == 0
        output = capsys.readouterr().out
        assert "asking it to train" in output
        assert current.read_text() != version
        server.client("shop").send(AddDetailView("u1", "i3"))
    finally:
        server.stop()


def test_plugins_listing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from server.cli.main import main

    path = config_file(tmp_path)
    assert main(["plugins", "--config", str(path)]) == 0
    text = capsys.readouterr().out
    assert "plugins.builtin.item_knn" in text
    assert "algorithm  item-knn" in text
    assert "text embedder  minilm: all-MiniLM-L6-v2" in text
    assert main(["plugins", "--config", str(path), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {"popularity", "item-knn", "recently-viewed"} <= set(listing["algorithms"])
    assert listing["algorithms"]["item-knn"]["parameters"]["neighbours"] == 100
    assert listing["algorithms"]["item-knn"]["parameterHelp"]["neighbours"] == {
        "type": "int",
        "default": 100,
        "description": "similar items kept per item",
        "minimum": 1,
    }
    assert "pixels" in listing["embedders"]
    assert "minilm" in listing["textEmbedders"]
    # The text lists each parameter with its type, default, range and description, and the
    # embedders as well as the algorithms.
    assert main(["plugins", "--config", str(path)]) == 0
    text = capsys.readouterr().out
    assert "        neighbours (int, default 100; >= 1): similar items kept per item\n" in text
    assert "    embedder  pixels: " in text
    assert "device (str, default 'auto'; one of auto, cpu, cuda): " in text


def test_plugins_over_http(server: RunningServer) -> None:
    import requests

    # The plugin inventory is for the admin only.
    assert requests.get(f"{server.url}/-/plugins", timeout=10).status_code == 401
    listing = server.admin("GET", "plugins").json()
    names = [p["name"] for p in listing["plugins"]]
    assert "plugins.builtin.popularity" in names
    assert (
        "now"
        in next(p for p in listing["plugins"] if p["name"] == "plugins.builtin.reql_functions")[
            "reqlFunctions"
        ]
    )


def test_train_missing_only_skips_trained_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli.main import main

    path = config_file(tmp_path)
    build_catalog(tmp_path / "data" / "shop.duckdb").close()
    assert main(["train", "--config", str(path), "--model", "popularity"]) == 0
    current = tmp_path / "data" / "models" / "shop" / "popularity" / "current"
    version = current.read_text()
    capsys.readouterr()
    assert main(["train", "--config", str(path), "--missing-only"]) == 0
    printed = capsys.readouterr().out
    assert f"shop/popularity: trained already ({version})" in printed
    assert current.read_text() == version
    assert (tmp_path / "data" / "models" / "shop" / "item-knn" / "current").exists()
