"""The torch side of SASRec: the self-attentive network, its losses and a training pass over
windows of the users' sequences.

Imported when a SASRec model is built (see sasrec.py), never with the built-in plugins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

Int64s = np.ndarray[Any, np.dtype[np.int64]]


class SelfAttentive(nn.Module):
    """Item and position embeddings -> `layers` causal Transformer blocks -> a scoring layer
    that shares the input item embeddings (Kang & McAuley, ICDM 2018).

    - the input at position t: the item's embedding times sqrt(hidden) plus the learned
      embedding of position t, counted from the start of the window (the oldest item read is
      position 0), then dropout;
    - each block, pre-norm: x + Attention(LayerNorm(x)), then x + FFN(LayerNorm(x)); the
      attention has `heads` heads and a causal mask (position t reads positions <= t only), the
      feed-forward network is hidden -> hidden (ReLU) -> hidden, as the paper's; dropout where
      the paper has it: on the attention weights and after each feed-forward layer; a final
      LayerNorm;
    - the score of item j after position t: state[t] . embedding[j] + bias[j].

    Sequences are padded at the end (with any item): the causal mask keeps the padding from
    every real position, so a sequence's states do not depend on how far it was padded. Dropout
    draws from the fit's generator (nn.Dropout draws from the global one, which would make a
    fit depend on what ran before it); without a generator there is none (serving).
    """

    def __init__(
        self,
        n_items: int,
        *,
        hidden: int,
        layers: int,
        heads: int,
        length: int,
        device: torch.device,
    ) -> None:
        super().__init__()
        meta = torch.device("meta")
        self.heads = heads
        self.items = nn.Parameter(torch.empty(n_items, hidden, device=meta))
        self.bias = nn.Parameter(torch.empty(n_items, device=meta))
        self.positions = nn.Parameter(torch.empty(length, hidden, device=meta))
        self.blocks = nn.ModuleList(Block(hidden, device=meta) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden, device=meta)
        # Built on the meta device, then given storage: torch's default initialisation would
        # draw from the global generator only to be overwritten.
        self.to_empty(device=device)

    def initialise(self, generator: torch.Generator) -> None:
        """Glorot-uniform weight matrices and embeddings, zero biases, unit LayerNorms."""

        def glorot(tensor: torch.Tensor) -> None:
            bound = math.sqrt(6.0 / (tensor.shape[0] + tensor.shape[1]))
            tensor.uniform_(-bound, bound, generator=generator)

        with torch.no_grad():
            glorot(self.items)
            glorot(self.positions)
            self.bias.zero_()
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    glorot(module.weight)
                    module.bias.zero_()
                elif isinstance(module, nn.LayerNorm):
                    module.weight.fill_(1.0)
                    module.bias.zero_()

    def states(
        self, items: torch.Tensor, dropout: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The state after each position of windows of items (batch, width), padded at the end:
        (batch, width, hidden). With a generator, with dropout (training)."""
        width = items.shape[1]
        share = dropout if generator is not None else 0.0
        scale = math.sqrt(self.items.shape[1])
        x = F.embedding(items, self.items) * scale + self.positions[:width]
        x = _dropout(x, share, generator)
        mask = torch.ones(width, width, dtype=torch.bool, device=items.device).triu(1)
        for block in self.blocks:
            assert isinstance(block, Block)
            x = block(x, mask, self.heads, share, generator)
        out: torch.Tensor = self.norm(x)
        return out

    def last_states(self, sequences: list[torch.Tensor]) -> torch.Tensor:
        """The state after the last item of each sequence (at most `length` items each; zeros for
        an empty one): (len(sequences), hidden), one padded batch."""
        hidden = self.items.shape[1]
        out = torch.zeros(len(sequences), hidden, device=self.items.device)
        rows = [i for i, s in enumerate(sequences) if len(s)]
        if not rows:
            return out
        padded = pad_sequence([sequences[i] for i in rows], batch_first=True)
        lasts = torch.tensor([len(sequences[i]) - 1 for i in rows], device=out.device)
        states = self.states(padded)
        at = torch.arange(len(rows), device=out.device)
        out[torch.tensor(rows, device=out.device)] = states[at, lasts]
        return out

    def score_all(self, state: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each state: (len(state), n_items). An empty history's state
        is zeros: it scores by the biases alone."""
        return torch.addmm(self.bias, state, self.items.T)


class Block(nn.Module):
    """One pre-norm Transformer block with causal multi-head self-attention."""

    def __init__(self, hidden: int, *, device: torch.device) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, device=device)
        self.qkv = nn.Linear(hidden, 3 * hidden, device=device)
        self.out = nn.Linear(hidden, hidden, device=device)
        self.norm2 = nn.LayerNorm(hidden, device=device)
        self.inner = nn.Linear(hidden, hidden, device=device)
        self.outer = nn.Linear(hidden, hidden, device=device)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        heads: int,
        dropout: float,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        batch, width, hidden = x.shape
        q, k, v = (
            part.view(batch, width, heads, hidden // heads).transpose(1, 2)
            for part in self.qkv(self.norm1(x)).chunk(3, dim=-1)
        )
        weights = (q @ k.transpose(-2, -1)) / math.sqrt(hidden // heads)
        weights = torch.softmax(weights.masked_fill(mask, -math.inf), dim=-1)
        weights = _dropout(weights, dropout, generator)
        attended = (weights @ v).transpose(1, 2).reshape(batch, width, hidden)
        x = x + self.out(attended)
        inner = _dropout(torch.relu(self.inner(self.norm2(x))), dropout, generator)
        return x + _dropout(self.outer(inner), dropout, generator)


def _dropout(x: torch.Tensor, share: float, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout drawn from the fit's generator (none without one)."""
    if share <= 0 or generator is None:
        return x
    keep = 1.0 - share
    # Uniform draws turned into the scaled mask in place: a third of bernoulli_'s time on CPU.
    mask = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x * mask.lt_(keep).div_(keep)


# -- training -------------------------------------------------------------------------------------


def windows(starts: Int64s, ends: Int64s, length: int) -> tuple[Int64s, Int64s]:
    """Training windows over sequences [start, end) of the interaction arrays: each sequence's
    (item, next item) pairs cut, from its end, into runs of at most `length` pairs, so that
    every pair is learnt once and the latest runs are whole. Returns each window's first input
    position and its number of pairs."""
    pairs = np.maximum(ends - starts - 1, 0)
    counts = -(-pairs // length)  # windows per sequence: ceil(pairs / length)
    sequence = np.repeat(np.arange(len(starts)), counts)
    # Each window's place from its sequence's end: 0 for the latest.
    back = np.arange(len(sequence)) - np.repeat(np.cumsum(counts) - counts, counts)
    lasts = ends[sequence] - 1 - back * length  # one past each window's last input
    firsts = np.maximum(starts[sequence], lasts - length)
    return firsts.astype(np.int64), (lasts - firsts).astype(np.int64)


@dataclass(frozen=True)
class Training:
    """What every pass of a fit shares: the network, its optimiser, every interaction's item (on
    the device), the windows (`windows`) and the generator of dropout and negatives."""

    network: SelfAttentive
    optimiser: torch.optim.Optimizer
    items: torch.Tensor
    firsts: Int64s
    sizes: Int64s
    generator: torch.Generator


BUCKET = 16
"""Batches whose windows are drawn together and sorted by length (`batches`)."""


def batches(sizes: Int64s, batch_size: int, rng: np.random.Generator) -> list[np.ndarray[Any, Any]]:
    """An epoch's batches of windows, in random order: the windows are shuffled, each run of
    `BUCKET` batches' worth is sorted by length and cut into batches, and the batches are
    shuffled. A batch is padded to its longest window, so that windows of like lengths share
    one: with 200-item windows over histories mostly shorter, random batches computed two to
    three times the positions they learnt from."""
    order = rng.permutation(len(sizes))
    out = []
    step = batch_size * BUCKET
    for begin in range(0, len(order), step):
        run = order[begin : begin + step]
        run = run[np.argsort(sizes[run], kind="stable")]
        out += [run[at : at + batch_size] for at in range(0, len(run), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def train_pass(
    training: Training, chosen_batches: list[np.ndarray[Any, Any]], settings: Mapping[str, Any]
) -> tuple[float, int]:
    """One pass over the windows, a step per batch of them (`batches`), with a SASRec model's
    settings: the summed loss and the number of pairs."""
    s = settings
    network, items, generator = training.network, training.items, training.generator
    device = items.device
    dropout = float(s["dropout"])
    loss_name, n_sample = str(s["loss"]), int(s["n_sample"])
    total, pairs = 0.0, 0
    for chosen in chosen_batches:
        sizes = training.sizes[chosen]
        columns = np.arange(int(sizes.max()))[None, :]
        # A shorter window's padding repeats its last input: the causal mask keeps it from
        # every real position, and the loss leaves it out.
        at = torch.from_numpy(
            training.firsts[chosen][:, None] + np.minimum(columns, sizes[:, None] - 1)
        ).to(device)
        real = torch.from_numpy(columns < sizes[:, None]).to(device)
        states = network.states(items[at], dropout, generator)[real]
        targets = items[at[real] + 1]
        if loss_name == "bce":
            loss = _bce(network, states, targets, generator)
        elif n_sample > 0:
            loss = _sampled_cross_entropy(network, states, targets, n_sample, generator)
        else:
            loss = full_cross_entropy(states, network.items, network.bias, targets)
        training.optimiser.zero_grad(set_to_none=True)
        (loss / len(targets)).backward()  # type: ignore[no-untyped-call]
        training.optimiser.step()
        total += float(loss.detach())
        pairs += len(targets)
    return total, pairs


CHUNK = 256
"""Rows of the full softmax computed at once: their scores of every item stay in the cache."""


def full_cross_entropy(
    states: torch.Tensor, items: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Softmax cross-entropy of each state's target against every item (scores
    states . items[j] + bias[j]), summed: F.cross_entropy's figure and gradients, computed
    `CHUNK` rows at a time."""
    loss = _FullSoftmax.apply(states, items, bias, targets)  # type: ignore[no-untyped-call]
    assert isinstance(loss, torch.Tensor)
    return loss


class _FullSoftmax(torch.autograd.Function):
    """The full softmax's loss with its gradients computed in the same pass, chunk by chunk:
    the gradient of a row's scores is softmax - one-hot, which needs neither the scores of every
    row at once (rows x items, 43 MB for a batch of 6,400 positions over 1,682 items) nor
    autograd's log-softmax and scatter over them. On ML-100K this took the output layer's step
    from about 200 to 80 ms on one core."""

    @staticmethod
    def forward(
        ctx: Any,
        states: torch.Tensor,
        items: torch.Tensor,
        bias: torch.Tensor,
        targets: torch.Tensor,
    ) -> torch.Tensor:
        total = states.new_zeros(())
        d_states = torch.empty_like(states)
        d_items, d_bias = torch.zeros_like(items), torch.zeros_like(bias)
        rows = torch.arange(min(CHUNK, len(states)), device=states.device)
        for start in range(0, len(states), CHUNK):
            chunk, target = states[start : start + CHUNK], targets[start : start + CHUNK]
            at = rows[: len(chunk)]
            scores = torch.addmm(bias, chunk, items.T)
            log_total = torch.logsumexp(scores, dim=1, keepdim=True)
            total += (log_total[:, 0] - scores[at, target]).sum()
            d_scores = scores.sub_(log_total).exp_()  # the softmax ...
            d_scores[at, target] -= 1.0  # ... minus the one-hot target
            d_states[start : start + CHUNK] = d_scores @ items
            d_items.addmm_(d_scores.T, chunk)
            d_bias += d_scores.sum(dim=0)
        ctx.save_for_backward(d_states, d_items, d_bias)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        d_states, d_items, d_bias = ctx.saved_tensors
        return d_states * grad, d_items * grad, d_bias * grad, None


def _sampled_cross_entropy(
    network: SelfAttentive,
    states: torch.Tensor,
    targets: torch.Tensor,
    n_sample: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Softmax cross-entropy of each target against `n_sample` negatives drawn uniformly,
    shared by the batch (a negative that is the row's own target is masked out), summed."""
    n_items = network.items.shape[0]
    negatives = torch.randint(
        n_items, (n_sample,), generator=generator, device=targets.device, dtype=torch.int64
    )
    own = (states * network.items[targets]).sum(dim=1) + network.bias[targets]
    others = torch.addmm(network.bias[negatives], states, network.items[negatives].T)
    others = others.masked_fill(negatives[None, :] == targets[:, None], -math.inf)
    scores = torch.cat([own[:, None], others], dim=1)
    return -torch.log_softmax(scores, dim=1)[:, 0].sum()


def _bce(
    network: SelfAttentive, states: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """The paper's loss: binary cross-entropy of each target (a positive) and one negative drawn
    uniformly for it, summed."""
    n_items = network.items.shape[0]
    negatives = torch.randint(
        n_items, targets.shape, generator=generator, device=targets.device, dtype=torch.int64
    )
    positive = (states * network.items[targets]).sum(dim=1) + network.bias[targets]
    negative = (states * network.items[negatives]).sum(dim=1) + network.bias[negatives]
    return -(F.logsigmoid(positive) + F.logsigmoid(-negative)).sum()
