"""What `wide-deep` reads and what it serves from.

- `Inputs`: a snapshot's items and users encoded for the towers and the crosses (numpy), the
  id slots (0: unknown, for items and users with too few positives) and each user's latest
  items; `Tensors` are the same on the training device, cut into mini-batches.
- `Serving`: the fitted model at request time: the item side's representations computed once
  (the deep part's item vectors with their bias in the last column), the user tower, the
  training users' encoded properties and the wide part. It is all the model saves.

torch is imported inside the functions: the built-in plugins import this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from plugins.algorithm import ParameterError, UserHistory
from plugins.builtin.wide_deep_features import (
    MISSING,
    Cross,
    Encoders,
    Floats,
    Int64s,
    ItemKeys,
    KeyRows,
    TowerSizes,
    Vocabulary,
    aligned,
    buckets_of,
    crossable,
    kind_of,
    pad_rows,
    property_kinds,
    training_pairs,
    user_key_rows,
)
from plugins.training import TrainingData

if TYPE_CHECKING:
    import torch

    from plugins.builtin.wide_deep_network import Tower, TowerInput, WideDeep

ITEM_CHUNK = 8192
"""Items per forward pass when the item side is computed."""


@dataclass(frozen=True)
class Inputs:
    """A snapshot encoded for `wide-deep` (see the module's docstring)."""

    item_counts: Int64s
    item_slot: Int64s
    item_codes: list[Int64s]
    item_numbers: Floats
    item_text: Floats | None
    item_encoders: Encoders
    user_slot: Int64s
    user_codes: list[Int64s]
    user_numbers: Floats
    user_encoders: Encoders
    history: Int64s
    """(users, max_history): each user's latest positive items, -1 where there are fewer."""
    crosses: list[Cross]
    user_keys: list[KeyRows]
    item_keys: ItemKeys
    buckets: int

    @classmethod
    def of(cls, algorithm: str, settings: Mapping[str, Any], data: TrainingData) -> Inputs:
        """Encode the snapshot; ParameterError for properties the settings name that the
        tables lack or the towers cannot read, and for a text embedder the host refuses."""
        n_items, n_users = data.n_items, data.n_users
        positives = data.matrix.tocoo()
        keep = positives.data > 0
        item_counts = np.bincount(positives.col[keep], minlength=n_items).astype(np.int64)
        user_counts = np.bincount(positives.row[keep], minlength=n_users).astype(np.int64)
        least, min_count = int(settings["min_interactions"]), int(settings["min_count"])
        item_types = property_kinds(data.item_properties)
        user_types = property_kinds(data.user_properties)
        item_kinds = _chosen(algorithm, "item", settings["item_properties"], item_types)
        user_kinds = _chosen(algorithm, "user", settings["user_properties"], user_types)
        crosses = [_cross(algorithm, c, item_types, user_types) for c in settings["crosses"]]
        item_columns = {
            name: aligned(data.item_properties, name, n_items)
            for name in {*item_kinds, *(p for c in crosses for p in c.item)}
        }
        user_columns = {
            name: aligned(data.user_properties, name, n_users)
            for name in {*user_kinds, *(p for c in crosses for p in c.user)}
        }
        item_encoders = Encoders.of(item_columns, item_kinds, item_counts > 0, min_count)
        user_encoders = Encoders.of(user_columns, user_kinds, user_counts > 0, min_count)
        text = _text_vectors(algorithm, settings, data)
        item_numbers = item_encoders.numbers(item_columns, n_items)
        if text is not None:
            present = (np.abs(text).sum(axis=1, keepdims=True) > 0).astype(np.float32)
            item_numbers = np.concatenate([item_numbers, present], axis=1)
        return cls(
            item_counts=item_counts,
            item_slot=_slots(item_counts, least),
            item_codes=item_encoders.codes(item_columns),
            item_numbers=item_numbers,
            item_text=text,
            item_encoders=item_encoders,
            user_slot=_slots(user_counts, least),
            user_codes=user_encoders.codes(user_columns),
            user_numbers=user_encoders.numbers(user_columns, n_users),
            user_encoders=user_encoders,
            history=_latest_items(data, int(settings["max_history"])),
            crosses=crosses,
            user_keys=[user_key_rows(c, user_columns, n_users) for c in crosses],
            item_keys=ItemKeys.of(crosses, item_columns, n_items),
            buckets=int(settings["buckets"]),
        )

    def item_sizes(self) -> TowerSizes:
        """The item tower's input shapes."""
        return TowerSizes(
            int(self.item_slot.max(initial=0)) + 1,
            tuple(v.size for _, v in self.item_encoders.categorical),
            self.item_numbers.shape[1],
            0 if self.item_text is None else self.item_text.shape[1],
            0,
        )

    def user_sizes(self) -> TowerSizes:
        """The user tower's input shapes (history codes: 0 pads, then item slot + 1)."""
        history = int(self.item_slot.max(initial=0)) + 2 if self.history.shape[1] else 0
        return TowerSizes(
            int(self.user_slot.max(initial=0)) + 1,
            tuple(v.size for _, v in self.user_encoders.categorical),
            self.user_numbers.shape[1],
            0,
            history,
        )

    def wide_pairs(self, users: Int64s, items: Int64s) -> tuple[Int64s, Int64s]:
        """(example, bucket) of every crossed pair of the examples (users[j], items[j])."""
        return training_pairs(users, items, self.user_keys, self.item_keys, self.buckets)

    def tensors(self, device: torch.device) -> Tensors:
        """The encodings on the training device."""
        import torch

        def put(array: np.ndarray[Any, Any]) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array)).to(device)

        return Tensors(
            device=device,
            item_slot=put(self.item_slot),
            item_codes=[put(c) for c in self.item_codes],
            item_numbers=put(self.item_numbers),
            item_text=None if self.item_text is None else put(self.item_text),
            item_history=put(self.item_slot + 1),
            user_slot=put(self.user_slot),
            user_codes=[put(c) for c in self.user_codes],
            user_numbers=put(self.user_numbers),
            history=put(self.history) if self.history.shape[1] else None,
        )

    def serving(self, network: WideDeep, tensors: Tensors) -> Serving:
        """The serving side of the network as it is now: every item's representation computed
        once, the user tower (the network's own) and the wide weights."""
        import torch

        network.eval()
        n_items = len(self.item_slot)
        chunks = []
        with torch.inference_mode():
            for start in range(0, n_items, ITEM_CHUNK):
                items = np.arange(start, min(start + ITEM_CHUNK, n_items), dtype=np.int64)
                rows = tensors.item_rows(items, np.zeros(len(items), dtype=bool))
                chunks.append(network.item(rows).float().cpu().numpy())
        last = network.item.mlp[-1]
        assert isinstance(last, torch.nn.Linear)
        items_matrix = (
            np.concatenate(chunks) if chunks else np.zeros((0, last.out_features), np.float32)
        )
        return Serving(
            items=np.ascontiguousarray(items_matrix, dtype=np.float32),
            item_history=self.item_slot + 1,
            user_slot=self.user_slot,
            encoders=self.user_encoders,
            user_codes=self.user_codes,
            user_numbers=self.user_numbers,
            tower=network.user,
            crosses=self.crosses,
            user_keys=self.user_keys,
            item_keys=self.item_keys,
            wide=network.wide.detach().float().cpu().numpy().copy(),
        )


@dataclass(frozen=True)
class Tensors:
    """`Inputs` on the training device, and the mini-batches cut from them."""

    device: torch.device
    item_slot: torch.Tensor
    item_codes: list[torch.Tensor]
    item_numbers: torch.Tensor
    item_text: torch.Tensor | None
    item_history: torch.Tensor
    user_slot: torch.Tensor
    user_codes: list[torch.Tensor]
    user_numbers: torch.Tensor
    history: torch.Tensor | None

    def user_rows(
        self, users: Int64s, positives: Int64s, dropped: np.ndarray[Any, Any]
    ) -> TowerInput:
        """The user tower's input for training examples: the user's latest items but the
        example's positive (which the history must not give away); a `dropped` user is seen as
        a new one (unknown id, no history), properties only."""
        import torch

        from plugins.builtin.wide_deep_network import TowerInput

        u = torch.from_numpy(users).to(self.device)
        drop = torch.from_numpy(dropped).to(self.device)
        history = None
        if self.history is not None:
            items = self.history[u]
            target = torch.from_numpy(positives).to(self.device)[:, None]
            valid = (items >= 0) & (items != target) & ~drop[:, None]
            history = torch.where(valid, self.item_history[items.clamp(min=0)], 0)
        return TowerInput(
            self.user_slot[u].masked_fill(drop, 0),
            [codes[u] for codes in self.user_codes],
            self.user_numbers[u],
            None,
            history,
        )

    def item_rows(self, items: Int64s, dropped: np.ndarray[Any, Any]) -> TowerInput:
        """The item tower's input; a `dropped` item is seen as a new one (unknown id)."""
        import torch

        from plugins.builtin.wide_deep_network import TowerInput

        i = torch.from_numpy(items).to(self.device)
        drop = torch.from_numpy(dropped).to(self.device)
        return TowerInput(
            self.item_slot[i].masked_fill(drop, 0),
            [codes[i] for codes in self.item_codes],
            self.item_numbers[i],
            None if self.item_text is None else self.item_text[i],
        )


@dataclass(frozen=True)
class Serving:
    """A fitted `wide-deep` at request time (see the module's docstring)."""

    items: Floats
    """(items, output + 1): each item's deep representation, its bias last."""
    item_history: Int64s
    """Each item's code in a user's history (its id slot + 1; 0 pads)."""
    user_slot: Int64s
    encoders: Encoders
    user_codes: list[Int64s]
    user_numbers: Floats
    tower: Tower
    crosses: list[Cross]
    user_keys: list[KeyRows]
    item_keys: ItemKeys
    wide: Floats

    @property
    def items_by_column(self) -> Floats:
        """`items` transposed, contiguous: one user's scores are then a product that reads the
        items' vectors in order (about half the time of the transposed view at 100,000)."""
        cached: Floats | None = self.__dict__.get("_by_column")
        if cached is None:
            cached = np.ascontiguousarray(self.items.T)
            object.__setattr__(self, "_by_column", cached)
        return cached

    @property
    def unit_items(self) -> Floats:
        """The items' deep representations (bias left out) at unit length, for Items to Item."""
        cached: Floats | None = self.__dict__.get("_unit")
        if cached is None:
            vectors = self.items[:, :-1]
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            cached = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
            object.__setattr__(self, "_unit", cached)
        return cached

    def scores(self, histories: Sequence[UserHistory], max_history: int) -> Floats:
        """(histories, items): the deep part (user tower . item vectors + item bias) plus the
        wide part's weights of each user's crossed values against each item's."""
        import torch

        users = [self._user(h) for h in histories]
        own = [h.properties or None for h in histories]
        rows = self._tower_input(histories, users, own, max_history)
        with torch.inference_mode():
            vectors = self.tower(rows).float().cpu()
            query = torch.cat([vectors, torch.ones(len(histories), 1)], dim=1)
            # In torch, not numpy: OpenBLAS's threads, woken right after torch's, stalled this
            # product for tens of milliseconds now and then on a busy machine.
            scores: Floats = (query @ torch.from_numpy(self.items_by_column)).numpy()
        if self.crosses:
            weights = self._wide_queries(users, own)
            scores += np.asarray((self.item_keys.matrix @ weights.T).T, dtype=np.float32)
        return scores

    def _user(self, history: UserHistory) -> int:
        """The user's training index, -1 where the model has none for it."""
        user = history.user
        return user if user is not None and 0 <= user < len(self.user_slot) else -1

    def _tower_input(
        self,
        histories: Sequence[UserHistory],
        users: list[int],
        own: list[Mapping[str, Any] | None],
        max_history: int,
    ) -> TowerInput:
        import torch

        from plugins.builtin.wide_deep_network import TowerInput

        codes = []
        for j, (name, vocabulary) in enumerate(self.encoders.categorical):
            per_user = []
            for user, props in zip(users, own, strict=True):
                if props is not None:
                    per_user.append(vocabulary.codes([props.get(name)])[0])
                elif user >= 0:
                    row = self.user_codes[j][user]
                    per_user.append(row[row > 0])
                else:
                    per_user.append(np.array([MISSING], dtype=np.int64))
            codes.append(torch.from_numpy(pad_rows(per_user)))
        numbers = np.zeros((len(users), self.encoders.width), dtype=np.float32)
        for r, (user, props) in enumerate(zip(users, own, strict=True)):
            if props is not None or user < 0:
                values = props or {}
                columns = {name: [values.get(name)] for name, _, _ in self.encoders.numeric}
                numbers[r] = self.encoders.numbers(columns, 1)[0]
            else:
                numbers[r] = self.user_numbers[user]
        history = None
        if self.tower.history is not None:
            n_items = len(self.item_history)
            items = []
            for h in histories:
                seen = h.items
                if len(h.weights) == len(seen):
                    seen = seen[h.weights > 0]  # as training reads only positives
                seen = seen[(seen >= 0) & (seen < n_items)][-max_history:]
                items.append(self.item_history[seen])
            history = torch.from_numpy(pad_rows(items))
        slots = np.array([self.user_slot[u] if u >= 0 else 0 for u in users], dtype=np.int64)
        device = self.tower.ids.weight.device
        return TowerInput(
            torch.from_numpy(slots).to(device),
            [c.to(device) for c in codes],
            torch.from_numpy(numbers).to(device),
            None,
            None if history is None else history.to(device),
        )

    def _wide_queries(self, users: list[int], own: list[Mapping[str, Any] | None]) -> Floats:
        """(users, keys of all crosses): per user, the summed weights of its keys paired with
        each distinct item key, which the items' key matrix then sums per item."""
        offsets = self.item_keys.offsets
        out = np.zeros((len(users), int(offsets[-1])), dtype=np.float32)
        buckets = len(self.wide)
        for c, cross in enumerate(self.crosses):
            low, high = int(offsets[c]), int(offsets[c + 1])
            mixed = self.item_keys.mixed[low:high]
            rows = self.user_keys[c]
            for r, (user, props) in enumerate(zip(users, own, strict=True)):
                if props is not None or user < 0:
                    keys = np.array(cross.user_keys(props or {}), dtype=np.uint64)
                else:
                    keys = rows.keys[rows.indptr[user] : rows.indptr[user + 1]]
                pairs = buckets_of(keys[:, None], mixed[None, :], buckets)
                out[r, low:high] = self.wide[pairs].sum(axis=0)
        return out

    # -- state ------------------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        """Everything as named arrays (see WideDeepModel.state)."""
        arrays: dict[str, np.ndarray[Any, Any]] = {
            "items": self.items,
            "item_history": self.item_history,
            "user_slot": self.user_slot,
            "user_numbers": self.user_numbers,
            "user_categorical": _strings([n for n, _ in self.encoders.categorical]),
            "user_numeric": _strings([n for n, _, _ in self.encoders.numeric]),
            "user_moments": np.array(
                [[m, s] for _, m, s in self.encoders.numeric], dtype=np.float64
            ).reshape(-1, 2),
            "tower_sizes": np.array(
                [
                    self.tower.ids.num_embeddings,
                    self.user_numbers.shape[1],
                    0 if self.tower.history is None else self.tower.history.num_embeddings,
                ],
                dtype=np.int64,
            ),
            "wide": self.wide,
            "wide_indptr": np.asarray(self.item_keys.matrix.indptr, dtype=np.int64),
            "wide_indices": np.asarray(self.item_keys.matrix.indices, dtype=np.int64),
            "wide_mixed": self.item_keys.mixed,
            "wide_offsets": self.item_keys.offsets,
        }
        for j, (_, vocabulary) in enumerate(self.encoders.categorical):
            arrays[f"user_vocabulary_{j}"] = vocabulary.array()
            arrays[f"user_codes_{j}"] = self.user_codes[j]
        for c, cross in enumerate(self.crosses):
            arrays[f"cross_{c}_user"] = _strings(list(cross.user))
            arrays[f"cross_{c}_item"] = _strings(list(cross.item))
            arrays[f"cross_{c}_indptr"] = self.user_keys[c].indptr
            arrays[f"cross_{c}_keys"] = self.user_keys[c].keys
        for key, value in self.tower.state_dict().items():
            arrays[f"tower.{key}"] = value.detach().cpu().numpy().copy()
        return arrays

    @classmethod
    def restore(
        cls,
        arrays: Mapping[str, np.ndarray[Any, Any]],
        tower: Tower,
        vocabularies: list[tuple[str, Vocabulary]],
    ) -> Serving:
        """The serving side from `state`'s arrays and the user tower they filled."""
        names = arrays["user_numeric"].tolist()
        moments = arrays["user_moments"].reshape(-1, 2).tolist()
        encoders = Encoders(
            tuple(vocabularies),
            tuple((n, float(m), float(s)) for n, (m, s) in zip(names, moments, strict=True)),
        )
        offsets = np.asarray(arrays["wide_offsets"], dtype=np.int64)
        items = np.ascontiguousarray(arrays["items"], dtype=np.float32)
        matrix = sp.csr_matrix(
            (
                np.ones(len(arrays["wide_indices"]), dtype=np.float32),
                arrays["wide_indices"],
                arrays["wide_indptr"],
            ),
            shape=(len(items), int(offsets[-1])),
        )
        crosses = [
            Cross(
                tuple(arrays[f"cross_{c}_user"].tolist()), tuple(arrays[f"cross_{c}_item"].tolist())
            )
            for c in range(len(offsets) - 1)
        ]
        return cls(
            items=items,
            item_history=np.asarray(arrays["item_history"], dtype=np.int64),
            user_slot=np.asarray(arrays["user_slot"], dtype=np.int64),
            encoders=encoders,
            user_codes=[
                np.asarray(arrays[f"user_codes_{j}"], dtype=np.int64)
                for j in range(len(vocabularies))
            ],
            user_numbers=np.asarray(arrays["user_numbers"], dtype=np.float32),
            tower=tower,
            crosses=crosses,
            user_keys=[
                KeyRows(
                    np.asarray(arrays[f"cross_{c}_indptr"], dtype=np.int64),
                    np.asarray(arrays[f"cross_{c}_keys"], dtype=np.uint64),
                )
                for c in range(len(crosses))
            ],
            item_keys=ItemKeys(matrix, np.asarray(arrays["wide_mixed"], np.uint64), offsets),
            wide=np.asarray(arrays["wide"], dtype=np.float32),
        )


def vocabularies(arrays: Mapping[str, np.ndarray[Any, Any]]) -> list[tuple[str, Vocabulary]]:
    """The user properties' vocabularies that `Serving.state` saved."""
    return [
        (name, Vocabulary(tuple(arrays[f"user_vocabulary_{j}"].tolist())))
        for j, name in enumerate(arrays["user_categorical"].tolist())
    ]


def _strings(values: list[str]) -> np.ndarray[Any, Any]:
    """Strings as a fixed-width unicode array, which np.save writes without pickle."""
    return np.array(values, dtype=np.str_) if values else np.zeros(0, dtype="<U1")


def _slots(counts: Int64s, least: int) -> Int64s:
    """Id slots: 0 (the shared unknown embedding) below `least` positives, then 1, 2, ..."""
    warm = counts >= least
    slots = np.zeros(len(counts), dtype=np.int64)
    slots[warm] = np.arange(1, int(warm.sum()) + 1)
    return slots


def _latest_items(data: TrainingData, limit: int) -> Int64s:
    """(users, limit): each user's latest `limit` items of positive weight, -1 where fewer."""
    out = np.full((data.n_users, limit), -1, dtype=np.int64)
    if not limit:
        return out
    keep = data.weights > 0
    users, items = data.users[keep], data.items[keep]
    order = np.lexsort((data.timestamps[keep], users))  # by user, then time
    users, items = users[order], items[order]
    ends = np.cumsum(np.bincount(users, minlength=data.n_users))
    from_end = ends[users] - np.arange(len(users)) - 1  # 0: the user's latest
    latest = from_end < limit
    out[users[latest], from_end[latest]] = items[latest]
    return out


def _chosen(
    algorithm: str, side: str, listed: Sequence[str], types: Mapping[str, pa.DataType]
) -> dict[str, str]:
    """The properties a tower reads, and how (kind_of): the listed ones, or every readable."""
    key = f"{side}_properties"
    if not listed:
        return {name: kind for name, t in types.items() if (kind := kind_of(t)) is not None}
    out = {}
    for name in listed:
        if name not in types:
            known = ", ".join(types) or "none"
            raise ParameterError(algorithm, key, f"no {side} property '{name}' (known: {known})")
        kind = kind_of(types[name])
        if kind is None:
            raise ParameterError(
                algorithm, key, f"'{name}' is a {types[name]}, which the {side} tower cannot read"
            )
        out[name] = kind
    return out


def _cross(
    algorithm: str,
    names: Sequence[str],
    item_types: Mapping[str, pa.DataType],
    user_types: Mapping[str, pa.DataType],
) -> Cross:
    """A cross's properties by side: `item.x` / `user.x`, or a name that one table has."""
    user: list[str] = []
    item: list[str] = []
    for name in names:
        side, _, prop = name.rpartition(".")
        if side == "item" or (not side and prop in item_types and prop not in user_types):
            sides, types = item, item_types
        elif side == "user" or (not side and prop in user_types and prop not in item_types):
            sides, types = user, user_types
        elif not side and prop in item_types:
            raise ParameterError(
                algorithm,
                "crosses",
                f"'{prop}' is an item and a user property: write item.{prop} or user.{prop}",
            )
        else:
            raise ParameterError(
                algorithm,
                "crosses",
                f"no item or user property '{name}' (items: {', '.join(item_types) or 'none'}; "
                f"users: {', '.join(user_types) or 'none'})",
            )
        if prop not in types:
            raise ParameterError(algorithm, "crosses", f"no {side} property '{prop}'")
        if not crossable(types[prop]):
            raise ParameterError(
                algorithm,
                "crosses",
                f"'{prop}' is a {types[prop]}: only strings, sets, booleans and ints are crossed",
            )
        sides.append(prop)
    if not item:
        raise ParameterError(
            algorithm,
            "crosses",
            f"{list(names)!r} crosses user properties alone, which scores every item alike: "
            "add an item property",
        )
    return Cross(tuple(user), tuple(item))


def _text_vectors(algorithm: str, settings: Mapping[str, Any], data: TrainingData) -> Floats | None:
    """The items' text vectors where an embedder is set and the host provides them (zeros
    where an item has no text); None otherwise."""
    embedder = str(settings["text_embedder"])
    if not embedder or data.item_text_vectors is None:
        return None
    try:
        embeddings = data.item_text_vectors(embedder=embedder)
    except ValueError as error:
        raise ParameterError(algorithm, "text_embedder", str(error)) from None
    vectors = np.zeros((data.n_items, embeddings.vectors.shape[1]), dtype=np.float32)
    rows = min(data.n_items, len(embeddings.vectors))
    present = embeddings.present[:rows]
    vectors[:rows] = np.where(present[:, None], embeddings.vectors[:rows], np.float32(0.0))
    return vectors
