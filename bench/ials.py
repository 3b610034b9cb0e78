"""ials on MovieLens-100K: reqo's implicit ALS beside the `implicit` package's and EASE.

    .venv/bin/python -m bench.ials [--seeds 1,2,3] [--directory DIR] [--threads 1] [--tune]
                                   [--no-report]

Protocol (a) of bench.evaluate (RecBole's random 80/10/10 split per user, every rating a
positive of weight 1, full ranking of the items the user has not rated in train or validation),
through the harness of `reqo evaluate` (each user scored from their train history). Per seed,
fitted on the train part and measured on the test part:

- `ials`: reqo's, with its default parameters (chosen on the validation part of seed 1: `--tune`
  runs that search again and prints it), its half-steps by 3 steps of conjugate gradient;
- `ials (exact)`: the same with every half-step solved exactly (a k x k solve per row);
- `ials (Hu)`: reqo's on Hu et al.'s objective (no frequency scaling, unobserved weight 1) with
  the factors, confidence, regularisation and epochs given to implicit: the same objective as
  implicit's, so its figures should match implicit's and its time compares like for like;
- `implicit`: implicit 0.7's AlternatingLeastSquares (PyPI `implicit`, the `reference` extra;
  its conjugate-gradient solver, as by default), wrapped as a reqo algorithm below: confidence
  1 + alpha x weight as ials's, `--threads` threads (1 by default: ials fits on one), users
  folded in from their history by its `recalculate_user`; 'not measured' where implicit cannot
  be imported;
- `ease`: the reference (RecBole's 0.3295 NDCG@10; reqo's about 0.332).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from bench._report import publish
from bench.evaluate import DATABASE, open_dataset
from plugins.algorithm import Algorithm, Parameter, UserHistory
from plugins.builtin.content_mf import history_rows, positive
from plugins.builtin.ease import EASE
from plugins.builtin.ials import IALS
from plugins.evaluation.harness import (
    ModelSpec,
    PreparedSplit,
    Protocol,
    fit_one,
    prepare_split,
    rank,
    run_one,
)
from plugins.evaluation.metrics import ndcg_at
from plugins.training import Holdout, TrainingData
from storage.snapshot import Snapshot

K = 10
TUNING_SEED = 1
DEFAULTS = {p.name: p.default for p in IALS.parameters}
HU = {"frequency_scaling": 0.0, "unobserved": 1.0}
"""Hu et al.'s objective: a plain L2, every unobserved pair weighing 1 (implicit's)."""
HU_REGULARISATION = 30.0
"""The plain L2 of `ials (Hu)` and implicit: the best of TUNING["regularisation (Hu)"] on the
validation part of seed 1, with the default factors, alpha and epochs."""
TUNING: dict[str, tuple[float, ...]] = {
    "regularisation": (0.01, 0.015, 0.02, 0.025, 0.03),
    "alpha": (1.0, 2.0, 3.0, 5.0, 10.0),
    "factors": (32, 64, 128),
    "epochs": (5, 10, 20),
    "init_scale": (0.01, 0.1, 1.0),
    "regularisation (Hu)": (10.0, 20.0, 30.0, 40.0, 50.0),
}
"""`--tune`: the values tried, one parameter at a time from the defaults (coordinate search,
the best kept before the next parameter); "regularisation (Hu)" with HU's objective."""
TOLERANCE = 0.001
"""`--tune` keeps a parameter's current value unless another beats its validation NDCG@10 by
more than this: smaller differences are noise (one split's 943 users)."""
Array = np.ndarray[Any, Any]


class ImplicitALS(Algorithm):
    """implicit's AlternatingLeastSquares (Hu et al.'s objective) as a reqo algorithm."""

    name = "implicit"
    description = "implicit 0.7's AlternatingLeastSquares, a reference peer"
    parameters = (
        Parameter("factors", int, 64, "latent dimensions", 1),
        Parameter("regularisation", float, 50.0, "L2 of the factors", 0.0),
        Parameter("alpha", float, 10.0, "confidence of an interaction: 1 + alpha x weight", 0.0),
        Parameter("epochs", int, 10, "ALS iterations", 1),
        Parameter("threads", int, 1, "its OpenMP threads (0: all cores)", 0),
        Parameter("seed", int, 0, "the generator's seed"),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.model: Any = None

    def _confidence(self, rows: Any) -> Any:
        """implicit reads each entry as its confidence c: 1 + alpha x weight, as ials's."""
        confidence = rows.astype(np.float32)
        confidence.data = (1.0 + float(self.settings["alpha"]) * confidence.data).astype(np.float32)
        return confidence

    def fit(self, data: TrainingData) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        s = self.settings
        self.n_items = data.n_items
        # One BLAS thread, as implicit asks (its own threads parallelise over rows; it warns
        # at construction where BLAS has more).
        with threadpool_limits(limits=1, user_api="blas"):
            self.model = AlternatingLeastSquares(
                factors=int(s["factors"]),
                regularization=float(s["regularisation"]),
                alpha=1.0,  # the confidences are given (1.0: implicit leaves them as they are)
                iterations=int(s["epochs"]),
                num_threads=int(s["threads"]),
                random_state=int(s["seed"]),
            )
            self.model.fit(self._confidence(positive(data.matrix)), show_progress=False)

    def user_scores(self, histories: Sequence[UserHistory]) -> Array:
        rows = self._confidence(history_rows(histories, self.n_items))
        with threadpool_limits(limits=1, user_api="blas"):
            users = self.model.recalculate_user(np.arange(len(histories)), rows)
        users = np.asarray(users, dtype=np.float32).reshape(len(histories), -1)
        return np.asarray(users @ np.asarray(self.model.item_factors).T, dtype=np.float32)

    def state(self) -> dict[str, Array]:
        raise NotImplementedError("a benchmark peer is not saved")

    def restore(self, arrays: Mapping[str, Array]) -> None:
        raise NotImplementedError("a benchmark peer is not saved")


def implicit_problem() -> str | None:
    """Why implicit cannot be measured (its import error), or None."""
    try:
        from implicit.cpu.als import AlternatingLeastSquares  # noqa: F401
    except Exception as error:  # an ImportError, or a wheel that does not load
        return f"{type(error).__name__}: {error}"
    return None


def implicit_version() -> str:
    """The installed implicit's version."""
    import implicit

    return str(implicit.__version__)


@dataclass(frozen=True)
class Figures:
    """One model's test figures on one seed."""

    ndcg: float
    recall: float
    train_seconds: float


def peer_settings(threads: int) -> dict[str, Any]:
    """implicit's settings (and those of `ials (Hu)`): ials's factors, alpha and epochs, and
    the plain L2 chosen for Hu's objective."""
    same = {name: DEFAULTS[name] for name in ("factors", "alpha", "epochs")}
    return {**same, "regularisation": HU_REGULARISATION, "threads": threads}


def specs(threads: int, with_implicit: bool) -> list[ModelSpec]:
    """The models of the table, in its order."""
    peer = peer_settings(threads)
    hu = {key: value for key, value in peer.items() if key != "threads"}
    models = [
        ModelSpec("ials", IALS),
        ModelSpec("ials (exact)", IALS, {"solver": "exact"}),
        ModelSpec("ials (Hu)", IALS, {**hu, **HU}),
    ]
    if with_implicit:
        models.append(ModelSpec("implicit", ImplicitALS, peer))
    return [*models, ModelSpec("ease", EASE)]


def run_seed(snapshot: Snapshot, seed: int, models: Sequence[ModelSpec]) -> dict[str, Figures]:
    """One seed: each model fitted on the train part and measured on the test part."""
    protocol = Protocol("random", split=(0.8, 0.1, 0.1), ks=(K,), seeds=(seed,))
    split = prepare_split(snapshot, protocol, seed)
    candidates = np.array([item is not None for item in snapshot.item_ids], dtype=bool)
    figures = {}
    for spec in models:
        run = run_one(snapshot, spec, protocol, seed, split, candidates, (K,))
        figures[spec.name] = Figures(
            run.figures[f"ndcg@{K}"], run.figures[f"recall@{K}"], run.train_seconds
        )
    line = ", ".join(f"{n} {f.ndcg:.4f} in {f.train_seconds:.1f} s" for n, f in figures.items())
    print(f"seed {seed}: {line}", flush=True)
    return figures


def validation_ndcg(
    snapshot: Snapshot, split: PreparedSplit, spec: ModelSpec
) -> tuple[float, float]:
    """NDCG@10 on the validation part of the tuning seed (the train items left out of the
    ranking), and the training seconds."""
    protocol = Protocol("random", split=(0.8, 0.1, 0.1), ks=(K,), seeds=(TUNING_SEED,))
    model, data, seconds = fit_one(snapshot, spec, protocol, TUNING_SEED, split)
    valid = split.holdouts.valid
    train = Holdout.of(
        np.repeat(np.arange(data.n_users), np.diff(data.indptr)), data.items, data.n_users
    )
    candidates = np.array([item is not None for item in snapshot.item_ids], dtype=bool)
    ranked = rank(model, data, valid.users, train, K, candidates)
    relevant = [valid.of_user(int(user)) for user in valid.users]
    return float(ndcg_at(ranked, relevant, K).mean()), seconds


def tune(snapshot: Snapshot) -> list[str]:
    """The coordinate search of TUNING on the validation part of seed 1, as a table."""
    protocol = Protocol("random", split=(0.8, 0.1, 0.1), ks=(K,), seeds=(TUNING_SEED,))
    split = prepare_split(snapshot, protocol, TUNING_SEED)
    found: dict[str, tuple[float, float]] = {}

    def measured(settings: Mapping[str, Any]) -> float:
        key = ", ".join(f"{name} {value:g}" for name, value in sorted(settings.items()))
        if key not in found:
            found[key] = validation_ndcg(snapshot, split, ModelSpec("ials", IALS, settings))
            print(f"{key}: NDCG@10 {found[key][0]:.4f} ({found[key][1]:.1f} s)", flush=True)
        return found[key][0]

    best: dict[str, Any] = {name: DEFAULTS[name] for name in TUNING if name in DEFAULTS}
    lines = ["| parameter | value | validation NDCG@10 | train s |", "|---|---:|---:|---:|"]
    for parameter, values in TUNING.items():
        hu = parameter.endswith("(Hu)")
        name = parameter.split(" ")[0]
        base = {**best, **HU} if hu else best
        kind = next(p.kind for p in IALS.parameters if p.name == name)
        scores = {value: measured({**base, name: kind(value)}) for value in values}
        chosen = max(scores, key=lambda value: scores[value])
        if not hu and scores[chosen] <= scores[best[name]] + TOLERANCE:
            chosen = best[name]
        if not hu:
            best[name] = kind(chosen)
        for value in values:
            key = ", ".join(f"{n} {v:g}" for n, v in sorted({**base, name: kind(value)}.items()))
            mark = " (chosen)" if value == chosen else ""
            ndcg, seconds = found[key]
            lines.append(f"| {parameter} | {value:g}{mark} | {ndcg:.4f} | {seconds:.1f} |")
    lines.append("")
    lines.append("- chosen: " + ", ".join(f"{n} {v:g}" for n, v in best.items()))
    return lines


def _mean(values: Sequence[float], digits: int = 4) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {spread:.{digits}f}"


def report_lines(
    runs: Sequence[dict[str, Figures]], models: Sequence[ModelSpec], problem: str | None
) -> list[str]:
    """The table, one row per model (implicit's 'not measured' where it is missing)."""
    lines = ["| model | NDCG@10 | Recall@10 | train s |", "|---|---:|---:|---:|"]
    for spec in models:
        cells = [
            _mean([run[spec.name].ndcg for run in runs]),
            _mean([run[spec.name].recall for run in runs]),
            _mean([run[spec.name].train_seconds for run in runs], 2),
        ]
        lines.append(f"| {spec.name} | " + " | ".join(cells) + " |")
        if spec.name == "ials (Hu)" and problem is not None:
            lines.append(f"| implicit | not measured ({problem}) | | |")
    return lines


def settings_line(threads: int) -> str:
    """What each model was given."""
    listed = ", ".join(
        f"{n} {v:g}" if isinstance(v, int | float) else f"{n} {v}"
        for n, v in DEFAULTS.items()
        if n != "seed"
    )
    peer = peer_settings(threads)
    same = ", ".join(f"{n} {v:g}" for n, v in peer.items() if n != "threads")
    return (
        f"- ials's defaults: {listed} (seeded by the run's seed); `ials (Hu)` and implicit: "
        f"{same}, implicit on {threads or 'all'} thread(s), one BLAS thread for every ALS"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument(
        "--directory",
        type=Path,
        default=Path(tempfile.gettempdir()) / "reqo-bench-evaluate",
        help="where the MovieLens-100K DuckDB file is (kept for later runs)",
    )
    parser.add_argument("--threads", type=int, default=1, help="implicit's threads (0: all)")
    parser.add_argument(
        "--tune",
        action="store_true",
        help="only the search of ials's defaults on the validation part of seed 1",
    )
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    try:
        seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError:
        parser.error(f"--seeds: {args.seeds!r} is not a list of integers")
    snapshot = open_dataset(args.directory)
    if args.tune:
        started = time.perf_counter()
        lines = tune(snapshot)
        lines.append(f"- search time: {time.perf_counter() - started:.0f} s")
        title = "ials: choosing the defaults on ML-100K's validation part (seed 1)"
    else:
        problem = implicit_problem()
        models = specs(args.threads, problem is None)
        runs = [run_seed(snapshot, seed, models) for seed in seeds]
        version = f"implicit {implicit_version()}" if problem is None else "implicit missing"
        lines = [
            f"- MovieLens-100K ({DATABASE}), protocol (a): per user shuffled and split "
            "80/10/10, every rating a positive of weight 1, full ranking of the items not "
            f"rated in train or validation; seeds {', '.join(map(str, seeds))} (mean ± sample "
            f"std over seeds); {version}",
            settings_line(args.threads),
            "",
            *report_lines(runs, models, problem),
        ]
        title = "ials: implicit ALS on ML-100K, beside implicit and EASE"
    if args.no_report:
        print("\n".join(lines))
    else:
        publish(title, "bench.ials", argv, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
