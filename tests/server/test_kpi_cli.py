"""`reqo kpi` on a real DuckDB file: the table, the JSON (the endpoint's document), the CTR plot,
and bad arguments."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.cli.main import main
from storage.database import Database
from storage.interactions import InteractionKind, apply_interaction_writes, parse_interaction
from storage.recommendations import Recommendation, log_recommendations

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOUR = 3600.0


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with two hours of a two-variant experiment: pop is clicked 1 in 4, knn 1 in 2."""
    directory = tmp_path_factory.mktemp("kpi")
    path = directory / "reqo.yaml"
    variants = [{"name": "pop", "model": "popularity"}, {"name": "knn", "model": "item-knn"}]
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": "data",
                "databases": {"shop": {"token": "tok"}},
                "scenarios": {"home": {"variants": variants}},
            }
        )
    )
    start = (time.time() // HOUR - 3) * HOUR
    records, writes = [], []
    for i in range(16):
        variant = "pop" if i % 2 else "knn"
        at = start + (i // 8) * HOUR + i
        records.append(
            Recommendation(
                f"r{i}", at, "items-to-user", "u", None, "home", {}, ("a", "b"), 0, variant
            )
        )
        if (variant == "knn" and i % 4 == 0) or (variant == "pop" and i % 8 == 1):
            writes.append(_view(f"r{i}", at + 1))
    writes.append(
        parse_interaction(
            InteractionKind.PURCHASE,
            {
                "userId": "u",
                "itemId": "b",
                "price": 12.5,
                "profit": 3.0,
                "recommId": "r0",
                "cascadeCreate": True,
            },
        )
    )
    database = Database("shop", directory / "data" / "shop.duckdb")
    database.write_sync(lambda ctx: log_recommendations(ctx, records))
    database.write_sync(lambda ctx: apply_interaction_writes(ctx, writes))
    database.close()
    return path


def _view(recomm_id: str, at: float) -> Any:
    params = {"userId": "u", "itemId": "a", "timestamp": at, "cascadeCreate": True}
    return parse_interaction(InteractionKind.DETAIL_VIEW, {**params, "recommId": recomm_id})


def kpi(config: Path, *arguments: str) -> int:
    return main(["kpi", "--config", str(config), "--db", "shop", *arguments])


def test_the_table_and_the_ctr_plot(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "ctr.png"
    assert kpi(config, "--plot", str(plot), "--bucket", "1h") == 0
    output = capsys.readouterr().out
    rows = {
        tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): line
        for line in output.splitlines()
        if line.startswith("| ")
    }
    # recomms, clicks, CTR, purchases, conversion, revenue, profit
    assert rows[("home", "all")].endswith("| 16 | 6 | 37.50 % | 1 | 6.25 % | 12.50 | 3.00 |")
    assert rows[("", "knn")].endswith("| 8 | 4 | 50.00 % | 1 | 12.50 % | 12.50 | 3.00 |")
    assert rows[("", "pop")].endswith("| 8 | 2 | 25.00 % | 0 | 0.00 % | 0.00 | 0.00 |")
    assert plot.read_bytes().startswith(PNG_SIGNATURE)


def test_json_is_the_endpoints_document(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    since = (time.time() // HOUR - 2) * HOUR  # the second hour only
    assert kpi(config, "--json", "--scenario", "home", "--since", f"{since:.0f}") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["scenario"] == "home"
    assert document["since"] == since
    (home,) = document["scenarios"]
    by_variant = {v["variant"]: v for v in home["variants"]}
    assert (by_variant["knn"]["recommendations"], by_variant["knn"]["clicks"]) == (4, 2)
    assert (by_variant["pop"]["recommendations"], by_variant["pop"]["clicks"]) == (4, 1)
    assert home["ctr"] == pytest.approx(3 / 8)


def test_bad_arguments(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        kpi(config, "--since", "last week")
    assert exited.value.code == 2
    assert "since" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        kpi(config, "--bucket", "soon")
    assert "duration" in capsys.readouterr().err
    assert kpi(config, "--scenario", "nowhere") == 1
    assert "nowhere" in capsys.readouterr().err
