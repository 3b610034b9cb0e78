"""`reqo dataset load ml-100k`: the command behind the README's demo."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from server.cli.main import main
from storage.database import Database
from storage.movielens import interaction_count


def test_load_then_skip_then_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "reqo.yaml"
    config.write_text(yaml.safe_dump({"data_dir": "data", "databases": {"demo": {"token": "t"}}}))
    load = ["dataset", "load", "ml-100k", "--config", str(config), "--db", "demo", "--no-progress"]

    assert main(load) == 0
    out = capsys.readouterr().out
    assert "MovieLens-100K from the installed recbole package" in out
    assert "imported 100000 interactions" in out

    assert main([*load, "--skip-if-loaded"]) == 0
    assert "holds interactions already" in capsys.readouterr().out

    assert main(load) == 1
    assert "pass --replace" in capsys.readouterr().err

    database = Database("demo", tmp_path / "data" / "demo.duckdb")
    try:
        assert database.read_sync(interaction_count) == 100_000
    finally:
        database.close()

    assert main([*load[:-3], "--db", "nope"]) == 2
    assert "no such database" in capsys.readouterr().err
