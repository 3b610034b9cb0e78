"""`reqo optimize`: search a scenario's ensemble weights offline, and write them as an overlay.

    reqo optimize --config reqo.yaml --db demo --scenario homepage [--metric ndcg@10]
                  [--seeds 1,2,3] [--budget 60] [--params ease.l2=10:1000,...]
                  [--protocol random|loo|temporal] [--split 0.8,0.1,0.1]
                  [--out optimized.yaml] [--plot optimized.png] [--no-progress]

The scenario's model must be an ensemble. Its members are fitted once per seed on the
harness's train split; CMA-ES, with a Gaussian-process surrogate that pre-screens candidates,
searches the weights (and the `--params`) for the best validation metric; the best weighting's
test figures are printed beside each member's. The overlay (`scenarios: {NAME:
{ensemble_weights: …}}`, plus `models: {MEMBER: {params: …}}` for searched parameters) is
loaded by listing it under the configuration's `overlays:`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from server.config import ConfigError, load_config
from server.offline.evaluate import DatabaseBusy, NotADatabase, _seeds, _split, read_snapshot

if TYPE_CHECKING:
    from plugins.evaluation.search import Evaluated, SearchResult


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the `optimize` sub-command to the `reqo` parser's sub-commands."""
    optimize = commands.add_parser(
        "optimize",
        help="search a scenario's ensemble weights offline (CMA-ES with a surrogate)",
        description="Fit the members of a scenario's ensemble on a split of a database's "
        "interactions and search their weights for the best validation metric. Writes a YAML "
        "overlay to list under the config's `overlays:`. Read-only: stop a server that holds "
        "the database.",
    )
    optimize.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    optimize.add_argument("--db", required=True, help="database name from the config")
    optimize.add_argument("--scenario", required=True, help="a scenario whose model is an ensemble")
    optimize.add_argument("--metric", default="ndcg@10", help="validation metric (ndcg@10)")
    optimize.add_argument("--seeds", type=_seeds, default=(1,), help="seeds (default 1)")
    optimize.add_argument(
        "--budget", type=int, default=60, help="weightings evaluated at most (default 60)"
    )
    optimize.add_argument(
        "--params",
        default="",
        help="member parameters to search too: member.parameter=low:high,… (each value "
        "refits the member: slow)",
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
    from plugins.evaluation.harness import ModelSpec, Protocol
    from plugins.evaluation.search import (
        Objective,
        SearchError,
        parse_metric,
        parse_tunables,
        search,
    )
    from plugins.evaluation.splits import SplitError
    from server.api.app import load_registry

    config = load_config(args.config)
    if args.db not in config.databases:
        raise ConfigError(config.source, f"databases.{args.db}", "no such database in the config")
    scenario = config.scenarios.get(args.scenario)
    if scenario is None or scenario.model is None:
        return _fail(f"--scenario: '{args.scenario}' is not a configured scenario with a model", 2)
    registry = load_registry(config)
    model = config.models[scenario.model]
    algorithm = registry.algorithm(model.algorithm)
    if not issubclass(algorithm, Ensemble):
        return _fail(
            f"--scenario: the model of '{args.scenario}' is '{scenario.model}' "
            f"({model.algorithm}), not an ensemble",
            2,
        )
    ensemble = algorithm(**model.params)
    members = {}
    for name in ensemble.members:
        member = config.models[name]
        cls = registry.algorithm(member.algorithm)
        if issubclass(cls, Ensemble):
            return _fail(f"member '{name}' is an ensemble itself: optimize a flat ensemble", 2)
        members[name] = ModelSpec(name, cls, member.params, member.weights)
    if not members:
        return _fail(f"ensemble '{scenario.model}' has no members", 2)
    try:
        parse_metric(args.metric)
        tunables = parse_tunables(args.params, members)
        if args.budget < 1:
            raise SearchError("--budget", f"must be at least 1, not {args.budget}")
    except SearchError as error:
        return _fail(str(error), 2)
    path = config.database_path(args.db)
    if not path.exists():
        return _fail(f"database '{args.db}' has no file yet ({path}): nothing to optimise on", 1)
    try:
        snapshot = read_snapshot(path)
    except DatabaseBusy:
        return _fail(f"database '{args.db}' is open in a running server; stop it first", 1)
    except NotADatabase as error:
        return _fail(f"{path} is not a reqo database ({error})", 1)
    protocol = Protocol(name=args.protocol, split=args.split, seeds=args.seeds, ks=(10,))

    def say(text: str) -> None:
        if not args.no_progress:
            print(text, flush=True)

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
    result = search(objective, weights, budget=args.budget, tunables=tunables, progress=step)
    plot = args.plot if args.plot is not None else args.out.with_suffix(".png")
    write_overlay(result, args.scenario, args.out)
    plot_curve(result, plot, f"{args.db} / {args.scenario}")
    print(summary(result, args.scenario))
    print(f"\nwrote {args.out} and {plot}; list {args.out.name} under `overlays:` to serve it")
    return 0


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


def plot_curve(result: SearchResult, path: Path, title: str) -> None:
    """The search curve: every evaluated point and the best so far, beside each member alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from plugins.evaluation.search import curve

    steps = list(range(1, len(result.history) + 1))
    figure, axes = plt.subplots(figsize=(8, 4.5))
    axes.scatter(steps, [r.value for r in result.history], s=12, alpha=0.5, label="evaluated")
    axes.step(steps, curve(result.history), where="post", color="black", label="best so far")
    for member, value in result.validation.items():
        axes.axhline(value, linestyle="--", linewidth=0.8, label=f"{member} alone")
    axes.set_xlabel("evaluation")
    axes.set_ylabel(f"validation {result.metric}")
    axes.set_title(f"reqo optimize: {title}")
    axes.legend(loc="lower right", fontsize="small")
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
