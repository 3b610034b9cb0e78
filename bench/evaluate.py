"""Offline evaluation on MovieLens-100K, next to RecBole 1.2.1's figures on the same protocol.

    .venv/bin/python -m bench.evaluate [--seeds 1,2,3] [--models popularity,item-knn,...]
                                       [--directory DIR] [--no-progress] [--no-report]

MovieLens-100K (from the RecBole wheel, or GroupLens) is loaded once into a DuckDB file under
`--directory` and reused. The harness behind `reqo evaluate` then runs RecBole's protocol: every
rating a positive of weight 1, each user's ratings shuffled and split 80/10/10 (RecBole's
`split_by_ratio`), the validation part for early stopping, full ranking of every item the user
has not rated in train or validation. Each model is fitted once per seed; the table gives the
mean ± sample std of the test figures @10 and the training seconds, beside RecBole's.

Verdicts: NDCG@10 at least RecBole's; for the neural models, training in at most half of
RecBole's time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench._report import publish
from plugins.evaluation.harness import Evaluation, ModelSpec, Protocol, evaluate
from plugins.evaluation.report import format_figure, summarise, versions, write_outputs
from plugins.manager import collect, get_plugin_manager
from storage.database import Database
from storage.movielens import interaction_count, load
from storage.snapshot import Snapshot, take_snapshot

DATABASE = "ml-100k"
INTERACTIONS = 100_000
MODELS = ("popularity", "item-knn", "ease", "mult-dae", "mult-vae")
FIGURES = ("ndcg@10", "recall@10", "mrr@10", "hit@10", "precision@10", "coverage@10")
TIME_SHARE = 0.5
"""A neural model meets its time target when it trains in at most this share of RecBole's."""


@dataclass(frozen=True)
class Reference:
    """RecBole 1.2.1's figures for a model on ML-100K, random 80/10/10, full ranking."""

    recbole_name: str
    ndcg_at_10: float
    train_seconds: float | None = None
    neural: bool = False


REFERENCES = {
    "popularity": Reference("Pop", 0.1033),
    "item-knn": Reference("ItemKNN", 0.2834),
    "ease": Reference("EASE", 0.3295, 0.5),
    "mult-dae": Reference("MultiDAE", 0.2981, 225.0, neural=True),
    "mult-vae": Reference("MultiVAE", 0.2854, 63.0, neural=True),
    # Not a published figure: RecBole 1.2.1's SLIMElastic with its defaults, measured here by
    # `python -m bench.recbole_general --model SLIMElastic,ADMMSLIM --seeds 1,2,3` (2026-12-06,
    # AMD EPYC, 2 CPUs, 24 GiB RAM; evaluation/recbole_slimelastic.json): NDCG@10 0.3242 ±
    # 0.0058 over seeds 1-3 on RecBole's own 80/10/10 splits; 14.6 s is the process's CPU time
    # to fit (scikit-learn's single-threaded ElasticNet per item), 57 s of wall clock on the
    # busy shared machine. ADMMSLIM, RecBole's other SLIM, scored 0.3274 ± 0.0074 in 18.1 s.
    "slim": Reference("SLIMElastic", 0.3242, 14.6),
}


def open_dataset(directory: Path) -> Snapshot:
    """A snapshot of ML-100K, loaded into `directory` once (again if a load was cut short)."""
    database = Database(DATABASE, directory / f"{DATABASE}.duckdb")
    try:
        held = database.read_sync(interaction_count)
        if held != INTERACTIONS:
            print(f"loading MovieLens-100K into {database.path}")
            load(database, replace=bool(held), progress=False)
        else:
            print(f"reusing MovieLens-100K in {database.path}")
        return database.read_sync(take_snapshot)
    finally:
        database.close()


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def table(evaluation: Evaluation) -> list[str]:
    """The Markdown table: our figures, RecBole's, and the verdicts."""
    summary = summarise(evaluation)
    header = ["model", "NDCG@10", "Recall@10", "MRR@10", "Hit@10", "Precision@10"]
    header += ["Coverage@10", "train s", "RecBole", "RecBole NDCG@10", "RecBole train s"]
    header += ["verdict"]
    # Names and verdicts left, figures right.
    align = "|---|" + "---:|" * 7 + "---|" + "---:|" * 2 + "---|"
    lines = ["| " + " | ".join(header) + " |", align]
    for model, values in summary.items():
        cells = [format_figure(*values[figure]) for figure in FIGURES]
        mean_seconds = values["train_seconds"][0]
        cells.append(format_figure(*values["train_seconds"], digits=2))
        reference = REFERENCES.get(model)
        if reference is None:
            cells += ["-", "-", "-", "no reference"]
        else:
            ndcg = values["ndcg@10"][0]
            verdicts = [f"NDCG {_verdict(ndcg >= reference.ndcg_at_10)}"]
            if reference.neural and reference.train_seconds is not None:
                limit = TIME_SHARE * reference.train_seconds
                verdicts.append(f"time {_verdict(mean_seconds <= limit)} (<= {limit:g} s)")
            seconds = "-" if reference.train_seconds is None else f"{reference.train_seconds:g}"
            cells += [reference.recbole_name, f"{reference.ndcg_at_10:.4f}", seconds]
            cells.append(", ".join(verdicts))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"algorithms (default {','.join(MODELS)})"
    )
    parser.add_argument(
        "--directory",
        type=Path,
        default=Path(tempfile.gettempdir()) / "reqo-bench-evaluate",
        help="where the DuckDB file (kept for later runs), the JSON and the chart go",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    try:
        seeds = tuple(int(seed) for seed in args.seeds.split(",") if seed.strip())
    except ValueError:
        parser.error(f"--seeds: {args.seeds!r} is not a list of integers")

    registry = collect(get_plugin_manager())
    specs = []
    for name in (n.strip() for n in args.models.split(",") if n.strip()):
        if name in registry.algorithms:
            specs.append(ModelSpec(name, registry.algorithms[name]))
        else:
            print(f"skipping {name}: no such algorithm is registered")
    if not specs:
        parser.error("none of the models is registered")

    snapshot = open_dataset(args.directory)
    protocol = Protocol(name="random", split=(0.8, 0.1, 0.1), ks=(10,), seeds=seeds)
    evaluation = evaluate(snapshot, specs, protocol, progress=not args.no_progress)
    record, chart = write_outputs(evaluation, DATABASE, args.directory / "evaluation")
    print(f"wrote {record} and {chart}")

    data, split = evaluation.dataset, evaluation.splits[0]
    found = versions()
    lines = [
        f"- MovieLens-100K: {data['users']:,} users, {data['items']:,} items, "
        f"{data['interactions']:,} ratings, every rating a positive of weight 1 (as RecBole "
        "reads ML-100K); per user shuffled and split 80/10/10 by RecBole 1.2.1's "
        f"`split_by_ratio` arithmetic ({split.sizes['train']:,} / {split.sizes['valid']:,} / "
        f"{split.sizes['test']:,}); validation for early stopping; full ranking of every item "
        f"not rated in train or validation, {split.test_users:,} test users; seeds "
        f"{', '.join(map(str, seeds))} (mean ± sample std over seeds)",
        "- every model with its algorithm's default parameters; scored through "
        "`Algorithm.score_users` from each user's train history, as the server scores",
        "",
        *table(evaluation),
        "",
        f"- RecBole 1.2.1 reference: its published ML-100K figures on the same protocol; "
        f"targets: NDCG@10 >= RecBole's, neural training time <= {TIME_SHARE:.0%} of RecBole's",
        "- " + ", ".join(f"{name} {version}" for name, version in found.items() if version),
    ]
    if args.no_report:
        print("\n".join(lines))
    else:
        publish(
            "Offline evaluation: MovieLens-100K, RecBole's protocol", "bench.evaluate", argv, lines
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
