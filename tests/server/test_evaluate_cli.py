"""`reqo evaluate` on real DuckDB files: the table, the JSON record, the chart, bad arguments."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from plugins.evaluation.splits import ratio_counts
from server.cli.main import main
from storage.database import Database
from tests.plugins.catalog import build_catalog

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROW = re.compile(r"^\| (?P<model>[\w-]+) \| (?P<cells>.*) \|$")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config with the `shop` database (the synthetic catalog) and one configured model."""
    directory = tmp_path_factory.mktemp("evaluate")
    path = directory / "reqo.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": "data",
                "databases": {"shop": {"token": "tok"}, "empty": {"token": "tok2"}},
                "models": {"knn5": {"algorithm": "item-knn", "params": {"neighbours": 5}}},
            }
        )
    )
    build_catalog(directory / "data" / "shop.duckdb", users=60, items=45, interactions=2000).close()
    return path


def evaluate(config: Path, *arguments: str) -> int:
    return main(["evaluate", "--config", str(config), "--db", "shop", "--no-progress", *arguments])


def table_rows(text: str) -> dict[str, list[str]]:
    """The Markdown table's rows by model: the cells after the model name."""
    rows = {}
    for line in text.splitlines():
        found = ROW.match(line)
        if found and found["model"] != "model":
            rows[found["model"]] = [cell.strip() for cell in found["cells"].split("|")]
    return rows


def test_table_json_and_chart(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = evaluate(
        config, "--models", "popularity,knn5", "--seeds", "1,2", "--k", "5,10", "--out", str(out)
    )
    printed = capsys.readouterr().out
    assert code == 0, printed

    header = next(line for line in printed.splitlines() if line.startswith("| model |"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns[0] == "model"
    assert columns[-1] == "train s"
    assert {"ndcg@5", "ndcg@10", "recall@10", "mrr@10", "hit@5", "precision@10"} <= set(columns)
    assert {"coverage@5", "coverage@10"} <= set(columns)
    rows = table_rows(printed)
    assert list(rows) == ["popularity", "knn5"]

    record = json.loads((out / "shop-random.json").read_text())
    assert record["database"] == "shop"
    assert record["protocol"]["name"] == "random"
    assert record["protocol"]["split"] == pytest.approx([0.8, 0.1, 0.1])
    assert record["protocol"]["ks"] == [5, 10]
    assert record["seeds"] == [1, 2]
    assert record["dataset"] == {"users": 60, "items": 45, "interactions": 2000}
    assert [s["seed"] for s in record["splits"]] == [1, 2]
    assert all(sum(s["sizes"].values()) == 2000 for s in record["splits"])
    assert record["models"]["knn5"] == {
        "algorithm": "item-knn",
        "params": {"neighbours": 5},
        "weights": {},
    }
    assert record["versions"]["numpy"] == np.__version__
    runs = record["runs"]
    assert sorted((r["model"], r["seed"]) for r in runs) == [
        ("knn5", 1),
        ("knn5", 2),
        ("popularity", 1),
        ("popularity", 2),
    ]
    for run in runs:
        assert all(0.0 <= value <= 1.0 for value in run["figures"].values())
    # The summary and the printed cells are the mean ± sample std of the per-seed figures.
    for model, cells in rows.items():
        values = [r["figures"]["ndcg@10"] for r in runs if r["model"] == model]
        summary = record["summary"][model]["ndcg@10"]
        assert summary["mean"] == pytest.approx(statistics.fmean(values))
        assert summary["std"] == pytest.approx(statistics.stdev(values))
        cell = cells[columns.index("ndcg@10") - 1]
        assert cell == f"{summary['mean']:.4f} ± {summary['std']:.4f}"
    knn, popularity = record["summary"]["knn5"], record["summary"]["popularity"]
    assert knn["ndcg@10"]["mean"] > popularity["ndcg@10"]["mean"]

    chart = out / "shop-random.png"
    assert chart.read_bytes()[:8] == PNG_SIGNATURE
    assert chart.stat().st_size > 5_000  # an image with bars, not an empty canvas


def test_loo_with_one_seed_and_an_algorithm_name(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = evaluate(
        config, "--models", "item-knn", "--protocol", "loo", "--k", "10", "--out", str(tmp_path)
    )
    printed = capsys.readouterr().out
    assert code == 0
    (cells,) = table_rows(printed).values()
    assert all("±" not in cell for cell in cells)  # one seed: no spread
    record = json.loads((tmp_path / "shop-loo.json").read_text())
    assert record["summary"]["item-knn"]["ndcg@10"]["std"] is None
    assert record["models"]["item-knn"]["params"] == {}
    assert record["splits"][0]["sizes"]["test"] == record["splits"][0]["sizes"]["valid"]


def test_temporal_at_an_iso_time(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The catalog's interactions are one a minute from 1,700,000,000 s (2023-11-14 22:13:20):
    # the 1,500th is at 1,700,090,000 s, 2023-11-15 23:13:20 UTC.
    at = "2023-11-15T23:13:20+00:00"
    code = evaluate(
        config,
        *("--models", "popularity", "--protocol", "temporal", "--at", at, "--out", str(tmp_path)),
    )
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "shop-temporal.json").read_text())
    assert record["protocol"]["cut"] == 1_700_090_000
    assert record["splits"][0]["sizes"]["test"] == 500


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--split", "0.8,0.2"], "three ratios"),
        (["--split", "0.8,x,0.1"], "split"),
        (["--split", "1,0,0"], "must be above 0"),
        (["--k", "0"], "K"),
        (["--k", "ten"], "K"),
        (["--seeds", "one"], "seeds"),
        (["--protocol", "random", "--at", "0"], "--protocol temporal"),
        (["--protocol", "temporal", "--quantile", "1.5"], "between 0 and 1"),
        (["--protocol", "temporal", "--at", "tomorrow"], "ISO 8601"),
        (["--models", "nope"], "unknown model 'nope'"),
        (["--db", "missing"], "no such database"),
    ],
)
def test_bad_arguments_exit_with_2_and_say_why(
    config: Path, arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = evaluate(config, *arguments)
    except SystemExit as exit:  # argparse's usage errors
        code = int(str(exit.code))
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_database_without_a_file_or_interactions(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["evaluate", "--config", str(config), "--db", "empty", "--no-progress"]
    assert main(arguments) == 1
    assert "has no file yet" in capsys.readouterr().err
    Database("empty", config.parent / "data" / "empty.duckdb").close()
    assert main(arguments) == 1
    assert "holds no interactions" in capsys.readouterr().err


def test_a_database_held_by_another_process(config: Path, tmp_path: Path) -> None:
    """`python -m server.cli evaluate` in a subprocess, while this process holds the file as a
    running server does."""
    database = Database("shop", config.parent / "data" / "shop.duckdb")
    try:
        result = run_cli(config, "--models", "popularity", "--out", str(tmp_path))
    finally:
        database.close()
    assert result.returncode == 1
    assert "open in a running server; stop the server first" in result.stderr
    # Once the file is free, the same command works, and wrote nothing to the database.
    before = (config.parent / "data" / "shop.duckdb").stat().st_mtime_ns
    result = run_cli(config, "--models", "popularity", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "| popularity |" in result.stdout
    assert (config.parent / "data" / "shop.duckdb").stat().st_mtime_ns == before


def run_cli(config: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "server.cli", "evaluate", "--config", str(config)]
    return subprocess.run(
        [*command, "--db", "shop", "--no-progress", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )


@pytest.mark.slow
def test_movielens_100k_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """MovieLens-100K, RecBole's random 80/10/10 protocol, popularity and item-kNN."""
    from storage.movielens import DatasetError, find_files, load

    try:
        find_files(download=False)
    except DatasetError as error:
        pytest.skip(f"MovieLens-100K is not installed here: {error}")
    path = tmp_path / "reqo.yaml"
    path.write_text(yaml.safe_dump({"data_dir": "data", "databases": {"ml": {"token": "t"}}}))
    database = Database("ml", tmp_path / "data" / "ml.duckdb")
    try:
        load(database, progress=False)
        per_user = database.read_sync(
            lambda ctx: [
                row[0]
                for row in ctx.conn.execute(
                    "SELECT count(*) FROM interactions GROUP BY user_id"
                ).fetchall()
            ]
        )
    finally:
        database.close()
    arguments = ["--models", "popularity,item-knn", "--seeds", "1,2", "--out", str(tmp_path)]
    code = main(["evaluate", "--config", str(path), "--db", "ml", "--no-progress", *arguments])
    assert code == 0
    record: dict[str, Any] = json.loads((tmp_path / "ml-random.json").read_text())
    assert record["dataset"] == {"users": 943, "items": 1682, "interactions": 100_000}
    # Every user has at least 20 ratings: each gets test items, and the parts hold RecBole's
    # per-user counts.
    expected = np.sum([ratio_counts(n, (0.8, 0.1, 0.1)) for n in per_user], axis=0).tolist()
    for split in record["splits"]:
        assert [split["sizes"][p] for p in ("train", "valid", "test")] == expected
        assert split["test_users"] == 943
    summary = record["summary"]
    assert 0 < summary["popularity"]["ndcg@10"]["mean"] < summary["item-knn"]["ndcg@10"]["mean"]
    assert "| item-knn |" in capsys.readouterr().out
