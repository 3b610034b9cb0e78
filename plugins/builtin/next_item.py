"""What the next-item models (gru4rec, sasrec, next-item-ffn) share: their common
parameters, the device, the progress bar over epochs and early stopping on the validation holdout.

torch is imported inside the functions: loading the built-in plugins must not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from plugins.algorithm import Algorithm, Parameter, ParameterError, UserHistory
from plugins.builtin.sessions import histories_of, recent_items
from plugins.training import TrainingData

if TYPE_CHECKING:
    import torch


def training_parameters(
    *, epochs: int, batch_size: int, learning_rate: float, patience: int
) -> tuple[Parameter, ...]:
    """The training loop's parameters, with each model's defaults."""
    return (
        Parameter(
            "epochs",
            int,
            epochs,
            "passes over the training pairs; with a validation holdout, the most it may take",
            minimum=1,
        ),
        Parameter("batch_size", int, batch_size, "examples per gradient step", minimum=1),
        Parameter("learning_rate", float, learning_rate, "the optimiser's step size", minimum=1e-9),
        Parameter(
            "patience",
            int,
            patience,
            "with a validation holdout (offline evaluation): stop after this many epochs "
            "without a better NDCG@10, keeping the best epoch's weights",
            minimum=1,
        ),
        Parameter("seed", int, 0, "seed of the initial weights, the order, dropout and samples"),
        Parameter(
            "device", str, "auto", "where to train and score", choices=("auto", "cpu", "cuda")
        ),
        Parameter(
            "threads",
            int,
            1,
            "torch's CPU threads while fitting (0: torch's default); see `torch_threads`",
            minimum=0,
        ),
    )


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to `count` (0: left alone) for the calling thread while
    fitting, then set back.

    Training runs many small steps. On these 2-core machines, while another process kept a core
    busy, a GRU4Rec fit of a toy dataset took 0.4 s with one thread and 13 s with torch's
    default two, each parallel region waiting for a descheduled thread; a server trains while
    it serves, so busy cores are the rule there."""
    import torch

    if count <= 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_device(algorithm: str, setting: str) -> None:
    """ParameterError for `device: cuda` where there is no CUDA device."""
    if setting == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ParameterError(algorithm, "device", "'cuda' but no CUDA device is available")


def torch_device(setting: str) -> torch.device:
    """The device a `device` setting names ("auto": CUDA where there is one)."""
    import torch

    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(setting)


def epoch_bar(name: str, epochs: int) -> tqdm[int]:
    """A progress bar over the epochs, on a terminal only (servers and CI logs stay quiet)."""
    return tqdm(
        range(1, epochs + 1), desc=f"{name} epochs", unit="epoch", leave=False, disable=None
    )


def validation_ndcg(model: Algorithm, data: TrainingData) -> float:
    """NDCG@10 on the validation holdout, each user scored by the model's own `user_scores`
    from their training history: the path the server and the evaluation harness take."""
    assert data.validation is not None

    def scores(users: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return model.user_scores(histories_of(data, [int(u) for u in users]))

    return data.validation.mean_ndcg(scores, data.matrix, k=10)


class EarlyStopping:
    """Keeps the network's best weights by validation NDCG@10 and says when to stop: after
    `patience` epochs without a better figure."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.curve: list[float] = []
        """NDCG@10 after each epoch."""
        self.best_epoch = 0
        self.best: dict[str, torch.Tensor] | None = None
        self._waited = 0

    def update(self, epoch: int, ndcg: float, network: torch.nn.Module) -> bool:
        """Record an epoch's figure (a copy of the weights where it is the best so far); True
        where training should stop."""
        self.curve.append(ndcg)
        if self.best is None or ndcg > max(self.curve[:-1]):
            self.best_epoch, self._waited = epoch, 0
            self.best = {k: v.detach().clone() for k, v in network.state_dict().items()}
            return False
        self._waited += 1
        return self._waited >= self.patience


class NextItemAlgorithm(Algorithm):
    """What the torch next-item models share: the device check, the record of the last fit
    (epochs, best epoch, device, validation NDCG and losses per epoch), and fitting on
    `threads` torch threads. Subclasses implement `_fit`."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        check_device(self.name, self.settings["device"])
        self.epochs_trained = 0
        self.best_epoch = 0
        self.device_used = ""
        """The device the last fit trained on ("cpu", "cuda")."""
        self.validation_ndcg: list[float] = []
        """NDCG@10 on the validation holdout after each epoch (empty without one)."""
        self.losses: list[float] = []
        """The mean training loss of each epoch."""

    def fit(self, data: TrainingData) -> None:
        with torch_threads(int(self.settings["threads"])):
            self._fit(data)

    def _start_fit(
        self, data: TrainingData
    ) -> tuple[torch.device, torch.Generator, np.random.Generator]:
        """Record the item count and the device of this fit; its seeded torch and numpy
        generators."""
        return self._start(data.n_items)

    def _start(self, n_items: int) -> tuple[torch.device, torch.Generator, np.random.Generator]:
        """`_start_fit` from the item count alone (for a fit from shards)."""
        import torch

        self.n_items = n_items
        device = torch_device(self.settings["device"])
        self.device_used = device.type
        seed = int(self.settings["seed"])
        generator = torch.Generator(device=device).manual_seed(seed)
        return device, generator, np.random.default_rng(seed)

    def _train_epochs(
        self, network: torch.nn.Module, data: TrainingData, one_epoch: Callable[[], float]
    ) -> None:
        """Up to `epochs` epochs of `one_epoch` (which trains one and returns its mean loss),
        stopping early on the validation NDCG@10 where there is a validation holdout, and
        keeping the best epoch's weights. `network` must already be the model's, so that the
        validation scores through `user_scores`."""
        validate = None if data.validation is None else lambda: validation_ndcg(self, data)
        self._run_epochs(network, one_epoch, validate)

    def _run_epochs(
        self,
        network: torch.nn.Module,
        one_epoch: Callable[[], float],
        validate: Callable[[], float] | None,
    ) -> None:
        """`_train_epochs` with the validation NDCG@10 from `validate` (None: none, all the
        epochs are trained)."""
        stopping = EarlyStopping(int(self.settings["patience"]))
        self.validation_ndcg, self.losses = stopping.curve, []
        epochs = epoch_bar(self.name, int(self.settings["epochs"]))
        for epoch in epochs:
            network.train()
            self.losses.append(one_epoch())
            self.epochs_trained = epoch
            network.eval()
            if validate is None:
                continue
            ndcg = validate()
            epochs.set_postfix_str(f"validation NDCG@10 {ndcg:.4f}", refresh=False)
            if stopping.update(epoch, ndcg, network):
                break
        epochs.close()
        if stopping.best is not None:
            network.load_state_dict(stopping.best)
        self.best_epoch = stopping.best_epoch or self.epochs_trained
        network.eval()

    def _fit(self, data: TrainingData) -> None:
        raise NotImplementedError


class SequenceScoring(NextItemAlgorithm):
    """A next-item model that scores from the latest items of a history (its latest session,
    at most `max_history` of them; both parameters are the subclass's), and Items to Item as
    a one-item history; its state is its network's weights. Subclasses implement `_scores`."""

    network: torch.nn.Module | None

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        """Scores of every item after the latest `max_history` items of each history's latest
        session, one batch."""
        gap, limit = float(self.settings["session_gap"]), int(self.settings["max_history"])
        return self._scores([recent_items(h, self.n_items, gap, limit) for h in histories])

    def item_scores(self, items: Sequence[int]) -> np.ndarray[Any, Any]:
        """Scores of every item after a one-item history of each context item."""
        return self._scores(
            [np.asarray([i] if 0 <= i < self.n_items else [], dtype=np.int64) for i in items]
        )

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        """The network's weights (its buffers included)."""
        if self.network is None:
            return {}
        return {k: v.detach().cpu().numpy().copy() for k, v in self.network.state_dict().items()}

    def _scores(self, sequences: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        """Scores of every item after each sequence of item indices (oldest first)."""
        raise NotImplementedError
