"""`reqo optimize`: search a scenario's ensemble weights, or one model's parameters, offline,
and write what it found as a configuration overlay.

    reqo optimize --config reqo.yaml --db demo (--scenario homepage | --model ease)
                  [--params ease.l2=10:1000,sasrec.loss=cross-entropy|bce,...]
                  [--metric ndcg@10] [--seeds 1,2,3] [--budget N]
                  [--protocol random|loo|temporal] [--split 0.8,0.1,0.1]
                  [--out optimized.yaml] [--plot optimized.png] [--no-progress]

A scenario whose model is an ensemble: its members are fitted once per seed on the harness's
train split; CMA-ES, with a Gaussian-process surrogate that pre-screens candidates, searches the
weights (and the `--params`) for the best validation metric; the best weighting's test figures
are printed beside each member's. The overlay is `scenarios: {NAME: {ensemble_weights: …}}`,
plus `models: {MEMBER: {params: …}}` for searched parameters.

`--model NAME`, or a scenario whose model is not an ensemble: that model's `--params` alone are
searched (plugins.evaluation.param_search), its test figures printed before and after; the
overlay is `models: {NAME: {params: …}}`. Either overlay is loaded by listing it under the
configuration's `overlays:`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from server.config import Config, ConfigError, load_config
from server.offline.evaluate import DatabaseBusy, NotADatabase, _seeds, _split, read_snapshot

if TYPE_CHECKING:
    from plugins.evaluation.param_search import ParamSearchResult, Trial
    from plugins.evaluation.search import Evaluated, SearchResult
    from plugins.manager import Registry
    from storage.snapshot import Snapshot

MODEL_BUDGET = 20
"""Settings a model's search fits by default (the configured one included)."""
ENSEMBLE_BUDGET = 60
"""Weightings an ensemble's search evaluates by default."""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the `optimize` sub-command to the `reqo` parser's sub-commands."""
    optimize = commands.add_parser(
        "optimize",
        help="search a scenario's ensemble weights, or a model's parameters, offline",
        description="Fit the members of a scenario's ensemble on a split of a database's "
        "interactions and search their weights for the best validation metric; or search one "
        "model's parameters (--model, or a scenario whose model is not an ensemble). Writes a "
        "YAML overlay to list under the config's `overlays:`. Read-only: stop a server that "
        "holds the database.",
    )
    optimize.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    optimize.add_argument("--db", required=True, help="database name from the config")
    target = optimize.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--scenario",
        help="a scenario: its ensemble's weights (and --params), or its model's --params",
    )
    target.add_argument("--model", help="a configured model whose --params to search")
    optimize.add_argument("--metric", default="ndcg@10", help="validation metric (ndcg@10)")
    optimize.add_argument("--seeds", type=_seeds, default=(1,), help="seeds (default 1)")
    optimize.add_argument(
        "--budget",
        type=int,
        help="an ensemble: weightings evaluated at most (default 60); a model: settings "
        "fitted at most, the configured one included, each once per seed (default 20)",
    )
    optimize.add_argument(
        "--params",
        default="",
        help="parameters to search: model.parameter=low:high[:log|:lin] (log scale by default "
        "where 0 < 10 x low <= high) or model.parameter=a|b|c, comma-separated (each setting "
        "refits the model: slow)",
    )
    optimize.add_argument(
        "--protocol", choices=["random", "loo", "temporal"], default="random", help="the split"
    )
    optimize.add_argument(
        "--split", type=_split, default=(0.8, 0.1, 0.1), help="train,valid,test (0.8,0.1,0.1)"
    )
    optimize.add_argument(
        "--out", type=Path, default=Path("optimized.yaml"), help="the overlay to write"
    )
    optimize.add_argument("--plot", type=Path, help="the search curve PNG (default: beside --out)")
    optimize.add_argument("--no-progress", action="store_true", help="print no progress")
    optimize.set_defaults(run=run)
    parser: argparse.ArgumentParser = optimize
    return parser


def run(args: argparse.Namespace) -> int:
    """Run a search from parsed arguments; 0, or 1 (data) / 2 (usage) with a message."""
    from plugins.builtin.ensemble import Ensemble
    from server.api.app import load_registry

    config = load_config(args.config)
    if args.db not in config.databases:
        raise ConfigError(config.source, f"databases.{args.db}", "no such database in the config")
    registry = load_registry(config)
    if args.model is not None:
        model = config.models.get(args.model)
        if model is None:
            known = ", ".join(sorted(config.models)) or "none"
            return _fail(f"--model: '{args.model}' is not a configured model ({known})", 2)
        if issubclass(registry.algorithm(model.algorithm), Ensemble):
            return _fail(
                f"--model: '{args.model}' is an ensemble: search its weights with --scenario",
                2,
            )
        return run_model(args, config, registry, args.model)
    scenario = config.scenarios.get(args.scenario)
    if scenario is None or scenario.model is None:
        return _fail(f"--scenario: '{args.scenario}' is not a configured scenario with a model", 2)
    model = config.models[scenario.model]
    if not issubclass(registry.algorithm(model.algorithm), Ensemble):
        return run_model(args, config, registry, scenario.model)
    return run_ensemble(args, config, registry, args.scenario)


def run_ensemble(args: argparse.Namespace, config: Config, registry: Registry, name: str) -> int:
    """Search the weights (and --params) of the ensemble of scenario `name`."""
    from plugins.builtin.ensemble import Ensemble
    from plugins.evaluation.harness import ModelSpec, Protocol
    from plugins.evaluation.search import (
        Objective,
        SearchError,
        parse_metric,
        parse_tunables,
        search,
    )
    from plugins.evaluation.splits import SplitError

    scenario = config.scenarios[name]
    assert scenario.model is not None
    model = config.models[scenario.model]
    ensemble = registry.algorithm(model.algorithm)(**model.params)
    assert isinstance(ensemble, Ensemble)
    members = {}
    for member_name in ensemble.members:
        member = config.models[member_name]
        cls = registry.algorithm(member.algorithm)
        if issubclass(cls, Ensemble):
            return _fail(f"member '{member_name}' is an ensemble itself: optimize a flat one", 2)
        members[member_name] = ModelSpec(member_name, cls, member.params, member.weights)
    if not members:
        return _fail(f"ensemble '{scenario.model}' has no members", 2)
    budget = ENSEMBLE_BUDGET if args.budget is None else args.budget
    try:
        parse_metric(args.metric)
        tunables = parse_tunables(args.params, members)
        if budget < 1:
            raise SearchError("--budget", f"must be at least 1, not {budget}")
    except SearchError as error:
        return _fail(str(error), 2)
    snapshot = _snapshot(config, args.db)
    if isinstance(snapshot, int):
        return snapshot
    protocol = Protocol(name=args.protocol, split=args.split, seeds=args.seeds, ks=(10,))
    say = _say(args)
    weights = ensemble.member_weights
    weights.update(scenario.ensemble_weights or {})
    try:
        objective = Objective(
            snapshot,
            list(members.values()),
            protocol,
            ensemble.settings["normalisation"],
            args.metric,
            progress=say,
        )
    except SplitError as error:
        return _fail(str(error), 1)

    def step(record: Evaluated, best: Evaluated) -> None:
        say(f"evaluation {len(history) + 1}: {record.value:.4f} (best {best.value:.4f})")
        history.append(record)

    history: list[Evaluated] = []
    result = search(objective, weights, budget=budget, tunables=tunables, progress=step)
    plot = args.plot if args.plot is not None else args.out.with_suffix(".png")
    write_overlay(result, name, args.out)
    lines = {f"{member} alone": value for member, value in result.validation.items()}
    plot_curve([r.value for r in result.history], lines, result.metric, plot, f"{args.db} / {name}")
    print(summary(result, name))
    print(f"\nwrote {args.out} and {plot}; list {args.out.name} under `overlays:` to serve it")
    return 0


def run_model(args: argparse.Namespace, config: Config, registry: Registry, name: str) -> int:
    """Search the --params of model `name` alone."""
    from plugins.evaluation.harness import ModelSpec, Protocol
    from plugins.evaluation.param_search import ModelObjective, check_budget, search_params
    from plugins.evaluation.param_space import SearchError, parse_tunables, searchable
    from plugins.evaluation.search import parse_metric
    from plugins.evaluation.splits import SplitError
    from server.training.artifacts import offline_algorithm
    from server.training.item_vectors import text_provider_for

    model = config.models[name]
    spec = ModelSpec(
        name, offline_algorithm(config.models, registry, name), model.params, model.weights
    )
    budget = MODEL_BUDGET if args.budget is None else args.budget
    try:
        parse_metric(args.metric)
        tunables = parse_tunables(args.params, {name: spec}, what="model")
        if not tunables:
            listed = ", ".join(searchable(spec.algorithm)) or "none"
            raise SearchError(
                "--params",
                f"'{name}' ({model.algorithm}) is not an ensemble: name the parameters to "
                f"search, {name}.parameter=low:high or =a|b (searchable: {listed})",
            )
        check_budget(tunables, budget)
    except SearchError as error:
        return _fail(str(error), 2)
    snapshot = _snapshot(config, args.db)
    if isinstance(snapshot, int):
        return snapshot
    protocol = Protocol(name=args.protocol, split=args.split, seeds=args.seeds, ks=(10,))
    texts = text_provider_for(registry, snapshot.item_properties, snapshot.n_items)
    try:
        objective = ModelObjective(snapshot, spec, protocol, args.metric, item_text_vectors=texts)
    except SplitError as error:
        return _fail(str(error), 1)
    except SearchError as error:
        return _fail(str(error), 2)
    say = _say(args)
    spaces = "; ".join(t.describe() for t in tunables)
    say(f"model {name} ({model.algorithm}): {spaces}; at most {budget} settings")

    def step(trial: Trial, best: Trial) -> None:
        fits.append(trial)
        say(
            f"fit {len(fits)}/{budget} ({trial.stage}, {trial.seconds:.1f} s) "
            f"{_values(trial.values)}: {trial.value:.4f} (best {best.value:.4f}: "
            f"{_values(best.values)})"
        )

    fits: list[Trial] = []
    result = search_params(objective, tunables, budget=budget, progress=step)
    plot = args.plot if args.plot is not None else args.out.with_suffix(".png")
    write_model_overlay(result, args.out)
    lines = {f"{name} as configured": result.start.value}
    plot_curve([t.value for t in result.history], lines, result.metric, plot, f"{args.db} / {name}")
    print(model_summary(result))
    print(f"\nwrote {args.out} and {plot}; list {args.out.name} under `overlays:` to serve it")
    return 0


def write_model_overlay(result: ParamSearchResult, path: Path) -> None:
    """Write `models: {MODEL: {params: …}}` with the best setting, and where it came from."""
    header = (
        f"# reqo optimize: model {result.model}, {result.metric} on validation "
        f"{result.start.value:.4f} (configured) -> {result.best.value:.4f}\n"
    )
    data = {"models": {result.model: {"params": dict(result.best.values)}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(data, sort_keys=True))


def model_summary(result: ParamSearchResult) -> str:
    """A Markdown table of the test figures per seed, tuned and configured; the settings."""
    lines = [
        f"model {result.model}: {len(result.history)} settings fitted; validation "
        f"{result.metric} {result.start.value:.4f} (configured) -> {result.best.value:.4f}",
        "",
        f"| seed | test {result.metric}: tuned | test {result.metric}: configured |",
        "|---|---:|---:|",
    ]
    for seed, figures in result.test.items():
        lines.append(f"| {seed} | {figures['tuned']:.4f} | {figures['configured']:.4f} |")
    tuned = _mean([f["tuned"] for f in result.test.values()])
    before = _mean([f["configured"] for f in result.test.values()])
    lines.append(f"| mean | {tuned:.4f} | {before:.4f} |")
    lines += [
        "",
        f"configured: {_values(result.start.values)}",
        f"chosen: {_values(result.best.values)}",
    ]
    return "\n".join(lines)


def _values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={_text(value)}" for name, value in values.items())


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def overlay(result: SearchResult, scenario: str) -> dict[str, Any]:
    """The configuration overlay of a search's best weighting (and searched parameters)."""
    out: dict[str, Any] = {"scenarios": {scenario: {"ensemble_weights": result.best_weights}}}
    if result.best.params:
        out["models"] = {
            member: {"params": dict(values)} for member, values in result.best.params.items()
        }
    return out


def write_overlay(result: SearchResult, scenario: str, path: Path) -> None:
    """Write the overlay, with a comment that says where it came from."""
    header = (
        f"# reqo optimize: scenario {scenario}, {result.metric} on validation "
        f"{result.start.value:.4f} (configured) -> {result.best.value:.4f}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(overlay(result, scenario), sort_keys=True))


def plot_curve(
    values: Sequence[float], lines: Mapping[str, float], metric: str, path: Path, title: str
) -> None:
    """The search curve: every evaluated point and the best so far, beside reference `lines`
    (each member alone; the configured model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = list(range(1, len(values) + 1))
    best = list(accumulate(values, max))
    figure, axes = plt.subplots(figsize=(8, 4.5))
    axes.scatter(steps, values, s=12, alpha=0.5, label="evaluated")
    axes.step(steps, best, where="post", color="black", label="best so far")
    for label, value in lines.items():
        axes.axhline(value, linestyle="--", linewidth=0.8, label=label)
    axes.set_xlabel("evaluation")
    axes.set_ylabel(f"validation {metric}")
    axes.set_title(f"reqo optimize: {title}")
    axes.legend(loc="best", fontsize="small")  # where it hides the fewest points
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def summary(result: SearchResult, scenario: str) -> str:
    """A Markdown table of the test figures per seed: the blend, the configured blend, each
    member; then the weights."""
    names = ["ensemble", "configured", *result.members]
    lines = [
        f"scenario {scenario}: {len(result.history)} weightings evaluated "
        f"({result.screened} screened by the surrogate); validation {result.metric} "
        f"{result.start.value:.4f} (configured) -> {result.best.value:.4f}",
        "",
        "| seed | " + " | ".join(f"test {result.metric}: {n}" for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for seed, figures in result.test.items():
        lines.append(f"| {seed} | " + " | ".join(f"{figures[n]:.4f}" for n in names) + " |")
    means = {n: _mean([f[n] for f in result.test.values()]) for n in names}
    lines.append("| mean | " + " | ".join(f"{means[n]:.4f}" for n in names) + " |")
    weights = ", ".join(f"{m}: {w:g}" for m, w in result.best_weights.items())
    lines += ["", f"weights: {weights}"]
    if result.best.params:
        lines.append(f"parameters: {result.best.params}")
    return "\n".join(lines)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _fail(message: str, code: int) -> int:
    print(f"reqo optimize: {message}", file=sys.stderr)
    return code


def _snapshot(config: Config, db: str) -> Snapshot | int:
    """The database's snapshot, or the exit code of a message that says why not."""
    path = config.database_path(db)
    if not path.exists():
        return _fail(f"database '{db}' has no file yet ({path}): nothing to optimise on", 1)
    try:
        return read_snapshot(path)
    except DatabaseBusy:
        return _fail(f"database '{db}' is open in a running server; stop it first", 1)
    except NotADatabase as error:
        return _fail(f"{path} is not a reqo database ({error})", 1)


def _say(args: argparse.Namespace) -> Callable[[str], None]:
    def say(text: str) -> None:
        if not args.no_progress:
            print(text, flush=True)

    return say
