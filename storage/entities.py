"""Existence checks and creation of items and users by id (shared by catalog and interactions)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from storage.database import ReadContext, WriteContext
from storage.errors import EntityNotFound
from storage.schema import ID_COLUMN, INDEX_COLUMN, Entity, quote_identifier

ID = quote_identifier(ID_COLUMN)
SMALL = 64
"""Up to this many values, queries bind them one by one; above it, as a list or an Arrow table."""
IDX = quote_identifier(INDEX_COLUMN)


def entity_exists(ctx: ReadContext, entity: Entity, entity_id: str) -> bool:
    row = ctx.conn.execute(f"SELECT 1 FROM {entity.table} WHERE {ID} = ?", [entity_id]).fetchone()
    return row is not None


def existing_users_and_items(
    ctx: ReadContext, users: Iterable[str] = (), items: Iterable[str] = ()
) -> dict[Entity, set[str]]:
    """Which of the given user ids and item ids exist, in one query."""
    wanted = {Entity.USER: list(set(users)), Entity.ITEM: list(set(items))}
    found: dict[Entity, set[str]] = {Entity.USER: set(), Entity.ITEM: set()}
    parts: list[str] = []
    parameters: list[Any] = []
    for entity, ids in wanted.items():
        if not ids:
            continue
        if len(ids) <= SMALL:
            # A literal IN list plans faster than unnesting a list parameter, which is what a
            # stream of single writes needs; large sets go through unnest.
            condition = f"IN ({', '.join('?' * len(ids))})"
            parameters.extend(ids)
        else:
            condition = "IN (SELECT unnest(?::VARCHAR[]))"
            parameters.append(ids)
        parts.append(f"SELECT '{entity.value}', {ID} FROM {entity.table} WHERE {ID} {condition}")
    if parts:
        rows = ctx.conn.execute(" UNION ALL ".join(parts), parameters).fetchall()
        for entity_name, entity_id in rows:
            found[Entity(entity_name)].add(entity_id)
    return found


def create_entities(ctx: WriteContext, entity: Entity, ids: Sequence[str]) -> None:
    """Insert new ids (known to be absent), each with the next dense index."""
    if not ids:
        return
    start = ctx.take_indexes(f"next_{entity.value}_index", len(ids))
    if len(ids) == 1:
        ctx.conn.execute(f"INSERT INTO {entity.table} ({IDX}, {ID}) VALUES (?, ?)", [start, ids[0]])
    else:
        ctx.conn.execute(
            f"INSERT INTO {entity.table} ({IDX}, {ID}) "
            "SELECT unnest($idx::BIGINT[]), unnest($ids::VARCHAR[])",
            {"idx": list(range(start, start + len(ids))), "ids": list(ids)},
        )
    ctx.touched_catalog()


def create_context(
    ctx: WriteContext, user_id: str | None, item_id: str | None, cascade_create: bool
) -> bool:
    """Create a recommendation's unknown user or item with cascadeCreate (404 without it);
    returns whether it created one."""
    created = False
    for entity, entity_id in ((Entity.USER, user_id), (Entity.ITEM, item_id)):
        if entity_id is None or entity_exists(ctx, entity, entity_id):
            continue
        if not cascade_create:
            raise EntityNotFound(entity.value, entity_id)
        create_entities(ctx, entity, [entity_id])
        created = True
    return created
