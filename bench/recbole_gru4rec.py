"""RecBole 1.2.1's GRU4Rec, at its defaults, on MovieLens-100K: leave-last-one-out, full ranking.

    .venv/bin/python -m bench.recbole_gru4rec [--seeds 2020,1,2,3] [--json PATH] [--threads N]
                                              [--verbose] [--no-report] [--from-json PATH]

The reference figure that reqo's GRU4Rec has to match or beat. It runs RecBole itself, through
its lower-level API (`recbole.quick_start` imports `ray`), the way `run_recbole` does: Config,
init_seed, create_dataset, data_preparation, init_seed again, the model, Trainer.fit, then the
test split with the best checkpoint.

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

Two shims, inside this process only, for third-party code: numpy 2 gets back the aliases
`np.float_`, `np.complex_`, `np.unicode_` (float64, complex128, str_) that RecBole 1.2.1's
Config assigns from; and `torch.utils.tensorboard` becomes a stub whose SummaryWriter does
nothing (RecBole's Trainer always opens one; the real one needs the tensorboard package and
writes `log_tensorboard/` into the working directory; nothing here reads it).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy
import torch

from bench._report import machine, publish

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "evaluation" / "recbole_gru4rec.json"
DATASET = "ml-100k"
MODEL = "GRU4Rec"
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
    "use_gpu": False,
    "gpu_id": "",
    "log_wandb": False,
    "show_progress": False,
    "save_dataset": False,
    "save_dataloaders": False,
}
"""What this benchmark sets; `data_path`, `checkpoint_dir` and `seed` are added per run."""
RECORDED = (
    "MAX_ITEM_LIST_LENGTH",
    "embedding_size",
    "hidden_size",
    "num_layers",
    "dropout_prob",
    "loss_type",
    "epochs",
    "stopping_step",
    "eval_step",
    "train_batch_size",
    "eval_batch_size",
    "learner",
    "learning_rate",
    "weight_decay",
    "valid_metric",
    "metric_decimal_place",
    "reproducibility",
    "shuffle",
)
"""The effective settings (RecBole's defaults, bar those above) written to the JSON."""


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

    @property
    def train_total(self) -> float:
        return sum(self.train_seconds)

    @property
    def seconds_per_epoch(self) -> float:
        return self.train_total / len(self.train_seconds)


def _stub_tensorboard() -> None:
    """Put a do-nothing `torch.utils.tensorboard` into sys.modules (this process only).

    RecBole imports SummaryWriter at module level and its Trainer always opens one; the real
    module needs the tensorboard package and would write event files into the working directory.
    Nothing in this benchmark reads them. This replaces a third-party import, not reqo's code.
    """

    class SummaryWriter:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def add_scalar(self, *args: object, **kwargs: object) -> None:
            pass

        def add_hparams(self, *args: object, **kwargs: object) -> None:
            pass

        def close(self) -> None:
            pass

    stub = types.ModuleType("torch.utils.tensorboard")
    stub.SummaryWriter = SummaryWriter  # type: ignore[attr-defined]
    sys.modules["torch.utils.tensorboard"] = stub


def _numpy_aliases() -> None:
    """Give numpy 2 back the three aliases RecBole 1.2.1 reads (this process only).

    `Config.compatibility_settings` runs `np.float = np.float_`, `np.complex = np.complex_` and
    `np.unicode = np.unicode_`; numpy 2.0 removed the right-hand sides, so Config fails. They were
    exactly float64, complex128 and str_; RecBole's metrics then use `np.float` (float64) as in
    numpy 1. A shim for a third-party library, not reqo's code.
    """
    aliases = {"float_": numpy.float64, "complex_": numpy.complex128, "unicode_": numpy.str_}
    for name, alias in aliases.items():
        if name not in numpy.__dict__:
            setattr(numpy, name, alias)


@contextlib.contextmanager
def _bare_argv() -> Iterator[None]:
    """RecBole's Config reads `--key=value` pairs from sys.argv; hide this script's options."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def recbole_dataset_directory() -> Path:
    """The directory inside the installed RecBole wheel that holds `ml-100k/ml-100k.inter`."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("recbole is not installed: pip install --no-deps recbole==1.2.1")
    directory = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / DATASET
    if not (directory / f"{DATASET}.inter").is_file():
        raise SystemExit(f"{directory / (DATASET + '.inter')} is missing from the RecBole wheel")
    return directory


def _best_epoch(scores: list[float]) -> int:
    """The epoch RecBole keeps: the last one whose score reached the best so far (`>=`)."""
    best, epoch = float("-inf"), -1
    for index, score in enumerate(scores):
        if score >= best:
            best, epoch = score, index
    return epoch


def _figures(result: Any) -> dict[str, float]:
    return {str(key): float(value) for key, value in dict(result).items()}


def run_seed(
    seed: int, data_directory: Path, work: Path, verbose: bool
) -> tuple[SeedRun, dict[str, Any]]:
    """Train and test GRU4Rec with one seed, as RecBole's `run_recbole` would; also the
    effective settings."""
    _stub_tensorboard()
    _numpy_aliases()
    from recbole.config import Config  # type: ignore[import-untyped]
    from recbole.data import create_dataset, data_preparation  # type: ignore[import-untyped]
    from recbole.model.sequential_recommender import GRU4Rec  # type: ignore[import-untyped]
    from recbole.trainer import Trainer  # type: ignore[import-untyped]
    from recbole.utils import init_seed  # type: ignore[import-untyped]

    class TimedTrainer(Trainer):  # type: ignore[misc]
        """RecBole's Trainer, timing each epoch; optionally masking history at test time."""

        def __init__(self, config: Any, model: Any) -> None:
            super().__init__(config, model)
            self.train_seconds: list[float] = []
            self.valid_seconds: list[float] = []
            self.valid_scores: list[float] = []
            self.history: Any = None

        def _train_epoch(self, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            loss = super()._train_epoch(*args, **kwargs)
            self.train_seconds.append(time.perf_counter() - start)
            return loss

        def _valid_epoch(self, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            score, result = super()._valid_epoch(*args, **kwargs)
            self.valid_seconds.append(time.perf_counter() - start)
            self.valid_scores.append(float(score))
            epoch = len(self.train_seconds) - 1
            print(
                f"  seed {seed} epoch {epoch:3d}: train {self.train_seconds[-1]:.2f} s, "
                f"valid NDCG@10 {score:.4f}",
                flush=True,
            )
            return score, result

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

    run_directory = work / f"seed-{seed}"
    settings = dict(CONFIG, data_path=str(data_directory), seed=seed)
    settings["checkpoint_dir"] = str(run_directory / "saved")
    with _bare_argv():
        config = Config(model=MODEL, dataset=DATASET, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = GRU4Rec(config, train_data._dataset).to(config["device"])
    trainer = TimedTrainer(config, model)

    start = time.perf_counter()
    _, best_valid = trainer.fit(train_data, valid_data, verbose=verbose, saved=True)
    fit_seconds = time.perf_counter() - start

    # The best checkpoint, which RecBole itself wrote a moment ago: torch >= 2.6 loads with
    # weights_only=True by default and RecBole's checkpoint holds its Config object, so
    # `trainer.evaluate(load_best_model=True)` would fail; load it here with weights_only=False.
    checkpoint = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
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
    return SeedRun(
        seed=seed,
        epochs=len(trainer.train_seconds),
        best_epoch=_best_epoch(trainer.valid_scores),
        train_seconds=trainer.train_seconds,
        valid_seconds=trainer.valid_seconds,
        valid_ndcg_at_10=trainer.valid_scores,
        fit_seconds=fit_seconds,
        best_valid=_figures(best_valid),
        test=_figures(test),
        test_history_excluded=_figures(test_excluded),
        counts=counts,
    ), {key: _plain(config[key]) for key in RECORDED}


def _plain(value: Any) -> Any:
    """A config value as JSON can hold it."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _summary(values: list[float], digits: int = 4) -> str:
    """`mean ± sample std` (the mean alone for one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(runs: list[SeedRun]) -> list[str]:
    """Per seed and over seeds: epochs, time, test figures (RecBole's protocol)."""
    header = ["seed", "epochs (best)", "s/epoch", "train s", "fit s"]
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
            f"{run.train_total:.1f}",
            f"{run.fit_seconds:.1f}",
            *(f"{run.test[name]:.4f}" for name in FIGURES),
            f"{run.test_history_excluded['ndcg@10']:.4f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if len(runs) > 1:
        cells = [
            "mean ± std",
            _summary([float(run.epochs) for run in runs], 1),
            _summary([run.seconds_per_epoch for run in runs], 2),
            _summary([run.train_total for run in runs], 1),
            _summary([run.fit_seconds for run in runs], 1),
            *(_summary([run.test[name] for run in runs]) for name in FIGURES),
            _summary([run.test_history_excluded["ndcg@10"] for run in runs]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("recbole", "torch", "numpy", "pandas"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _mean_std(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def write_json(path: Path, runs: list[SeedRun], settings: dict[str, Any]) -> None:
    """The per-seed figures, their mean and sample std, the settings and the machine."""
    figures = sorted(runs[0].test)
    record = {
        "model": MODEL,
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
                "train_seconds_total": run.train_total,
            }
            for run in runs
        ],
        "test_mean_std": {name: _mean_std([run.test[name] for run in runs]) for name in figures},
        "test_history_excluded_mean_std": {
            name: _mean_std([run.test_history_excluded[name] for run in runs]) for name in figures
        },
        "seconds_per_epoch": statistics.fmean(run.seconds_per_epoch for run in runs),
        "train_seconds_total": statistics.fmean(run.train_total for run in runs),
        "epochs": statistics.fmean(run.epochs for run in runs),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def read_json(path: Path) -> tuple[list[SeedRun], str]:
    """The runs a previous `--json` file holds, and the machine they were measured on."""
    record = json.loads(path.read_text(encoding="utf-8"))
    names = {item.name for item in fields(SeedRun)}
    runs = [SeedRun(**{k: v for k, v in seed.items() if k in names}) for seed in record["seeds"]]
    return runs, str(record["machine"])


def report_lines(runs: list[SeedRun], measured_on: str) -> list[str]:
    """The section's bullet points and table."""
    counts = runs[0].counts
    seeds = ", ".join(str(run.seed) for run in runs)
    return [
        f"- RecBole {versions()['recbole']} GRU4Rec with its defaults (embedding 64, hidden 128, "
        "1 GRU layer, dropout 0.3, CE loss over all items, Adam lr 0.001, batch 2048, up to 300 "
        "epochs, early stopping on validation NDCG@10 with patience 10); CPU, torch threads: "
        f"{counts['torch_threads']}; measured on {measured_on}",
        f"- MovieLens-100K ({counts['users']:,} users, {counts['items']:,} items, "
        f"{counts['ratings']:,} ratings, every rating a positive): per user sorted by time, "
        "each rating after the first predicted from the previous <= 50; the last for test, the "
        f"one before for validation ({counts['train_examples']:,} / "
        f"{counts['valid_examples']:,} / {counts['test_examples']:,} examples); full ranking of "
        "every item, the user's history NOT excluded (RecBole's default for sequential models); "
        f"seeds {seeds}" + (" (mean ± sample std)" if len(runs) > 1 else ""),
        "",
        *table(runs),
        "",
        "- epochs: run until early stopping (best: the epoch whose checkpoint was tested, "
        "from 0); s/epoch: training only; fit s: training and the validation after each epoch",
        "- NDCG@10, history excluded: the same checkpoint, every other item the user rated "
        "masked (reqo's harness convention), not a RecBole figure",
    ]


def train(seeds: list[int], json_path: Path, verbose: bool) -> list[SeedRun]:
    """Run every seed, one after the other, and write the JSON."""
    source = recbole_dataset_directory()
    runs: list[SeedRun] = []
    settings: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="reqo-recbole-gru4rec-") as temporary:
        work = Path(temporary)
        # A private copy of the atomic file, so nothing RecBole does touches the installed wheel.
        data = work / "dataset" / DATASET
        data.mkdir(parents=True)
        shutil.copy2(source / f"{DATASET}.inter", data)
        for seed in seeds:
            print(f"seed {seed}: training GRU4Rec (RecBole 1.2.1)", flush=True)
            run, settings = run_seed(seed, data.parent, work, verbose)
            print(
                f"seed {seed}: {run.epochs} epochs (best {run.best_epoch}), "
                f"{run.seconds_per_epoch:.2f} s/epoch, test NDCG@10 {run.test['ndcg@10']:.4f}",
                flush=True,
            )
            runs.append(run)
            # Written after every seed, so that a long run cut short keeps what it finished.
            write_json(json_path, runs, settings)
    print(f"wrote {json_path}")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", default="2020", help="comma-separated seeds (default 2020)")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"per-seed figures (default {DEFAULT_JSON})"
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
    try:
        seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError:
        parser.error(f"--seeds: {args.seeds!r} is not a list of integers")
    if not seeds:
        parser.error("--seeds: no seed given")
    if args.threads < 0:
        parser.error("--threads: 0 (torch's default) or more")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    if args.from_json is not None:
        runs, measured_on = read_json(args.from_json)
    else:
        runs, measured_on = train(seeds, args.json, args.verbose), machine()
    lines = report_lines(runs, measured_on)
    if args.no_report:
        print("\n".join(lines))
    else:
        publish(
            "RecBole GRU4Rec on MovieLens-100K: leave-last-one-out, full ranking",
            "bench.recbole_gru4rec",
            argv,
            lines,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
