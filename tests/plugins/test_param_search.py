"""One model's parameters searched alone (plugins.evaluation.param_search) on a real DuckDB file,
and the parameter spaces of `--params` (plugins.evaluation.param_space)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from plugins.evaluation.harness import ModelSpec, Protocol, evaluate
from plugins.evaluation.param_search import (
    ModelObjective,
    ParamSearchResult,
    check_budget,
    search_params,
)
from plugins.evaluation.param_space import SearchError, Tunable, parse_tunables
from plugins.manager import collect, get_plugin_manager
from server.offline.evaluate import read_snapshot
from storage.snapshot import Snapshot
from tests.plugins.catalog import build_catalog

REGISTRY = collect(get_plugin_manager())
PROTOCOL = Protocol(seeds=(1,), ks=(10,))


def spec(name: str, algorithm: str, **params: Any) -> ModelSpec:
    return ModelSpec(name, REGISTRY.algorithms[algorithm], params)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    path = tmp_path_factory.mktemp("param_search") / "shop.duckdb"
    build_catalog(path, users=60, items=45, interactions=2000).close()
    return read_snapshot(path)


def distinct(result: ParamSearchResult) -> bool:
    keys = [tuple(sorted(trial.values.items())) for trial in result.history]
    return len(set(keys)) == len(keys)


# -- spaces ---------------------------------------------------------------------------------------


def parse(text: str, *specs: ModelSpec) -> tuple[Tunable, ...]:
    chosen = specs or (spec("ease", "ease"),)
    return parse_tunables(text, {s.name: s for s in chosen}, what="model")


def test_ranges_take_a_log_scale_where_they_span_a_factor_of_ten() -> None:
    (auto,) = parse("ease.l2=10:1000")
    assert auto == Tunable("ease", "l2", 10.0, 1000.0, log=True)
    assert auto.value(0.5) == pytest.approx(100.0)
    assert parse("ease.l2=10:50") == (Tunable("ease", "l2", 10.0, 50.0),)
    assert parse("ease.l2=0:1000")[0].log is False  # a log scale needs low > 0
    assert parse("ease.l2=10:1000:lin")[0].log is False
    assert parse("ease.l2=10:50:log")[0].log is True
    # The model's name may be left out where one model is searched.
    assert parse("l2=10:1000") == parse("ease.l2=10:1000")


def test_values_round_and_map_back() -> None:
    (factors,) = parse("ials.factors=8:256", spec("ials", "ials"))
    assert factors.integer
    assert factors.log
    values = [factors.value(u) for u in (0.0, 0.2, 0.5, 1.0)]
    assert values == [8, round(8 * 32**0.2), round(8 * 32**0.5), 256]
    assert all(isinstance(v, int) for v in values)
    (l2,) = parse("ease.l2=1:10000")
    assert l2.value(1 / 3) == pytest.approx(21.54, abs=1e-9)  # 4 significant digits
    for value in (1.0, 37.5, 10000.0):
        assert l2.value(l2.unit(value)) == pytest.approx(value, rel=1e-3)
    assert l2.clip(5e6) == 10000.0
    assert l2.clip(350.0) == 350.0


def test_choices_are_checked_against_the_parameter() -> None:
    knn = spec("knn", "item-knn")
    (binary,) = parse("knn.binary=true|false", knn)
    assert binary.choices == (True, False)
    assert binary.categorical
    assert [binary.value(u) for u in (0.0, 0.49, 0.5, 1.0)] == [True, True, False, False]
    (neighbours,) = parse("knn.neighbours=10|50|200", knn)
    assert neighbours.choices == (10, 50, 200)
    gru = spec("gru", "gru4rec")
    assert parse("gru.loss=bpr-max|cross-entropy", gru)[0].choices == ("bpr-max", "cross-entropy")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ease.l2", "is not model.parameter=low:high or model.parameter=a|b"),
        ("vae.l2=1:2", "'vae' is not a model (ease)"),
        ("ease.nope=1:2", "'nope' is not a searchable parameter of ease (l2, max_items)"),
        ("ease.l2=a:b", "the bounds must be numbers"),
        ("ease.l2=1:inf", "the bounds must be finite numbers"),
        ("ease.l2=5:1", "low must be below high"),
        ("ease.l2=5:5", "low must be below high"),
        ("ease.l2=-5:1", "below the minimum"),
        ("ease.l2=0:10:log", "a log scale needs low > 0"),
        ("ease.l2=1:10:cube", "is not ease.parameter=low:high[:log|:lin]"),
        ("ease.max_items=10.5:100", "'max_items' is an integer: so are its bounds"),
        ("ease.l2=1|x", "'x' is not a number"),
        ("ease.l2=5", "is not ease.parameter=low:high[:log|:lin]"),
        ("knn.binary=0:1", "'binary' is a bool: list the choices to try, e.g. knn.binary=true|"),
        ("knn.binary=true|maybe", "'maybe' is not true or false"),
        ("knn.binary=true|true", "'true' is listed twice"),
        ("knn.neighbours=0|5", "below the minimum"),
        ("gru.loss=bpr-max|hinge", "'hinge' is not one of 'cross-entropy', 'bpr-max'"),
        ("gru.loss=bpr-max|", "'' is not one of"),
        ("gru.loss=bpr-max", "'loss' is a str: list the choices to try"),
        ("text.embedder=a|b", "'embedder' is not a searchable parameter of text"),
        ("ease.l2=1:2,l2=3:4", "listed twice"),
    ],
)
def test_bad_spaces_name_params(text: str, problem: str) -> None:
    specs = (
        spec("ease", "ease"),
        spec("knn", "item-knn"),
        spec("gru", "gru4rec"),
        spec("text", "content-knn"),
    )
    names = {s.name: s for s in specs}
    if text.startswith(("vae", "ease.l2=1:2,")):
        names = {"ease": specs[0]}
    with pytest.raises(SearchError, match=r"^--params: ") as raised:
        parse_tunables(text, names, what="model")
    assert problem in str(raised.value)


def test_the_budget_must_cover_every_combination_of_choices() -> None:
    knn = spec("knn", "item-knn")
    tunables = parse("knn.binary=true|false,knn.neighbours=5|10|20", knn)
    check_budget(tunables, 7)
    with pytest.raises(SearchError, match=r"--budget: .* 6 combinations .* at least 7 fits, not 6"):
        check_budget(tunables, 6)
    with pytest.raises(SearchError, match="--budget: must be at least 1"):
        check_budget(parse("ease.l2=1:10"), 0)
    with pytest.raises(SearchError, match="--params: give at least one"):
        check_budget((), 5)


# -- searches -------------------------------------------------------------------------------------


def test_one_number_climbs_away_from_a_bad_configured_value(snapshot: Snapshot) -> None:
    objective = ModelObjective(snapshot, spec("ease", "ease", l2=1.0), PROTOCOL, "ndcg@10")
    tunables = parse("ease.l2=1:10000")
    result = search_params(objective, tunables, budget=12)
    # The grid's first point (l2 = 1) is the configured value: fitted once, not twice.
    assert [t.stage for t in result.history[:5]] == ["configured"] + ["grid"] * 4
    assert [t.values["l2"] for t in result.history[:5]] == [1.0, 10.0, 100.0, 1000.0, 10000.0]
    assert {t.stage for t in result.history[5:]} == {"bracket"}
    assert len(result.history) == 12
    assert distinct(result)
    assert result.start.values == {"l2": 1.0}
    assert result.best.values["l2"] != 1.0
    assert result.best.value > result.start.value
    assert result.best.value == max(t.value for t in result.history)
    # Bracketing refines around the best point of the grid: its last probes lie between the
    # grid's neighbours of that point.
    grid = sorted(float(t.values["l2"]) for t in result.history[:5])
    around = min(grid, key=lambda v: abs(math.log(v / float(result.best.values["l2"]))))
    for trial in result.history[-3:]:
        assert around / 10 <= float(trial.values["l2"]) <= around * 10
    # Seeded and deterministic.
    again = search_params(objective, tunables, budget=12)
    assert [t.values for t in again.history] == [t.values for t in result.history]
    assert [t.value for t in again.history] == [t.value for t in result.history]


def test_integers_and_choices_fit_each_setting_once(snapshot: Snapshot) -> None:
    knn = spec("knn", "item-knn")  # configured: 100 neighbours, binary false
    objective = ModelObjective(snapshot, knn, PROTOCOL, "ndcg@10")
    tunables = parse("knn.binary=true|false,knn.neighbours=1:4", knn)
    result = search_params(objective, tunables, budget=20)
    stages = [t.stage for t in result.history]
    # The configured values; both choices at the clipped number (4); then neighbours 1, 2, 3:
    # the search stops once every integer of the range was fitted, far below the budget.
    assert stages[:3] == ["configured", "choices", "choices"]
    assert [t.values for t in result.history[1:3]] == [
        {"binary": True, "neighbours": 4},
        {"binary": False, "neighbours": 4},
    ]
    assert len(result.history) == 6
    assert distinct(result)
    chosen = max(result.history[1:3], key=lambda t: t.value).values["binary"]
    numbers = {t.values["neighbours"] for t in result.history[1:] if t.values["binary"] == chosen}
    assert numbers == {1, 2, 3, 4}
    assert result.best.value == max(t.value for t in result.history)


def test_two_numbers_take_cma_es_within_the_budget(snapshot: Snapshot) -> None:
    ials = spec("ials", "ials", factors=8, epochs=3)
    objective = ModelObjective(snapshot, ials, PROTOCOL, "ndcg@10")
    tunables = parse("ials.regularisation=0.001:1,ials.alpha=0.5:20", ials)
    result = search_params(objective, tunables, budget=9)
    assert [t.stage for t in result.history] == ["configured"] + ["cma-es"] * 8
    assert distinct(result)
    for trial in result.history[1:]:
        assert 0.001 <= float(trial.values["regularisation"]) <= 1.0
        assert 0.5 <= float(trial.values["alpha"]) <= 20.0
    assert result.best.value >= result.start.value


def test_the_test_figures_are_the_harness_figures(snapshot: Snapshot) -> None:
    """The configured model's test figure is `reqo evaluate`'s; the tuned one is the figure of
    the chosen parameters evaluated by the harness, with no refit in the search."""
    protocol = Protocol(seeds=(1, 2), ks=(10,))
    ease = spec("ease", "ease", l2=1.0)
    objective = ModelObjective(snapshot, ease, protocol, "ndcg@10")
    result = search_params(objective, parse("ease.l2=1:10000"), budget=6)
    tuned = spec("ease", "ease", l2=result.best.values["l2"])
    for model, column in ((ease, "configured"), (tuned, "tuned")):
        harness = evaluate(snapshot, [model], protocol)
        for run in harness.runs:
            assert result.test[run.seed][column] == pytest.approx(run.figures["ndcg@10"], abs=1e-12)


def test_a_split_without_validation_users_is_refused(snapshot: Snapshot) -> None:
    protocol = Protocol(split=(0.9, 0.0, 0.1), seeds=(1,), ks=(10,))
    with pytest.raises(SearchError, match="--split: leaves no user with a validation item"):
        ModelObjective(snapshot, spec("ease", "ease"), protocol, "ndcg@10")
