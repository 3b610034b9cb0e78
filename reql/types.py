"""ReQL's static types, how they meet each other, and how each is held in DuckDB."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    INT = "int"
    DOUBLE = "double"
    TIMESTAMP = "timestamp"
    STRING = "string"
    BOOLEAN = "boolean"
    SET = "set"
    ARRAY = "array"
    DICT = "dictionary"
    NULL = "null"
    MIXED = "mixed"
    """The element type of a set literal whose elements are of different kinds."""


@dataclass(frozen=True)
class Type:
    """A static type. Sets and arrays have an element type; dictionaries have typed fields."""

    kind: Kind
    element: Type | None = None
    fields: tuple[tuple[str, Type], ...] = ()

    def __str__(self) -> str:
        if self.kind in (Kind.SET, Kind.ARRAY) and self.element is not None:
            if self.element.kind is Kind.NULL:
                return f"empty {self.kind}"
            return f"{self.kind} of {self.element}"
        return str(self.kind)

    @property
    def is_number(self) -> bool:
        return self.kind in (Kind.INT, Kind.DOUBLE)

    @property
    def is_numeric(self) -> bool:
        """Numbers and timestamps, which compare with each other freely."""
        return self.kind in (Kind.INT, Kind.DOUBLE, Kind.TIMESTAMP)

    @property
    def is_collection(self) -> bool:
        return self.kind in (Kind.SET, Kind.ARRAY)

    @property
    def is_null(self) -> bool:
        return self.kind is Kind.NULL

    @property
    def is_mixed(self) -> bool:
        return self.is_collection and self.element is not None and self.element.kind is Kind.MIXED

    def field(self, name: str) -> Type | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None

    @property
    def family(self) -> str:
        """Values of one family compare with each other: numeric, string, boolean, collection."""
        if self.is_numeric:
            return "numeric"
        if self.is_collection:
            return "collection"
        return str(self.kind)

    def sql(self) -> str:
        """The DuckDB type that holds values of this type (timestamps as epoch seconds)."""
        if self.kind in (Kind.SET, Kind.ARRAY):
            element = self.element or NULL
            inner = "VARCHAR" if element.kind in (Kind.NULL, Kind.MIXED) else element.sql()
            return f"{inner}[]"
        if self.kind is Kind.DICT:
            parts = ", ".join(f"{quote_identifier(k)} {v.sql()}" for k, v in self.fields)
            return f"STRUCT({parts})"
        return _SQL[self.kind]


_SQL = {
    Kind.INT: "BIGINT",
    Kind.DOUBLE: "DOUBLE",
    Kind.TIMESTAMP: "DOUBLE",
    Kind.STRING: "VARCHAR",
    Kind.BOOLEAN: "BOOLEAN",
    Kind.NULL: "VARCHAR",
    Kind.MIXED: "VARCHAR",
}

INT = Type(Kind.INT)
DOUBLE = Type(Kind.DOUBLE)
TIMESTAMP = Type(Kind.TIMESTAMP)
STRING = Type(Kind.STRING)
BOOLEAN = Type(Kind.BOOLEAN)
NULL = Type(Kind.NULL)
MIXED = Type(Kind.MIXED)


def set_of(element: Type) -> Type:
    return Type(Kind.SET, element)


def array_of(element: Type) -> Type:
    return Type(Kind.ARRAY, element)


def dict_of(fields: tuple[tuple[str, Type], ...]) -> Type:
    return Type(Kind.DICT, fields=fields)


def unify(a: Type, b: Type) -> Type | None:
    """The type that holds values of both, or None when there is none."""
    if a == b:
        return a
    if a.is_null:
        return b
    if b.is_null:
        return a
    if a.is_numeric and b.is_numeric:
        return DOUBLE if Kind.DOUBLE in (a.kind, b.kind) or a.kind != b.kind else a
    if a.is_collection and b.is_collection:
        element = unify(a.element or NULL, b.element or NULL)
        if element is None:
            return None
        kind = Kind.ARRAY if a.kind is b.kind is Kind.ARRAY else Kind.SET
        return Type(kind, element)
    if a.kind is Kind.DICT and b.kind is Kind.DICT:
        names = dict(a.fields)
        for key, value in b.fields:
            if key in names:
                merged = unify(names[key], value)
                if merged is None:
                    return None
                names[key] = merged
            else:
                names[key] = value
        return dict_of(tuple(names.items()))
    return None


def unify_all(types: list[Type]) -> Type | None:
    result = NULL
    for t in types:
        merged = unify(result, t)
        if merged is None:
            return None
        result = merged
    return result


def quote_identifier(name: str) -> str:
    """A DuckDB identifier in double quotes, with embedded quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def quote_string(text: str) -> str:
    """A DuckDB string literal, for names the schema owns (never for the caller's text)."""
    return "'" + text.replace("'", "''") + "'"
