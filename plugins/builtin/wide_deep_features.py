"""The inputs of the `wide-deep` model, in numpy: property values encoded for the deep part
(vocabulary codes and standardised numbers) and hashed crosses for the wide part.

- Categorical values (strings, booleans, set members) get codes: 0 pads a row, 1 is a missing
  value, 2 a rare one (seen on fewer than `min_count` trained items or users, or never: its
  embedding would be untrained), 3 and above the vocabulary. A set is all its members' codes.
- Numbers (int, double) are standardised over the rows that have one; a missing one is 0 with a
  missing flag of 1.
- A cross (say genres x occupation) is the cross product of its properties' values on the user
  side and on the item side; each side's tuples are hashed (blake2b of each value, mixed by
  splitmix64) into keys, and a (user key, item key) pair into one of `buckets` weights. An item's
  keys are few distinct ones (one per genre), so that scoring a user reads the weights of the
  user's keys against each distinct item key once, then sums them per item with one sparse
  product.

No torch here: the serving side encodes users with these functions per request.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

Int64s = np.ndarray[Any, np.dtype[np.int64]]
UInt64s = np.ndarray[Any, np.dtype[np.uint64]]
Floats = np.ndarray[Any, np.dtype[np.float32]]

PAD, MISSING, RARE = 0, 1, 2
"""The codes that are no vocabulary value."""
FIRST_VALUE = 3
MAX_SET_VALUES = 32
"""A set's first this many members are read (a set of thousands would cost every batch)."""
MISSING_TOKEN = "\x00missing"
"""What a cross reads for a property without a value: missing is a value of the cross too."""
_MASK = (1 << 64) - 1
_ITEM_SEED = 0x5EED_17E3


def kind_of(arrow_type: pa.DataType) -> str | None:
    """How the deep part reads a column: "categorical" (strings, booleans, sets of strings),
    "numeric" (ints, doubles) or None (timestamps, anything else)."""
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "categorical"
    if pa.types.is_boolean(arrow_type):
        return "categorical"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        value = arrow_type.value_type
        return (
            "categorical" if pa.types.is_string(value) or pa.types.is_large_string(value) else None
        )
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return "numeric"
    return None


def crossable(arrow_type: pa.DataType) -> bool:
    """Whether a column can be crossed: categorical values and ints (a double has no values to
    cross; bucketise it into a string property first)."""
    return kind_of(arrow_type) == "categorical" or pa.types.is_integer(arrow_type)


def property_kinds(table: pa.Table | None) -> dict[str, pa.DataType]:
    """The property columns of an item or user table ("$" columns left out) and their types."""
    if table is None:
        return {}
    return {
        name: kind
        for name, kind in zip(table.schema.names, table.schema.types, strict=True)
        if not name.startswith("$")
    }


def aligned(table: pa.Table | None, name: str, rows: int) -> list[Any]:
    """A column's values by dense index ("$idx"), None where a row has none or is absent."""
    out: list[Any] = [None] * rows
    if table is None or name not in table.column_names or "$idx" not in table.column_names:
        return out
    for index, value in zip(
        table.column("$idx").to_pylist(), table.column(name).to_pylist(), strict=True
    ):
        if index is not None and 0 <= index < rows:
            out[index] = value
    return out


def tokens(value: Any) -> list[str]:
    """A value's categorical tokens: none for a missing value, each member of a set."""
    if value is None:
        return []
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, list | tuple):
        return [str(v) for v in value[:MAX_SET_VALUES] if v is not None]
    if isinstance(value, float):
        return [] if not math.isfinite(value) else [repr(value)]
    return [str(value)]


# -- the deep part's encodings ----------------------------------------------------------------


@dataclass(frozen=True)
class Vocabulary:
    """A categorical property's values that have an embedding of their own, by frequency."""

    values: tuple[str, ...]

    @classmethod
    def of(cls, values: Sequence[Any], counted: np.ndarray[Any, Any], min_count: int) -> Vocabulary:
        """The values on at least `min_count` of the `counted` rows (the trained items or
        users: the others' values would keep their initial embedding), most frequent first."""
        counts: Counter[str] = Counter()
        for value, count in zip(values, counted.tolist(), strict=True):
            if count:
                counts.update(set(tokens(value)))
        kept = sorted(
            (v for v, c in counts.items() if c >= min_count), key=lambda v: (-counts[v], v)
        )
        return cls(tuple(kept))

    @property
    def size(self) -> int:
        """How many codes there are, the special ones included."""
        return FIRST_VALUE + len(self.values)

    def codes(self, values: Sequence[Any]) -> Int64s:
        """(rows, width) codes, padded with 0; a missing value is [MISSING]."""
        index = self._index
        rows = [[index.get(t, RARE) for t in tokens(v)] or [MISSING] for v in values]
        width = max((len(r) for r in rows), default=1)
        out = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out

    @property
    def _index(self) -> dict[str, int]:
        cached: dict[str, int] | None = self.__dict__.get("_cached_index")
        if cached is None:
            cached = {v: FIRST_VALUE + i for i, v in enumerate(self.values)}
            object.__setattr__(self, "_cached_index", cached)
        return cached

    def array(self) -> np.ndarray[Any, Any]:
        """The values as a fixed-width unicode array (saved without pickle)."""
        return np.array(self.values, dtype=np.str_) if self.values else np.zeros(0, dtype="<U1")


def numbers(values: Sequence[Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A numeric column as float64, NaN where missing (or not a finite number)."""
    out = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[i] = float(value)
    return out


def standardised(values: np.ndarray[Any, np.dtype[np.float64]], mean: float, std: float) -> Floats:
    """(rows, 2): the standardised value (0 where missing) and the missing flag."""
    present = ~np.isnan(values)
    out = np.zeros((len(values), 2), dtype=np.float32)
    out[present, 0] = (values[present] - mean) / std
    out[~present, 1] = 1.0
    return out


def moments(values: np.ndarray[Any, np.dtype[np.float64]]) -> tuple[float, float]:
    """Mean and standard deviation of the present values (0 and 1 where there are none; a
    constant column's deviation is 1)."""
    present = values[~np.isnan(values)]
    if not len(present):
        return 0.0, 1.0
    std = float(present.std())
    return float(present.mean()), std if std > 0 else 1.0


# -- the wide part's crosses ------------------------------------------------------------------


@lru_cache(maxsize=1 << 16)
def token_hash(prop: str, token: str) -> int:
    """A value's stable 64-bit hash (Python's own hash() differs between processes)."""
    digest = hashlib.blake2b(f"{prop}\x1f{token}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def mix_int(x: int) -> int:
    """splitmix64's finaliser on one 64-bit integer."""
    x &= _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def mix(x: UInt64s) -> UInt64s:
    """splitmix64's finaliser on an array (unsigned arithmetic wraps, as it should)."""
    z = np.array(x, dtype=np.uint64)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


@dataclass(frozen=True)
class Cross:
    """One cross of the wide part: its user and item properties (each side may be empty, not
    both; a cross of item properties alone is an attribute prior of the items)."""

    user: tuple[str, ...]
    item: tuple[str, ...]

    @property
    def seed(self) -> int:
        """What the cross's user keys start from: the same values crossed otherwise hash apart."""
        return token_hash("\x00cross", "|".join(("user", *self.user, "item", *self.item)))

    def user_keys(self, properties: Mapping[str, Any]) -> list[int]:
        """The user side's keys from the user's property values."""
        return _keys(self.seed, self.user, properties)

    def item_keys(self, properties: Mapping[str, Any]) -> list[int]:
        """The item side's keys from the item's property values."""
        return _keys(_ITEM_SEED, self.item, properties)


def _keys(seed: int, props: Sequence[str], values: Mapping[str, Any]) -> list[int]:
    keys = [seed]
    for prop in props:
        found = tokens(values.get(prop)) or [MISSING_TOKEN]
        keys = [mix_int(k ^ token_hash(prop, t)) for k, t in itertools.product(keys, found)]
    return keys


@dataclass(frozen=True)
class KeyRows:
    """Keys per row, as CSR: row r's keys are `keys[indptr[r]:indptr[r + 1]]` (each row has at
    least one: a missing value is a value)."""

    indptr: Int64s
    keys: UInt64s

    @classmethod
    def of(cls, rows: Sequence[Sequence[int]]) -> KeyRows:
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=indptr[1:])
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.uint64, count=indptr[-1])
        return cls(indptr, flat)


def user_key_rows(cross: Cross, columns: Mapping[str, Sequence[Any]], rows: int) -> KeyRows:
    """The user keys of every row of aligned user columns."""
    return KeyRows.of(
        [cross.user_keys({p: columns[p][r] for p in cross.user}) for r in range(rows)]
    )


@dataclass(frozen=True)
class ItemKeys:
    """The item side of every cross: each item's distinct keys (`matrix`: items x keys of all
    crosses, 1 where the item has the key) and each key's mixed hash (`mixed`); `offsets[c]`
    is where cross c's keys begin."""

    matrix: sp.csr_matrix
    mixed: UInt64s
    offsets: Int64s

    @classmethod
    def of(
        cls, crosses: Sequence[Cross], columns: Mapping[str, Sequence[Any]], rows: int
    ) -> ItemKeys:
        indptr = [0]
        indices: list[int] = []
        mixed: list[UInt64s] = []
        offsets = [0]
        per_cross: list[list[list[int]]] = []
        for cross in crosses:
            positions: dict[int, int] = {}
            items = []
            for r in range(rows):
                keys = cross.item_keys({p: columns[p][r] for p in cross.item})
                items.append([positions.setdefault(k, len(positions)) + offsets[-1] for k in keys])
            per_cross.append(items)
            mixed.append(mix(np.fromiter(positions, dtype=np.uint64, count=len(positions))))
            offsets.append(offsets[-1] + len(positions))
        for r in range(rows):
            for items in per_cross:
                indices.extend(sorted(set(items[r])))
            indptr.append(len(indices))
        matrix = sp.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), np.asarray(indices, dtype=np.int64), indptr),
            shape=(rows, offsets[-1]),
        )
        return cls(
            matrix,
            np.concatenate(mixed) if mixed else np.zeros(0, dtype=np.uint64),
            np.asarray(offsets, dtype=np.int64),
        )

    def cross_of(self, positions: Int64s) -> Int64s:
        """The cross that each key position belongs to."""
        return np.searchsorted(self.offsets, positions, side="right") - 1


def buckets_of(user_keys: UInt64s, mixed_item_keys: UInt64s, buckets: int) -> Int64s:
    """The weight bucket of each (user key, mixed item key) pair, elementwise."""
    return (mix(user_keys ^ mixed_item_keys) % np.uint64(buckets)).astype(np.int64)


def training_pairs(
    users: Int64s,
    items: Int64s,
    user_keys: Sequence[KeyRows],
    item_keys: ItemKeys,
    buckets: int,
) -> tuple[Int64s, Int64s]:
    """For examples (users[j], items[j]): every (example, bucket) of the crosses' pairs of a
    user key with an item key of the same cross."""
    examples: list[Int64s] = []
    found: list[Int64s] = []
    matrix = item_keys.matrix
    for c, rows in enumerate(user_keys):
        # The item's key positions of this cross: a slice of its row (positions are sorted, and
        # each cross's positions follow the previous cross's).
        low, high = item_keys.offsets[c], item_keys.offsets[c + 1]
        row_starts = matrix.indptr[items]
        row_ends = matrix.indptr[items + 1]
        first = _first_at_least(matrix.indices, row_starts, row_ends, low)
        last = _first_at_least(matrix.indices, row_starts, row_ends, high)
        n_item = last - first
        n_user = rows.indptr[users + 1] - rows.indptr[users]
        n = n_user * n_item
        example = np.repeat(np.arange(len(users), dtype=np.int64), n)
        within = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
        per_item = n_item[example]
        user_key = rows.keys[rows.indptr[users][example] + within // per_item]
        item_key = item_keys.mixed[matrix.indices[first[example] + within % per_item]]
        examples.append(example)
        found.append(buckets_of(user_key, item_key, buckets))
    if not examples:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(examples), np.concatenate(found)


def _first_at_least(
    indices: np.ndarray[Any, Any], starts: Int64s, ends: Int64s, value: int
) -> Int64s:
    """Per row slice indices[starts:ends] (sorted), the position of its first value >= value."""
    out = starts.copy()
    # Rows hold a handful of keys: a vectorised linear scan beats a search per row.
    width = int((ends - starts).max()) if len(starts) else 0
    for _ in range(width):
        inside = out < ends
        move = inside & (indices[np.minimum(out, len(indices) - 1)] < value)
        if not move.any():
            break
        out = out + move
    return out


@dataclass(frozen=True)
class Encoders:
    """How one side's (items' or users') properties enter its tower: a vocabulary per
    categorical property, the mean and deviation of each numeric one."""

    categorical: tuple[tuple[str, Vocabulary], ...]
    numeric: tuple[tuple[str, float, float], ...]

    @classmethod
    def of(
        cls,
        columns: Mapping[str, Sequence[Any]],
        kinds: Mapping[str, str],
        counted: np.ndarray[Any, Any],
        min_count: int,
    ) -> Encoders:
        """Encoders of the `columns` (aligned values by property), each read as `kinds` says;
        vocabularies from the `counted` rows."""
        categorical = tuple(
            (name, Vocabulary.of(columns[name], counted, min_count))
            for name, kind in kinds.items()
            if kind == "categorical"
        )
        numeric = tuple(
            (name, *moments(numbers(columns[name])))
            for name, kind in kinds.items()
            if kind == "numeric"
        )
        return cls(categorical, numeric)

    @property
    def width(self) -> int:
        """Columns of `numbers`: value and missing flag per numeric property."""
        return 2 * len(self.numeric)

    def codes(self, columns: Mapping[str, Sequence[Any]]) -> list[Int64s]:
        """Per categorical property, (rows, width) codes of aligned values."""
        return [vocabulary.codes(columns[name]) for name, vocabulary in self.categorical]

    def numbers(self, columns: Mapping[str, Sequence[Any]], rows: int) -> Floats:
        """(rows, 2 * numeric properties): standardised values and missing flags."""
        if not self.numeric:
            return np.zeros((rows, 0), dtype=np.float32)
        return np.concatenate(
            [standardised(numbers(columns[name]), mean, std) for name, mean, std in self.numeric],
            axis=1,
        )


def pad_rows(rows: Sequence[Int64s]) -> Int64s:
    """(len(rows), widest) codes from 1-d rows, padded with 0."""
    width = max((len(r) for r in rows), default=1) or 1
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


@dataclass(frozen=True)
class TowerSizes:
    """The shapes of a tower's inputs: id slots, each categorical property's codes, numbers,
    the content vector's size and the history's item codes (0: the tower reads none)."""

    id_slots: int
    categorical: tuple[int, ...]
    numeric: int
    text: int
    history: int
