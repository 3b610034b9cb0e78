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
the output biases alone (as serving weighs them), which training makes a popularity-like prior.

The input of an item (`item_features`) is its learned id embedding, a learned projection of its
fixed vector from the host's item embeddings (TrainingData.item_vectors; zeros where an item has
none; saved with the model, so it serves without the provider), or both. Asking for vectors where
there are none fails (ParameterError names `item_features`) rather than silently training a
different model.

With vectors, `shrinkage` (k) keeps rarely seen items from being held out by their own
parameters: the item bias adds a learned linear function of the item's vector, and serving
weighs each item's free output embedding and bias by n / (n + k), n its training interactions
(see SessionGRU.score_all for why). With ids alone there is nothing else to score an item by,
and the setting has no effect.

`fit_shards` learns from a snapshot read in shards (plugins.shards), for training data larger
than memory: with `item_features: id` only, since the item vectors come from the host's
provider, which a fit from shards has none of (ParameterError otherwise).

torch is imported when a model is built, not with the module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from plugins.algorithm import Algorithm, Parameter, ParameterError
from plugins.builtin.image_embedders import DEFAULT_EMBEDDER
from plugins.builtin.next_item import (
    SequenceScoring,
    torch_device,
    torch_threads,
    training_parameters,
)
from plugins.builtin.sessions import (
    Carried,
    NegativeSampler,
    Pause,
    count_distribution,
    sessions,
)
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData

if TYPE_CHECKING:
    import torch

    from plugins.builtin.gru4rec_network import Optimiser, SessionGRU, Training
    from plugins.shards import SnapshotShards

SAMPLE_CHUNK = 256
"""Steps of negatives drawn at once."""
SHRINKAGE = 5.0
"""`shrinkage`'s default, with vectors on the scoring side; chosen on bench.sequence's synthetic
sessions (BENCHMARKS.md): it lifts the rare test items' NDCG@10 above id-only's without losing
the overall figure, where larger values lift the rare items further at some cost overall."""


class GRU4Rec(SequenceScoring):
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
        Parameter(
            "shrinkage",
            float,
            SHRINKAGE,
            "with vectors: the item bias gets a part learned from the item's vector, and "
            "serving weighs an item's free output embedding and bias by n / (n + shrinkage) "
            "(n: its training interactions), so that a rarely seen item is scored by its "
            "vector (0: neither, the original; no effect with item_features: id)",
            minimum=0,
        ),
        *training_parameters(epochs=10, batch_size=64, learning_rate=0.05, patience=3),
    )

    learns_from_shards = True

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.network: SessionGRU | None = None

    @classmethod
    def can_learn_from_shards(cls, settings: Mapping[str, Any]) -> bool:
        """From shards with `item_features: id` only (item vectors need the whole catalog's
        embeddings from the host, which a fit from shards has no provider of)."""
        return str(settings.get("item_features", "id")) == "id"

    def _fit(self, data: TrainingData) -> None:
        import torch

        from plugins.builtin.gru4rec_network import Walk, train_pass

        device, generator, rng = self._start_fit(data)
        vectors = self._item_vectors(data)
        counts = np.bincount(data.items, minlength=data.n_items)
        training = self._start_training(device, generator, rng, counts, vectors)
        starts, ends = sessions(data.indptr, data.timestamps, float(self.settings["session_gap"]))
        walk = Walk(starts, ends, torch.from_numpy(data.items).to(device))

        def one_epoch() -> float:
            order = self._order(starts, data.timestamps, rng)
            total, pairs, _ = train_pass(training, walk, order, self.settings)
            return total / max(pairs, 1)

        self._train_epochs(training.network, data, one_epoch)

    def fit_shards(self, shards: SnapshotShards) -> None:
        """Learn from a snapshot read in shards: each epoch walks the shards (in a seeded
        random order, or in bucket order with `session_order: time`), each shard's sessions
        session-parallel as in `fit` (shuffled, or by start time, within the shard), for
        `epochs` epochs (no validation holdout, so no early stopping). The slots do not drain
        between shards: the sessions under way at the end of one, with their hidden state,
        go on first in the next, so that the batch stays full until the epoch's last shard.

        Only with `item_features: id`: ParameterError otherwise."""
        if not self.can_learn_from_shards(self.settings):
            raise ParameterError(
                self.name,
                "item_features",
                f"'{self.settings['item_features']}' cannot be trained from shards (item "
                "vectors come from the host's provider); use item_features: id",
            )
        with torch_threads(int(self.settings["threads"])):
            self._fit_shards(shards)

    def _fit_shards(self, shards: SnapshotShards) -> None:
        import torch

        from plugins.builtin.gru4rec_network import Walk, train_pass

        device, generator, rng = self._start(shards.n_items)
        training = self._start_training(device, generator, rng, shards.item_counts, None)
        gap = float(self.settings["session_gap"])
        shuffled = self.settings["session_order"] == "shuffle"
        batch_size = int(self.settings["batch_size"])

        def one_epoch() -> float:
            total, pairs = 0.0, 0
            carried = Carried.of([])
            state: list[torch.Tensor] = []
            pieces = shards.shards(rng if shuffled else None)
            shard = next(pieces, None)
            while shard is not None:
                following = next(pieces, None)
                starts, ends = sessions(shard.indptr, shard.timestamps, gap)
                order = self._order(starts, shard.timestamps, rng)
                # The sessions that earlier shards left under way (or never took) go first,
                # with their hidden state, so that the slots stay full from shard to shard.
                items, starts, ends, order = carried.before(shard.items, starts, ends, order)
                if following is not None and len(order) < batch_size:
                    # Too few to fill the slots: they wait for the next shard's sessions.
                    parts = [items[starts[k] : ends[k]] for k in order]
                    carried, shard = Carried.of(parts, carried.busy), following
                    continue
                walk = Walk(starts, ends, torch.from_numpy(items).to(device))
                pause = None if following is None else Pause()
                loss, count, state = train_pass(
                    training, walk, order, self.settings, state=state, pause=pause
                )
                total, pairs = total + loss, pairs + count
                if pause is not None:
                    carried = pause.carried(items, starts, ends)
                shard = following
            return total / max(pairs, 1)

        self._run_epochs(training.network, one_epoch, None)

    def _start_training(
        self,
        device: torch.device,
        generator: torch.Generator,
        rng: np.random.Generator,
        counts: np.ndarray[Any, Any],
        vectors: np.ndarray[Any, np.dtype[np.float32]] | None,
    ) -> Training:
        """A fresh network (the model's from now on), its optimiser, and the negative sampler
        and logQ correction from each item's interaction count."""
        import torch

        from plugins.builtin.gru4rec_network import AdagradM, Adam, Training

        s = self.settings
        network = self._build(device, 0 if vectors is None else vectors.shape[1])
        network.initialise(generator)
        if vectors is not None:
            network.get_buffer("vectors").copy_(torch.from_numpy(vectors))
        if network.free_weight is not None:
            network.set_shrinkage(counts, float(s["shrinkage"]))
        self.network = network
        sampler = NegativeSampler(
            count_distribution(counts, float(s["sample_alpha"])),
            int(s["n_sample"]),
            rng,
            SAMPLE_CHUNK,
        )
        log_counts = np.log(np.maximum(np.asarray(counts, dtype=np.float64), 1.0))
        optimiser: Optimiser = (
            AdagradM(list(network.parameters()), float(s["learning_rate"]), float(s["momentum"]))
            if s["optimizer"] == "adagrad"
            else Adam(network, float(s["learning_rate"]))
        )
        return Training(
            network, optimiser, sampler, torch.from_numpy(log_counts).float().to(device), generator
        )

    def _order(
        self,
        starts: np.ndarray[Any, Any],
        timestamps: np.ndarray[Any, Any],
        rng: np.random.Generator,
    ) -> np.ndarray[Any, Any]:
        """The order of the sessions (that begin at `starts`) in a pass: `session_order`."""
        if self.settings["session_order"] == "time":
            return np.argsort(timestamps[starts], kind="stable")
        return rng.permutation(len(starts))

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

    def _build(
        self, device: torch.device, vector_size: int, shrinkage: bool | None = None
    ) -> SessionGRU:
        """A network on the meta device's shapes, given storage on `device`. `shrinkage`:
        whether it weighs the free item parameters when serving (None: as the settings say;
        a model saved before the parameter existed has no weights to read)."""
        from plugins.builtin.gru4rec_network import SessionGRU

        s = self.settings
        if shrinkage is None:
            shrinkage = float(s["shrinkage"]) > 0
        return SessionGRU(
            self.n_items,
            hidden=int(s["hidden"]),
            layers=int(s["layers"]),
            embedding=int(s["embedding"]),
            features=str(s["item_features"]),
            vector_size=vector_size,
            device=device,
            shrinkage=shrinkage,
        )

    # -- scoring and state ------------------------------------------------------------------------

    def _scores(self, sequences: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        import torch

        if self.network is None:
            raise RuntimeError(f"the '{self.name}' model is not fitted")
        device = self.network.output.device
        with torch.inference_mode():
            state = self.network.final_state([torch.from_numpy(s).to(device) for s in sequences])
            scores = self.network.score_all(state)
        return np.asarray(scores.float().cpu().numpy(), dtype=np.float32)

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        import torch

        vectors = arrays.get("vectors")
        network = self._build(
            torch_device(self.settings["device"]),
            0 if vectors is None else vectors.shape[1],
            shrinkage="free_weight" in arrays,
        )
        network.load_state_dict({k: torch.from_numpy(np.array(a)) for k, a in arrays.items()})
        network.eval()
        self.network = network


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [GRU4Rec]
