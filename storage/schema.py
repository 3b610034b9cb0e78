"""Entities, property types, and the validation of ids, names and values as Recombee does it."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from storage.errors import BadParameter, InvalidInput, UnknownProperty
from storage.timestamps import datetime_to_epoch, parse_timestamp, us_to_datetime

ID_PATTERN = re.compile(r"[a-zA-Z0-9_\-:@.]+")
PROPERTY_NAME_PATTERN = re.compile(r"[a-zA-Z0-9_\-:]+")
MAX_ID_LENGTH = 256
MAX_PROPERTY_NAME_LENGTH = 63
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Internal columns start with "$", which no property name can contain.
INDEX_COLUMN = "$idx"
ID_COLUMN = "$id"


class PropertyType(StrEnum):
    """The value types of item and user properties."""

    INT = "int"
    DOUBLE = "double"
    STRING = "string"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    SET = "set"
    IMAGE = "image"
    IMAGE_LIST = "imageList"

    @property
    def sql_type(self) -> str:
        """The DuckDB column type that holds values of this type."""
        return _SQL_TYPES[self]

    @property
    def is_list(self) -> bool:
        """Sets and image lists are lists of strings (null until set, like every property)."""
        return self in (PropertyType.SET, PropertyType.IMAGE_LIST)


_SQL_TYPES = {
    PropertyType.INT: "BIGINT",
    PropertyType.DOUBLE: "DOUBLE",
    PropertyType.STRING: "VARCHAR",
    PropertyType.BOOLEAN: "BOOLEAN",
    PropertyType.TIMESTAMP: "TIMESTAMP",
    PropertyType.SET: "VARCHAR[]",
    PropertyType.IMAGE: "VARCHAR",
    PropertyType.IMAGE_LIST: "VARCHAR[]",
}


class Entity(StrEnum):
    """The two kinds of catalog entity: items and users."""

    ITEM = "item"
    USER = "user"

    @property
    def table(self) -> str:
        return "items" if self is Entity.ITEM else "users"

    @property
    def properties_table(self) -> str:
        return "item_properties" if self is Entity.ITEM else "user_properties"

    @property
    def id_field(self) -> str:
        """The camelCase name of the id in Recombee's JSON (`itemId`, `userId`)."""
        return "itemId" if self is Entity.ITEM else "userId"

    @property
    def reserved_names(self) -> frozenset[str]:
        return frozenset({"id", "itemid"} if self is Entity.ITEM else {"id", "userid"})

    @property
    def allowed_types(self) -> tuple[PropertyType, ...]:
        if self is Entity.ITEM:
            return tuple(PropertyType)
        return tuple(
            t for t in PropertyType if t not in (PropertyType.IMAGE, PropertyType.IMAGE_LIST)
        )


@dataclass(frozen=True)
class PropertyInfo:
    """One property (column) of items or users."""

    name: str
    type: PropertyType

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type.value}


@dataclass(frozen=True)
class EntitySchema:
    """The properties of one entity kind, in creation order."""

    entity: Entity
    properties: tuple[PropertyInfo, ...] = ()

    def get(self, name: str) -> PropertyInfo | None:
        for prop in self.properties:
            if prop.name == name:
                return prop
        return None

    def find_case_insensitive(self, name: str) -> PropertyInfo | None:
        lowered = name.lower()
        for prop in self.properties:
            if prop.name.lower() == lowered:
                return prop
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.properties)


@dataclass(frozen=True)
class Schema:
    """The property catalogue of a database: a snapshot, replaced whole on every change."""

    items: EntitySchema
    users: EntitySchema

    def of(self, entity: Entity) -> EntitySchema:
        return self.items if entity is Entity.ITEM else self.users


def quote_identifier(name: str) -> str:
    """Quote a column name for DuckDB (names are validated, but quoting keeps SQL safe anyway)."""
    return '"' + name.replace('"', '""') + '"'


def validate_id(value: object, parameter: str) -> str:
    """Check an item, user or session id against Recombee's pattern and length."""
    if not isinstance(value, str):
        raise BadParameter(parameter, f"must be a string, got {_json_type(value)}")
    if not value:
        raise BadParameter(parameter, "must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise BadParameter(
            parameter, f"is {len(value)} characters long; the limit is {MAX_ID_LENGTH}"
        )
    if not ID_PATTERN.fullmatch(value):
        raise BadParameter(parameter, f"{value!r} does not match ^[a-zA-Z0-9_\\-:@.]+$")
    if value == "undefined":
        # Recombee forbids it: it is what a JavaScript caller sends when it forgot to set the id.
        raise BadParameter(parameter, "'undefined' is not allowed as an id")
    return value


def validate_property_name(entity: Entity, name: str) -> str:
    """Check a property name: pattern, length and the reserved names of the entity."""
    if not name:
        raise BadParameter("propertyName", "must not be empty")
    if len(name) > MAX_PROPERTY_NAME_LENGTH:
        raise BadParameter(
            "propertyName",
            f"{name[:20]!r}... is {len(name)} characters long; the limit is "
            f"{MAX_PROPERTY_NAME_LENGTH}",
        )
    if not PROPERTY_NAME_PATTERN.fullmatch(name):
        raise BadParameter("propertyName", f"{name!r} does not match ^[a-zA-Z0-9_\\-:]+$")
    if name.lower() in entity.reserved_names:
        reserved = ", ".join(sorted(entity.reserved_names))
        raise BadParameter("propertyName", f"{name!r} is reserved for {entity.value}s ({reserved})")
    return name


def parse_property_type(entity: Entity, value: object) -> PropertyType:
    """Parse the `type` parameter of Add Property."""
    allowed = ", ".join(t.value for t in entity.allowed_types)
    if value is None:
        raise BadParameter("type", f"is required; one of {allowed}")
    if not isinstance(value, str):
        raise BadParameter("type", f"must be a string; one of {allowed}")
    try:
        ptype = PropertyType(value)
    except ValueError:
        raise BadParameter("type", f"{value!r} is not a property type; one of {allowed}") from None
    if ptype not in entity.allowed_types:
        raise BadParameter("type", f"{ptype.value!r} is not allowed for {entity.value} properties")
    return ptype


def coerce_value(prop: PropertyInfo, value: Any) -> Any:
    """Turn a JSON value into the Python value stored in the property's column, or raise 400."""
    ptype = prop.type
    if value is None:
        return None
    if ptype is PropertyType.INT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad_value(prop, value, "an integer")
        if isinstance(value, float):
            if not value.is_integer():
                raise _bad_value(prop, value, "an integer")
            value = int(value)
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInput(f"property '{prop.name}': {value} does not fit a 64-bit integer")
        return value
    if ptype is PropertyType.DOUBLE:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad_value(prop, value, "a number")
        if not math.isfinite(value):
            raise _bad_value(prop, value, "a finite number")
        return float(value)
    if ptype in (PropertyType.STRING, PropertyType.IMAGE):
        if not isinstance(value, str):
            raise _bad_value(prop, value, "a string")
        return value
    if ptype is PropertyType.BOOLEAN:
        if not isinstance(value, bool):
            raise _bad_value(prop, value, "true or false")
        return value
    if ptype is PropertyType.TIMESTAMP:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _bad_value(prop, value, "an ISO-8601 string or epoch seconds")
        return us_to_datetime(parse_timestamp(value, f"property '{prop.name}'"))
    # set / imageList
    if not isinstance(value, list | tuple):
        raise _bad_value(prop, value, "an array of strings")
    seen: dict[str, None] = {}
    for element in value:
        if not isinstance(element, str):
            raise _bad_value(prop, value, "an array of strings")
        seen.setdefault(element, None)
    return list(seen)


def export_value(value: Any) -> Any:
    """Turn a stored column value into its JSON form (timestamps become epoch seconds)."""
    if isinstance(value, datetime):
        return datetime_to_epoch(value)
    return value


def coerce_values(schema: EntitySchema, values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a whole `{property: value}` map before anything is written."""
    coerced: dict[str, Any] = {}
    for name, value in values.items():
        prop = schema.get(name)
        if prop is None:
            raise UnknownProperty(schema.entity.value, name)
        coerced[name] = coerce_value(prop, value)
    return coerced


def _bad_value(prop: PropertyInfo, value: Any, expected: str) -> InvalidInput:
    shown = repr(value) if not isinstance(value, list | dict) else _json_type(value)
    return InvalidInput(
        f"property '{prop.name}' is of type {prop.type.value}: expected {expected}, got {shown}"
    )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
