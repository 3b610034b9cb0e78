"""What a write or read job sees and is: the contexts that hand it a connection and the property
catalogue, and the job types that the writer queues. Shared by `storage.database`, which runs the
jobs, and the modules that write them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import duckdb

from storage.schema import Entity, EntitySchema, PropertyInfo, PropertyType, Schema

T = TypeVar("T")


def load_schema(conn: duckdb.DuckDBPyConnection) -> Schema:
    """Read the property catalogue as the connection's transaction sees it."""

    def entity_schema(entity: Entity) -> EntitySchema:
        rows = conn.execute(
            f"SELECT name, type FROM {entity.properties_table} ORDER BY position"
        ).fetchall()
        return EntitySchema(entity, tuple(PropertyInfo(n, PropertyType(t)) for n, t in rows))

    return Schema(entity_schema(Entity.ITEM), entity_schema(Entity.USER))


class WriteContext:
    """What a write job gets: the writer's connection, inside an open transaction."""

    def __init__(
        self, conn: duckdb.DuckDBPyConnection, schema: Schema, *, memory_only: bool = False
    ) -> None:
        self.conn = conn
        self.memory_only = memory_only
        """True for `Database.read_in_memory`: the context has no connection, and whatever
        would load data (from the file or from disk) raises `NeedsDatabase` instead."""
        self._schema = schema
        self._schema_dirty = False
        self.schema_was_changed = False
        self.catalog_changed = False
        self.interactions_changed = False
        self.feed_entries: list[str] = []
        """The change feed's entries of this transaction's writes (see `record`)."""
        self.recording = False
        """True on the writer role's database, whose writes go into the change feed."""
        self.counters: dict[str, int] = {}
        """Dense index counters this transaction moved (see `take_indexes`)."""

    def take_indexes(self, counter: str, count: int) -> int:
        """The first of `count` consecutive dense indexes from a counter (`reqo_counters`); the
        counters are stored back before the transaction commits (`store_counters`).

        A counter in a table, not a DuckDB sequence: a sequence does not roll back with its
        transaction, so a writer whose group was retried would number items differently from
        the servers that replay the change feed (and models trained on one numbering would
        score the wrong items on the other)."""
        start = self.counters.get(counter)
        if start is None:
            row = self.conn.execute(
                "SELECT value FROM reqo_counters WHERE name = ?", [counter]
            ).fetchone()
            start = 0 if row is None else int(row[0])
        self.counters[counter] = start + count
        return start

    def store_counters(self) -> None:
        """Write the counters that `take_indexes` moved (before the commit)."""
        for name, value in self.counters.items():
            # An UPDATE costs DuckDB a third of an INSERT OR REPLACE; the rows exist (bootstrap).
            self.conn.execute("UPDATE reqo_counters SET value = ? WHERE name = ?", [value, name])
        self.counters.clear()

    def record(self, entry: str) -> None:
        """Add a write that succeeded to the change feed (where the database keeps one): the
        entry commits, or rolls back, with the transaction."""
        if self.recording:
            self.feed_entries.append(entry)

    @property
    def schema(self) -> Schema:
        """The property catalogue including this transaction's own changes."""
        if self._schema_dirty:
            self._schema = load_schema(self.conn)
            self._schema_dirty = False
        return self._schema

    def schema_changed(self) -> None:
        """Call after DDL, so that later jobs of the transaction see the new catalogue."""
        self._schema_dirty = True
        self.schema_was_changed = True
        self.catalog_changed = True

    def touched_catalog(self) -> None:
        """Call after changing items or users (bumps the catalog version)."""
        self.catalog_changed = True

    def touched_interactions(self) -> None:
        """Call after adding or deleting interactions (bumps the interactions version)."""
        self.interactions_changed = True


ReadContext = WriteContext
"""Reads get the same shape of context, over a reader cursor and the published schema."""


class NeedsDatabase(Exception):
    """A memory-only read (`Database.read_in_memory`) reached for the database."""

    def __init__(self, what: str) -> None:
        super().__init__(f"a memory-only read needs the database for {what}")


class _Unconnected:
    """The connection of a memory-only context: any use of it raises `NeedsDatabase`."""

    def __getattr__(self, name: str) -> Any:
        raise NeedsDatabase(f"conn.{name}")


UNCONNECTED = cast(duckdb.DuckDBPyConnection, _Unconnected())


@dataclass
class WriteJob(Generic[T]):
    """A function of the write context; it must raise StorageError before writing anything."""

    run: Callable[[WriteContext], T]
    future: Future[T] = field(default_factory=Future)


@dataclass
class CoalescedJob:
    """One of many small writes of the same shape that the writer applies together.

    Consecutive coalesced jobs with the same `apply` are handed to it in one call, which returns
    one outcome per payload: a result, or the StorageError of that payload alone.
    """

    apply: Callable[[WriteContext, Sequence[Any]], list[Any]]
    payload: Any
    future: Future[Any] = field(default_factory=Future)


Job = WriteJob[Any] | CoalescedJob
