"""What an evaluation reports: a Markdown table, a JSON record of every figure, a bar chart."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plugins.evaluation.harness import Evaluation, Protocol

TRAIN_SECONDS = "train_seconds"
PACKAGES = ("reqo", "numpy", "scipy", "torch", "duckdb", "matplotlib")


def mean_and_spread(values: Sequence[float]) -> tuple[float, float | None]:
    """The mean, and the sample standard deviation where there are several values."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None


def summarise(evaluation: Evaluation) -> dict[str, dict[str, tuple[float, float | None]]]:
    """Per model (in the evaluation's order), per figure and training seconds: mean, spread."""
    summary: dict[str, dict[str, tuple[float, float | None]]] = {}
    for spec in evaluation.models:
        runs = [run for run in evaluation.runs if run.model == spec.name]
        if not runs:
            continue
        figures = {
            name: mean_and_spread([run.figures[name] for run in runs])
            for name in evaluation.figure_names
        }
        figures[TRAIN_SECONDS] = mean_and_spread([run.train_seconds for run in runs])
        summary[spec.name] = figures
    return summary


def format_figure(mean: float, spread: float | None, digits: int = 4) -> str:
    """`0.1234 ± 0.0056`, or `0.1234` for one seed."""
    text = f"{mean:.{digits}f}"
    return text if spread is None else f"{text} ± {spread:.{digits}f}"


def markdown_table(evaluation: Evaluation, figures: Sequence[str] | None = None) -> str:
    """Models as rows, figures as columns (every figure by default), then training seconds."""
    names = list(figures or evaluation.figure_names)
    summary = summarise(evaluation)
    lines = [
        "| model | " + " | ".join(names) + " | train s |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for model, values in summary.items():
        cells = [format_figure(*values[name]) for name in names]
        cells.append(format_figure(*values[TRAIN_SECONDS], digits=2))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe(evaluation: Evaluation, database: str) -> str:
    """One line: the data, the protocol and the seeds, to print above the table."""
    protocol = evaluation.protocol
    data = evaluation.dataset
    split = "/".join(f"{share:g}" for share in protocol.split)
    how = {
        "random": f"random per-user split {split} (RecBole's ratio split)",
        "loo": "leave-last-one-out by time",
        "temporal": f"temporal cut at {_iso(evaluation.cut)}, "
        f"validation share {protocol.split[1]:g} of the earlier interactions",
        "cold-items": f"cold items: {protocol.cold_share:g} of the items held out with all "
        "their interactions",
        "cold-users": f"cold users: {protocol.cold_share:g} of the users keep their first "
        f"{protocol.cold_user_interactions} interactions in train",
    }[protocol.name]
    first = evaluation.splits[0]
    return (
        f"{database}: {data['users']:,} users, {data['items']:,} items, "
        f"{data['interactions']:,} interactions; {how}; {protocol.feedback} feedback; "
        f"seeds {', '.join(map(str, protocol.seeds))}; "
        f"{first.test_users:,} test users; {_ranking(protocol)}"
        + ("" if protocol.exclude_seen else ", the user's earlier items included")
    )


def _ranking(protocol: Protocol) -> str:
    """Which items each test user's ranking covers."""
    if protocol.name == "cold-items" and protocol.rank_among == "cold":
        return "ranking over the cold items"
    return "full ranking over all items"


def versions() -> dict[str, str | None]:
    """Python's and the relevant packages' versions (None for a package not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def to_json(evaluation: Evaluation, database: str) -> dict[str, Any]:
    """Every per-seed figure, with the protocol, the splits, the models and the versions."""
    protocol = evaluation.protocol
    summary = summarise(evaluation)
    cold = protocol.name in ("cold-items", "cold-users")
    return {
        "database": database,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "protocol": {
            "name": protocol.name,
            "split": list(protocol.split),
            "cut": evaluation.cut,
            "cut_iso": _iso(evaluation.cut) if evaluation.cut is not None else None,
            "quantile": protocol.quantile if protocol.name == "temporal" else None,
            "feedback": protocol.feedback,
            "exclude_seen": protocol.exclude_seen,
            "ks": list(protocol.ks),
            "ranking": (
                _ranking(protocol)
                if protocol.name == "cold-items"
                else "full: every live item but the user's earlier-part items"
            ),
            "cold_share": protocol.cold_share if cold else None,
            "cold_user_interactions": (
                protocol.cold_user_interactions if protocol.name == "cold-users" else None
            ),
        },
        "seeds": list(protocol.seeds),
        "dataset": evaluation.dataset,
        "splits": [asdict(info) for info in evaluation.splits],
        "models": {
            spec.name: {
                "algorithm": spec.algorithm.name,
                "params": dict(spec.params),
                "weights": dict(spec.weights),
            }
            for spec in evaluation.models
        },
        "runs": [asdict(run) for run in evaluation.runs],
        "summary": {
            model: {name: {"mean": mean, "std": std} for name, (mean, std) in values.items()}
            for model, values in summary.items()
        },
        "versions": versions(),
    }


def write_chart(evaluation: Evaluation, path: Path, title: str) -> None:
    """A grouped bar chart: one group per figure, one bar per model, error bars for the spread."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display here, and no GUI toolkit needed
    import matplotlib.pyplot as plt

    summary = summarise(evaluation)
    names = evaluation.figure_names
    models = list(summary)
    width = 0.8 / max(1, len(models))
    figure, axes = plt.subplots(figsize=(max(8.0, 0.9 * len(names) + 2), 4.8))
    try:
        for number, model in enumerate(models):
            means = [summary[model][name][0] for name in names]
            spreads = [summary[model][name][1] or 0.0 for name in names]
            positions = [g + (number - (len(models) - 1) / 2) * width for g in range(len(names))]
            has_spread = any(summary[model][name][1] is not None for name in names)
            axes.bar(
                positions,
                means,
                width,
                label=model,
                yerr=spreads if has_spread else None,
                capsize=2,
            )
        axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axes.set_ylim(0, 1)
        axes.set_ylabel("mean over test users")
        axes.set_title(title)
        axes.legend(fontsize="small")
        axes.grid(axis="y", alpha=0.3)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=120)
    finally:
        plt.close(figure)


def write_outputs(evaluation: Evaluation, database: str, directory: Path) -> tuple[Path, Path]:
    """The JSON record and the chart, named by database and protocol, under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{database}-{evaluation.protocol.name}"
    record = directory / f"{stem}.json"
    record.write_text(json.dumps(to_json(evaluation, database), indent=2) + "\n")
    chart = directory / f"{stem}.png"
    write_chart(evaluation, chart, f"{database}: {evaluation.protocol.name} protocol")
    return record, chart


def _iso(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
