"""The torch side of GRU4Rec: the network, its two losses, the original's Adagrad and a
training pass over sessions (which `fit` and `fit_shards` share).

Imported when a GRU4Rec model is built (see gru4rec.py), never with the built-in plugins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

from plugins.builtin.sessions import NegativeSampler, Pause, session_parallel

FEATURES = ("id", "vectors", "both")


class SessionGRU(nn.Module):
    """Item input -> GRU layers -> a scoring layer of output item embeddings and biases.

    - the input of an item: its learned id embedding (`embedding` > 0: a table of its own; 0:
      the output embedding, shared, which the original calls a constrained embedding), a
      learned projection of its fixed vector, or both side by side (`features`);
    - `layers` GRU layers of `hidden` units; training runs one step at a time, in the
      session-parallel slots, and the hidden state fed back is the one after dropout, as the
      original feeds it;
    - the score of item j after a step: the last layer's state . output[j] + bias[j], where
      with vectors, output[j] also adds a learned projection of item j's vector;
    - with `shrinkage` (vectors only), item j's bias also adds a learned linear function of
      its vector (`content_bias`), and serving weighs item j's free parameters (output[j] and
      bias[j]) by `free_weight[j]` = n_j / (n_j + k), n_j its training interactions: what
      `score_all` returns. Training (`score_some`) reads them whole; see `score_all`.

    The item tables (`output`, `bias`, `ids`) are read through sparse gradients: a step
    touches the rows of its inputs, targets and negatives only.
    """

    free_weight: torch.Tensor | None

    def __init__(
        self,
        n_items: int,
        *,
        hidden: int,
        layers: int,
        embedding: int,
        features: str,
        vector_size: int,
        device: torch.device,
        shrinkage: bool = False,
    ) -> None:
        super().__init__()
        self.features = features
        self.shared = embedding == 0
        width = embedding or hidden
        meta = torch.device("meta")
        self.output = nn.Parameter(torch.empty(n_items, hidden, device=meta))
        self.bias = nn.Parameter(torch.empty(n_items, 1, device=meta))
        self.ids: nn.Parameter | None = None
        self.projection: nn.Linear | None = None
        size = 0
        if features in ("id", "both"):
            if not self.shared:
                self.ids = nn.Parameter(torch.empty(n_items, embedding, device=meta))
            size += width
        self.output_projection: nn.Linear | None = None
        if features in ("vectors", "both"):
            self.register_buffer("vectors", torch.empty(n_items, vector_size, device=meta))
            self.projection = nn.Linear(vector_size, width, device=meta)
            # The scoring side sees the vectors too: an item rarely seen in training still
            # gets a usable output embedding from what it looks like. With the constrained
            # embedding the input and output sides share the projection as they share the id
            # table, so that from the start an item scores by how much it looks like the input.
            if not self.shared:
                self.output_projection = nn.Linear(vector_size, hidden, bias=False, device=meta)
            size += width
        # Set by the fit from the item counts (`set_shrinkage`) and saved with the weights, so
        # that a loaded model serves as it was fitted. Only where the vectors reach the scoring
        # side: without them there is nothing else to score a rare item by.
        weighed = shrinkage and self.projection is not None
        self.register_buffer(
            "free_weight", torch.empty(n_items, 1, device=meta) if weighed else None
        )
        # The bias's content part, what a rarely seen item's bias backs off to: how popular
        # items that look like it are.
        self.content_bias: nn.Linear | None = None
        if weighed:
            self.content_bias = nn.Linear(vector_size, 1, bias=False, device=meta)
        self.grus = nn.ModuleList(
            nn.GRU(size if i == 0 else hidden, hidden, batch_first=True, device=meta)
            for i in range(layers)
        )
        # Built on the meta device, then given storage: torch's default initialisation would
        # draw from the global generator only to be overwritten.
        self.to_empty(device=device)

    def initialise(self, generator: torch.Generator) -> None:
        """The original's initial weights: uniform in +-sqrt(6 / (fan_in + fan_out)) per
        matrix (per gate for the GRUs), zero biases."""

        def glorot(tensor: torch.Tensor, rows: int, columns: int) -> None:
            bound = math.sqrt(6.0 / (rows + columns))
            tensor.uniform_(-bound, bound, generator=generator)

        with torch.no_grad():
            glorot(self.output, *self.output.shape)
            self.bias.zero_()
            if self.ids is not None:
                glorot(self.ids, *self.ids.shape)
            if self.projection is not None:
                glorot(self.projection.weight, *self.projection.weight.shape)
                self.projection.bias.zero_()
            if self.output_projection is not None:
                glorot(self.output_projection.weight, *self.output_projection.weight.shape)
            if self.free_weight is not None:
                self.free_weight.fill_(1.0)
            if self.content_bias is not None:
                self.content_bias.weight.zero_()  # the free biases' start: no prior
            for gru in self.grus:
                assert isinstance(gru, nn.GRU)
                hidden = gru.hidden_size
                weights = dict(gru.named_parameters())
                for gate in range(3):
                    rows = slice(gate * hidden, (gate + 1) * hidden)
                    glorot(weights["weight_ih_l0"][rows], gru.input_size, hidden)
                    glorot(weights["weight_hh_l0"][rows], hidden, hidden)
                weights["bias_ih_l0"].zero_()
                weights["bias_hh_l0"].zero_()

    def set_shrinkage(self, counts: np.ndarray[Any, Any], k: float) -> None:
        """Serving's weight of each item's free output embedding and bias, n / (n + k) from
        its training interactions n (a network built with `shrinkage` only)."""
        if self.free_weight is None:
            raise ValueError("this network was built without shrinkage")
        n = torch.as_tensor(np.asarray(counts, dtype=np.float64), device=self.free_weight.device)
        self.free_weight.copy_((n / (n + k)).float()[:, None])

    def tables(self) -> list[nn.Parameter]:
        """The parameters with one row per item, which get sparse gradients."""
        return [p for p in (self.output, self.bias, self.ids) if p is not None]

    def embed(self, items: torch.Tensor, sparse: bool = False) -> torch.Tensor:
        """The network's input for items (any shape): (*items.shape, input size)."""
        parts = []
        if self.features in ("id", "both"):
            table = self.output if self.ids is None else self.ids
            parts.append(F.embedding(items, table, sparse=sparse))
        if self.projection is not None:
            vectors: torch.Tensor = self.get_buffer("vectors")
            parts.append(self.projection(vectors[items]))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def step(
        self,
        items: torch.Tensor,
        state: list[torch.Tensor],
        dropout: tuple[float, float],
        generator: torch.Generator,
    ) -> torch.Tensor:
        """One training step of every slot: replaces each layer's state in `state` (its
        gradient flows within the step only) and returns the last layer's output. `dropout`:
        the shares dropped of the input and of each layer's output."""
        x = _dropout(self.embed(items, sparse=True), dropout[0], generator)
        for layer, gru in enumerate(self.grus):
            _, h = gru(x[:, None, :], state[layer][None])
            x = _dropout(h[0], dropout[1], generator)
            state[layer] = x
        return x

    def final_state(self, sequences: Sequence[torch.Tensor]) -> torch.Tensor:
        """The last layer's state after reading each item sequence from a zero state:
        (len(sequences), hidden); zeros for an empty sequence. The sequences are padded to one
        length and packed, so that a batch is one GRU call per layer."""
        hidden = self.output.shape[1]
        out = torch.zeros(len(sequences), hidden, device=self.output.device)
        rows = [i for i, s in enumerate(sequences) if len(s)]
        if not rows:
            return out
        if len(rows) == 1:  # one request's history: no padding to pay for
            x = self.embed(sequences[rows[0]][None])
            for gru in self.grus:
                x, _ = gru(x)
            out[rows[0]] = x[0, -1]
            return out
        lengths = torch.tensor([len(sequences[i]) for i in rows])
        padded = pad_sequence([sequences[i] for i in rows], batch_first=True)
        packed = pack_padded_sequence(
            self.embed(padded), lengths, batch_first=True, enforce_sorted=False
        )
        last = torch.zeros(0)
        for gru in self.grus:
            packed, last = gru(packed)
        out[torch.tensor(rows, device=out.device)] = last[0]
        return out

    def _scoring_projection(self) -> torch.Tensor | None:
        """The weight (hidden, vector size) that projects item vectors on the scoring side."""
        if self.output_projection is not None:
            return self.output_projection.weight
        if self.projection is not None and self.shared:
            return self.projection.weight
        return None

    def score_all(self, state: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each state: (len(state), n_items), what serving (and the
        validation of early stopping) ranks by.

        With shrinkage, an item's free parameters count in proportion to the evidence behind
        them: an item seen a few times in training got a few sparse updates, mostly as a
        sampled negative whose logQ-corrected score is hardly discounted (its count is small),
        each a full Adagrad step; its free output embedding and bias then say little about the
        item and push it below look-alikes that were seen often. Weighed by n / (n + k), such
        an item is scored by its vector's projection and its content bias, the parts learned
        from every item, while a popular item keeps its own. Training reads the free parameters
        whole, so that they absorb what is particular to the items they were fitted on and the
        content parts learn what the vectors share (shrinking them in training too lifted the
        rare items far less on bench.sequence's synthetic sessions)."""
        if self.free_weight is None:
            scores = torch.addmm(self.bias[:, 0], state, self.output.T)
        else:
            # (state . output[j]) w_j + bias[j] w_j: the weights scale the scores' columns, no
            # copy of the item table per request.
            weights = self.free_weight[:, 0]
            scores = (state @ self.output.T) * weights + self.bias[:, 0] * weights
        weight = self._scoring_projection()
        if weight is not None:
            # state . (P v_j) = (state P) . v_j: one small product instead of projecting every
            # item's vector; the content bias c . v_j rides in the same product.
            vectors: torch.Tensor = self.get_buffer("vectors")
            query = state @ weight
            if self.content_bias is not None:
                query = query + self.content_bias.weight
            scores = scores + query @ vectors.T
        return scores

    def score_some(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Training scores of some items (the targets, then the negatives) for each state."""
        output = F.embedding(items, self.output, sparse=True)
        weight = self._scoring_projection()
        if weight is not None:
            vectors: torch.Tensor = self.get_buffer("vectors")
            output = output + vectors[items] @ weight.T
        bias = F.embedding(items, self.bias, sparse=True)
        if self.content_bias is not None:
            bias = bias + self.content_bias(self.get_buffer("vectors")[items])
        return state @ output.T + bias.T


def _dropout(x: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """Inverted dropout drawn from the model's own generator (nn.Dropout draws from the global
    one, which would make a fit depend on what ran before it)."""
    if share <= 0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= share
    return x * keep / (1.0 - share)


def cross_entropy(scores: torch.Tensor, correction: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax cross-entropy with row i's target in column i and every other column a negative,
    summed over rows. `correction` (one per column) is subtracted first: logQ correction."""
    if correction is not None:
        scores = scores - correction[None, :]
    return -torch.diagonal(torch.log_softmax(scores, dim=1)).sum()


def bpr_max(scores: torch.Tensor, bpreg: float, elu: float = 0.0) -> torch.Tensor:
    """BPR-max (Hidasi & Karatzoglou, CIKM 2018) with row i's target in column i, summed over
    rows: -log sum_j s_j sigmoid(r_i - r_j) + bpreg * sum_j s_j r_j^2, where s is the softmax
    of the negatives' scores r_j (the other columns). With `elu` > 0, the scores first go
    through ELU(elu), as the authors' code does."""
    if elu > 0:
        scores = F.elu(scores, elu)
    rows = scores.shape[0]
    target = torch.eye(rows, scores.shape[1], dtype=torch.bool, device=scores.device)
    weights = torch.softmax(scores.masked_fill(target, -math.inf), dim=1)
    own = torch.diagonal(scores)[:, None]
    ranked = (torch.sigmoid(own - scores) * weights).sum(dim=1)
    penalty = (scores.square() * weights).sum(dim=1)
    return (-torch.log(ranked + 1e-24) + bpreg * penalty).sum()


class Optimiser(Protocol):
    def zero_grad(self) -> None: ...

    def step(self) -> None: ...


class AdagradM:
    """Adagrad with momentum, as GRU4Rec's authors train it: each weight's step is
    -lr * g / sqrt(sum of its squared gradients + eps), plus momentum times its previous step;
    a sparse gradient updates only its rows (and their sums)."""

    def __init__(
        self, params: Sequence[nn.Parameter], lr: float, momentum: float = 0.0, eps: float = 1e-6
    ) -> None:
        self.params = list(params)
        self.lr, self.momentum, self.eps = lr, momentum, eps
        self.sums = [torch.zeros_like(p) for p in self.params]
        self.velocity = [torch.zeros_like(p) for p in self.params] if momentum > 0 else []

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            grad = p.grad
            if grad is None:
                continue
            if grad.is_sparse:
                grad = grad.coalesce()  # a row may appear twice; the update is not linear
                rows, values = grad.indices()[0], grad.values()
                sums = self.sums[i][rows] + values.square()
                self.sums[i].index_copy_(0, rows, sums)
                update = values / (sums + self.eps).sqrt() * -self.lr
                if self.momentum > 0:
                    update = self.velocity[i][rows] * self.momentum + update
                    self.velocity[i].index_copy_(0, rows, update)
                p.index_add_(0, rows, update)
            else:
                self.sums[i].add_(grad.square())
                update = grad / (self.sums[i] + self.eps).sqrt() * -self.lr
                if self.momentum > 0:
                    update = self.velocity[i].mul_(self.momentum).add_(update)
                p.add_(update)


class Adam:
    """Adam for the dense weights with SparseAdam for the item tables (sparse gradients)."""

    def __init__(self, network: SessionGRU, lr: float) -> None:
        tables = {id(p) for p in network.tables()}
        dense = [p for p in network.parameters() if id(p) not in tables]
        self.optimisers: list[torch.optim.Optimizer] = [
            torch.optim.SparseAdam(network.tables(), lr=lr)
        ]
        if dense:
            self.optimisers.append(torch.optim.Adam(dense, lr=lr))

    def zero_grad(self) -> None:
        for optimiser in self.optimisers:
            optimiser.zero_grad(set_to_none=True)

    def step(self) -> None:
        for optimiser in self.optimisers:
            optimiser.step()


@dataclass(frozen=True)
class Training:
    """What every pass of a fit shares: the network and its optimiser, the negative sampler,
    log item counts (logQ) and the generator of dropout."""

    network: SessionGRU
    optimiser: Optimiser
    sampler: NegativeSampler
    log_counts: torch.Tensor
    generator: torch.Generator


@dataclass(frozen=True)
class Walk:
    """What one pass walks through: sessions as [start, end) positions into `items`, every
    interaction's item (on the device)."""

    starts: np.ndarray[Any, np.dtype[np.int64]]
    ends: np.ndarray[Any, np.dtype[np.int64]]
    items: torch.Tensor


def train_pass(
    training: Training,
    walk: Walk,
    order: np.ndarray[Any, Any],
    settings: Mapping[str, Any],
    *,
    state: list[torch.Tensor] | None = None,
    pause: Pause | None = None,
) -> tuple[float, int, list[torch.Tensor]]:
    """One pass over the pairs of `walk`'s sessions, sessions in `order` (session-parallel, see
    plugins.builtin.sessions.session_parallel), with a GRU4Rec model's settings: the summed loss,
    the number of pairs and, where `pause` paused it, the hidden state of its busy slots (one
    tensor per layer). A pass that goes on from a paused one takes that `state` for the first
    sessions of `order` (as many as its rows), which are the paused pass's busy ones."""
    s = settings
    batch_size, hidden = int(s["batch_size"]), int(s["hidden"])
    network, sampler, log_counts = training.network, training.sampler, training.log_counts
    items = walk.items
    device = items.device
    dropout = (float(s["dropout_embedding"]), float(s["dropout_hidden"]))
    logq, n_sample = float(s["logq"]), int(s["n_sample"])
    slots = min(batch_size, len(order))
    carried = len(state[0]) if state else 0
    if state:
        fresh = torch.zeros(slots - carried, hidden, device=device)
        state = [torch.cat([h, fresh]) for h in state]
    else:
        state = [torch.zeros(slots, hidden, device=device) for _ in range(int(s["layers"]))]
    total, pairs = 0.0, 0
    steps = session_parallel(
        walk.starts, walk.ends, order, batch_size, carried=carried, pause=pause
    )
    for step in steps:
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
        output = network.step(items[positions], state, dropout, training.generator)
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
        training.optimiser.zero_grad()
        # As the authors do: summed over the slots, divided by the full batch size.
        (loss / batch_size).backward()  # type: ignore[no-untyped-call]
        training.optimiser.step()
        state = [h.detach() for h in state]
        total += float(loss.detach())
        pairs += len(positions)
    if pause is None or not pause.paused:
        return total, pairs, []
    busy = torch.from_numpy(pause.busy).to(device)
    return total, pairs, [h[busy] for h in state]
