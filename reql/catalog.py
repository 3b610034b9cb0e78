"""What the compiler knows of the database: tables, columns and property types.

The host builds a Catalog from its own schema; reql needs nothing else of the storage layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from reql.types import Type


class Storage(StrEnum):
    """How a column holds a property, where that differs from its ReQL type's representation."""

    PLAIN = "plain"
    TIMESTAMP = "timestamp"  # a DuckDB TIMESTAMP column; ReQL works in epoch seconds


@dataclass(frozen=True)
class Column:
    """One property of an entity: its name, ReQL type, and how it is stored."""

    name: str
    type: Type
    storage: Storage = Storage.PLAIN


@dataclass(frozen=True)
class EntityTable:
    """Items or users: a table with an id column, a dense index column and property columns."""

    entity: str  # "item" or "user", for messages
    table: str
    id_column: str
    index_column: str
    id_name: str  # the property that reads the id: 'itemId' or 'userId'
    columns: tuple[Column, ...] = ()

    def column(self, name: str) -> Column | None:
        for column in self.columns:
            if column.name == name:
                return column
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.id_name, *(c.name for c in self.columns))


@dataclass(frozen=True)
class InteractionsTable:
    """The interactions table and the codes of its kinds (`"purchases"` -> 2, …)."""

    table: str
    user_column: str
    item_column: str
    time_column: str  # a DuckDB TIMESTAMP column
    kind_column: str
    kinds: tuple[tuple[str, int], ...]

    def code(self, name: str) -> int | None:
        for kind, code in self.kinds:
            if kind == name:
                return code
        return None


@dataclass(frozen=True)
class Catalog:
    """Items, users and interactions, as the compiler sees them."""

    items: EntityTable
    users: EntityTable
    interactions: InteractionsTable | None = None

    def of(self, entity: str) -> EntityTable:
        return self.items if entity == "item" else self.users
