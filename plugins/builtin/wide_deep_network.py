"""The torch side of `wide-deep`: the towers of the deep part and the wide part's weights.

Imported when a wide-deep model is fitted or restored (see wide_deep.py), never with the
built-in plugins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TowerInput:
    """A batch of rows for a tower: id slots (B,), per categorical property its codes (B, W)
    padded with 0, numbers (B, k), content vectors (B, t) and history item codes (B, H) padded
    with 0, where the tower reads them."""

    ids: torch.Tensor
    categorical: Sequence[torch.Tensor]
    numeric: torch.Tensor
    text: torch.Tensor | None = None
    history: torch.Tensor | None = None


class Tower(nn.Module):
    """Embeddings of the id, of each categorical property (a set: its members' mean), a
    projection of the content vector and the mean embedding of the history's items, side by
    side with the numbers, through ReLU layers to `output` units.

    The item tower and the user tower are two of these: their dot product is the deep part's
    score, so that the items' side is computed once, not per request (the paper's one network
    over the concatenated user and item features would cost a forward pass per item)."""

    def __init__(
        self,
        *,
        id_slots: int,
        categorical: Sequence[int],
        numeric: int,
        text: int,
        history: int,
        embedding: int,
        hidden: Sequence[int],
        output: int,
        device: torch.device,
    ) -> None:
        super().__init__()
        meta = torch.device("meta")
        self.ids = nn.Embedding(id_slots, embedding, device=meta)
        self.categorical = nn.ModuleList(
            nn.Embedding(size, embedding, padding_idx=0, device=meta) for size in categorical
        )
        self.text = nn.Linear(text, embedding, bias=False, device=meta) if text else None
        self.history = (
            nn.Embedding(history, embedding, padding_idx=0, device=meta) if history else None
        )
        width = embedding * (1 + len(categorical) + int(text > 0) + int(history > 0)) + numeric
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size, device=meta), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, output, device=meta))
        self.mlp = nn.Sequential(*layers)
        # Built on the meta device, then given storage: torch's default initialisation would
        # draw from the global generator only to be overwritten.
        self.to_empty(device=device)

    def initialise(self, generator: torch.Generator) -> None:
        """Embeddings N(0, 0.05) (padding rows 0), Glorot-uniform layers, zero biases."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Embedding):
                    module.weight.normal_(0.0, 0.05, generator=generator)
                    if module.padding_idx is not None:
                        module.weight[module.padding_idx].zero_()
                elif isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight, generator=generator)
                    if module.bias is not None:
                        module.bias.zero_()

    def forward(self, rows: TowerInput) -> torch.Tensor:
        parts = [self.ids(rows.ids)]
        for table, codes in zip(self.categorical, rows.categorical, strict=True):
            parts.append(_mean(table, codes))
        if self.text is not None:
            assert rows.text is not None
            parts.append(self.text(rows.text))
        if self.history is not None:
            assert rows.history is not None
            parts.append(_mean(self.history, rows.history))
        parts.append(rows.numeric)
        out: torch.Tensor = self.mlp(torch.cat(parts, dim=1))
        return out


def _mean(table: nn.Module, codes: torch.Tensor) -> torch.Tensor:
    """The mean embedding of each row's codes, padding (0) left out; zeros for an empty row."""
    summed: torch.Tensor = table(codes).sum(dim=1)
    count = (codes > 0).sum(dim=1, keepdim=True).clamp(min=1)
    return summed / count


class WideDeep(nn.Module):
    """The whole model while it trains: user tower, item tower (one unit more than the user's:
    the item's bias, from its features too) and the wide part's bucket weights."""

    def __init__(self, user: Tower, item: Tower, buckets: int, device: torch.device) -> None:
        super().__init__()
        self.user = user
        self.item = item
        self.wide = nn.Parameter(torch.zeros(max(buckets, 1), device=device))

    def logits(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        wide_examples: torch.Tensor,
        wide_buckets: torch.Tensor,
    ) -> torch.Tensor:
        """Scores of (B,) user vectors against (B, n) item vectors (bias last), plus the wide
        weights of each of the B * n pairs (`wide_examples` index the flattened pairs)."""
        deep = torch.einsum("bd,bnd->bn", users, items[:, :, :-1]) + items[:, :, -1]
        flat = deep.reshape(-1)
        if len(wide_buckets):
            flat = flat.index_add(0, wide_examples, self.wide[wide_buckets])
        return flat.reshape(deep.shape)
