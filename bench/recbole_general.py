"""RecBole 1.2.1's general models that match reqo's members, at their defaults, on MovieLens-100K:
protocol (a), each user's ratings shuffled and split 80/10/10, full ranking.

    .venv/bin/python -m bench.recbole_general [--model SLIMElastic,ADMMSLIM] [--seeds 1,2,3]
                                              [--threads N] [--verbose] [--no-report]
                                              [--from-json PATH ...]

The reference figures of bench.evaluate's REFERENCES for the members RecBole has a model of:

    reqo      RecBole 1.2.1
    slim      SLIMElastic (scikit-learn's ElasticNet per item; also ADMMSLIM, Steck et al.'s
              ADMM solution of the same nonnegative sparse regression)
    rp3beta   none (no random-walk model in recbole/model/general_recommender/)
    ials      none (no ALS model in RecBole 1.2.1)

It runs RecBole itself, the way `run_recbole` does (Config, init_seed, create_dataset,
data_preparation, init_seed again, the model, its trainer's fit, the test split with the best
checkpoint), with RecBole's own defaults for the model (`properties/model/<model>.yaml`) and
for the protocol (`overall.yaml`): ML-100K's atomic file from the installed wheel (copied into a
temporary directory), every rating a positive, nothing filtered; per user shuffled and split
80/10/10 (`split_by_ratio`); full ranking of every item the user has not rated in train (and,
for the test, validation); validation on MRR@10 (RecBole's default `valid_metric`). RecBole's
split draws its own shuffle, so the seeds give other splits than reqo's harness does with the
same seeds: the same protocol, not the same rows.

Training time: RecBole's "traditional" models (SLIMElastic, ADMMSLIM) fit when the model is
built; their trainer then runs one epoch that only computes a constant loss. `train s` is the
build plus the training epochs, without validation, as reqo's harness times a fit.

Each model's per-seed figures go to `evaluation/recbole_<model>.json` (lower case), which
`bench.recbole_common.recbole_reference` reads. Requirements and shims: as bench.recbole_gru4rec.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from bench._report import machine, publish
from bench.recbole_common import (
    DATASET,
    QUIET,
    bare_argv,
    best_epoch,
    figures,
    json_path,
    load_best,
    mean_std,
    model_setting_names,
    parse_seeds,
    prepare_recbole,
    private_dataset,
    settings_of,
    summary,
    timed_trainer,
    versions,
    write_record,
)

MODELS = ("SLIMElastic", "ADMMSLIM")
"""RecBole's general models of reqo's members (slim); RecBole has none for rp3beta or ials."""
DEFAULT_MODELS = ("SLIMElastic",)
FIGURES = ("ndcg@10", "recall@10", "mrr@10", "hit@10", "precision@10")
CONFIG: dict[str, Any] = {
    # RecBole's overall.yaml defaults, spelt out: protocol (a) is exactly these.
    "eval_args": {
        "split": {"RS": [0.8, 0.1, 0.1]},
        "order": "RO",
        "mode": "full",
        "group_by": "user",
    },
    "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
    "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"],
    "topk": [10],
    "valid_metric": "MRR@10",
    **QUIET,
}
"""What this benchmark sets; `data_path`, `checkpoint_dir` and `seed` are added per run."""


@dataclass
class GeneralRun:
    """One seed's fit and test figures."""

    seed: int
    build_seconds: float
    epochs: int
    best_epoch: int
    train_seconds: list[float]
    valid_seconds: list[float]
    valid_scores: list[float]
    fit_seconds: float
    best_valid: dict[str, float]
    test: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)
    build_cpu_seconds: float = 0.0
    train_cpu_seconds: list[float] = field(default_factory=list)

    @property
    def train_total(self) -> float:
        """Building the model (where traditional models fit) and its training epochs."""
        return self.build_seconds + sum(self.train_seconds)

    @property
    def cpu_total(self) -> float:
        """This process's CPU seconds over the same."""
        return self.build_cpu_seconds + sum(self.train_cpu_seconds)


def run_seed(
    model_name: str, seed: int, data_directory: Path, work: Path, verbose: bool
) -> tuple[GeneralRun, dict[str, Any]]:
    """Fit and test one RecBole general model with one seed, as RecBole's `run_recbole` would;
    also the effective settings."""
    prepare_recbole()
    from recbole.config import Config  # type: ignore[import-untyped]
    from recbole.data import create_dataset, data_preparation  # type: ignore[import-untyped]
    from recbole.utils import get_model, get_trainer, init_seed  # type: ignore[import-untyped]

    settings = dict(CONFIG, data_path=str(data_directory), seed=seed)
    settings["checkpoint_dir"] = str(work / f"{model_name.lower()}-seed-{seed}" / "saved")
    with bare_argv():
        config = Config(model=model_name, dataset=DATASET, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    start, cpu = time.perf_counter(), time.process_time()
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    build_seconds, build_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    trainer_class = get_trainer(config["MODEL_TYPE"], config["model"])
    trainer = timed_trainer(trainer_class, f"{model_name} seed {seed}")(config, model)

    start = time.perf_counter()
    _, best_valid = trainer.fit(train_data, valid_data, verbose=verbose, saved=True)
    fit_seconds = time.perf_counter() - start
    load_best(trainer, model)
    test = trainer.evaluate(test_data, load_best_model=False)

    counts = {
        "users": int(dataset.user_num) - 1,
        "items": int(dataset.item_num) - 1,
        "ratings": len(dataset),
        "train": len(train_data._dataset),
        "valid": len(valid_data._dataset),
        "test": len(test_data._dataset),
        "torch_threads": torch.get_num_threads(),
    }
    run = GeneralRun(
        seed=seed,
        build_seconds=build_seconds,
        epochs=len(trainer.train_seconds),
        best_epoch=best_epoch(trainer.valid_scores),
        train_seconds=trainer.train_seconds,
        valid_seconds=trainer.valid_seconds,
        valid_scores=trainer.valid_scores,
        fit_seconds=fit_seconds,
        best_valid=figures(best_valid),
        test=figures(test),
        counts=counts,
        build_cpu_seconds=build_cpu_seconds,
        train_cpu_seconds=trainer.train_cpu_seconds,
    )
    return run, settings_of(config, model_name)


@dataclass(frozen=True)
class Recorded:
    """One model's runs, their settings and the machine they ran on."""

    model: str
    runs: list[GeneralRun]
    settings: dict[str, Any]
    machine: str


def write_json(path: Path, recorded: Recorded) -> None:
    """The per-seed figures, their mean and sample std, the settings and the machine."""
    runs = recorded.runs
    record = {
        "model": recorded.model,
        "library": "RecBole",
        "dataset": DATASET,
        "protocol": {
            **{key: CONFIG[key] for key in ("eval_args", "load_col", "metrics", "topk")},
            "history_excluded": True,
            "note": "per user shuffled and split 80/10/10 (RecBole's split_by_ratio), full "
            "ranking of the items the user has not rated in train (and validation, for test)",
        },
        "settings": recorded.settings,
        "machine": recorded.machine,
        "versions": versions(),
        "seeds": [
            {
                **asdict(run),
                "train_seconds_total": run.train_total,
                "cpu_seconds_total": run.cpu_total,
            }
            for run in runs
        ],
        "test_mean_std": {
            name: mean_std([run.test[name] for run in runs]) for name in runs[0].test
        },
        "train_seconds": mean_std([run.train_total for run in runs]),
        "train_cpu_seconds": mean_std([run.cpu_total for run in runs]),
    }
    write_record(path, record)


def read_json(path: Path) -> Recorded:
    """What a previous run of one model wrote."""
    record = json.loads(path.read_text(encoding="utf-8"))
    names = {item.name for item in fields(GeneralRun)}
    runs = [GeneralRun(**{k: v for k, v in seed.items() if k in names}) for seed in record["seeds"]]
    return Recorded(str(record["model"]), runs, record["settings"], str(record["machine"]))


def table(recorded: list[Recorded]) -> list[str]:
    """Per model and seed, and per model over seeds: training time and the test figures."""
    header = ["RecBole model", "seed", "train s", "CPU s", "build s"]
    header += [
        name.replace("ndcg", "NDCG")
        .replace("recall", "Recall")
        .replace("mrr", "MRR")
        .replace("hit", "Hit")
        .replace("precision", "Precision")
        for name in FIGURES
    ]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for model in recorded:
        for run in model.runs:
            cells = [model.model, str(run.seed), f"{run.train_total:.1f}", f"{run.cpu_total:.1f}"]
            cells.append(f"{run.build_seconds:.1f}")
            cells += [f"{run.test[name]:.4f}" for name in FIGURES]
            lines.append("| " + " | ".join(cells) + " |")
        if len(model.runs) > 1:
            runs = model.runs
            cells = [model.model, "mean ± std", summary([run.train_total for run in runs], 1)]
            cells.append(summary([run.cpu_total for run in runs], 1))
            cells.append(summary([run.build_seconds for run in runs], 1))
            cells += [summary([run.test[name] for run in runs]) for name in FIGURES]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def report_lines(recorded: list[Recorded]) -> list[str]:
    """The section's bullet points and table."""
    counts = recorded[0].runs[0].counts
    seeds = sorted({run.seed for model in recorded for run in model.runs})
    defaults = "; ".join(
        f"{model.model}: "
        + ", ".join(f"{key} {model.settings[key]}" for key in model_setting_names(model.model))
        for model in recorded
    )
    return [
        f"- RecBole {versions()['recbole']}'s general models of reqo's members (slim: "
        "SLIMElastic, ADMMSLIM; RecBole has none for rp3beta or ials), each with its defaults "
        f"({defaults}); CPU, torch threads: {counts['torch_threads']}; measured on "
        f"{recorded[0].machine}",
        f"- MovieLens-100K ({counts['users']:,} users, {counts['items']:,} items, "
        f"{counts['ratings']:,} ratings, every rating a positive), protocol (a): per user "
        "shuffled and split 80/10/10 by RecBole's own `split_by_ratio` "
        f"({counts['train']:,} / {counts['valid']:,} / {counts['test']:,}); full ranking of "
        "every item the user has not rated in train or validation; RecBole's own evaluation; "
        f"seeds {', '.join(map(str, seeds))}" + (" (mean ± sample std)" if len(seeds) > 1 else ""),
        "",
        *table(recorded),
        "",
        "- train s: building the model (where RecBole's traditional models fit) and its "
        "training epoch, without validation, wall clock (on a shared machine, or reniced, it "
        "counts the time other processes held the cores); CPU s: this process's CPU time over "
        "the same (BLAS may use both cores); build s: the build alone, wall clock",
        "- bench.evaluate's REFERENCES take these figures for reqo's `slim` (SLIMElastic's)",
    ]


def train(models: list[str], seeds: list[int], verbose: bool) -> list[Recorded]:
    """Every model with every seed, one after the other; each model's JSON rewritten after
    every seed, so that a run cut short keeps what it finished."""
    done: list[Recorded] = []
    with private_dataset("reqo-recbole-general-") as (work, data):
        for model in models:
            runs: list[GeneralRun] = []
            settings: dict[str, Any] = {}
            for seed in seeds:
                print(f"seed {seed}: fitting {model} (RecBole 1.2.1)", flush=True)
                run, settings = run_seed(model, seed, data, work, verbose)
                print(
                    f"seed {seed}: {model} trained in {run.train_total:.1f} s (build "
                    f"{run.build_seconds:.1f} s), test NDCG@10 {run.test['ndcg@10']:.4f}",
                    flush=True,
                )
                runs.append(run)
                write_json(json_path(model), Recorded(model, runs, settings, machine()))
            print(f"wrote {json_path(model)}")
            done.append(Recorded(model, runs, settings, machine()))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--model",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated RecBole models among {', '.join(MODELS)} (default "
        f"{','.join(DEFAULT_MODELS)})",
    )
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument(
        "--from-json",
        type=Path,
        action="append",
        default=None,
        metavar="PATH",
        help="train nothing: print (and publish) what previous runs wrote (repeatable)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1; 0: torch's default)"
    )
    parser.add_argument("--verbose", action="store_true", help="RecBole's own log lines too")
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    models = [name.strip() for name in args.model.split(",") if name.strip()]
    unknown = [name for name in models if name not in MODELS]
    if unknown or not models:
        parser.error(
            f"--model: {', '.join(unknown) or 'none given'}: choose among {', '.join(MODELS)}"
        )
    seeds = parse_seeds(args.seeds)
    if seeds is None:
        parser.error(f"--seeds: {args.seeds!r} is not a non-empty list of integers")
    if args.threads < 0:
        parser.error("--threads: 0 (torch's default) or more")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    if args.from_json:
        recorded = [read_json(path) for path in args.from_json]
    else:
        recorded = train(models, seeds, args.verbose)
    lines = report_lines(recorded)
    if args.no_report:
        print("\n".join(lines))
    else:
        names = ", ".join(model.model for model in recorded)
        publish(
            f"RecBole {names} on MovieLens-100K: random 80/10/10, full ranking",
            "bench.recbole_general",
            argv,
            lines,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
