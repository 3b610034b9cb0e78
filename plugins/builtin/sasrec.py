"""SASRec (Kang & McAuley, ICDM 2018): self-attentive sequential recommendation. Item embeddings
plus learned position embeddings go through a few causal Transformer blocks; the state after
each position scores every item as the next one.

Training follows the later finding that SASRec trained with softmax cross-entropy over all
items does far better than with the paper's binary cross-entropy against one negative per
position (Klenitskiy & Vasilev, RecSys 2023, "Turning Dross Into Gold Loss", where it then
beats BERT4Rec; Petrov & Macdonald's gSASRec, RecSys 2023, traces the gap to the
overconfidence that few sampled negatives cause):
- each user's time-ordered interactions, cut at pauses of more than `session_gap` seconds
  (0, the default: the whole history is one sequence), are cut from their end into windows of
  at most `max_history` (item, next item) pairs, so that every pair is learnt once;
- every position of a window predicts the next item: softmax cross-entropy over every item
  (`n_sample` 0), or over the target and `n_sample` uniformly drawn negatives shared by the
  batch (for catalogs too large for a full softmax), or the paper's `loss: bce`;
- Adam (beta2 0.98, the paper's); early stopping on the validation NDCG@10 where the fit has a
  validation holdout.

Serving reads the latest `max_history` items of the latest session of the user's history as of
the request (see plugins.builtin.sessions.recent_items), so a new interaction changes the next
recommendation at once. Scores are logits of either sign; an empty history (or one of unknown
items) scores by the output biases alone, which training makes a popularity-like prior.

torch is imported when a model is built, not with the module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from plugins.algorithm import Algorithm, Parameter, ParameterError
from plugins.builtin.next_item import SequenceScoring, torch_device, training_parameters
from plugins.builtin.sessions import sessions
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData

if TYPE_CHECKING:
    import torch

    from plugins.builtin.sasrec_network import SelfAttentive


class SASRec(SequenceScoring):
    """SASRec with full softmax cross-entropy: 2 blocks of 96 units, one head, the latest 50
    items, dropout 0.3, Adam at 0.002, 128 windows a batch.

    Chosen on MovieLens-100K's validation holdout (leave-last-one-out: each user's rating
    before the last; NDCG@10 ranking every item but the user's training ones; seeds 1-3, mean
    +- sample std). With 64 units: dropout 0.3 and Adam at 0.002 scored 0.124 +- 0.002 (0.121
    +- 0.005 again once dropout drew its masks another way), dropout 0.2 0.119, a step size of
    0.003 0.117-0.121; 200 items, one block, two heads and batches of 64 or 256 did no better
    (one seed). 96 units scored 0.131 +- 0.001 at about 1.5 times the time of an epoch (about
    3.9 s on one core of this project's 2-core machines); 128 units would take over 5 s. The
    paper's binary cross-entropy with one negative scored 0.076 and a softmax over 512
    uniformly sampled negatives 0.070, where the full softmax scored 0.121 (one seed, 64 units,
    dropout 0.2, Adam at 0.001). The best epochs fell between 24 and 55.
    """

    name = "sasrec"
    description = (
        "self-attentive sequential model (causal Transformer over the user's latest items); "
        "scores the next item"
    )
    relevance_threshold: ClassVar[float | None] = None  # logits, of either sign
    parameters = (
        Parameter(
            "session_gap",
            float,
            0.0,
            "seconds without an interaction that end a session (0 or below: each user's whole "
            "history is one sequence)",
        ),
        Parameter("layers", int, 2, "Transformer blocks", minimum=1, maximum=8),
        Parameter("heads", int, 1, "attention heads (must divide hidden)", minimum=1),
        Parameter("hidden", int, 96, "size of the item embeddings and of every state", minimum=1),
        Parameter(
            "max_history",
            int,
            50,
            "the longest window of items read, in training and when serving (the latest ones)",
            minimum=1,
        ),
        Parameter(
            "dropout",
            float,
            0.3,
            "share dropped of the input, the attention weights and each block's outputs",
            0,
            0.95,
        ),
        Parameter(
            "loss",
            str,
            "cross-entropy",
            "cross-entropy (softmax over every item, or over `n_sample` negatives) or bce (the "
            "paper's: one negative per position)",
            choices=("cross-entropy", "bce"),
        ),
        Parameter(
            "n_sample",
            int,
            0,
            "cross-entropy: negatives drawn uniformly per batch (0: every item, a full softmax)",
            minimum=0,
        ),
        *training_parameters(epochs=100, batch_size=128, learning_rate=2e-3, patience=10),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        if self.settings["hidden"] % self.settings["heads"]:
            raise ParameterError(
                self.name,
                "heads",
                f"{self.settings['heads']} heads do not divide hidden {self.settings['hidden']}",
            )
        self.network: SelfAttentive | None = None

    def _fit(self, data: TrainingData) -> None:
        import torch

        from plugins.builtin.sasrec_network import Training, batches, train_pass, windows

        s = self.settings
        device, generator, rng = self._start_fit(data)
        network = self._build(device)
        network.initialise(generator)
        self.network = network
        starts, ends = sessions(data.indptr, data.timestamps, float(s["session_gap"]))
        firsts, sizes = windows(starts, ends, int(s["max_history"]))
        optimiser = torch.optim.Adam(
            network.parameters(), lr=float(s["learning_rate"]), betas=(0.9, 0.98)
        )
        training = Training(
            network, optimiser, torch.from_numpy(data.items).to(device), firsts, sizes, generator
        )

        def one_epoch() -> float:
            total, pairs = train_pass(training, batches(sizes, int(s["batch_size"]), rng), s)
            return total / max(pairs, 1)

        self._train_epochs(network, data, one_epoch)

    def _build(self, device: torch.device) -> SelfAttentive:
        from plugins.builtin.sasrec_network import SelfAttentive

        s = self.settings
        return SelfAttentive(
            self.n_items,
            hidden=int(s["hidden"]),
            layers=int(s["layers"]),
            heads=int(s["heads"]),
            length=int(s["max_history"]),
            device=device,
        )

    # -- scoring and state ------------------------------------------------------------------------

    def _scores(self, sequences: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        import torch

        if self.network is None:
            raise RuntimeError(f"the '{self.name}' model is not fitted")
        device = self.network.items.device
        with torch.inference_mode():
            state = self.network.last_states([torch.from_numpy(s).to(device) for s in sequences])
            scores = self.network.score_all(state)
        return np.asarray(scores.float().cpu().numpy(), dtype=np.float32)

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        import torch

        network = self._build(torch_device(self.settings["device"]))
        network.load_state_dict({k: torch.from_numpy(np.array(a)) for k, a in arrays.items()})
        network.eval()
        self.network = network


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [SASRec]
