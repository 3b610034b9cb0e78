"""Baselines that a cold-start model must beat: `random` and `attribute-popularity`.

- `random`: uniform scores, drawn from a generator seeded by the model's seed and the request
  (the history's items and the user's properties), so that the same request gets the same list
  and different users different ones.
- `attribute-popularity`: the popularity of an item among the users who share the user's
  property values, backed off to the popularity of the item's property values where the item has
  no interactions. A *segment* is one value of one categorical user property (gender=F,
  occupation=writer, age in its quantile bin); a user belongs to one segment per property it
  has, or to the segment of everyone where it has none. For each segment s and item i, the rate
  r(s, i) is the share of s's users who interacted with i; for an item without interactions it
  is, averaged over the item's categorical properties (and over the values of a set property),
  the rate of the value v among s's users per item that has v: c(s, v) / (n_s * m_v). A user's
  score is the mean rate over its segments. String, boolean and set properties with at most
  `max_values` distinct values are categorical (a title or a URL is not); numbers are cut into
  `bins` quantile bins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from plugins.algorithm import Algorithm, Parameter, UserHistory
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData

SEPARATOR = "\x1f"
"""Between a property's name and a value in a segment's key."""
EVERYONE = ""
"""The key of the segment of every user."""


class RandomScores(Algorithm):
    name = "random"
    description = "uniform random scores (seeded): the floor every model must clear"
    parameters = (Parameter("seed", int, 0, "seeds the scores with the request"),)

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        scores = np.empty((len(histories), self.n_items), dtype=np.float32)
        for row, history in enumerate(histories):
            digest = hashlib.blake2b(digest_size=8)
            digest.update(np.asarray(history.items, dtype=np.int64).tobytes())
            digest.update(repr(sorted(history.properties.items())).encode())
            key = int.from_bytes(digest.digest(), "little")
            rng = np.random.default_rng([int(self.settings["seed"]), key])
            # (0, 1]: every score is evidence (above the relevance threshold 0).
            scores[row] = 1.0 - rng.random(self.n_items, dtype=np.float32)
        return scores

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        return {}

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        pass


class AttributePopularity(Algorithm):
    name = "attribute-popularity"
    uses_user_properties = True
    description = (
        "items popular among the users who share the user's property values, new items by "
        "the popularity of their property values"
    )
    parameters = (
        Parameter(
            "max_values",
            int,
            100,
            "string and set properties with more distinct values are not attributes",
            minimum=2,
        ),
        Parameter("bins", int, 5, "quantile bins of a numeric property", minimum=2),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.rates = np.zeros((1, 0), dtype=np.float32)
        """segments x items: the rate of each item in each segment (row 0: everyone)."""
        self.segments = np.array([EVERYONE])
        """Each segment's key: "property<US>value" (value "bin<k>" for a number)."""
        self.bin_names = np.zeros(0, dtype=str)
        self.bin_edges = np.zeros((0, 0), dtype=np.float64)
        """The numeric user properties and their inner bin edges (one row each)."""

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items
        max_values, bins = int(self.settings["max_values"]), int(self.settings["bins"])
        users = Attributes.of(data.user_properties, data.n_users, max_values, bins)
        items = Attributes.of(data.item_properties, data.n_items, max_values, bins)
        self.bin_names = np.array(list(users.edges), dtype=str)
        self.bin_edges = np.array(list(users.edges.values()), dtype=np.float64).reshape(
            len(users.edges), bins - 1
        )
        self.segments = np.array([EVERYONE, *users.keys])
        member = users.matrix.tocsc().astype(np.float32)  # users x segments (but everyone)
        seen = data.matrix.copy().astype(np.float32)
        seen.data[:] = 1.0  # a user counts once per item, whatever its interactions
        item_users = np.asarray(seen.sum(axis=0)).ravel()
        counts = np.vstack([item_users, np.asarray((member.T @ seen).todense())])
        sizes = np.r_[data.n_users, np.asarray(member.sum(axis=0)).ravel()].astype(np.float64)
        rates = counts / np.maximum(sizes, 1.0)[:, None]  # segments x items
        # Back-off for items without interactions: the rates of their attribute values.
        values = items.matrix.tocsc().astype(np.float64)
        per_value = np.asarray(values.sum(axis=0)).ravel()  # items having each value
        value_rates = (rates @ values) / np.maximum(per_value, 1.0)  # segments x values
        mix = items.mean_matrix()  # items x values: a mean over values, then over properties
        fallback = np.asarray((mix @ value_rates.T).T)
        warm = item_users > 0
        self.rates = np.where(warm[None, :], rates, fallback).astype(np.float32)

    def segments_of(self, properties: Mapping[str, Any]) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The segment rows of a user's property values (everyone's where none is known)."""
        index = {key: row for row, key in enumerate(self.segments.tolist())}
        bins = {name: self.bin_edges[row] for row, name in enumerate(self.bin_names.tolist())}
        rows = []
        for name, value in properties.items():
            for key in property_keys(name, value, bins.get(name)):
                if key in index:
                    rows.append(index[key])
        return np.array(sorted(set(rows)) or [0], dtype=np.int64)

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        scores = np.empty((len(histories), self.n_items), dtype=np.float32)
        for row, history in enumerate(histories):
            scores[row] = self.rates[self.segments_of(history.properties)].mean(axis=0)
        return scores

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        return {
            "rates": self.rates,
            "segments": self.segments,
            "bin_names": self.bin_names,
            "bin_edges": self.bin_edges,
        }

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self.rates = np.asarray(arrays["rates"], dtype=np.float32)
        self.segments = np.asarray(arrays["segments"]).astype(str)
        self.bin_names = np.asarray(arrays["bin_names"]).astype(str)
        self.bin_edges = np.asarray(arrays["bin_edges"], dtype=np.float64)


def property_keys(name: str, value: Any, edges: np.ndarray[Any, Any] | None) -> list[str]:
    """The keys (segments, one-hot columns) of one property value: one per value of a set, a
    bin for a number."""
    if value is None or name.startswith("$"):
        return []
    if edges is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return []
        return [f"{name}{SEPARATOR}bin{int(np.searchsorted(edges, value, side='right'))}"]
    values = value if isinstance(value, list | tuple) else [value]
    return [f"{name}{SEPARATOR}{v}" for v in values if v is not None]


class Attributes:
    """The categorical values of an entity table: a rows x values indicator matrix (rows by
    "$idx"), each value's key and property, and the bin edges of the numeric properties."""

    def __init__(
        self,
        matrix: sp.coo_matrix,
        keys: list[str],
        owners: list[int],
        edges: dict[str, list[float]],
    ) -> None:
        self.matrix = matrix
        self.keys = keys
        self.owners = np.asarray(owners, dtype=np.int64)
        """The property (0, 1, ...) each value belongs to."""
        self.edges = edges

    def unit_by_property(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """rows x values, dense: each property's values of a row scaled to unit length (a film
        in three genres has 1/√3 in each), so that no property outweighs another by how many
        values it has."""
        matrix = self.matrix.tocoo()
        out = np.zeros(matrix.shape)
        if not matrix.nnz:
            return out
        owners = self.owners[matrix.col]
        pair = matrix.row.astype(np.int64) * (int(owners.max()) + 1) + owners
        _, pair_index, per_pair = np.unique(pair, return_inverse=True, return_counts=True)
        out[matrix.row, matrix.col] = 1.0 / np.sqrt(per_pair[pair_index])
        return out

    def mean_matrix(self) -> sp.csr_matrix:
        """rows x values weights that average a row's values within each property, then over
        its properties (a row's weights sum to 1, or to 0 without any value)."""
        matrix = self.matrix.tocoo()
        if not matrix.nnz:
            return sp.csr_matrix(matrix.shape, dtype=np.float64)
        rows, owners = matrix.row, self.owners[matrix.col]
        pair = rows.astype(np.int64) * (int(owners.max()) + 1) + owners
        _, pair_index, per_pair = np.unique(pair, return_inverse=True, return_counts=True)
        properties = np.bincount(
            rows, weights=1.0 / per_pair[pair_index], minlength=matrix.shape[0]
        )
        weights = 1.0 / per_pair[pair_index] / properties[rows]
        return sp.csr_matrix((weights, (rows, matrix.col)), shape=matrix.shape)

    @classmethod
    def of(cls, table: pa.Table | None, n_rows: int, max_values: int, bins: int) -> Attributes:
        keys: dict[str, int] = {}
        owners: list[int] = []
        properties = 0
        edges: dict[str, list[float]] = {}
        rows: list[int] = []
        columns: list[int] = []
        if table is None or "$idx" not in table.column_names:
            return cls(sp.coo_matrix((n_rows, 0)), [], [], edges)
        indexes = table.column("$idx").to_pylist()
        for name, kind in zip(table.schema.names, table.schema.types, strict=True):
            if name.startswith("$"):
                continue
            column = table.column(name).to_pylist()
            bin_edges: np.ndarray[Any, Any] | None = None
            if _is_number(kind):
                numbers = np.array([v for v in column if v is not None], dtype=np.float64)
                if not len(numbers):
                    continue
                bin_edges = np.quantile(numbers, np.linspace(0, 1, bins + 1)[1:-1])
                edges[name] = bin_edges.tolist()
            elif not _is_categorical(kind):
                continue
            elif (
                len({k for value in column for k in property_keys(name, value, None)}) > max_values
            ):
                continue  # nearly one value per row (a title, a URL): not an attribute
            owner, properties = properties, properties + 1
            for row, value in zip(indexes, column, strict=True):
                if row is None or not 0 <= row < n_rows:
                    continue
                for key in property_keys(name, value, bin_edges):
                    if key not in keys:
                        keys[key] = len(keys)
                        owners.append(owner)
                    rows.append(row)
                    columns.append(keys[key])
        matrix = sp.coo_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, columns)), shape=(n_rows, len(keys))
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return cls(matrix, list(keys), owners, edges)


def _is_number(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def _is_categorical(kind: pa.DataType) -> bool:
    """A string or boolean column, or a list of strings (a set property)."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_boolean(kind)
    )


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [RandomScores, AttributePopularity]
