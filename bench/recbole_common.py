"""What the RecBole reference benchmarks share: running RecBole 1.2.1 in this environment (two
shims for third-party code), its MovieLens-100K file, epoch timing, and the JSON files they write.

    bench.recbole_gru4rec   RecBole's sequential models (GRU4Rec, SASRec), leave-last-one-out
    bench.recbole_general   RecBole's general models (SLIMElastic, ADMMSLIM), random 80/10/10

Each writes `evaluation/recbole_<model>.json` (the model's name in lower case);
`recbole_reference(model)` reads one back, for the benchmarks that compare against it.

The shims, inside the benchmark's process only: numpy 2 gets back the aliases `np.float_`,
`np.complex_`, `np.unicode_` (float64, complex128, str_) that RecBole 1.2.1's Config assigns
from; and `torch.utils.tensorboard` becomes a stub whose SummaryWriter does nothing (RecBole's
Trainer always opens one; the real one needs the tensorboard package and writes
`log_tensorboard/` into the working directory; nothing here reads it).
"""

from __future__ import annotations

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
from pathlib import Path
from typing import Any

import numpy

ROOT = Path(__file__).resolve().parent.parent
EVALUATION = ROOT / "evaluation"
DATASET = "ml-100k"
QUIET: dict[str, Any] = {
    "use_gpu": False,
    "gpu_id": "",
    "log_wandb": False,
    "show_progress": False,
    "save_dataset": False,
    "save_dataloaders": False,
}
"""Settings every reference run adds to RecBole's: CPU, no progress bars, nothing saved but the
best checkpoint (into a temporary directory)."""
TRAINING = (
    "epochs",
    "stopping_step",
    "eval_step",
    "train_batch_size",
    "eval_batch_size",
    "learner",
    "learning_rate",
    "weight_decay",
    "train_neg_sample_args",
    "valid_metric",
    "metric_decimal_place",
    "reproducibility",
    "shuffle",
)
"""RecBole's training settings written to each JSON beside the model's own."""


def json_path(model: str) -> Path:
    """Where the reference run of RecBole's `model` writes its figures."""
    return EVALUATION / f"recbole_{model.lower()}.json"


def recbole_reference(model: str) -> dict[str, Any] | None:
    """The record a reference run of RecBole's `model` (any case: "SASRec", "sasrec") wrote, or
    None where it has not been run here.

    Its `test_mean_std` maps each figure ("ndcg@10", "recall@20", ...) to {"mean", "std"} over
    the seeds in `seeds`; sequential models also have `test_history_excluded_mean_std` (the
    same checkpoint with the user's other rated items out of the ranking) and
    `seconds_per_epoch`; general models `train_seconds` (building the model plus its training
    epochs, validation left out).
    """
    path = json_path(model)
    if not path.is_file():
        return None
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return record


def prepare_recbole() -> None:
    """Install both shims (idempotent); call before importing anything of RecBole's."""
    _stub_tensorboard()
    _numpy_aliases()


def _stub_tensorboard() -> None:
    """Put a do-nothing `torch.utils.tensorboard` into sys.modules (this process only).

    RecBole imports SummaryWriter at module level and its Trainer always opens one; the real
    module needs the tensorboard package and would write event files into the working directory.
    Nothing in these benchmarks reads them. This replaces a third-party import, not reqo's code.
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
def bare_argv() -> Iterator[None]:
    """RecBole's Config reads `--key=value` pairs from sys.argv; hide the benchmark's options."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def recbole_directory() -> Path:
    """The installed RecBole package's directory."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("recbole is not installed: pip install --no-deps recbole==1.2.1")
    return Path(next(iter(spec.submodule_search_locations)))


def recbole_dataset_directory() -> Path:
    """The directory inside the installed RecBole wheel that holds `ml-100k/ml-100k.inter`."""
    directory = recbole_directory() / "dataset_example" / DATASET
    if not (directory / f"{DATASET}.inter").is_file():
        raise SystemExit(f"{directory / (DATASET + '.inter')} is missing from the RecBole wheel")
    return directory


def model_setting_names(model: str) -> list[str]:
    """The settings RecBole's `properties/model/<model>.yaml` gives the model (its defaults)."""
    path = recbole_directory() / "properties" / "model" / f"{model}.yaml"
    if not path.is_file():
        raise SystemExit(f"RecBole 1.2.1 has no model {model!r} ({path} is missing)")
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        key, colon, _ = line.partition(":")
        if colon and key.strip() and not key.startswith((" ", "#")):
            names.append(key.strip())
    return names


@contextlib.contextmanager
def private_dataset(prefix: str) -> Iterator[tuple[Path, Path]]:
    """A temporary working directory and, inside it, a `data_path` holding a private copy of
    the atomic file, so that nothing RecBole does touches the installed wheel."""
    source = recbole_dataset_directory()
    with tempfile.TemporaryDirectory(prefix=prefix) as temporary:
        work = Path(temporary)
        data = work / "dataset" / DATASET
        data.mkdir(parents=True)
        shutil.copy2(source / f"{DATASET}.inter", data)
        yield work, data.parent


class TrainingBudgetSpent(Exception):
    """Raised by a timed trainer at the start of an epoch once its time budget is spent."""

    def __init__(self, epochs: int, minutes: float) -> None:
        super().__init__(f"stopped after {epochs} epochs: the {minutes:g}-minute budget is spent")
        self.epochs = epochs


def timed_trainer(base: Any, label: str, budget_minutes: float | None = None) -> Any:
    """A subclass of RecBole's trainer class `base` that times each training epoch (wall clock
    and this process's CPU time) and each validation, keeps the validation scores, and prints a
    line per validation.

    The CPU time is there because the wall clock of a reniced run on a shared machine counts
    the time other processes held the cores; with one torch thread, CPU seconds are about the
    wall seconds the epoch takes on an idle core.

    With `budget_minutes`, an epoch (bar the first) that would start later than that after the
    trainer was made raises TrainingBudgetSpent instead: the epochs before it, their validation
    and the best checkpoint stay as RecBole left them (`best_valid_result`,
    `saved_model_file`)."""

    class Timed(base):  # type: ignore[misc]
        def __init__(self, config: Any, model: Any) -> None:
            super().__init__(config, model)
            self.train_seconds: list[float] = []
            self.train_cpu_seconds: list[float] = []
            self.valid_seconds: list[float] = []
            self.valid_scores: list[float] = []
            self.deadline = (
                None if budget_minutes is None else time.monotonic() + 60.0 * budget_minutes
            )

        def _train_epoch(self, *args: Any, **kwargs: Any) -> Any:
            spent = self.deadline is not None and time.monotonic() > self.deadline
            if spent and self.train_seconds:
                assert budget_minutes is not None
                raise TrainingBudgetSpent(len(self.train_seconds), budget_minutes)
            start, cpu = time.perf_counter(), time.process_time()
            loss = super()._train_epoch(*args, **kwargs)
            self.train_seconds.append(time.perf_counter() - start)
            self.train_cpu_seconds.append(time.process_time() - cpu)
            return loss

        def _valid_epoch(self, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            score, result = super()._valid_epoch(*args, **kwargs)
            self.valid_seconds.append(time.perf_counter() - start)
            self.valid_scores.append(float(score))
            epoch = len(self.train_seconds) - 1
            print(
                f"  {label} epoch {epoch:3d}: train {self.train_seconds[-1]:.2f} s "
                f"({self.train_cpu_seconds[-1]:.2f} s CPU), "
                f"valid {self.config['valid_metric']} {score:.4f}",
                flush=True,
            )
            return score, result

    return Timed


def load_best(trainer: Any, model: Any) -> None:
    """Load the best checkpoint that RecBole's `trainer.fit(saved=True)` wrote into `model`.

    torch >= 2.6 loads with weights_only=True by default and RecBole's checkpoint holds its
    Config object, so `trainer.evaluate(load_best_model=True)` would fail; RecBole wrote this
    file a moment ago, so it is loaded here with weights_only=False.
    """
    import torch

    checkpoint = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))


def best_epoch(scores: list[float]) -> int:
    """The epoch RecBole keeps: the last one whose score reached the best so far (`>=`)."""
    best, epoch = float("-inf"), -1
    for index, score in enumerate(scores):
        if score >= best:
            best, epoch = score, index
    return epoch


def figures(result: Any) -> dict[str, float]:
    """RecBole's result (an OrderedDict of metric@k -> value) as plain floats."""
    return {str(key): float(value) for key, value in dict(result).items()}


def plain(value: Any) -> Any:
    """A config value as JSON can hold it."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return str(value)


def settings_of(config: Any, model: str) -> dict[str, Any]:
    """The effective settings of a run: the model's own (RecBole's defaults unless the
    benchmark set them) and RecBole's training settings."""
    names = [*model_setting_names(model), *(name for name in TRAINING)]
    return {name: plain(config[name]) for name in dict.fromkeys(names)}


def summary(values: list[float], digits: int = 4) -> str:
    """`mean ± sample std` (the mean alone for one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def mean_std(values: list[float]) -> dict[str, float]:
    """{"mean", "std"}: the sample std, 0 for one value."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def versions() -> dict[str, str | None]:
    """Python's version and the versions of the libraries the figures depend on."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("recbole", "torch", "numpy", "scipy", "scikit-learn", "pandas"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def parse_seeds(text: str) -> list[int] | None:
    """Comma-separated seeds, or None where the text is not such a list (or lists none)."""
    try:
        seeds = [int(seed) for seed in text.split(",") if seed.strip()]
    except ValueError:
        return None
    return seeds or None


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a run's record as indented JSON (the directory made where missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
