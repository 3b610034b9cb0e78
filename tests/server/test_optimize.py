"""`reqo optimize` on a real DuckDB file: an ensemble's search and one model's, their overlays,
the curve, bad arguments; and configuration overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from plugins.evaluation.harness import ModelSpec, Protocol, evaluate
from plugins.evaluation.param_search import ModelObjective
from plugins.evaluation.search import (
    Objective,
    SearchError,
    Tunable,
    parse_metric,
    parse_tunables,
    search,
)
from plugins.manager import collect, get_plugin_manager
from server.cli.main import main
from server.config import ConfigError, load_config, parse_config
from server.offline.evaluate import read_snapshot
from storage.snapshot import Snapshot
from tests.plugins.catalog import build_catalog

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REGISTRY = collect(get_plugin_manager())
MODELS: dict[str, Any] = {
    "ease": {"algorithm": "ease", "params": {"l2": 10.0}},
    "pop": {"algorithm": "popularity"},
    "blend": {"algorithm": "ensemble", "params": {"members": ["ease", "pop"]}},
    # A clearly bad regularisation on this data: the search must leave it.
    "ease-bad": {"algorithm": "ease", "params": {"l2": 1.0}},
    "knn": {"algorithm": "item-knn"},
    "ranker": {
        "algorithm": "stacker",
        "params": {"members": ["ease", "pop"], "n_estimators": 20, "threads": 1},
    },
}
SCENARIOS: dict[str, Any] = {
    # Starts from popularity alone: the search must find that EASE is worth more.
    "home": {"model": "blend", "ensemble_weights": {"ease": 0.0, "pop": 1.0}},
    "plain": {"model": "ease"},
    "bad": {"model": "ease-bad"},
}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("optimize")
    path = directory / "reqo.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": "data",
                "databases": {"shop": {"token": "tok"}},
                "models": MODELS,
                "scenarios": SCENARIOS,
            }
        )
    )
    build_catalog(directory / "data" / "shop.duckdb", users=60, items=45, interactions=2000).close()
    return path


@pytest.fixture(scope="module")
def snapshot(config: Path) -> Snapshot:
    return read_snapshot(config.parent / "data" / "shop.duckdb")


def members() -> list[ModelSpec]:
    return [
        ModelSpec("ease", REGISTRY.algorithms["ease"], {"l2": 10.0}),
        ModelSpec("pop", REGISTRY.algorithms["popularity"]),
    ]


def optimize(config: Path, *arguments: str) -> int:
    return main(["optimize", "--config", str(config), "--db", "shop", "--no-progress", *arguments])


def test_optimize_writes_an_overlay_the_config_loads_and_a_curve(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, plot = tmp_path / "optimized.yaml", tmp_path / "curve.png"
    code = optimize(
        config, "--scenario", "home", "--seeds", "1,2", "--budget", "14",
        "--out", str(out), "--plot", str(plot),
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    written = yaml.safe_load(out.read_text())
    weights = written["scenarios"]["home"]["ensemble_weights"]
    assert set(weights) == {"ease", "pop"}
    assert max(weights.values()) == 1.0
    # From popularity alone, the search moves weight to EASE, the better member here.
    assert weights["ease"] > weights["pop"]
    assert "models" not in written
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| seed | test ndcg@10: ensemble | test ndcg@10: configured")
    assert [line.split(" | ")[0] for line in table[1:]] == ["| 1", "| 2", "| mean"]

    # Listed under `overlays:`, the file sets the scenario's weights.
    base = yaml.safe_load(config.read_text())
    merged = tmp_path / "reqo.yaml"
    base["data_dir"] = str(config.parent / "data")
    merged.write_text(yaml.safe_dump({**base, "overlays": ["optimized.yaml"]}))
    loaded = load_config(merged)
    assert loaded.scenarios["home"].ensemble_weights == weights
    assert loaded.scenarios["home"].model == "blend"


def test_the_search_beats_its_start_and_is_deterministic(snapshot: Snapshot) -> None:
    objective = Objective(snapshot, members(), Protocol(seeds=(1,)), "zscore", "ndcg@10")
    start = {"ease": 0.0, "pop": 1.0}
    first = search(objective, start, budget=12, seed=3)
    assert first.start.value == pytest.approx(first.validation["pop"])
    assert first.best.value > first.start.value
    assert len(first.history) == 12
    assert first.screened >= 12
    again = search(objective, start, budget=12, seed=3)
    assert [e.value for e in again.history] == [e.value for e in first.history]
    assert again.best_weights == first.best_weights


def test_a_members_test_figure_is_the_harness_figure(snapshot: Snapshot) -> None:
    """A member alone through the search's precomputed, normalised scores ranks as the
    evaluation harness ranks it."""
    protocol = Protocol(seeds=(2,), ks=(10,))
    objective = Objective(snapshot, members(), protocol, "zscore", "ndcg@10")
    figures = objective.test({"ease": 1.0}, None, {"ease": 1.0, "pop": 1.0})[2]
    harness = evaluate(snapshot, members(), protocol)
    for run in harness.runs:
        assert figures[run.model] == pytest.approx(run.figures["ndcg@10"], abs=1e-9)
    assert figures["ensemble"] == pytest.approx(figures["ease"], abs=1e-9)


def test_searched_parameters_refit_the_member(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tuned.yaml"
    code = optimize(
        config, "--scenario", "home", "--budget", "6", "--params", "ease.l2=1:200",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, capsys.readouterr()
    written = yaml.safe_load(out.read_text())
    l2 = written["models"]["ease"]["params"]["l2"]
    assert 1.0 <= l2 <= 200.0
    assert (tmp_path / "tuned.png").read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(
    "target", [["--scenario", "bad"], ["--model", "ease-bad"]], ids=["scenario", "model"]
)
def test_a_models_search_writes_its_parameters_the_config_loads(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], target: list[str]
) -> None:
    out = tmp_path / "tuned.yaml"
    code = optimize(
        config, *target, "--params", "ease-bad.l2=1:10000", "--budget", "8", "--out", str(out)
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    written = yaml.safe_load(out.read_text())
    assert set(written) == {"models"}  # no weights: a model alone
    assert set(written["models"]) == {"ease-bad"}
    (l2,) = written["models"]["ease-bad"]["params"].values()
    assert 1.0 < l2 <= 10000.0
    assert (tmp_path / "tuned.png").read_bytes().startswith(PNG_SIGNATURE)
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert table[0] == "| seed | test ndcg@10: tuned | test ndcg@10: configured |"
    assert "configured: l2=1" in printed
    assert f"chosen: l2={l2:.4g}" in printed

    # Listed under `overlays:`, the file sets the model's parameter; the rest stays.
    base = yaml.safe_load(config.read_text())
    base["data_dir"] = str(config.parent / "data")
    merged = tmp_path / "reqo.yaml"
    merged.write_text(yaml.safe_dump({**base, "overlays": ["tuned.yaml"]}))
    loaded = load_config(merged)
    assert loaded.models["ease-bad"].params == {"l2": l2}
    assert loaded.models["ease-bad"].algorithm == "ease"
    assert loaded.scenarios["bad"].model == "ease-bad"

    # The chosen value beats the configured one on validation, by the harness's figures.
    snapshot = read_snapshot(config.parent / "data" / "shop.duckdb")
    objective = ModelObjective(
        snapshot, ModelSpec("ease-bad", REGISTRY.algorithms["ease"]), Protocol(), "ndcg@10"
    )
    assert objective.fit({"l2": l2})[0] > objective.fit({"l2": 1.0})[0]


def test_a_stackers_parameters_are_searched_over_fitted_copies_of_its_members(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A stacker fits copies of its members while it learns: the search gives it a factory of
    # the configured models (no server binds one here).
    out = tmp_path / "ranker.yaml"
    code = optimize(
        config,
        *("--model", "ranker", "--params", "ranker.num_leaves=4:64", "--budget", "2"),
        *("--out", str(out)),
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    written = yaml.safe_load(out.read_text())
    (leaves,) = written["models"]["ranker"]["params"].values()
    assert isinstance(leaves, int)
    assert 4 <= leaves <= 64
    assert "model ranker: 2 settings fitted" in printed


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--scenario", "plain"], "--params: 'ease' (ease) is not an ensemble: name the param"),
        (["--scenario", "nope"], "--scenario: 'nope' is not a configured scenario"),
        (["--scenario", "home", "--metric", "auc@10"], "--metric: 'auc@10' is not one of"),
        (["--scenario", "home", "--budget", "0"], "--budget: must be at least 1"),
        (["--scenario", "home", "--params", "vae.l2=1:2"], "--params: 'vae' is not a member"),
        (["--model", "nope"], "--model: 'nope' is not a configured model (blend, default, ease"),
        (["--model", "blend"], "--model: 'blend' is an ensemble: search its weights with"),
        (["--model", "ease"], "--params: 'ease' (ease) is not an ensemble: name the parameters"),
        (
            ["--model", "ease", "--params", "ease.nope=1:2"],
            "--params: 'nope' is not a searchable parameter of ease (l2, max_items)",
        ),
        (["--model", "ease", "--params", "ease.l2=a:b"], "--params: 'ease.l2=a:b': the bounds"),
        (["--model", "ease", "--params", "ease.l2=9:2"], "--params: 'ease.l2=9:2': low must be"),
        (["--model", "ease", "--params", "pop.l2=1:2"], "--params: 'pop' is not a model (ease)"),
        (["--model", "knn", "--params", "binary=true|no"], "'no' is not true or false"),
        (["--model", "knn", "--params", "binary=1:2"], "'binary' is a bool: list the choices"),
        (["--model", "ease", "--params", "l2=1:9", "--budget", "0"], "--budget: must be at"),
        (
            ["--model", "knn", "--params", "binary=true|false", "--budget", "2"],
            "--budget: the configured values and the 2 combinations of the choices need at least",
        ),
        (["--model", "ease", "--params", "l2=1:9", "--metric", "ndcg"], "--metric: 'ndcg' is"),
    ],
)
def test_bad_arguments_name_the_option(
    config: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    assert optimize(config, *arguments) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments", [[], ["--scenario", "home", "--model", "ease"]], ids=["neither", "both"]
)
def test_a_scenario_or_a_model_is_required(
    config: Path, capsys: pytest.CaptureFixture[str], arguments: list[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        optimize(config, *arguments)
    assert raised.value.code == 2
    assert "--scenario" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ease.l2", "is not member.parameter=low:high"),
        ("ease.nope=1:2", "'nope' is not a searchable parameter of ease"),
        ("ease.l2=5:1", "low must be below high"),
        ("ease.l2=a:b", "the bounds must be numbers"),
        ("ease.l2=-5:1", "below the minimum"),
        ("ease.l2=1:2,ease.l2=3:4", "listed twice"),
    ],
)
def test_bad_parameter_ranges(text: str, problem: str) -> None:
    with pytest.raises(SearchError, match=problem):
        parse_tunables(text, {spec.name: spec for spec in members()})


def test_tunables_and_metrics_parse() -> None:
    specs = {spec.name: spec for spec in members()}
    assert parse_tunables("ease.l2=1:300", specs) == (Tunable("ease", "l2", 1.0, 300.0, log=True),)
    assert parse_tunables("ease.l2=1:5", specs) == (Tunable("ease", "l2", 1.0, 5.0),)
    assert Tunable("m", "epochs", 10, 20, integer=True).value(0.26) == 13
    assert parse_metric("Recall@20") == ("recall", 20)
    with pytest.raises(SearchError, match="--metric"):
        parse_metric("ndcg@0")


# -- overlays -------------------------------------------------------------------------------------


def base_config(**extra: Any) -> dict[str, Any]:
    return {
        "databases": {"shop": {"token": "t"}},
        "models": MODELS,
        "scenarios": SCENARIOS,
        **extra,
    }


def test_overlays_merge_mappings_in_order(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        yaml.safe_dump({"scenarios": {"home": {"ensemble_weights": {"ease": 2.0}}}})
    )
    (tmp_path / "b.yaml").write_text(
        yaml.safe_dump(
            {
                "scenarios": {"home": {"ensemble_weights": {"pop": 0.5}}},
                "models": {"ease": {"params": {"l2": 99.0}}},
            }
        )
    )
    config = parse_config(
        base_config(overlays=["a.yaml", "b.yaml"]), source="reqo.yaml", base_dir=tmp_path
    )
    assert config.scenarios["home"].ensemble_weights == {"ease": 2.0, "pop": 0.5}
    assert config.models["ease"].params == {"l2": 99.0}
    assert config.models["ease"].algorithm == "ease"  # the base's other keys stay


@pytest.mark.parametrize(
    ("files", "key", "problem"),
    [
        ({}, "overlays[0]", "cannot be read"),
        ({"o.yaml": "- a list\n"}, "overlays[0]", "must hold a mapping"),
        ({"o.yaml": "overlays: [p.yaml]\n"}, "overlays[0]", "cannot list overlays"),
        ({"o.yaml": "scenarios: {home: [\n"}, "overlays[0]", "is not valid YAML"),
        ({"o.yaml": "scenaros: {}\n"}, "scenaros", "unknown key"),
    ],
)
def test_bad_overlays_are_refused(
    tmp_path: Path, files: dict[str, str], key: str, problem: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=problem) as raised:
        parse_config(base_config(overlays=["o.yaml"]), source="reqo.yaml", base_dir=tmp_path)
    assert raised.value.key == key
    with pytest.raises(ConfigError, match="must be a list"):
        parse_config(base_config(overlays="o.yaml"), source="reqo.yaml", base_dir=tmp_path)
