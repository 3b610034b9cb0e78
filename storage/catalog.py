"""Items, users and their properties: the catalog operations of Recombee's API.

Every write function validates everything it can before it writes, so that a refusal
(a StorageError) never leaves half a write behind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storage.database import ReadContext, WriteContext
from storage.entities import ID as _ID
from storage.entities import create_entities, entity_exists
from storage.errors import BadParameter, Conflict, EntityNotFound, UnknownProperty
from storage.interactions import InteractionKind
from storage.schema import (
    ID_COLUMN,
    INDEX_COLUMN,
    Entity,
    PropertyInfo,
    PropertyType,
    coerce_values,
    export_value,
    parse_property_type,
    quote_identifier,
    validate_id,
    validate_property_name,
)
from storage.segmentation_writes import forget_all as forget_segmentations
from storage.series import forget_items


def _interaction_column(entity: Entity) -> str:
    return "item_id" if entity is Entity.ITEM else "user_id"


# -- entities ------------------------------------------------------------------------------


def add_entity(ctx: WriteContext, entity: Entity, entity_id: str) -> str:
    validate_id(entity_id, entity.id_field)
    if entity_exists(ctx, entity, entity_id):
        raise Conflict(f"{entity.value} '{entity_id}' already exists")
    create_entities(ctx, entity, [entity_id])
    return "ok"


def delete_entity(ctx: WriteContext, entity: Entity, entity_id: str) -> str:
    """Delete an item or user with all its interactions. Its dense index is never reused."""
    validate_id(entity_id, entity.id_field)
    if not entity_exists(ctx, entity, entity_id):
        raise EntityNotFound(entity.value, entity_id)
    ctx.conn.execute(f"DELETE FROM {entity.table} WHERE {_ID} = ?", [entity_id])
    ctx.conn.execute(
        f"DELETE FROM interactions WHERE {_interaction_column(entity)} = ?", [entity_id]
    )
    if entity is Entity.ITEM:
        forget_items(ctx, [entity_id])
    ctx.touched_catalog()
    ctx.touched_interactions()
    return "ok"


def set_values(
    ctx: WriteContext,
    entity: Entity,
    entity_id: str,
    values: Mapping[str, Any],
    *,
    cascade_create: bool,
) -> str:
    """Set some property values of one entity, creating it first if asked to."""
    validate_id(entity_id, entity.id_field)
    coerced = coerce_values(ctx.schema.of(entity), values)
    if not entity_exists(ctx, entity, entity_id):
        if not cascade_create:
            raise EntityNotFound(entity.value, entity_id)
        create_entities(ctx, entity, [entity_id])
    if coerced:
        assignments = ", ".join(f"{quote_identifier(name)} = ?" for name in coerced)
        ctx.conn.execute(
            f"UPDATE {entity.table} SET {assignments} WHERE {_ID} = ?",
            [*coerced.values(), entity_id],
        )
    ctx.touched_catalog()
    return "ok"


def get_values(ctx: ReadContext, entity: Entity, entity_id: str) -> dict[str, Any]:
    """All current property values of one entity."""
    validate_id(entity_id, entity.id_field)
    rows = _select_entities(ctx, entity, f"WHERE {_ID} = ?", [entity_id])
    if not rows:
        raise EntityNotFound(entity.value, entity_id)
    values = rows[0]
    values.pop(entity.id_field)
    return values


@dataclass(frozen=True)
class Condition:
    """A SQL condition over an entity table under `alias`, with its named parameters (a compiled
    ReQL filter: the host compiles it, storage only runs it)."""

    sql: str
    parameters: Mapping[str, Any]
    alias: str = "c"


def list_entities(
    ctx: ReadContext,
    entity: Entity,
    *,
    count: int | None,
    offset: int,
    return_properties: bool,
    included_properties: Sequence[str] | None,
    condition: Condition | None = None,
) -> list[Any]:
    """Ids ordered by id (or dictionaries with their properties) that pass the condition, paged
    by count and offset."""
    schema = ctx.schema.of(entity)
    if included_properties is not None:
        for name in included_properties:
            if schema.get(name) is None:
                raise UnknownProperty(entity.value, name)
    limit = "" if count is None else f"LIMIT {int(count)}"
    where, parameters = "", {}
    if condition is not None:
        where, parameters = f"WHERE {condition.sql}", dict(condition.parameters)
    alias = condition.alias if condition is not None else "c"
    paging = f"AS {alias} {where} ORDER BY {alias}.{_ID} {limit} OFFSET {int(offset)}"
    if not return_properties:
        rows = ctx.conn.execute(
            f"SELECT {alias}.{_ID} FROM {entity.table} {paging}", parameters
        ).fetchall()
        return [row[0] for row in rows]
    records = _select_entities(ctx, entity, paging, parameters)
    if included_properties is not None:
        keep = {entity.id_field, *included_properties}
        records = [{k: v for k, v in record.items() if k in keep} for record in records]
    return records


def _select_entities(
    ctx: ReadContext, entity: Entity, tail: str, parameters: list[Any] | dict[str, Any]
) -> list[dict[str, Any]]:
    # SELECT * reads the columns of the statement's own snapshot, so a property that another
    # request adds or drops meanwhile cannot make this query fail.
    cursor = ctx.conn.execute(f"SELECT * FROM {entity.table} {tail}", parameters)
    names = [d[0] for d in cursor.description or ()]
    records = []
    for row in cursor.fetchall():
        record: dict[str, Any] = {}
        for name, value in zip(names, row, strict=True):
            if name == INDEX_COLUMN:
                continue
            if name == ID_COLUMN:
                record[entity.id_field] = value
            else:
                record[name] = export_value(value)
        records.append(record)
    return records


def matching_items(ctx: ReadContext, condition: Condition) -> list[str]:
    """The ids of the items that pass a condition, in id order."""
    alias = condition.alias
    rows = ctx.conn.execute(
        f"SELECT {alias}.{_ID} FROM items AS {alias} WHERE {condition.sql} ORDER BY {alias}.{_ID}",
        dict(condition.parameters),
    ).fetchall()
    return [row[0] for row in rows]


def delete_items(ctx: WriteContext, ids: Sequence[str]) -> dict[str, Any]:
    """Delete the items of `ids` that still exist, with their interactions (Delete More Items,
    whose filter a reader evaluated: the writer never evaluates an expression)."""
    deleted = _existing_items(ctx, ids)
    if deleted:
        for table, column in (("items", _ID), ("interactions", "item_id")):
            ctx.conn.execute(
                f"DELETE FROM {table} WHERE {column} IN (SELECT unnest($ids::VARCHAR[]))",
                {"ids": deleted},
            )
        forget_items(ctx, deleted)
        ctx.touched_catalog()
        ctx.touched_interactions()
    return {"itemIds": deleted, "count": len(deleted)}


def update_items(
    ctx: WriteContext, ids: Sequence[str], changes: Mapping[str, Any]
) -> dict[str, Any]:
    """Set property values of the items of `ids` that still exist (Update More Items, whose
    filter a reader evaluated)."""
    coerced = coerce_values(ctx.schema.items, changes)
    updated = _existing_items(ctx, ids)
    if updated and coerced:
        assignments = ", ".join(f"{quote_identifier(name)} = ?" for name in coerced)
        ctx.conn.execute(
            f"UPDATE items SET {assignments} WHERE {_ID} IN (SELECT unnest(?::VARCHAR[]))",
            [*coerced.values(), updated],
        )
        ctx.touched_catalog()
    return {"itemIds": updated, "count": len(updated)}


def _existing_items(ctx: ReadContext, ids: Sequence[str]) -> list[str]:
    """The ids of `ids` that are items now, in id order."""
    if not ids:
        return []
    rows = ctx.conn.execute(
        f"SELECT {_ID} FROM items WHERE {_ID} IN (SELECT unnest(?::VARCHAR[])) ORDER BY {_ID}",
        [list(ids)],
    ).fetchall()
    return [row[0] for row in rows]


def merge_users(ctx: WriteContext, target_id: str, source_id: str, *, cascade_create: bool) -> str:
    """Move the source user's interactions to the target user and delete the source user.

    Where both users have the same interaction (same kind, item and timestamp; for view
    portions the same item and session) the target's is kept.
    """
    validate_id(target_id, "targetUserId")
    validate_id(source_id, "sourceUserId")
    if not entity_exists(ctx, Entity.USER, source_id):
        raise EntityNotFound("user", source_id)
    target_exists = entity_exists(ctx, Entity.USER, target_id)
    if not target_exists and not cascade_create:
        raise EntityNotFound("user", target_id)
    if source_id == target_id:
        return "ok"
    if not target_exists:
        create_entities(ctx, Entity.USER, [target_id])
    portion = InteractionKind.VIEW_PORTION.code
    # Drop the source's copies of interactions that the target already has, then re-own the rest.
    ctx.conn.execute(
        """DELETE FROM interactions AS s
           WHERE s.user_id = $source AND EXISTS (
             SELECT 1 FROM interactions AS t
             WHERE t.user_id = $target AND t.kind = s.kind AND t.item_id = s.item_id
               AND (CASE WHEN s.kind = $portion
                         THEN t.session_id IS NOT DISTINCT FROM s.session_id
                         ELSE t.ts = s.ts END))""",
        {"source": source_id, "target": target_id, "portion": portion},
    )
    ctx.conn.execute(
        "UPDATE interactions SET user_id = $target WHERE user_id = $source",
        {"source": source_id, "target": target_id},
    )
    ctx.conn.execute(f"DELETE FROM users WHERE {_ID} = ?", [source_id])
    ctx.touched_catalog()
    ctx.touched_interactions()
    return "ok"


# -- properties ----------------------------------------------------------------------------


MAX_METADATA = 50
"""Metadata entries one property may carry."""


def _role_entry(parameter: str, value: object) -> dict[str, Any]:
    """A role or metadata entry: `{"name": <string>, "settings": <object>?}`."""
    if not isinstance(value, dict):
        raise BadParameter(parameter, f"must be an object with a 'name', not {_json_kind(value)}")
    unknown = sorted(set(value) - {"name", "settings"})
    if unknown:
        raise BadParameter(parameter, f"has unknown field '{unknown[0]}' (it takes name, settings)")
    name = value.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise BadParameter(parameter, "needs a 'name': a string of 1 to 100 characters")
    settings = value.get("settings")
    if settings is not None and not isinstance(settings, dict):
        raise BadParameter(parameter, f"'settings' must be an object, not {_json_kind(settings)}")
    return {"name": name, **({"settings": settings} if settings is not None else {})}


def parse_role(value: object) -> dict[str, Any] | None:
    """A property's `role` (None where not given)."""
    return None if value is None else _role_entry("role", value)


def parse_metadata(value: object) -> list[dict[str, Any]] | None:
    """A property's `metadata` entries (None where not given)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadParameter("metadata", f"must be a list of objects, not {_json_kind(value)}")
    if len(value) > MAX_METADATA:
        raise BadParameter("metadata", f"holds {len(value)} entries; at most {MAX_METADATA}")
    return [_role_entry(f"metadata[{i}]", entry) for i, entry in enumerate(value)]


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else type(value).__name__


def add_property(
    ctx: WriteContext,
    entity: Entity,
    name: str,
    type_name: object,
    role: object = None,
    metadata: object = None,
) -> str:
    validate_property_name(entity, name)
    ptype = parse_property_type(entity, type_name)
    parsed_role, parsed_metadata = parse_role(role), parse_metadata(metadata)
    schema = ctx.schema.of(entity)
    existing = schema.find_case_insensitive(name)
    if existing is not None:
        if existing.name == name:
            raise Conflict(f"{entity.value} property '{name}' already exists")
        raise Conflict(
            f"{entity.value} property '{name}' clashes with the existing property "
            f"'{existing.name}' (property names are compared case-insensitively)"
        )
    # No default: every property of a new item or user is null until set, sets included, as
    # Recombee documents (ReQL reads an unset set as the empty set; see reql/compiler.py).
    ctx.conn.execute(
        f"ALTER TABLE {entity.table} ADD COLUMN {quote_identifier(name)} {ptype.sql_type}"
    )
    position_row = ctx.conn.execute(
        f"SELECT coalesce(max(position), 0) + 1 FROM {entity.properties_table}"
    ).fetchone()
    position = position_row[0] if position_row else 1
    ctx.conn.execute(
        f"INSERT INTO {entity.properties_table} (name, type, position, role, metadata) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            name,
            ptype.value,
            position,
            None if parsed_role is None else json.dumps(parsed_role),
            None if parsed_metadata is None else json.dumps(parsed_metadata),
        ],
    )
    ctx.schema_changed()
    return "ok"


def delete_property(ctx: WriteContext, entity: Entity, name: str) -> str:
    validate_property_name(entity, name)
    if ctx.schema.of(entity).get(name) is None:
        raise UnknownProperty(entity.value, name)
    ctx.conn.execute(f"ALTER TABLE {entity.table} DROP COLUMN {quote_identifier(name)}")
    ctx.conn.execute(f"DELETE FROM {entity.properties_table} WHERE name = ?", [name])
    ctx.schema_changed()
    return "ok"


def get_property(ctx: ReadContext, entity: Entity, name: str) -> dict[str, Any]:
    validate_property_name(entity, name)
    prop = ctx.schema.of(entity).get(name)
    if prop is None:
        raise UnknownProperty(entity.value, name)
    return {**prop.to_json(), **_roles(ctx, entity).get(name, {})}


def list_properties(ctx: ReadContext, entity: Entity) -> list[dict[str, Any]]:
    roles = _roles(ctx, entity)
    return [
        {**prop.to_json(), **roles.get(prop.name, {})} for prop in ctx.schema.of(entity).properties
    ]


def _roles(ctx: ReadContext, entity: Entity) -> dict[str, dict[str, Any]]:
    """The role and metadata of the properties that have them, by name."""
    rows = ctx.conn.execute(
        f"SELECT name, role, metadata FROM {entity.properties_table} "
        "WHERE role IS NOT NULL OR metadata IS NOT NULL"
    ).fetchall()
    found: dict[str, dict[str, Any]] = {}
    for name, role, metadata in rows:
        found[name] = {
            **({"role": json.loads(role)} if role is not None else {}),
            **({"metadata": json.loads(metadata)} if metadata is not None else {}),
        }
    return found


def ensure_properties(
    ctx: WriteContext, entity: Entity, wanted: Mapping[str, PropertyType]
) -> list[PropertyInfo]:
    """Create the properties that are missing; refuse ones that exist with another type.

    Every name is checked before the first is created, so a refusal writes nothing.
    """
    schema = ctx.schema.of(entity)
    missing = []
    for name, ptype in wanted.items():
        existing = schema.get(name)
        if existing is None:
            validate_property_name(entity, name)
            clash = schema.find_case_insensitive(name)
            if clash is not None:
                raise Conflict(
                    f"{entity.value} property '{name}' clashes with the existing property "
                    f"'{clash.name}' (property names are compared case-insensitively)"
                )
            missing.append(PropertyInfo(name, ptype))
        elif existing.type is not ptype:
            raise Conflict(
                f"{entity.value} property '{name}' exists with type {existing.type.value}, "
                f"not {ptype.value}"
            )
    for prop in missing:
        add_property(ctx, entity, prop.name, prop.type.value)
    return missing


# -- the whole database --------------------------------------------------------------------


def reset(ctx: WriteContext) -> str:
    """Erase items, users, properties, interactions, series, segmentations and search synonyms
    (Recombee's Reset Database)."""
    for entity in Entity:
        for prop in ctx.schema.of(entity).properties:
            ctx.conn.execute(
                f"ALTER TABLE {entity.table} DROP COLUMN {quote_identifier(prop.name)}"
            )
        ctx.conn.execute(f"DELETE FROM {entity.properties_table}")
        ctx.conn.execute(f"DELETE FROM {entity.table}")
    ctx.conn.execute("DELETE FROM interactions")
    ctx.conn.execute("DELETE FROM recommendations")
    ctx.conn.execute("DELETE FROM variant_assignments")
    ctx.conn.execute("DELETE FROM search_synonyms")
    ctx.conn.execute("DELETE FROM series")
    ctx.conn.execute("DELETE FROM series_items")
    forget_segmentations(ctx)
    ctx.schema_changed()
    ctx.touched_interactions()
    return "ok"
