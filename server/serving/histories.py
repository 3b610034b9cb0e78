"""In-memory indexes that spare a recommendation its queries while they are current: every
user's interactions (`HistoryIndex`, per interactions version) and the ids of dense indexes
(`IdMap`, append-only)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.compute as pc

from plugins.algorithm import UserHistory
from storage.database import Database, ReadContext
from storage.schema import Entity
from storage.snapshot import KIND_NAMES

logger = logging.getLogger("reqo")

_KIND_BY_CODE = tuple(KIND_NAMES.get(code, "") for code in range(256))
_RATING_CODE = next(code for code, name in KIND_NAMES.items() if name == "ratings")
_PORTION_CODE = next(code for code, name in KIND_NAMES.items() if name == "view_portions")


@dataclass(frozen=True)
class StoredHistory:
    """One user's interactions as the history index holds them (a slice of it), oldest first."""

    histories: _Histories
    start: int
    end: int

    @property
    def items(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        return self.histories.items[self.start : self.end]

    def __len__(self) -> int:
        return self.end - self.start

    def history(self, weights: Mapping[str, float]) -> UserHistory:
        """The UserHistory with each interaction weighted as `Pipeline._history` weighs it."""
        start, end = self.start, self.end
        return UserHistory(
            self.histories.items[start:end].copy(),
            tuple(self.histories.names[start:end].tolist()),
            self.histories.times[start:end].copy(),
            self.histories.weighted(weights)[start:end].copy(),
        )


_KIND_NAME_ARRAY = np.array(_KIND_BY_CODE, dtype=object)


@dataclass(frozen=True)
class _Histories:
    """Every interaction, grouped by user (`positions`, `indptr`), each user's oldest first."""

    version: int
    positions: dict[str, int]
    indptr: np.ndarray[Any, np.dtype[np.int64]]
    items: np.ndarray[Any, np.dtype[np.int64]]
    kinds: np.ndarray[Any, np.dtype[np.uint8]]
    times: np.ndarray[Any, np.dtype[np.float64]]
    ratings: np.ndarray[Any, np.dtype[np.float64]]
    portions: np.ndarray[Any, np.dtype[np.float64]]
    names: np.ndarray[Any, np.dtype[np.object_]]
    _weighted: dict[tuple[tuple[str, float], ...], np.ndarray[Any, np.dtype[np.float32]]] = field(
        default_factory=dict
    )

    def of(self, user_id: str) -> StoredHistory:
        position = self.positions.get(user_id)
        if position is None:
            return StoredHistory(self, 0, 0)
        return StoredHistory(self, int(self.indptr[position]), int(self.indptr[position + 1]))

    def weighted(self, weights: Mapping[str, float]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Every interaction's weight under a model's kind weights (kept per weights): the
        kind's weight, times rating + 1 for ratings and the portion for view portions."""
        key = tuple(sorted(weights.items()))
        found = self._weighted.get(key)
        if found is not None:
            return found
        per_code = np.zeros(256, dtype=np.float64)
        for code, name in KIND_NAMES.items():
            per_code[code] = weights[name]
        values = per_code[self.kinds]
        values = np.where(
            self.kinds == _RATING_CODE, values * np.maximum(self.ratings + 1.0, 0.0), values
        )
        values = np.where(
            self.kinds == _PORTION_CODE,
            values * np.minimum(np.maximum(self.portions, 0.0), 1.0),
            values,
        )
        weighted: np.ndarray[Any, np.dtype[np.float32]] = values.astype(np.float32)
        weighted.flags.writeable = False
        if len(self._weighted) >= 8:
            self._weighted.clear()
        self._weighted[key] = weighted
        return weighted


class HistoryIndex:
    """Every user's interactions in memory, as of one interactions version of the database, so
    that a request reads its user's history without scanning the interactions table.

    The index answers only while the database's interactions version is the one it was loaded
    at: after a write, requests read their history with SQL (exact as ever) and a reload starts
    in the background. Reloads are spaced (at least `spacing` times their own duration apart),
    so that a steady stream of writes costs a bounded share of a core.
    """

    def __init__(self, database: Database, *, spacing: float = 9.0, min_interval: float = 1.0):
        self.database = database
        self.spacing = spacing
        self.min_interval = min_interval
        self.loads = 0
        self._state: _Histories | None = None
        self._lock = threading.Lock()
        self._loading = False
        self._not_before = 0.0

    def get(self, ctx: ReadContext, user_id: str) -> StoredHistory | None:
        """The user's interactions, or None where the index cannot answer for this context (it
        is older than the data, or the context's transaction has written interactions)."""
        state = self._state
        if (
            state is not None
            and not ctx.interactions_changed
            and state.version == self.database.interactions_version
        ):
            return state.of(user_id)
        if not ctx.interactions_changed:
            self._schedule()
        return None

    def load(self) -> None:
        """Load the index now, on the calling thread."""
        version = self.database.interactions_version
        self._state = self.database.read_sync(lambda ctx: _read_histories(ctx, version))
        self.loads += 1

    @property
    def ready(self) -> bool:
        """Whether the index answers for the current interactions version."""
        state = self._state
        return state is not None and state.version == self.database.interactions_version

    def _schedule(self) -> None:
        with self._lock:
            if self._loading or time.monotonic() < self._not_before:
                return
            self._loading = True
        threading.Thread(target=self._reload, name="reqo-histories", daemon=True).start()

    def _reload(self) -> None:
        started = time.monotonic()
        try:
            self.load()
        except Exception:  # a closed database, most likely; requests keep using SQL
            logger.debug("loading the history index failed", exc_info=True)
        finally:
            took = time.monotonic() - started
            with self._lock:
                self._loading = False
                self._not_before = time.monotonic() + max(self.min_interval, took * self.spacing)


def _read_histories(ctx: ReadContext, version: int) -> _Histories:
    table = ctx.conn.sql(
        'SELECT x.user_id AS u, i."$idx" AS i, x.kind AS k, epoch_us(x.ts) AS t, '
        "coalesce(x.rating, 0) AS r, coalesce(x.portion, 1) AS p FROM interactions AS x "
        'JOIN items AS i ON i."$id" = x.item_id'
    ).to_arrow_table()
    users = pc.dictionary_encode(table.column("u").combine_chunks())
    codes = np.asarray(users.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    names: list[str] = users.dictionary.to_pylist()

    def column(name: str, dtype: Any) -> np.ndarray[Any, Any]:
        return np.asarray(table.column(name).to_numpy(), dtype=dtype)

    micros = column("t", np.int64)
    order = np.lexsort((micros, codes))
    indptr = np.zeros(len(names) + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=len(names)), out=indptr[1:])
    kinds = column("k", np.uint8)[order]
    return _Histories(
        version=version,
        positions={name: position for position, name in enumerate(names)},
        indptr=indptr,
        items=column("i", np.int64)[order],
        kinds=kinds,
        times=micros[order] / 1e6,
        ratings=column("r", np.float64)[order],
        portions=column("p", np.float64)[order],
        names=_KIND_NAME_ARRAY[kinds],
    )


class IdMap:
    """Dense index -> id of the items (or users), kept in memory.

    An index is never given to another id (deleting an entity retires its index), so the map
    only grows: indexes beyond it are read when a result holds one. The caller passes indexes of
    current candidates, so that a retired index is not asked for.
    """

    def __init__(self, entity: Entity) -> None:
        self.entity = entity
        self._ids: np.ndarray[Any, Any] = np.empty(0, dtype=object)
        self._reverse: dict[str, int] = {}
        self._reverse_version = -1
        self._lock = threading.Lock()

    def get(self, ctx: ReadContext, indexes: np.ndarray[Any, Any]) -> list[str] | None:
        """The ids of the indexes, in order; None where the map cannot answer for the context
        (its transaction changed the catalog, or an index has no id)."""
        if ctx.catalog_changed:
            return None
        wanted = np.asarray(indexes, dtype=np.int64)
        if int(wanted.max()) >= len(self._ids):
            self._extend(ctx)
        ids = self._ids
        if int(wanted.max()) >= len(ids) or int(wanted.min()) < 0:
            return None
        found: list[str | None] = ids[wanted].tolist()
        if any(entity_id is None for entity_id in found):
            return None
        return found  # type: ignore[return-value]

    def indexes_of(
        self, ctx: ReadContext, ids: list[str], catalog_version: int
    ) -> dict[str, int] | None:
        """The current dense index of each id that has one, as of `catalog_version`; None where
        the map cannot answer for the context (its transaction changed the catalog)."""
        if ctx.catalog_changed:
            return None
        reverse = self._reverse
        # An id deleted and created again has a newer index: after any catalog change the map
        # reads the indexes given since (a deleted id's interactions are gone with it).
        if catalog_version != self._reverse_version or any(i not in reverse for i in ids):
            self._extend(ctx)
            self._reverse_version = catalog_version
            reverse = self._reverse
        return {entity_id: reverse[entity_id] for entity_id in ids if entity_id in reverse}

    def _extend(self, ctx: ReadContext) -> None:
        with self._lock:
            known = len(self._ids)
            columns = ctx.conn.execute(
                f'SELECT "$idx" AS i, "$id" AS d FROM {self.entity.table} WHERE "$idx" >= ?',
                [known],
            ).fetchnumpy()
            indexes = np.asarray(columns["i"], dtype=np.int64)
            if not len(indexes):
                return
            grown = np.empty(int(indexes.max()) + 1, dtype=object)
            grown[:known] = self._ids
            ids = np.asarray(columns["d"], dtype=object)
            grown[indexes] = ids
            # id -> index, the newest index of an id winning (a deleted and re-added item).
            reverse = dict(self._reverse)
            reverse.update(zip(ids.tolist(), indexes.tolist(), strict=True))
            self._reverse = reverse
            self._ids = grown
