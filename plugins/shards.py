"""Training data larger than memory: a snapshot's interactions read from its Parquet files in
shards, each user whole and in time order, weighted exactly as TrainingData weights them.

`SnapshotShards` opens a snapshot directory (what storage.export.export_snapshot writes). It
holds the id -> dense index maps of items and users (one string and one integer per entity), and
in one streaming pass over `interactions.parquet` (record batches of at most `batch_rows` rows)
it maps ids to dense indexes (dropping interactions of unknown users or items, as
take_snapshot's join does), weights each interaction (plugins.training.interaction_weights),
counts each item's interactions, and spills the rows to temporary files, one per hash bucket of
users. The Parquet file is in no particular order; a bucket is small enough to be sorted in
memory by (user, time, item), take_snapshot's order, so that reading bucket by bucket yields
every user's interactions together and oldest first while holding one bucket at a time.

`peak_rows` records the most interaction rows held at once (a read batch, or a bucket and what
a reader carries over from the previous one): about `batch_rows`, whatever the snapshot's size,
unless one user alone has more. The Parquet reader itself buffers one row group's column chunks
(DuckDB writes row groups of about 123,000 rows).
"""

from __future__ import annotations

import math
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from plugins.training import interaction_weights, validate_weights
from storage.snapshot import Snapshot

Int64s = np.ndarray[Any, np.dtype[np.int64]]

DEFAULT_BATCH_ROWS = 1 << 20
"""Rows per read batch and per shard unless asked otherwise (about 30 MiB of spilled rows)."""

COLUMNS = ("kind", "user_id", "item_id", "ts", "rating", "portion")
"""The interaction columns training reads."""

SPILLED = np.dtype(
    [("user", "<i8"), ("item", "<i8"), ("ts", "<i8"), ("weight", "<f4"), ("kind", "u1")]
)
"""One spilled interaction: dense indexes, time in epoch microseconds (sorted as integers, so
that the order is exactly take_snapshot's), weight and kind code."""

_MIX = np.uint64(0x9E3779B97F4A7C15)
"""Fibonacci hashing's multiplier: dense user indexes are spread over the buckets by the high
bits of index * this, so that no pattern in the indexes (ranges of heavy users, strides) lands
in one bucket."""


@dataclass(frozen=True)
class Shard:
    """Whole users' interactions: user `users[j]`'s are rows `indptr[j]:indptr[j + 1]`, oldest
    first (ties by item index), as in TrainingData."""

    users: Int64s
    indptr: Int64s
    items: Int64s
    kinds: np.ndarray[Any, np.dtype[np.uint8]]
    timestamps: np.ndarray[Any, np.dtype[np.float64]]
    weights: np.ndarray[Any, np.dtype[np.float32]]

    def __len__(self) -> int:
        return len(self.items)

    def sequence(self, j: int) -> Int64s:
        """The items of the shard's j-th user, oldest first."""
        return self.items[self.indptr[j] : self.indptr[j + 1]]

    def matrix(self, n_items: int) -> sp.csr_matrix:
        """len(users) x n_items, row j the summed weights of user `users[j]`'s interactions."""
        rows = np.repeat(np.arange(len(self.users), dtype=np.int64), np.diff(self.indptr))
        matrix = sp.csr_matrix(
            (self.weights, (rows, self.items)),
            shape=(len(self.users), n_items),
            dtype=np.float32,
        )
        matrix.sum_duplicates()
        return matrix

    def piece(self, first: int, last: int) -> Shard:
        """Users first..last - 1 of the shard (views, not copies)."""
        start, end = int(self.indptr[first]), int(self.indptr[last])
        return Shard(
            users=self.users[first:last],
            indptr=self.indptr[first : last + 1] - start,
            items=self.items[start:end],
            kinds=self.kinds[start:end],
            timestamps=self.timestamps[start:end],
            weights=self.weights[start:end],
        )


@dataclass(frozen=True)
class UserRows:
    """A mini-batch of users' rows: `matrix[j]` holds user `users[j]`'s summed weights."""

    users: Int64s
    matrix: sp.csr_matrix


class _IdMap:
    """An entity table's id -> dense index map, looked up a record batch at a time."""

    def __init__(self, path: Path, batch_rows: int) -> None:
        ids: list[pa.Array] = []
        indexes: list[Int64s] = []
        for batch in pq.ParquetFile(path).iter_batches(
            batch_size=batch_rows, columns=["$idx", "$id"]
        ):
            ids.append(batch.column("$id"))
            indexes.append(batch.column("$idx").to_numpy().astype(np.int64))
        self.ids: pa.Array = pa.concat_arrays(ids) if ids else pa.array([], pa.string())
        self.indexes: Int64s = np.concatenate(indexes) if indexes else np.zeros(0, np.int64)
        self.size = int(self.indexes.max()) + 1 if len(self.indexes) else 0

    def lookup(self, values: pa.Array) -> Int64s:
        """The dense index of each id, -1 where there is no such entity."""
        if values.type != self.ids.type:
            values = values.cast(self.ids.type)
        positions = pc.index_in(values, value_set=self.ids)
        found = positions.is_valid().to_numpy(zero_copy_only=False)
        where = positions.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        out: Int64s = np.where(found, self.indexes[where] if len(self.indexes) else -1, -1)
        return out

    def as_list(self) -> list[str | None]:
        """Dense index -> id (None for a deleted entity), as take_snapshot builds it."""
        out: list[str | None] = [None] * self.size
        for index, entity_id in zip(self.indexes.tolist(), self.ids.to_pylist(), strict=True):
            out[index] = entity_id
        return out


class SnapshotShards:
    """A snapshot's interactions, read in shards of whole users; see the module's docstring.

    Opening does the streaming pass and spills to a temporary directory (under `spill`, the
    system's temporary directory by default), removed by `close` (or when the object is
    collected); use it as a context manager. `weights` are the kind weights, as
    TrainingData.from_snapshot takes them (WeightError for bad ones). `n_buckets` overrides the
    number of hash buckets, by default enough for a bucket to average half of `batch_rows`.
    """

    def __init__(
        self,
        directory: Path,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        weights: Mapping[str, Any] | None = None,
        n_buckets: int | None = None,
        spill: Path | None = None,
    ) -> None:
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
        self.directory = Path(directory)
        self.batch_rows = batch_rows
        self.kind_weights = validate_weights(weights)
        self._items = _IdMap(self.directory / "items.parquet", batch_rows)
        self._users = _IdMap(self.directory / "users.parquet", batch_rows)
        self.n_items = self._items.size
        self.n_users = self._users.size
        source = pq.ParquetFile(self.directory / "interactions.parquet")
        total = source.metadata.num_rows
        # Half of batch_rows per bucket on average: room for the unevenness of users' sizes.
        self.n_buckets = n_buckets or max(1, math.ceil(2 * total / batch_rows))
        self.item_counts: Int64s = np.zeros(self.n_items, dtype=np.int64)
        """How many interactions each item has (popularity), zero-weight ones included."""
        self.n_interactions = 0
        """Interactions of known users and items (those that TrainingData would hold)."""
        self.peak_rows = 0
        """The most interaction rows held in memory at once so far."""
        self._spill = Path(tempfile.mkdtemp(prefix="reqo-shards-", dir=spill))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._spill, True)
        try:
            self._partition(source)
        except BaseException:
            self.close()
            raise

    # -- the streaming pass -----------------------------------------------------------------------

    def _partition(self, source: pq.ParquetFile) -> None:
        for batch in source.iter_batches(batch_size=self.batch_rows, columns=list(COLUMNS)):
            self._held(batch.num_rows)
            users = self._users.lookup(batch.column("user_id"))
            items = self._items.lookup(batch.column("item_id"))
            known = (users >= 0) & (items >= 0)
            kinds = np.asarray(batch.column("kind").to_numpy(), dtype=np.uint8)[known]
            # The same weights as in memory: the same function, on the same columns.
            weights = interaction_weights(
                _columns(kinds, _floats(batch, "rating")[known], _floats(batch, "portion")[known]),
                self.kind_weights,
            )
            ts = batch.column("ts").cast(pa.timestamp("us")).cast(pa.int64())
            records = np.empty(int(known.sum()), dtype=SPILLED)
            records["user"], records["item"] = users[known], items[known]
            records["ts"] = ts.to_numpy(zero_copy_only=False)[known]
            records["weight"], records["kind"] = weights, kinds
            self.item_counts += np.bincount(records["item"], minlength=self.n_items)
            self.n_interactions += len(records)
            self._spill_records(records)

    def _spill_records(self, records: np.ndarray[Any, Any]) -> None:
        bucket = self._bucket_of(records["user"])
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(self.n_buckets + 1))
        for b in np.flatnonzero(np.diff(bounds)):
            # Opened per write: thousands of buckets would exceed the open file limit.
            with self._bucket_path(int(b)).open("ab") as handle:
                records[order[bounds[b] : bounds[b + 1]]].tofile(handle)

    def _bucket_of(self, users: Int64s) -> Int64s:
        mixed = (users.astype(np.uint64) * _MIX) >> np.uint64(32)
        return (mixed % np.uint64(self.n_buckets)).astype(np.int64)

    def _bucket_path(self, bucket: int) -> Path:
        return self._spill / f"{bucket}.bin"

    def _held(self, rows: int) -> None:
        self.peak_rows = max(self.peak_rows, rows)

    # -- reading ----------------------------------------------------------------------------------

    @cached_property
    def item_ids(self) -> list[str | None]:
        """Dense item index -> id (None where deleted), as TrainingData.item_ids."""
        return self._items.as_list()

    @cached_property
    def user_ids(self) -> list[str | None]:
        """Dense user index -> id (None where deleted), as TrainingData.user_ids."""
        return self._users.as_list()

    def buckets(self, rng: np.random.Generator | None = None) -> Iterator[Shard]:
        """Every bucket, one at a time, as one shard: in bucket order with the users by index,
        or, given `rng`, buckets and the users within each in a random order."""
        order = rng.permutation(self.n_buckets) if rng is not None else range(self.n_buckets)
        for bucket in order:
            path = self._bucket_path(int(bucket))
            if not path.exists():
                continue
            records = np.fromfile(path, dtype=SPILLED)
            self._held(len(records))
            yield _sorted(records, rng)

    def shards(self, rng: np.random.Generator | None = None) -> Iterator[Shard]:
        """Every interaction, in shards of whole users of at most `batch_rows` rows (a user
        with more is a shard alone); the order as `buckets`."""
        for bucket in self.buckets(rng):
            first = 0
            while first < len(bucket.users):
                # The furthest user boundary within batch_rows rows of this shard's start.
                limit = bucket.indptr[first] + self.batch_rows
                last = int(np.searchsorted(bucket.indptr, limit, side="right")) - 1
                last = max(last, first + 1)
                yield bucket.piece(first, last)
                first = last

    def sequences(
        self, rng: np.random.Generator | None = None
    ) -> Iterator[tuple[int, Int64s, np.ndarray[Any, np.dtype[np.float64]]]]:
        """Every user with interactions: (dense index, items, their epoch seconds), oldest
        first, one user at a time; the order as `buckets`."""
        for shard in self.shards(rng):
            for j, user in enumerate(shard.users.tolist()):
                rows = slice(shard.indptr[j], shard.indptr[j + 1])
                yield user, shard.items[rows], shard.timestamps[rows]

    def user_batches(
        self, batch_size: int, rng: np.random.Generator | None = None
    ) -> Iterator[UserRows]:
        """Every user with interactions, `batch_size` at a time (the last batch may be
        smaller), as rows of summed weights; the order as `buckets`. A batch may span two
        buckets: the end of one is carried over to the next rather than cut short."""
        pending: UserRows | None = None
        for bucket in self.buckets(rng):
            matrix = bucket.matrix(self.n_items)
            users = bucket.users
            self._held(len(bucket) + (pending.matrix.nnz if pending is not None else 0))
            start = 0
            if pending is not None:
                start = batch_size - len(pending.users)
                pending = UserRows(
                    np.concatenate([pending.users, users[:start]]),
                    sp.vstack([pending.matrix, matrix[:start]], format="csr"),
                )
                if len(pending.users) < batch_size:
                    continue
                yield pending
                pending = None
            for first in range(start, len(users), batch_size):
                rows = UserRows(
                    users[first : first + batch_size], matrix[first : first + batch_size]
                )
                if len(rows.users) < batch_size:
                    pending = rows
                else:
                    yield rows
        if pending is not None:
            yield pending

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Remove the spilled buckets; the shards can no longer be read."""
        self._cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _floats(batch: pa.RecordBatch, name: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A numeric column as float64, nulls as NaN (take_snapshot's coalesce to 'NaN')."""
    column = batch.column(name).cast(pa.float64()).fill_null(math.nan)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _columns(
    kinds: np.ndarray[Any, Any], ratings: np.ndarray[Any, Any], portions: np.ndarray[Any, Any]
) -> Snapshot:
    """The columns interaction_weights reads, as the Snapshot it takes."""
    empty = np.zeros(0, dtype=np.int64)
    return Snapshot(
        item_ids=[],
        user_ids=[],
        users=empty,
        items=empty,
        kinds=kinds,
        timestamps=np.zeros(0, dtype=np.float64),
        ratings=ratings,
        portions=portions,
        item_properties=pa.table({}),
        user_properties=pa.table({}),
    )


def _sorted(records: np.ndarray[Any, Any], rng: np.random.Generator | None) -> Shard:
    """A bucket's records as a shard: by user (index, or a random order given rng), then time,
    then item, take_snapshot's order."""
    users, inverse = np.unique(records["user"], return_inverse=True)
    key = inverse
    if rng is not None:
        rank = np.empty(len(users), dtype=np.int64)
        rank[rng.permutation(len(users))] = np.arange(len(users))
        key = rank[inverse]
    order = np.lexsort((records["item"], records["ts"], key))
    records = records[order]
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(key, minlength=len(users)), out=indptr[1:])
    shard_users = users
    if rng is not None:
        shard_users = np.empty(len(users), dtype=np.int64)
        shard_users[rank] = users
    return Shard(
        users=shard_users,
        indptr=indptr,
        items=np.ascontiguousarray(records["item"]),
        kinds=np.ascontiguousarray(records["kind"]),
        timestamps=records["ts"] / 1e6,
        weights=np.ascontiguousarray(records["weight"]),
    )
