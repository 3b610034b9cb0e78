"""What the stacker knows of each item from its training data: popularity, first and latest
interaction, and (optionally) its properties encoded as numbers, with what a user's history says
about each property (its *affinity* to an item).

Properties are encoded by kind:

- a string is a category: a code per value (its most frequent values, at most MAX_CATEGORIES),
  which LightGBM splits as a category; the affinity is the share of the user's items with the
  same value;
- a number or a boolean is a number; the affinity is the item's value less the mean over the
  user's items;
- a set of strings is one 0/1 column per frequent value (at most SET_VALUES); the affinity is
  the mean, over the item's values, of the share of the user's items that hold the value.

With `item_properties: true` every property that encodes counts, but strings with more than
MAX_CATEGORIES distinct values (titles, URLs) and other kinds (images) are left out; a list
names the properties (PropertyError for one that is missing or cannot be encoded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from plugins.training import TrainingData

Array = np.ndarray[Any, Any]
MAX_CATEGORIES = 100
"""A string property with more distinct values than this is a category only where named, and
then only its most frequent values count."""
SET_VALUES = 20
"""A set property becomes one 0/1 column for each of its most frequent values, at most this
many."""
KINDS = ("category", "number", "set")


class PropertyError(ValueError):
    """An item property named in `item_properties` that the catalog lacks or cannot encode."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"algorithm 'stacker', parameter 'item_properties': '{name}' {problem}")


@dataclass(frozen=True)
class ItemSide:
    """The items as the stacker knows them (NaN: unknown)."""

    log_count: Array
    """float32 (n,): log(1 + interactions)."""
    first_seen: Array
    """float64 (n,): epoch seconds of the item's first interaction."""
    last_seen: Array
    """float64 (n,): of its latest."""
    reference: float
    """The newest training interaction (epoch seconds): ages count up to it."""
    properties: Array
    """float32 (n, columns): the encoded properties."""
    names: tuple[str, ...] = ()
    """The encoded properties' names, one per property."""
    kinds: tuple[str, ...] = ()
    """Each property's kind (KINDS)."""
    sources: tuple[int, ...] = ()
    """Each column's property (an index into `names`)."""
    times: Array = field(default_factory=lambda: np.zeros(0))
    """float64: every training interaction as its item plus its time's place in the span of
    times (in [0, 1)), sorted: how many interactions an item had in a window is two binary
    searches."""
    span: tuple[float, float] = (0.0, 1.0)
    """The first training interaction's time and the span of times (seconds)."""

    @property
    def n_items(self) -> int:
        return len(self.log_count)

    @property
    def categorical(self) -> list[int]:
        """The columns that hold category codes."""
        return [c for c, s in enumerate(self.sources) if self.kinds[s] == "category"]

    @classmethod
    def empty(cls) -> ItemSide:
        """What an unfitted stacker knows: no item."""
        nothing = np.zeros(0)
        return cls(nothing.astype(np.float32), nothing, nothing, 0.0, np.zeros((0, 0)))

    @classmethod
    def of(cls, data: TrainingData, chosen: bool | Sequence[str]) -> ItemSide:
        """The items of `data`, with the `chosen` properties (True: every one that encodes)."""
        n = data.n_items
        counts = np.bincount(data.items, minlength=n)[:n]
        first = np.full(n, np.nan)
        last = np.full(n, np.nan)
        if len(data.items):
            order = np.lexsort((data.timestamps, data.items))
            items, times = data.items[order], data.timestamps[order]
            starts = np.flatnonzero(np.r_[True, items[1:] != items[:-1]])
            ends = np.r_[starts[1:], len(items)] - 1
            first[items[starts]] = times[starts]
            last[items[ends]] = times[ends]
        reference = float(data.timestamps.max()) if len(data.timestamps) else 0.0
        origin = float(data.timestamps.min()) if len(data.timestamps) else 0.0
        span = (origin, max(reference - origin, 1.0))
        times = np.sort(data.items + _place(data.timestamps, span))
        blocks = encode_properties(data.item_properties, n, chosen)
        columns = [block for _, _, block in blocks]
        return cls(
            np.log1p(counts).astype(np.float32),
            first,
            last,
            reference,
            np.hstack(columns) if columns else np.zeros((n, 0), dtype=np.float32),
            tuple(name for name, _, _ in blocks),
            tuple(kind for _, kind, _ in blocks),
            tuple(s for s, (_, _, block) in enumerate(blocks) for _ in range(block.shape[1])),
            times,
            span,
        )

    def layout(self) -> dict[str, Any]:
        """What `restore` needs beside the arrays (JSON)."""
        return {"names": list(self.names), "kinds": list(self.kinds), "sources": list(self.sources)}

    def state(self) -> dict[str, Array]:
        return {
            "item_log_count": self.log_count,
            "item_first_seen": self.first_seen,
            "item_last_seen": self.last_seen,
            "item_properties": self.properties,
            "reference_time": np.array([self.reference]),
            "item_times": self.times,
            "time_span": np.array(self.span),
        }

    @classmethod
    def restore(cls, arrays: Mapping[str, Array], layout: Mapping[str, Any]) -> ItemSide:
        return cls(
            np.asarray(arrays["item_log_count"], dtype=np.float32),
            np.asarray(arrays["item_first_seen"], dtype=np.float64),
            np.asarray(arrays["item_last_seen"], dtype=np.float64),
            float(arrays["reference_time"][0]),
            np.asarray(arrays["item_properties"], dtype=np.float32),
            tuple(layout["names"]),
            tuple(layout["kinds"]),
            tuple(int(s) for s in layout["sources"]),
            np.asarray(arrays["item_times"], dtype=np.float64),
            (float(arrays["time_span"][0]), float(arrays["time_span"][1])),
        )

    def interactions_between(self, items: Array, start: Array, end: Array) -> Array:
        """How many training interactions each item had from `start` to `end` (epoch seconds;
        NaN bounds count nothing)."""
        known = (items < self.n_items) & np.isfinite(start) & np.isfinite(end)
        low = np.searchsorted(self.times, items + _place(np.nan_to_num(start), self.span), "left")
        high = np.searchsorted(self.times, items + _place(np.nan_to_num(end), self.span), "right")
        return np.where(known, high - low, 0)

    def column_values(self, items: Array) -> Array:
        """The encoded properties of the items (NaN for items it does not know)."""
        known = items < self.n_items
        at = np.where(known, items, 0)
        return np.where(known[:, None], self.properties[at], np.nan).astype(np.float32)

    def affinities(
        self, history: tuple[Array, Array], n_rows: int, rows: Array, items: Array
    ) -> Array:
        """(pairs, properties): what each row's history ((row, item) cells) says of each pair's
        item, by property (see the module). Costs the history and the pairs, never the
        catalog."""
        out = np.full((len(rows), len(self.names)), np.nan, dtype=np.float32)
        if not self.names or not len(rows):
            return out
        hist_rows, hist_items = history
        inside = hist_items < self.n_items
        hist_rows, hist_items = hist_rows[inside], hist_items[inside]
        lengths = np.bincount(hist_rows, minlength=n_rows).astype(np.float64)
        mine = self.column_values(items).astype(np.float64)  # the pairs' items
        theirs = self.properties[hist_items].astype(np.float64)  # the histories' items
        with np.errstate(invalid="ignore", divide="ignore"):
            for source, kind in enumerate(self.kinds):
                columns = [c for c, s in enumerate(self.sources) if s == source]
                if kind == "number":
                    value = theirs[:, columns[0]]
                    present = np.isfinite(value)
                    total = np.bincount(hist_rows[present], value[present], minlength=n_rows)
                    count = np.bincount(hist_rows[present], minlength=n_rows)
                    out[:, source] = mine[:, columns[0]] - (total / count)[rows]
                elif kind == "category":
                    code = theirs[:, columns[0]]
                    present = np.isfinite(code)
                    width = int(np.nanmax(self.properties[:, columns[0]], initial=-1)) + 1
                    keys = hist_rows[present] * width + code[present].astype(np.int64)
                    shares = np.bincount(keys, minlength=n_rows * width).reshape(n_rows, width)
                    own = mine[:, columns[0]]
                    valid = np.isfinite(own)
                    picked = shares[rows, np.where(valid, own, 0).astype(np.int64)]
                    out[:, source] = np.where(valid, picked / lengths[rows], np.nan)
                else:
                    held = np.nan_to_num(theirs[:, columns])
                    profile = np.zeros((n_rows, len(columns)))
                    np.add.at(profile, hist_rows, held)
                    values = np.nan_to_num(mine[:, columns])
                    count = values.sum(axis=1)
                    score = (profile[rows] * values).sum(axis=1) / count / lengths[rows]
                    out[:, source] = np.where(count > 0, score, np.nan)
        return out


def _place(times: Array, span: tuple[float, float]) -> Array:
    """Times as places in [0, 1) of the span of training times (clipped to it): added to an
    item index, they sort by item, then time, in one float64 (exact enough: 2⁵³ holds a
    million items with 2³² places each)."""
    origin, width = span
    return np.clip((np.asarray(times, dtype=np.float64) - origin) / width, 0.0, 1.0) * (1 - 1e-9)


def encode_properties(
    table: pa.Table, n_items: int, chosen: bool | Sequence[str]
) -> list[tuple[str, str, Array]]:
    """The chosen properties as (name, kind, float32 columns (n_items, c))."""
    if chosen is False or (not isinstance(chosen, bool) and not chosen):
        return []
    present = [name for name in table.column_names if not name.startswith("$")]
    explicit = not isinstance(chosen, bool)
    wanted = list(chosen) if not isinstance(chosen, bool) else present
    for name in wanted:
        if name not in present:
            raise PropertyError(name, f"is not an item property ({', '.join(present) or 'none'})")
    indexes = np.asarray(table.column("$idx").to_pylist(), dtype=np.int64)
    inside = (indexes >= 0) & (indexes < n_items)
    out = []
    for name in wanted:
        kind = table.schema.field(name).type
        encoded = _encode(table.column(name).to_pylist(), kind, explicit)
        if encoded is None:
            if explicit:
                raise PropertyError(name, f"cannot be a feature (type {kind})")
            continue
        what, block = encoded
        full = np.full((n_items, block.shape[1]), np.nan, dtype=np.float32)
        full[indexes[inside]] = block[inside]
        out.append((name, what, full))
    return out


def _encode(values: list[Any], kind: pa.DataType, explicit: bool) -> tuple[str, Array] | None:
    """One property's kind and columns; None where it does not encode."""
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        column = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float32)
        return "number", column[:, None]
    if pa.types.is_string(kind):
        counts: dict[str, int] = {}
        for value in values:
            if value is not None:
                counts[value] = counts.get(value, 0) + 1
        if not counts or (not explicit and len(counts) > MAX_CATEGORIES):
            return None
        kept = sorted(counts, key=lambda v: (-counts[v], v))[:MAX_CATEGORIES]
        code = {value: float(i) for i, value in enumerate(kept)}
        column = np.array([code.get(v, np.nan) for v in values], dtype=np.float32)
        return "category", column[:, None]
    if pa.types.is_list(kind) and pa.types.is_string(kind.value_type):
        counts = {}
        for row in values:
            for value in set(row or ()):
                counts[value] = counts.get(value, 0) + 1
        if not counts:
            return None
        kept = sorted(counts, key=lambda v: (-counts[v], v))[:SET_VALUES]
        block = np.zeros((len(values), len(kept)), dtype=np.float32)
        for row, held in enumerate(values):
            for place, value in enumerate(kept):
                block[row, place] = value in (held or ())
        return "set", block
    return None
