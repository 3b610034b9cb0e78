"""Recombee's series: named, ordered groups of items (and of other series), such as the episodes
of a show or the seasons of a series. A series' members are sorted by their `time` (the episode
number, say).

Adding a series creates, by default, an item with the same id (`cascadeCreate`), so that the
series itself can be recommended; deleting one leaves that item unless `cascadeDelete`. An item
that is deleted leaves every series it was in.

The tables (`series`, `series_items`) are created with the database (storage/database.py).
"""

from __future__ import annotations

import math
from typing import Any

from storage.contexts import ReadContext, WriteContext
from storage.entities import create_entities, entity_exists
from storage.errors import BadParameter, Conflict, NotFound
from storage.schema import Entity, validate_id

ITEM_TYPES = ("item", "series")


class SeriesNotFound(NotFound):
    def __init__(self, series_id: str) -> None:
        super().__init__(f"series '{series_id}' does not exist")


def series_exists(ctx: ReadContext, series_id: str) -> bool:
    row = ctx.conn.execute("SELECT 1 FROM series WHERE id = ?", [series_id]).fetchone()
    return row is not None


def add_series(ctx: WriteContext, series_id: str, *, cascade_create: bool) -> str:
    """Create a series (409 if it exists), and the item of the same id unless it exists or
    `cascade_create` is off."""
    validate_id(series_id, "seriesId")
    if series_exists(ctx, series_id):
        raise Conflict(f"series '{series_id}' already exists")
    _create(ctx, series_id, cascade_create=cascade_create)
    return "ok"


def _create(ctx: WriteContext, series_id: str, *, cascade_create: bool) -> None:
    ctx.conn.execute("INSERT INTO series VALUES (?)", [series_id])
    if cascade_create and not entity_exists(ctx, Entity.ITEM, series_id):
        create_entities(ctx, Entity.ITEM, [series_id])
        ctx.touched_catalog()


def delete_series(ctx: WriteContext, series_id: str, *, cascade_delete: bool) -> str:
    """Delete a series, its members' places in it and its place in other series; with
    `cascade_delete`, the item of the same id too (with its interactions)."""
    validate_id(series_id, "seriesId")
    if not series_exists(ctx, series_id):
        raise SeriesNotFound(series_id)
    ctx.conn.execute("DELETE FROM series WHERE id = ?", [series_id])
    ctx.conn.execute("DELETE FROM series_items WHERE series_id = ?", [series_id])
    ctx.conn.execute(
        "DELETE FROM series_items WHERE item_type = 'series' AND item_id = ?", [series_id]
    )
    if cascade_delete and entity_exists(ctx, Entity.ITEM, series_id):
        from storage.catalog import delete_entity

        delete_entity(ctx, Entity.ITEM, series_id)
    return "ok"


def list_series(ctx: ReadContext) -> list[str]:
    return [str(row[0]) for row in ctx.conn.execute("SELECT id FROM series ORDER BY id").fetchall()]


def list_series_items(ctx: ReadContext, series_id: str) -> list[dict[str, Any]]:
    """A series' members, by time (then type and id)."""
    validate_id(series_id, "seriesId")
    if not series_exists(ctx, series_id):
        raise SeriesNotFound(series_id)
    rows = ctx.conn.execute(
        "SELECT item_type, item_id, time FROM series_items WHERE series_id = ? "
        "ORDER BY time, item_type, item_id",
        [series_id],
    ).fetchall()
    return [{"itemType": row[0], "itemId": row[1], "time": _number(row[2])} for row in rows]


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)


def _item_type(value: object) -> str:
    if value is None:
        raise BadParameter("itemType", "is required")
    if value not in ITEM_TYPES:
        raise BadParameter("itemType", f"must be 'item' or 'series', not {value!r}")
    return str(value)


def _time(value: object) -> float:
    if value is None:
        raise BadParameter("time", "is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadParameter("time", f"must be a number, not {value!r}")
    if not math.isfinite(value):
        raise BadParameter("time", "must be a finite number")
    return float(value)


def insert_to_series(
    ctx: WriteContext,
    series_id: str,
    item_type: object,
    item_id: object,
    time: object,
    *,
    cascade_create: bool,
) -> str:
    """Put an item or a series into a series at `time`. With `cascade_create`, a missing series
    (and its item) or member is created first; otherwise each is a 404. The same member at the
    same time again is a 409. Everything is checked before anything is written."""
    validate_id(series_id, "seriesId")
    kind = _item_type(item_type)
    member = validate_id(item_id, "itemId")
    at = _time(time)
    if kind == "series" and member == series_id:
        raise BadParameter("itemId", "a series cannot be a member of itself")
    series_missing = not series_exists(ctx, series_id)
    if series_missing and not cascade_create:
        raise SeriesNotFound(series_id)
    member_missing = not (
        entity_exists(ctx, Entity.ITEM, member) if kind == "item" else series_exists(ctx, member)
    )
    if member_missing and not cascade_create:
        if kind == "item":
            raise NotFound(f"item '{member}' does not exist")
        raise SeriesNotFound(member)
    duplicate = ctx.conn.execute(
        "SELECT 1 FROM series_items WHERE series_id = ? AND item_type = ? AND item_id = ? "
        "AND time = ?",
        [series_id, kind, member, at],
    ).fetchone()
    if duplicate is not None:
        raise Conflict(
            f"{kind} '{member}' is in series '{series_id}' at time {_number(at)} already"
        )
    if series_missing:
        _create(ctx, series_id, cascade_create=True)
    if member_missing:
        if kind == "item":
            create_entities(ctx, Entity.ITEM, [member])
            ctx.touched_catalog()
        elif member != series_id:
            _create(ctx, member, cascade_create=True)
    ctx.conn.execute("INSERT INTO series_items VALUES (?, ?, ?, ?)", [series_id, kind, member, at])
    return "ok"


def remove_from_series(
    ctx: WriteContext, series_id: str, item_type: object, item_id: object
) -> str:
    """Take a member (every place of it) out of a series."""
    validate_id(series_id, "seriesId")
    kind = _item_type(item_type)
    member = validate_id(item_id, "itemId")
    if not series_exists(ctx, series_id):
        raise SeriesNotFound(series_id)
    removed = ctx.conn.execute(
        "DELETE FROM series_items WHERE series_id = ? AND item_type = ? AND item_id = ? "
        "RETURNING 1",
        [series_id, kind, member],
    ).fetchall()
    if not removed:
        raise NotFound(f"{kind} '{member}' is not in series '{series_id}'")
    return "ok"


def forget_items(ctx: WriteContext, item_ids: list[str]) -> None:
    """Deleted items leave every series."""
    if item_ids:
        ctx.conn.execute(
            "DELETE FROM series_items WHERE item_type = 'item' AND item_id IN "
            "(SELECT unnest(?::VARCHAR[]))",
            [item_ids],
        )
