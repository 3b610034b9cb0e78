"""Wide & Deep (Cheng et al., DLRS 2016): a wide linear part over crossed attributes beside a
deep part over embeddings, trained together on interactions with sampled negatives; built to
recommend what has no interactions yet, and to users who have none.

- Wide: each cross (`crosses: [[genres, occupation]]`) is the cross product of its user and
  item properties' values, hashed into `buckets` weights (wide_deep_features.py): what the paper
  calls memorising feature interactions ("users of occupation A take genre X").
- Deep: two towers. The item tower reads the item's id embedding, an embedding per categorical
  property (a set: its members' mean), the standardised numbers (missing: 0 and a flag) and a
  projection of its text vector (`TrainingData.item_text_vectors`, zeros where absent); the user
  tower its id, its properties and the mean embedding of its latest `max_history` items. Their
  dot product (plus an item bias, from the item's features too) is the deep score. The paper
  feeds both sides to one network; two towers let the item side be computed once, at fit and
  restore time, so that scoring a user at 100,000 items is the user tower and one product.
- Cold start: items with fewer than `min_interactions` positives share one "unknown" id
  embedding, and while training, `id_dropout` of the examples hide the item's id (and, apart,
  the user's id and history), so that the attribute path that new items and new users take is
  trained. Property values seen too rarely share a "rare" embedding for the same reason.
- Training: each positive (a user-item pair of positive weight) against `negatives` items
  drawn among those with interactions (by count^`sample_alpha`), with a logistic loss or a
  sampled softmax; Adam; seeded; early stopping on the validation NDCG@10 where there is a
  validation holdout.

Serving: a history that names its user (`UserHistory.user`) gets the user's id embedding and
training-time properties, unless it carries properties of its own (`UserHistory.properties`),
which win; a user unknown to training is scored from its properties and history alone. Items
to Item: the cosine of the items' deep representations.

torch is imported when a model is fitted or restored, not with the module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from plugins.algorithm import Algorithm, Parameter, ParameterError, UserHistory
from plugins.builtin.next_item import NextItemAlgorithm, torch_device, training_parameters
from plugins.builtin.wide_deep_features import Int64s, TowerSizes
from plugins.builtin.wide_deep_inputs import Inputs, Serving, vocabularies
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData

if TYPE_CHECKING:
    import torch

    from plugins.builtin.wide_deep_network import Tower


class WideDeepModel(NextItemAlgorithm):
    """Wide & Deep over item and user properties, ids, histories and item text vectors."""

    name = "wide-deep"
    uses_user_properties = True
    description = (
        "wide & deep: hashed crosses of item and user properties beside towers of ids, "
        "properties and text vectors; scores new items and new users from their attributes"
    )
    relevance_threshold: ClassVar[float | None] = None  # logits, of either sign
    parameters = (
        Parameter("embedding", int, 16, "size of every id and value embedding", 1, 1024),
        Parameter(
            "hidden", list, [64], "units of each ReLU layer of the user and item towers ([]: none)"
        ),
        Parameter("output", int, 32, "size of the towers' outputs (the deep part's dot)", 1, 1024),
        Parameter(
            "crosses",
            list,
            [],
            "the wide part: lists of two or more properties crossed (e.g. [[genres, "
            "occupation]]); `item.` or `user.` before a name that both tables have",
        ),
        Parameter("buckets", int, 100_000, "hash buckets of the crossed values", 1, 1 << 24),
        Parameter(
            "item_properties",
            list,
            [],
            "item properties of the item tower ([]: every string, set, boolean, int and double)",
        ),
        Parameter(
            "user_properties",
            list,
            [],
            "user properties of the user tower ([]: every string, set, boolean, int and double)",
        ),
        Parameter(
            "text_embedder",
            str,
            "minilm",
            "text embedder of the items' content vectors, where the host provides them ('': none)",
        ),
        Parameter(
            "min_interactions",
            int,
            2,
            "items (users) with fewer positives share the unknown id embedding: their "
            "attributes carry them",
            minimum=1,
        ),
        Parameter(
            "min_count", int, 2, "values on fewer trained items (users) share one embedding", 1
        ),
        Parameter(
            "id_dropout",
            float,
            0.2,
            "share of the examples whose item id (and, apart, user id and history) is hidden "
            "while training: trains the path of new items and users",
            minimum=0,
            maximum=0.95,
        ),
        Parameter("max_history", int, 50, "latest items pooled by the user tower (0: none)", 0),
        Parameter("negatives", int, 4, "sampled negatives per positive", 1, 100_000),
        Parameter(
            "sample_alpha",
            float,
            0.0,
            "negatives drawn among items with interactions by count^alpha (0: uniformly)",
            minimum=0,
            maximum=1,
        ),
        Parameter(
            "loss",
            str,
            "bce",
            "bce (logistic, positive and each negative) or softmax (sampled, over both)",
            choices=("bce", "softmax"),
        ),
        Parameter("weight_decay", float, 0.0, "Adam's L2 penalty", minimum=0),
        *training_parameters(epochs=10, batch_size=512, learning_rate=0.005, patience=2),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.serving: Serving | None = None

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The settings with defaults filled in, lists checked element by element."""
        out = super().validate(settings)
        hidden = out["hidden"]
        if len(hidden) > 8 or not all(_positive_int(h) for h in hidden):
            raise ParameterError(cls.name, "hidden", f"must be up to 8 ints >= 1, not {hidden!r}")
        for key in ("item_properties", "user_properties"):
            if not all(isinstance(p, str) and p for p in out[key]):
                raise ParameterError(cls.name, key, f"must be property names, not {out[key]!r}")
        for cross in out["crosses"]:
            if (
                not isinstance(cross, list)
                or len(cross) < 2
                or not all(isinstance(p, str) and p.split(".")[-1] for p in cross)
            ):
                raise ParameterError(
                    cls.name,
                    "crosses",
                    f"each cross is a list of two or more property names, not {cross!r}",
                )
            if len(set(cross)) < len(cross):
                raise ParameterError(cls.name, "crosses", f"{cross!r} names a property twice")
        return out

    # -- fitting ----------------------------------------------------------------------------------

    def _fit(self, data: TrainingData) -> None:
        import torch

        from plugins.builtin.wide_deep_network import WideDeep

        device, generator, rng = self._start_fit(data)
        inputs = Inputs.of(self.name, self.settings, data)
        s = self.settings
        network = WideDeep(
            self._tower(inputs.user_sizes(), device),
            self._tower(inputs.item_sizes(), device, item=True),
            int(s["buckets"]),
            device,
        )
        network.user.initialise(generator)
        network.item.initialise(generator)
        optimiser = torch.optim.Adam(
            network.parameters(),
            lr=float(s["learning_rate"]),
            weight_decay=float(s["weight_decay"]),
        )
        tensors = inputs.tensors(device)
        positives = data.matrix.tocoo()
        keep = positives.data > 0
        pos_users = np.asarray(positives.row[keep], dtype=np.int64)
        pos_items = np.asarray(positives.col[keep], dtype=np.int64)
        sample = _sampler(inputs.item_counts, float(s["sample_alpha"]), rng)
        batch_size, negatives = int(s["batch_size"]), int(s["negatives"])
        dropout = float(s["id_dropout"])

        def step(users: Int64s, items: Int64s) -> float:
            negs = sample(len(users) * negatives).reshape(len(users), negatives)
            candidates = np.concatenate([items[:, None], negs], axis=1)
            user_rows = tensors.user_rows(users, items, rng.random(len(users)) < dropout)
            flat = candidates.reshape(-1)
            item_rows = tensors.item_rows(flat, rng.random(len(flat)) < dropout)
            examples, buckets = inputs.wide_pairs(np.repeat(users, negatives + 1), flat)
            logits = network.logits(
                network.user(user_rows),
                network.item(item_rows).reshape(len(users), negatives + 1, -1),
                torch.from_numpy(examples).to(device),
                torch.from_numpy(buckets).to(device),
            )
            loss = _loss(logits, torch.from_numpy(negs == items[:, None]).to(device), s["loss"])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            return float(loss.detach())

        def one_epoch() -> float:
            order = rng.permutation(len(pos_users))
            total = 0.0
            for start in range(0, len(order), batch_size):
                chosen = order[start : start + batch_size]
                total += step(pos_users[chosen], pos_items[chosen]) * len(chosen)
            return total / max(len(order), 1)

        validate: Callable[[], float] | None = None
        if data.validation is not None:
            validation = data.validation

            def validate() -> float:
                self.serving = inputs.serving(network, tensors)
                return validation.mean_ndcg(
                    lambda users: self.user_scores(
                        [UserHistory(data.sequence(int(u)), user=int(u)) for u in users]
                    ),
                    data.matrix,
                    k=10,
                )

        self._run_epochs(network, one_epoch, validate)
        self.serving = inputs.serving(network, tensors)

    def _tower(self, sizes: TowerSizes, device: torch.device, *, item: bool = False) -> Tower:
        from plugins.builtin.wide_deep_network import Tower

        s = self.settings
        return Tower(
            id_slots=sizes.id_slots,
            categorical=sizes.categorical,
            numeric=sizes.numeric,
            text=sizes.text,
            history=sizes.history,
            embedding=int(s["embedding"]),
            hidden=[int(h) for h in s["hidden"]],
            output=int(s["output"]) + int(item),
            device=device,
        )

    # -- scoring ----------------------------------------------------------------------------------

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        """Per history: the user tower's output against every item's (one product), plus the
        wide part's weights of the user's crossed values against each item's."""
        serving = self._serving()
        return serving.scores(histories, int(self.settings["max_history"]))

    def item_scores(self, items: Sequence[int]) -> np.ndarray[Any, Any]:
        """The cosine of the items' deep representations (0 for an item the model has not)."""
        serving = self._serving()
        unit = serving.unit_items
        out = np.zeros((len(items), self.n_items), dtype=np.float32)
        known = [r for r, i in enumerate(items) if 0 <= i < self.n_items]
        if known:
            out[known] = unit[[items[r] for r in known]] @ unit.T
        return out

    def _serving(self) -> Serving:
        if self.serving is None:
            raise RuntimeError(f"the '{self.name}' model is not fitted")
        return self.serving

    # -- state ----------------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        """The item side's representations, the user tower's weights, the wide part and the
        encodings of the training users' properties: plain arrays (strings as unicode)."""
        return {} if self.serving is None else self.serving.state()

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        import torch

        sizes = arrays["tower_sizes"].tolist()
        found = vocabularies(arrays)
        tower = self._tower(
            TowerSizes(sizes[0], tuple(v.size for _, v in found), sizes[1], 0, sizes[2]),
            torch_device(self.settings["device"]),
        )
        prefix = "tower."
        tower.load_state_dict(
            {
                k[len(prefix) :]: torch.from_numpy(np.array(a))
                for k, a in arrays.items()
                if k.startswith(prefix)
            }
        )
        tower.eval()
        self.serving = Serving.restore(arrays, tower, found)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _loss(logits: torch.Tensor, accidental: torch.Tensor, kind: str) -> torch.Tensor:
    """The mean loss of (B, 1 + n) logits, the positive first; `accidental` (B, n) marks the
    negatives that are the positive itself, left out."""
    import torch
    import torch.nn.functional as F

    if kind == "softmax":
        masked = torch.cat(
            [logits[:, :1], logits[:, 1:].masked_fill(accidental, float("-inf"))], dim=1
        )
        target = torch.zeros(len(logits), dtype=torch.int64, device=logits.device)
        return F.cross_entropy(masked, target)
    targets = torch.zeros_like(logits)
    targets[:, 0] = 1.0
    weights = torch.ones_like(logits)
    weights[:, 1:] = (~accidental).float()
    return F.binary_cross_entropy_with_logits(logits, targets, weight=weights)


def _sampler(counts: Int64s, alpha: float, rng: np.random.Generator) -> Callable[[int], Int64s]:
    """Draws of items among those with positives, by count^alpha (seeded by `rng`)."""
    warm = np.flatnonzero(counts > 0)
    if not len(warm):
        warm = np.arange(max(len(counts), 1), dtype=np.int64)
    cumulative = np.cumsum(np.power(np.maximum(counts[warm], 1).astype(np.float64), alpha))

    def draw(size: int) -> Int64s:
        picks = np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right")
        return np.asarray(warm[np.minimum(picks, len(warm) - 1)], dtype=np.int64)

    return draw


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [WideDeepModel]
