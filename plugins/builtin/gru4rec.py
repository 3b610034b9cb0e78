"""GRU4Rec (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018), as its authors define
it: a GRU reads a session's items one by one and scores every item as the next.

Training follows the authors' code (GRU4Rec_PyTorch_Official), not the third-party ports whose
flaws Hidasi & Czapp (RecSys 2023) list:
- sessions are each user's interactions cut at pauses of more than `session_gap` seconds;
- session-parallel mini-batches: `batch_size` slots each walk through one session, one
  (item, next item) pair per step; a slot that takes a new session has its hidden state reset to
  zero, and the state is carried between steps without backpropagating through it;
- the negatives of a step are the other slots' targets plus `n_sample` items drawn by
  popularity^`sample_alpha`, shared by the mini-batch;
- cross-entropy over target and negatives (logQ-corrected, as in the authors' tuned settings),
  or BPR-max with score regularisation; Adagrad with momentum (the authors') or Adam; sparse
  updates of the item tables.

Serving reads the latest session of the user's history as of the request (after the last pause
of more than `session_gap`, at most `max_history` items) from a zero state, so a new interaction
changes the next recommendation at once. An empty history (or one of unknown items) scores by
the output biases alone, which training makes a popularity-like prior.

The input of an item (`item_features`) is its learned id embedding, a learned projection of its
fixed vector from the host's item embeddings (TrainingData.item_vectors; zeros where an item has
none; saved with the model, so it serves without the provider), or both. Asking for vectors where
there are none fails (ParameterError names `item_features`) rather than silently training a
different model.

torch is imported when a model is built, not with the module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from plugins.algorithm import Algorithm, Parameter, ParameterError, UserHistory
from plugins.builtin.image_embedders import DEFAULT_EMBEDDER
from plugins.builtin.next_item import (
    NextItemAlgorithm,
    torch_device,
    training_parameters,
)
from plugins.builtin.sessions import (
    NegativeSampler,
    popularity_distribution,
    recent_items,
    session_parallel,
    sessions,
)
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData

if TYPE_CHECKING:
    import torch

    from plugins.builtin.gru4rec_network import Optimiser, SessionGRU

SAMPLE_CHUNK = 256
"""Steps of negatives drawn at once."""


class GRU4Rec(NextItemAlgorithm):
    """GRU4Rec with the authors' defaults: one layer of 100 units, 64 slots, Adagrad at 0.05,
    2,048 sampled negatives, cross-entropy with logQ correction (`sample_alpha` 0.75 where
    their code has 0.5).

    On MovieLens-100K's ratings (leave-last-one-out, one seed), the logQ correction was the
    setting that mattered: NDCG@10 0.055 without it, 0.067 with it. With it, the session gap
    hardly did (30 minutes 0.067, one day 0.064, the whole history 0.067); the whole history
    with dropout 0.3 (hidden) and 0.2 (input) over 20 epochs gave 0.068, and 512 negatives
    instead of 2,048 about the same at a third of the time per epoch.
    """

    name = "gru4rec"
    description = (
        "GRU over the user's current session (session-parallel training with sampled negatives); "
        "scores the next item"
    )
    parameters = (
        Parameter(
            "session_gap",
            float,
            1800.0,
            "seconds without an interaction that end a session (0 or below: each user's whole "
            "history is one session)",
        ),
        Parameter("layers", int, 1, "GRU layers", minimum=1, maximum=8),
        Parameter("hidden", int, 100, "units of each GRU layer", minimum=1),
        Parameter(
            "embedding",
            int,
            0,
            "size of the item id input embedding (0: the input shares the output item "
            "embeddings, the authors' constrained embedding)",
            minimum=0,
        ),
        Parameter(
            "item_features",
            str,
            "id",
            "the item input: id (learned embedding), vectors (a learned projection of the "
            "item's image embedding) or both",
            choices=("id", "vectors", "both"),
        ),
        Parameter("embedder", str, DEFAULT_EMBEDDER, "with vectors: the image embedder"),
        Parameter("embedder_settings", dict, {}, "with vectors: the embedder's parameters"),
        Parameter("image_property", str, "image", "with vectors: the item property to embed"),
        Parameter(
            "loss", str, "cross-entropy", "training loss", choices=("cross-entropy", "bpr-max")
        ),
        Parameter("bpreg", float, 1.0, "bpr-max: weight of the score regularisation", minimum=0),
        Parameter("elu_param", float, 0.5, "bpr-max: ELU on the scores first (0: none)", minimum=0),
        Parameter(
            "logq",
            float,
            1.0,
            "cross-entropy: weight of the logQ correction of the negatives' sampling bias (0: "
            "none; the authors' tuned cross-entropy settings all use 1)",
            minimum=0,
        ),
        Parameter("n_sample", int, 2048, "extra negatives per step, shared by the batch", 0),
        Parameter("sample_alpha", float, 0.75, "negatives drawn by popularity^alpha", 0, 1),
        Parameter("dropout_embedding", float, 0.0, "share of the input dropped", 0, 0.95),
        Parameter("dropout_hidden", float, 0.0, "share of each GRU output dropped", 0, 0.95),
        Parameter(
            "optimizer",
            str,
            "adagrad",
            "adagrad (the authors', with momentum) or adam (wants a learning_rate near 0.001)",
            choices=("adagrad", "adam"),
        ),
        Parameter("momentum", float, 0.0, "adagrad: momentum", minimum=0, maximum=0.99),
        Parameter(
            "session_order",
            str,
            "shuffle",
            "order of the sessions in an epoch: shuffle (seeded, per epoch) or time (by start)",
            choices=("shuffle", "time"),
        ),
        Parameter("max_history", int, 50, "latest items of a session read when serving", 1),
        *training_parameters(epochs=10, batch_size=64, learning_rate=0.05, patience=3),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.network: SessionGRU | None = None

    def _fit(self, data: TrainingData) -> None:
        import torch

        from plugins.builtin.gru4rec_network import AdagradM, Adam

        s = self.settings
        device, generator, rng = self._start_fit(data)
        vectors = self._item_vectors(data)
        network = self._build(device, 0 if vectors is None else vectors.shape[1])
        network.initialise(generator)
        if vectors is not None:
            network.get_buffer("vectors").copy_(torch.from_numpy(vectors))
        self.network = network

        starts, ends = sessions(data.indptr, data.timestamps, float(s["session_gap"]))
        items = torch.from_numpy(data.items).to(device)
        counts = np.bincount(data.items, minlength=data.n_items).astype(np.float64)
        sampler = NegativeSampler(
            popularity_distribution(data.items, data.n_items, float(s["sample_alpha"])),
            int(s["n_sample"]),
            rng,
            SAMPLE_CHUNK,
        )
        log_counts = torch.from_numpy(np.log(np.maximum(counts, 1.0))).float().to(device)
        optimiser: Optimiser = (
            AdagradM(list(network.parameters()), float(s["learning_rate"]), float(s["momentum"]))
            if s["optimizer"] == "adagrad"
            else Adam(network, float(s["learning_rate"]))
        )
        batches = _Batches(starts, ends, items, sampler, log_counts, generator)

        def one_epoch() -> float:
            if s["session_order"] == "time":
                order = np.argsort(data.timestamps[starts], kind="stable")
            else:
                order = rng.permutation(len(starts))
            return self._epoch(network, optimiser, order, batches)

        self._train_epochs(network, data, one_epoch)

    def _epoch(
        self,
        network: SessionGRU,
        optimiser: Optimiser,
        order: np.ndarray[Any, Any],
        batches: _Batches,
    ) -> float:
        """One pass over every session's pairs, sessions in `order`; the mean loss per pair."""
        import torch

        from plugins.builtin.gru4rec_network import bpr_max, cross_entropy

        s = self.settings
        batch_size, hidden = int(s["batch_size"]), int(s["hidden"])
        items, sampler, log_counts = batches.items, batches.sampler, batches.log_counts
        device = items.device
        dropout = (float(s["dropout_embedding"]), float(s["dropout_hidden"]))
        logq, n_sample = float(s["logq"]), int(s["n_sample"])
        slots = min(batch_size, len(order))
        state = [torch.zeros(slots, hidden, device=device) for _ in range(int(s["layers"]))]
        total, pairs = 0.0, 0
        for step in session_parallel(batches.starts, batches.ends, order, batch_size):
            if step.keep is not None:
                keep = torch.from_numpy(step.keep).to(device)
                state = [h[keep] for h in state]
            if step.reset.any():
                reset = torch.from_numpy(step.reset).to(device)[:, None]
                state = [h.masked_fill(reset, 0.0) for h in state]
            if n_sample == 0 and len(step.inputs) < 2:
                break  # a lone slot without sampled negatives has nothing to rank against
            positions = torch.from_numpy(step.inputs).to(device)
            negatives = torch.from_numpy(sampler.draw()).to(device)
            targets = torch.cat([items[positions + 1], negatives])
            output = network.step(items[positions], state, dropout, batches.generator)
            scores = network.score_some(output, targets)
            if s["loss"] == "bpr-max":
                loss = bpr_max(scores, float(s["bpreg"]), float(s["elu_param"]))
            else:
                # logQ: the in-batch targets were drawn by popularity, the samples by
                # popularity^alpha (the authors' correction, on raw counts).
                alpha = float(s["sample_alpha"])
                correction = None
                if logq > 0:
                    rows = len(positions)
                    log_q = torch.cat([log_counts[targets[:rows]], alpha * log_counts[negatives]])
                    correction = logq * log_q
                loss = cross_entropy(scores, correction)
            optimiser.zero_grad()
            # As the authors do: summed over the slots, divided by the full batch size.
            (loss / batch_size).backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            state = [h.detach() for h in state]
            total += float(loss.detach())
            pairs += len(positions)
        return total / max(pairs, 1)

    def _item_vectors(self, data: TrainingData) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        """The fixed item vectors that `item_features` asks for (None for ids only)."""
        s = self.settings
        if s["item_features"] == "id":
            return None
        prop = s["image_property"]
        if data.item_vectors is None:
            raise ParameterError(
                self.name,
                "item_features",
                f"'{s['item_features']}' needs item vectors, and this host provides none "
                "(use item_features: id)",
            )
        if prop not in data.item_properties.column_names:
            raise ParameterError(
                self.name,
                "item_features",
                f"'{s['item_features']}' needs item vectors, and the items have no property "
                f"'{prop}' (set image_property, or use item_features: id)",
            )
        embeddings = data.item_vectors(
            embedder=s["embedder"], settings=s["embedder_settings"], image_property=prop
        )
        vectors = np.zeros((data.n_items, embeddings.vectors.shape[1]), dtype=np.float32)
        rows = min(data.n_items, len(embeddings.vectors))
        present = embeddings.present[:rows]
        if present.any():
            # Centred on the catalog's mean and scaled to unit length again: image embeddings
            # of one catalog share a large common part (all-positive pixels, pooled CNN
            # features), and what tells look-alikes apart is the rest.
            centred = embeddings.vectors[:rows] - embeddings.vectors[:rows][present].mean(axis=0)
            norms = np.linalg.norm(centred, axis=1, keepdims=True)
            centred = np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)
            vectors[:rows] = np.where(present[:, None], centred, np.float32(0.0))
        return vectors

    def _build(self, device: torch.device, vector_size: int) -> SessionGRU:
        from plugins.builtin.gru4rec_network import SessionGRU

        s = self.settings
        return SessionGRU(
            self.n_items,
            hidden=int(s["hidden"]),
            layers=int(s["layers"]),
            embedding=int(s["embedding"]),
            features=str(s["item_features"]),
            vector_size=vector_size,
            device=device,
        )

    # -- scoring and state ------------------------------------------------------------------------

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        """Scores of every item after the latest session of each history, one batch."""
        gap, limit = float(self.settings["session_gap"]), int(self.settings["max_history"])
        return self._scores([recent_items(h, self.n_items, gap, limit) for h in histories])

    def item_scores(self, items: Sequence[int]) -> np.ndarray[Any, Any]:
        """Scores of every item after a one-item session of each context item."""
        return self._scores(
            [np.asarray([i] if 0 <= i < self.n_items else [], dtype=np.int64) for i in items]
        )

    def _scores(self, sequences: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        import torch

        if self.network is None:
            raise RuntimeError(f"the '{self.name}' model is not fitted")
        device = self.network.output.device
        with torch.inference_mode():
            state = self.network.final_state([torch.from_numpy(s).to(device) for s in sequences])
            scores = self.network.score_all(state)
        return np.asarray(scores.float().cpu().numpy(), dtype=np.float32)

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        """The network's weights, and the fixed item vectors where the input reads them."""
        if self.network is None:
            return {}
        return {k: v.detach().cpu().numpy().copy() for k, v in self.network.state_dict().items()}

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        import torch

        vectors = arrays.get("vectors")
        network = self._build(
            torch_device(self.settings["device"]), 0 if vectors is None else vectors.shape[1]
        )
        network.load_state_dict({k: torch.from_numpy(np.array(a)) for k, a in arrays.items()})
        network.eval()
        self.network = network


@dataclass(frozen=True)
class _Batches:
    """What each epoch of a fit walks through: the sessions ([start, end) positions), every
    interaction's item on the device, the negative sampler, log item counts (logQ) and the
    generator of dropout."""

    starts: np.ndarray[Any, np.dtype[np.int64]]
    ends: np.ndarray[Any, np.dtype[np.int64]]
    items: torch.Tensor
    sampler: NegativeSampler
    log_counts: torch.Tensor
    generator: torch.Generator


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [GRU4Rec]
