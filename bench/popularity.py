"""Popularity on MovieLens-100K against plain counts, on both offline protocols.

    .venv/bin/python -m bench.popularity [--seeds 1,2,3] [--directory DIR] [--no-report]

Models, each fitted on the same splits in this one run:
- `popularity`: reqo's built-in with its defaults (the weighted count of interactions, no decay);
- `popularity, 30-day half-life`: the same with the half-life that was its default before (the
  decay counted from the newest interaction);
- `plain counts`: the reference, defined here: each item's number of interactions, nothing else.

Protocols: (a) RecBole's (every user's ratings shuffled and split 80/10/10, full ranking of the
items the user has not rated), as `bench.evaluate`; (b) leave the last rating out by time, full
ranking of every item, as `bench.sequence` (the user's rated items ranked too), and with the
user's rated items left out (as reqo serves). Every rating a positive of weight 1 (implicit
feedback); (a) also with each rating weighted by its value (`weighted` feedback, the kind
weights: a rating counts 2 x (rating + 1)), against the same plain counts.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench._report import publish
from bench.evaluate import open_dataset
from plugins.algorithm import Algorithm, UserHistory
from plugins.builtin.popularity import Popularity
from plugins.evaluation.harness import ModelSpec, Protocol, evaluate
from plugins.evaluation.report import format_figure, summarise
from plugins.training import TrainingData


class PlainCounts(Algorithm):
    """The reference: each item's number of interactions (no weights, no decay)."""

    name = "plain-counts"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.counts = np.zeros(0, dtype=np.float32)

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items
        self.counts = np.bincount(data.items, minlength=data.n_items).astype(np.float32)

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        return np.tile(self.counts, (len(histories), 1))

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        return {"counts": self.counts}

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self.counts = arrays["counts"]


MODELS = [
    ModelSpec("popularity", Popularity),
    ModelSpec("popularity, 30-day half-life", Popularity, {"half_life_days": 30.0}),
    ModelSpec("plain counts", PlainCounts),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument(
        "--directory",
        type=Path,
        default=Path(tempfile.gettempdir()) / "reqo-bench-evaluate",
        help="where the MovieLens-100K DuckDB file is kept (shared with bench.evaluate)",
    )
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    seeds = tuple(int(seed) for seed in args.seeds.split(",") if seed.strip())
    snapshot = open_dataset(args.directory)
    protocols = {
        "(a) random 80/10/10, implicit": Protocol(name="random", ks=(10,), seeds=seeds),
        "(a) random 80/10/10, weighted by rating": Protocol(
            name="random", ks=(10,), seeds=seeds, feedback="weighted"
        ),
        "(b) leave the last out, implicit, seen items ranked (as bench.sequence)": Protocol(
            name="loo", ks=(10,), seeds=seeds, exclude_seen=False
        ),
        "(b) leave the last out, implicit, seen items left out (as reqo serves)": Protocol(
            name="loo", ks=(10,), seeds=seeds, exclude_seen=True
        ),
    }
    rows = ["| protocol | " + " | ".join(m.name for m in MODELS) + " |"]
    rows.append("|---|" + "---:|" * len(MODELS))
    verdicts = []
    for label, protocol in protocols.items():
        summary = summarise(evaluate(snapshot, MODELS, protocol, progress=False))
        cells = [format_figure(*summary[m.name]["ndcg@10"]) for m in MODELS]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
        ours, plain = summary["popularity"]["ndcg@10"][0], summary["plain counts"]["ndcg@10"][0]
        verdicts.append(f"{label}: {'met' if ours >= plain - 1e-9 else '**missed**'}")
        print(label, {m.name: summary[m.name]["ndcg@10"] for m in MODELS}, flush=True)
    lines = [
        "- MovieLens-100K, NDCG@10 (mean ± sample std over seeds "
        f"{', '.join(map(str, seeds))}); protocols as bench.evaluate (a) and bench.sequence (b)",
        "",
        *rows,
        "",
        "- target: reqo's popularity at least as good as plain counts: " + "; ".join(verdicts),
    ]
    if args.no_report:
        print("\n".join(lines))
    else:
        publish("Popularity against plain counts (ML-100K)", "bench.popularity", argv, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
