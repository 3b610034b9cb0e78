"""`reqo evaluate --protocol cold-items / cold-users` on a real DuckDB catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from server.cli.main import main
from tests.plugins.catalog import build_catalog


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("evaluate-cold")
    path = directory / "reqo.yaml"
    path.write_text(
        yaml.safe_dump({"data_dir": "data", "databases": {"shop": {"token": "tok"}}, "models": {}})
    )
    build_catalog(directory / "data" / "shop.duckdb", users=60, items=50, interactions=2000).close()
    return path


def evaluate(config: Path, *arguments: str) -> int:
    return main(["evaluate", "--config", str(config), "--db", "shop", "--no-progress", *arguments])


def test_cold_items_rank_among_the_cold_items(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = "random,attribute-popularity"
    assert (
        evaluate(config, "--protocol", "cold-items", "--models", models, "--out", str(tmp_path))
        == 0
    )
    out = capsys.readouterr().out
    assert "cold items: 0.1 of the items held out" in out
    assert "ranking over the cold items" in out
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["protocol"]["name"] == "cold-items"
    assert record["protocol"]["cold_share"] == 0.1
    assert record["splits"][0]["sizes"]["valid"] == 0
    wide = tmp_path / "all"
    arguments = ("--protocol", "cold-items", "--rank-among", "all", "--models", "random")
    assert evaluate(config, *arguments, "--out", str(wide)) == 0
    assert "full ranking over all items" in capsys.readouterr().out


def test_cold_users_keep_n_interactions(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ("--protocol", "cold-users", "--cold-user-interactions", "2", "--seeds", "1,2")
    assert evaluate(config, *arguments, "--models", "random", "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "keep their first 2 interactions in train" in out
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["protocol"]["cold_user_interactions"] == 2


def test_cold_options_belong_to_their_protocols(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert evaluate(config, "--rank-among", "all") == 2
    assert "--rank-among belongs to --protocol cold-items" in capsys.readouterr().err
    assert evaluate(config, "--protocol", "cold-items", "--cold-user-interactions", "1") == 2
    assert "--cold-user-interactions belongs" in capsys.readouterr().err
