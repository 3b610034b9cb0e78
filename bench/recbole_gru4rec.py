"""RecBole 1.2.1's sequential models (GRU4Rec, SASRec), at their defaults, on MovieLens-100K:
leave-last-one-out, full ranking.

    .venv/bin/python -m bench.recbole_gru4rec [--model GRU4Rec|SASRec] [--seeds 2020,1,2,3]
                                              [--epochs N] [--minutes M] [--json PATH]
                                              [--threads N]
                                              [--verbose] [--no-report] [--from-json PATH]

The reference figures that reqo's GRU4Rec and SASRec have to match or beat (bench.sequence reads
them through `bench.recbole_common.recbole_reference`). It runs RecBole itself, through its
lower-level API (`recbole.quick_start` imports `ray`), the way `run_recbole` does: Config,
init_seed, create_dataset, data_preparation, init_seed again, the model, Trainer.fit, then the
test split with the best checkpoint. The model's settings are RecBole's defaults (its
`properties/model/<model>.yaml`), bar `--epochs`, which caps RecBole's 300 where a run would
take too long, and `--minutes`, which stops training at the first epoch boundary past that many
minutes (the best checkpoint so far is tested); the section says when either cut training short.

RecBole's protocol for sequential models: ML-100K's atomic file `ml-100k.inter` (from the
installed RecBole wheel, copied into a temporary directory), every rating a positive whatever
its stars, nothing filtered; each user's ratings sorted by timestamp (ties in file order); every
rating but the user's first becomes a training example (the previous <= 50 items -> the next);
per user, the last example is the test, the one before it the validation (early stopping on
NDCG@10, patience 10), the rest train. Full ranking of every item; RecBole does NOT exclude the
items already in the user's history for a sequential model (only the padding item 0). The table
also gives the same best checkpoint's test figures with the history excluded (every other item
of the user set to -inf), the convention of reqo's harness; that figure is ours, not RecBole's.

Requirements beyond `recbole==1.2.1 --no-deps` (no torch upgrade):
    pip install -e .[reference]   (colorlog, colorama, texttable, pandas<3; `make bench-reference`)
RecBole runs with the two shims of bench.recbole_common (numpy 2's removed aliases, a
do-nothing tensorboard), inside this process only.
"""

from __future__ import annotations

import argparse
import json
import statistics
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
    TrainingBudgetSpent,
    bare_argv,
    best_epoch,
    figures,
    json_path,
    load_best,
    mean_std,
    parse_seeds,
    prepare_recbole,
    private_dataset,
    settings_of,
    summary,
    timed_trainer,
    versions,
    write_record,
)

MODELS = ("GRU4Rec", "SASRec")
"""RecBole's sequential models this benchmark runs: those of reqo's sequence members."""
DEFAULT_MODEL = "GRU4Rec"
DEFAULT_JSON = json_path(DEFAULT_MODEL)
RECBOLE_EPOCHS = 300
"""RecBole's default `epochs` (overall.yaml), which `--epochs` may cap."""
TOPK = (10, 20)
METRICS = ("Recall", "NDCG", "MRR", "Hit", "Precision")
FIGURES = ("ndcg@10", "ndcg@20", "recall@10", "recall@20", "mrr@10", "mrr@20")
CONFIG: dict[str, Any] = {
    "eval_args": {
        "split": {"LS": "valid_and_test"},
        "order": "TO",
        "mode": "full",
        "group_by": "user",
    },
    "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
    "loss_type": "CE",
    # RecBole's overall default (uniform, 1 negative) is refused with CE for sequential models.
    "train_neg_sample_args": None,
    "metrics": list(METRICS),
    "topk": list(TOPK),
    "valid_metric": "NDCG@10",
    **QUIET,
}
"""What this benchmark sets; `data_path`, `checkpoint_dir`, `seed` (and `epochs` where capped)
are added per run."""


@dataclass
class SeedRun:
    """One seed's training and test figures."""

    seed: int
    epochs: int
    best_epoch: int
    train_seconds: list[float]
    valid_seconds: list[float]
    valid_ndcg_at_10: list[float]
    fit_seconds: float
    best_valid: dict[str, float]
    test: dict[str, float]
    test_history_excluded: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)
    train_cpu_seconds: list[float] = field(default_factory=list)
    """This process's CPU seconds per training epoch (absent from runs before it was kept)."""
    budget_spent: bool = False
    """Whether `--minutes` stopped the training (before early stopping or the epoch cap)."""

    @property
    def train_total(self) -> float:
        return sum(self.train_seconds)

    @property
    def seconds_per_epoch(self) -> float:
        return self.train_total / len(self.train_seconds)

    @property
    def cpu_seconds_per_epoch(self) -> float | None:
        if not self.train_cpu_seconds:
            return None
        return sum(self.train_cpu_seconds) / len(self.train_cpu_seconds)


def run_seed(
    model_name: str,
    seed: int,
    epochs: int | None,
    minutes: float | None,
    data_directory: Path,
    work: Path,
    verbose: bool,
) -> tuple[SeedRun, dict[str, Any]]:
    """Train and test one RecBole sequential model with one seed, as RecBole's `run_recbole`
    would; also the effective settings."""
    prepare_recbole()
    from recbole.config import Config  # type: ignore[import-untyped]
    from recbole.data import create_dataset, data_preparation  # type: ignore[import-untyped]
    from recbole.trainer import Trainer  # type: ignore[import-untyped]
    from recbole.utils import get_model, init_seed  # type: ignore[import-untyped]

    timed = timed_trainer(Trainer, f"{model_name} seed {seed}", minutes)

    class SequentialTrainer(timed):  # type: ignore[misc,valid-type]
        """RecBole's Trainer, timed; optionally masking the user's history at test time."""

        history: Any = None

        def _full_sort_batch_eval(self, batched_data: Any) -> Any:
            interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(
                batched_data
            )
            if self.history is not None:
                # reqo's convention: every item the user rated, bar the target, cannot be shown.
                users = interaction[self.config["USER_ID_FIELD"]]
                for row, (user, target) in enumerate(zip(users, positive_i, strict=True)):
                    items = self.history[int(user)]
                    scores[row, items[items != target]] = float("-inf")
            return interaction, scores, positive_u, positive_i

    run_directory = work / f"{model_name.lower()}-seed-{seed}"
    settings = dict(CONFIG, data_path=str(data_directory), seed=seed)
    settings["checkpoint_dir"] = str(run_directory / "saved")
    if epochs is not None:
        settings["epochs"] = epochs
    with bare_argv():
        config = Config(model=model_name, dataset=DATASET, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = SequentialTrainer(config, model)

    start = time.perf_counter()
    budget_spent = False
    try:
        trainer.fit(train_data, valid_data, verbose=verbose, saved=True)
    except TrainingBudgetSpent as stop:
        print(f"  {model_name} seed {seed}: {stop}", flush=True)
        budget_spent = True
    fit_seconds = time.perf_counter() - start
    best_valid = trainer.best_valid_result

    load_best(trainer, model)
    test = trainer.evaluate(test_data, load_best_model=False)

    # Every item each user rated (train, validation and test targets, and each first rating).
    matrix = dataset.inter_matrix(form="csr")
    trainer.history = [
        torch.from_numpy(matrix.indices[matrix.indptr[user] : matrix.indptr[user + 1]]).long()
        for user in range(matrix.shape[0])
    ]
    test_excluded = trainer.evaluate(test_data, load_best_model=False)

    counts = {
        "users": int(dataset.user_num) - 1,
        "items": int(dataset.item_num) - 1,
        "ratings": int(matrix.nnz),
        "train_examples": len(train_data._dataset),
        "valid_examples": len(valid_data._dataset),
        "test_examples": len(test_data._dataset),
        "torch_threads": torch.get_num_threads(),
    }
    run = SeedRun(
        seed=seed,
        epochs=len(trainer.train_seconds),
        best_epoch=best_epoch(trainer.valid_scores),
        train_seconds=trainer.train_seconds,
        valid_seconds=trainer.valid_seconds,
        valid_ndcg_at_10=trainer.valid_scores,
        fit_seconds=fit_seconds,
        best_valid=figures(best_valid),
        test=figures(test),
        test_history_excluded=figures(test_excluded),
        counts=counts,
        train_cpu_seconds=trainer.train_cpu_seconds,
        budget_spent=budget_spent,
    )
    return run, {
        "budget_minutes": minutes,
        **settings_of(config, model_name),
        "MAX_ITEM_LIST_LENGTH": config["MAX_ITEM_LIST_LENGTH"],
    }


def table(runs: list[SeedRun]) -> list[str]:
    """Per seed and over seeds: epochs, time, test figures (RecBole's protocol)."""
    header = ["seed", "epochs (best)", "s/epoch", "CPU s/epoch", "train s", "fit s"]
    header += [
        name.replace("ndcg", "NDCG").replace("recall", "Recall").replace("mrr", "MRR")
        for name in FIGURES
    ]
    header += ["NDCG@10, history excluded"]
    lines = ["| " + " | ".join(header) + " |", "|---:|" + "---:|" * (len(header) - 1)]
    for run in runs:
        cells = [
            str(run.seed),
            f"{run.epochs} ({run.best_epoch})",
            f"{run.seconds_per_epoch:.2f}",
            _optional(run.cpu_seconds_per_epoch),
            f"{run.train_total:.1f}",
            f"{run.fit_seconds:.1f}",
            *(f"{run.test[name]:.4f}" for name in FIGURES),
            f"{run.test_history_excluded['ndcg@10']:.4f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if len(runs) > 1:
        cells = [
            "mean ± std",
            summary([float(run.epochs) for run in runs], 1),
            summary([run.seconds_per_epoch for run in runs], 2),
            _cpu_summary(runs),
            summary([run.train_total for run in runs], 1),
            summary([run.fit_seconds for run in runs], 1),
            *(summary([run.test[name] for run in runs]) for name in FIGURES),
            summary([run.test_history_excluded["ndcg@10"] for run in runs]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _cpu_summary(runs: list[SeedRun]) -> str:
    values = [run.cpu_seconds_per_epoch for run in runs]
    known = [value for value in values if value is not None]
    return summary(known, 2) if len(known) == len(values) else "-"


def write_json(path: Path, model: str, runs: list[SeedRun], settings: dict[str, Any]) -> None:
    """The per-seed figures, their mean and sample std, the settings and the machine."""
    names = sorted(runs[0].test)
    record = {
        "model": model,
        "library": "RecBole",
        "dataset": DATASET,
        "protocol": {
            **{key: CONFIG[key] for key in ("eval_args", "load_col", "metrics", "topk")},
            "history_excluded": False,
            "note": "leave-last-one-out by timestamp, full ranking, user history NOT excluded "
            "(RecBole's default for sequential models); test_history_excluded is the same "
            "checkpoint with the user's other rated items masked",
        },
        "settings": settings,
        "machine": machine(),
        "versions": versions(),
        "seeds": [
            {
                **asdict(run),
                "seconds_per_epoch": run.seconds_per_epoch,
                "cpu_seconds_per_epoch": run.cpu_seconds_per_epoch,
                "train_seconds_total": run.train_total,
            }
            for run in runs
        ],
        "test_mean_std": {name: mean_std([run.test[name] for run in runs]) for name in names},
        "test_history_excluded_mean_std": {
            name: mean_std([run.test_history_excluded[name] for run in runs]) for name in names
        },
        "seconds_per_epoch": statistics.fmean(run.seconds_per_epoch for run in runs),
        "cpu_seconds_per_epoch": statistics.fmean(run.cpu_seconds_per_epoch or 0.0 for run in runs),
        "train_seconds_total": statistics.fmean(run.train_total for run in runs),
        "epochs": statistics.fmean(run.epochs for run in runs),
    }
    write_record(path, record)


@dataclass(frozen=True)
class Recorded:
    """What a previous `--json` file holds."""

    model: str
    runs: list[SeedRun]
    settings: dict[str, Any]
    machine: str


def read_json(path: Path) -> Recorded:
    """The runs a previous `--json` file holds, their settings and the machine."""
    record = json.loads(path.read_text(encoding="utf-8"))
    names = {item.name for item in fields(SeedRun)}
    runs = [SeedRun(**{k: v for k, v in seed.items() if k in names}) for seed in record["seeds"]]
    return Recorded(
        str(record.get("model", DEFAULT_MODEL)), runs, record["settings"], str(record["machine"])
    )


def network(model: str, settings: dict[str, Any]) -> str:
    """The model's architecture in words, from its recorded settings."""
    s = settings
    if model == "GRU4Rec":
        return (
            f"embedding {s['embedding_size']}, hidden {s['hidden_size']}, "
            f"{s['num_layers']} GRU layer(s), dropout {s['dropout_prob']}"
        )
    if model == "SASRec":
        return (
            f"{s['n_layers']} Transformer layers of {s['n_heads']} heads, hidden "
            f"{s['hidden_size']}, feed-forward {s['inner_size']}, dropout "
            f"{s['hidden_dropout_prob']} (attention {s['attn_dropout_prob']}), {s['hidden_act']}"
        )
    return ", ".join(f"{key} {value}" for key, value in s.items())


def report_lines(recorded: Recorded) -> list[str]:
    """The section's bullet points and table."""
    runs, s = recorded.runs, recorded.settings
    counts = runs[0].counts
    seeds = ", ".join(str(run.seed) for run in runs)
    epochs = int(s["epochs"])
    capped = (
        f" (capped here: RecBole's default is {RECBOLE_EPOCHS})" if epochs != RECBOLE_EPOCHS else ""
    )
    cut = _cut_short(runs, s.get("budget_minutes"))
    return [
        f"- RecBole {versions()['recbole']} {recorded.model} with its defaults "
        f"({network(recorded.model, s)}, {s['loss_type']} loss over all items, "
        f"{s['learner']} lr {s['learning_rate']}, batch {s['train_batch_size']}, up to {epochs} "
        f"epochs{capped}, early stopping on validation {s['valid_metric']} with patience "
        f"{s['stopping_step']}); CPU, torch threads: {counts['torch_threads']}; measured on "
        f"{recorded.machine}",
        *cut,
        f"- MovieLens-100K ({counts['users']:,} users, {counts['items']:,} items, "
        f"{counts['ratings']:,} ratings, every rating a positive): per user sorted by time, "
        f"each rating after the first predicted from the previous <= "
        f"{s.get('MAX_ITEM_LIST_LENGTH', 50)}; the last for test, the one before for "
        f"validation ({counts['train_examples']:,} / {counts['valid_examples']:,} / "
        f"{counts['test_examples']:,} examples); full ranking of every item, the user's history "
        "NOT excluded (RecBole's default for sequential models); "
        f"seeds {seeds}" + (" (mean ± sample std)" if len(runs) > 1 else ""),
        "",
        *table(runs),
        "",
        "- epochs: run until early stopping, the epoch cap or the time budget (best: the epoch "
        "whose checkpoint was tested, from 0); s/epoch: training only, wall clock (on a shared "
        "machine, or reniced, it counts the time other processes held the core); CPU s/epoch: this "
        "process's CPU time per training epoch (about an idle core's wall time, one torch "
        "thread); fit s: training and the validation after each epoch",
        "- NDCG@10, history excluded: the same checkpoint, every other item the user rated "
        "masked (reqo's harness convention), not a RecBole figure",
    ]


def _cut_short(runs: list[SeedRun], minutes: float | None) -> list[str]:
    """A line saying which seeds a time budget stopped, if any did."""
    stopped = [run for run in runs if run.budget_spent]
    if not stopped:
        return []
    which = ", ".join(f"seed {run.seed} after {run.epochs} epochs" for run in stopped)
    return [
        f"- **training cut short**: a {minutes:g}-minute budget (`--minutes`, for a run on a "
        f"shared machine) stopped {which}, before early stopping; the best checkpoint so far "
        "was tested, so these are the figures of an unfinished training, not of RecBole's "
        "converged model"
    ]


def train(
    model: str,
    seeds: list[int],
    epochs: int | None,
    minutes: float | None,
    json_file: Path,
    verbose: bool,
) -> Recorded:
    """Run every seed, one after the other, writing the JSON after each."""
    runs: list[SeedRun] = []
    settings: dict[str, Any] = {}
    with private_dataset(f"reqo-recbole-{model.lower()}-") as (work, data):
        for seed in seeds:
            print(f"seed {seed}: training {model} (RecBole 1.2.1)", flush=True)
            run, settings = run_seed(model, seed, epochs, minutes, data, work, verbose)
            print(
                f"seed {seed}: {run.epochs} epochs (best {run.best_epoch}), "
                f"{run.seconds_per_epoch:.2f} s/epoch, test NDCG@10 {run.test['ndcg@10']:.4f} "
                f"({run.test_history_excluded['ndcg@10']:.4f} history excluded)",
                flush=True,
            )
            runs.append(run)
            # Written after every seed, so that a long run cut short keeps what it finished.
            write_json(json_file, model, runs, settings)
    print(f"wrote {json_file}")
    return Recorded(model, runs, settings, machine())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--model",
        choices=MODELS,
        default=DEFAULT_MODEL,
        help=f"RecBole's sequential model (default {DEFAULT_MODEL})",
    )
    parser.add_argument("--seeds", default="2020", help="comma-separated seeds (default 2020)")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"cap RecBole's epochs (default: RecBole's own, {RECBOLE_EPOCHS}, with early "
        "stopping); the section says when capped",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="stop training at the first epoch boundary past this many minutes of a seed's "
        "training and test the best checkpoint so far (default: no limit); the section says so",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="per-seed figures (default evaluation/recbole_<model>.json, the model in lower case)",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        metavar="PATH",
        help="train nothing: print (and publish) the figures a previous --json file holds",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on the 2-core machine torch's default of 2 made "
        "each GRU batch about 10 times slower; 0 keeps torch's default)",
    )
    parser.add_argument("--verbose", action="store_true", help="RecBole's own log lines too")
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    if seeds is None:
        parser.error(f"--seeds: {args.seeds!r} is not a non-empty list of integers")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs: {args.epochs} is not a positive number of epochs")
    if args.minutes is not None and not args.minutes > 0:
        parser.error(f"--minutes: {args.minutes} is not a positive number of minutes")
    if args.threads < 0:
        parser.error("--threads: 0 (torch's default) or more")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    if args.from_json is not None:
        recorded = read_json(args.from_json)
    else:
        json_file = args.json or json_path(args.model)
        recorded = train(args.model, seeds, args.epochs, args.minutes, json_file, args.verbose)
    lines = report_lines(recorded)
    if args.no_report:
        print("\n".join(lines))
    else:
        publish(
            f"RecBole {recorded.model} on MovieLens-100K: leave-last-one-out, full ranking",
            "bench.recbole_gru4rec",
            argv,
            lines,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
