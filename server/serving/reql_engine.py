"""Evaluation of ReQL over the dense item index, for the recommendation pipeline.

Filters give a boolean mask, boosters a float vector, value expressions the values of given
items. Results are cached by (expression, bound values, data versions), so a repeated filter costs
no SQL at all; expressions that call random() are never cached.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np

import reql
from server.serving.expressions import NO_CONTEXT, Context, compile_for, current_time, run_guarded
from storage.database import Database, ReadContext
from storage.schema import (
    ID_COLUMN,
    INDEX_COLUMN,
    Entity,
    Schema,
    export_value,
    quote_identifier,
)

_IDX = quote_identifier(INDEX_COLUMN)
_ID = quote_identifier(ID_COLUMN)


class _LruCache:
    """A thread-safe LRU cache bounded by the summed size of its values."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        if size > self.capacity:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._entries[key] = (value, size)
            self._size += size
            while self._size > self.capacity:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._size -= dropped


class ExpressionEngine:
    """Evaluates ReQL expressions over one database's items (the candidates of a request)."""

    def __init__(
        self,
        database: Database,
        *,
        cache_bytes: int = 128 * 2**20,
        functions: reql.FunctionRegistry = reql.BUILTIN_FUNCTIONS,
    ) -> None:
        self.database = database
        self.functions = functions
        self.results = _LruCache(cache_bytes)
        self._contexts = _LruCache(4096)
        self._sizes = _LruCache(16)
        self._compiled: dict[Hashable, tuple[Schema, reql.CompiledExpression]] = {}

    # -- the public evaluation API --------------------------------------------------------------

    def compile(
        self,
        ctx: ReadContext,
        text: str,
        purpose: reql.Purpose,
        context: Context,
        parameter: str,
        entity: Entity = Entity.ITEM,
    ) -> reql.CompiledExpression:
        schema = ctx.schema
        context_item, context_user = context.item_id is not None, context.user_id is not None
        # reql caches compilations too, but its key hashes the whole catalog on every call;
        # this one holds the schema object (replaced whole on change) and compares identity.
        key = (id(schema), text, purpose, parameter, entity, context_item, context_user)
        cached = self._compiled.get(key)
        if cached is not None and cached[0] is schema:
            return cached[1]
        compiled = compile_for(
            schema,
            text,
            purpose,
            parameter=parameter,
            candidate=entity,
            context_item=context_item,
            context_user=context_user,
            functions=self.functions,
        )
        if len(self._compiled) >= 4096:
            self._compiled.clear()
        self._compiled[key] = (schema, compiled)
        return compiled

    def mask(
        self,
        ctx: ReadContext,
        text: str,
        context: Context = NO_CONTEXT,
        parameter: str = "filter",
        entity: Entity = Entity.ITEM,
    ) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """True at the dense index of every item (or user) that passes the filter (null counts as
        false). The array has one entry per index ever given out; it is shared: do not modify it.
        """
        compiled = self.compile(ctx, text, reql.Purpose.FILTER, context, parameter, entity)
        key, parameters = self._key(ctx, compiled, context, entity)

        def compute() -> np.ndarray[Any, Any]:
            alias = compiled.candidate_alias
            sql = f"SELECT {alias}.{_IDX} AS i FROM {entity.table} AS {alias} WHERE {compiled.sql}"
            found = run_guarded(
                compiled.source,
                parameter,
                lambda: ctx.conn.execute(sql, parameters).fetchnumpy()["i"],
                ctx,
            )
            indices = np.asarray(found, dtype=np.int64)
            mask = np.zeros(self._covering(ctx, entity, indices), dtype=np.bool_)
            mask[indices] = True
            return mask

        return self._remembered(key, compute)

    def boosts(
        self,
        ctx: ReadContext,
        text: str,
        context: Context = NO_CONTEXT,
        parameter: str = "booster",
        entity: Entity = Entity.ITEM,
    ) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The booster's value at each dense index; 1 where it is null or NaN (or no item)."""
        compiled = self.compile(ctx, text, reql.Purpose.BOOSTER, context, parameter, entity)
        key, parameters = self._key(ctx, compiled, context, entity)

        def compute() -> np.ndarray[Any, Any]:
            alias = compiled.candidate_alias
            sql = (
                f"SELECT {alias}.{_IDX} AS i, CAST({compiled.sql} AS DOUBLE) AS v "
                f"FROM {entity.table} AS {alias}"
            )
            columns = run_guarded(
                compiled.source,
                parameter,
                lambda: ctx.conn.execute(sql, parameters).fetchnumpy(),
                ctx,
            )
            values = np.ma.filled(np.ma.asarray(columns["v"], dtype=np.float64), np.nan)
            indices = np.asarray(columns["i"], dtype=np.int64)
            boosts = np.ones(self._covering(ctx, entity, indices), dtype=np.float64)
            boosts[indices] = np.where(np.isnan(values), 1.0, values)
            return boosts

        return self._remembered(key, compute)

    def values(
        self,
        ctx: ReadContext,
        text: str,
        ids: Sequence[str],
        context: Context = NO_CONTEXT,
        parameter: str = "reqlExpressions",
        entity: Entity = Entity.ITEM,
    ) -> list[Any]:
        """The value of an expression for each of the given items (or users), in JSON form (None
        for an unknown id, NaN or infinity)."""
        compiled = self.compile(ctx, text, reql.Purpose.VALUE, context, parameter, entity)
        _, parameters = self._key(ctx, compiled, context, entity)
        if not ids:
            return []
        alias = compiled.candidate_alias
        parameters["ids"] = list(ids)
        sql = (
            f"SELECT {alias}.{_ID}, {compiled.sql} FROM {entity.table} AS {alias} "
            f"WHERE {alias}.{_ID} IN (SELECT unnest(CAST($ids AS VARCHAR[])))"
        )
        rows = run_guarded(
            compiled.source, parameter, lambda: ctx.conn.execute(sql, parameters).fetchall(), ctx
        )
        found = {row[0]: _json_value(row[1]) for row in rows}
        return [found.get(entity_id) for entity_id in ids]

    def index_size(self, ctx: ReadContext, entity: Entity = Entity.ITEM) -> int:
        """How many dense indexes of items (or users) have been given out: the length of masks
        and vectors."""
        key = (entity, self.database.catalog_version)
        cached = self._sizes.get(key) if not ctx.catalog_changed else None
        if cached is not None:
            return int(cached)
        row = ctx.conn.execute(
            f"SELECT coalesce(max({_IDX}) + 1, 0) FROM {entity.table}"
        ).fetchone()
        size = int(row[0]) if row else 0
        if not ctx.catalog_changed:
            self._sizes.put(key, size, 1)
        return size

    # -- internals ------------------------------------------------------------------------------

    def _covering(self, ctx: ReadContext, entity: Entity, indices: np.ndarray[Any, Any]) -> int:
        """The length of an array over the dense index that holds `indices`. The cached index
        size belongs to the catalog version read before the query, and a commit in between may
        have added entities the query saw: the array then grows to hold them (callers fit every
        array to their own size, `fitted`)."""
        size = self.index_size(ctx, entity)
        return max(size, int(indices.max()) + 1) if len(indices) else size

    def _remembered(
        self, key: Hashable | None, compute: Callable[[], np.ndarray[Any, Any]]
    ) -> np.ndarray[Any, Any]:
        """The cached result of an evaluation, or `compute()`'s, made read-only (it is shared)
        and cached unless `key` is None."""
        cached = self.results.get(key) if key is not None else None
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        result = compute()
        result.flags.writeable = False
        if key is not None:
            self.results.put(key, result, result.nbytes)
        return result

    def _key(
        self,
        ctx: ReadContext,
        compiled: reql.CompiledExpression,
        context: Context,
        entity: Entity = Entity.ITEM,
    ) -> tuple[Hashable | None, dict[str, Any]]:
        """The cache key of one evaluation (None when it must not be cached) and its parameters."""
        # Read the versions before any query: a result is then never newer-labelled than its data.
        catalog_version = self.database.catalog_version
        interactions_version = (
            self.database.interactions_version if compiled.uses_interactions else -1
        )
        needs = {b.entity for b in compiled.context}
        item = self._context_values(ctx, Entity.ITEM, context.item_id) if "item" in needs else None
        user = self._context_values(ctx, Entity.USER, context.user_id) if "user" in needs else None
        parameters = compiled.bind(now=current_time(), context_item=item, context_user=user)
        # A write transaction (a batch's recommendation) may see its own uncommitted changes,
        # which the versions do not describe: its results are neither taken from nor put in
        # the cache.
        uncommitted = ctx.catalog_changed or (
            compiled.uses_interactions and ctx.interactions_changed
        )
        if compiled.volatile or uncommitted:
            return None, parameters
        bound = json.dumps(parameters, sort_keys=True, default=str)
        key = (
            entity,
            compiled.purpose,
            compiled.source,
            bound,
            catalog_version,
            interactions_version,
        )
        return key, parameters

    def entity_values(self, ctx: ReadContext, entity: Entity, entity_id: str) -> Mapping[str, Any]:
        """An item's or user's property values (with its id), cached per catalog version: what
        a model that scores from attributes reads (a new user's age, occupation, ...)."""
        values = self._context_values(ctx, entity, entity_id)
        assert values is not None
        return values

    def _context_values(
        self, ctx: ReadContext, entity: Entity, entity_id: str | None
    ) -> Mapping[str, Any] | None:
        if entity_id is None:
            return None
        key = (entity, entity_id, self.database.catalog_version)
        cached = self._contexts.get(key) if not ctx.catalog_changed else None
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        cursor = ctx.conn.execute(f"SELECT * FROM {entity.table} WHERE {_ID} = ?", [entity_id])
        names = [d[0] for d in cursor.description or ()]
        row = cursor.fetchone()
        values: dict[str, Any] = {entity.id_field: entity_id}
        if row is not None:
            for name, value in zip(names, row, strict=True):
                if name not in (INDEX_COLUMN, ID_COLUMN):
                    values[name] = export_value(value)
        if not ctx.catalog_changed:
            self._contexts.put(key, values, 1)
        return values


def fitted(array: np.ndarray[Any, Any], size: int, fill: Any) -> np.ndarray[Any, Any]:
    """A vector over the dense index with exactly `size` entries: cut (a view), or padded with
    `fill` (a copy). Vectors computed while a commit added entities can be longer or shorter
    than the size a request works with (see `ExpressionEngine._covering`)."""
    if len(array) >= size:
        return array[:size]
    out = np.full(size, fill, dtype=array.dtype)
    out[: len(array)] = array
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value
