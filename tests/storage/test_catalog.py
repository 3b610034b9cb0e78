"""Catalog operations on a real DuckDB file."""

from __future__ import annotations

from typing import Any

import pytest

from storage import catalog
from storage.database import Database
from storage.errors import Conflict, EntityNotFound, InvalidInput, UnknownProperty
from storage.interactions import InteractionKind, apply_interaction_writes, parse_interaction
from storage.schema import Entity


def ids(db: Database, entity: Entity, **paging: Any) -> list[Any]:
    options: dict[str, Any] = {
        "count": None,
        "offset": 0,
        "return_properties": False,
        "included_properties": None,
    }
    options.update(paging)
    return db.read_sync(lambda ctx: catalog.list_entities(ctx, entity, **options))


def test_property_names_clash_case_insensitively(database: Database) -> None:
    database.write_sync(lambda ctx: catalog.add_property(ctx, Entity.ITEM, "Price", "double"))
    with pytest.raises(Conflict, match="case-insensitively"):
        database.write_sync(lambda ctx: catalog.add_property(ctx, Entity.ITEM, "price", "int"))
    # items and users have separate properties
    database.write_sync(lambda ctx: catalog.add_property(ctx, Entity.USER, "price", "int"))


def test_a_refused_set_values_creates_nothing(database: Database) -> None:
    database.write_sync(lambda ctx: catalog.add_property(ctx, Entity.ITEM, "n", "int"))
    with pytest.raises(InvalidInput):
        database.write_sync(
            lambda ctx: catalog.set_values(ctx, Entity.ITEM, "new", {"n": "x"}, cascade_create=True)
        )
    with pytest.raises(UnknownProperty):
        database.write_sync(
            lambda ctx: catalog.set_values(
                ctx, Entity.ITEM, "new", {"n": 1, "m": 2}, cascade_create=True
            )
        )
    assert ids(database, Entity.ITEM) == []


def test_listing_pages_by_id(database: Database) -> None:
    def add(item: str) -> None:
        database.write_sync(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, item))

    for item in ("c", "a", "b", "d"):
        add(item)
    assert ids(database, Entity.ITEM) == ["a", "b", "c", "d"]
    assert ids(database, Entity.ITEM, count=2, offset=1) == ["b", "c"]
    assert ids(database, Entity.ITEM, offset=10) == []
    with pytest.raises(UnknownProperty):
        ids(database, Entity.ITEM, return_properties=True, included_properties=["x"])


def test_deleting_a_property_drops_its_values(database: Database) -> None:
    database.write_sync(lambda ctx: catalog.add_property(ctx, Entity.ITEM, "tags", "set"))
    database.write_sync(
        lambda ctx: catalog.set_values(ctx, Entity.ITEM, "a", {"tags": ["x"]}, cascade_create=True)
    )
    database.write_sync(lambda ctx: catalog.delete_property(ctx, Entity.ITEM, "tags"))
    assert database.read_sync(lambda ctx: catalog.get_values(ctx, Entity.ITEM, "a")) == {}
    database.write_sync(lambda ctx: catalog.add_property(ctx, Entity.ITEM, "tags", "int"))
    assert database.read_sync(lambda ctx: catalog.get_values(ctx, Entity.ITEM, "a")) == {
        "tags": None
    }


def test_merge_keeps_the_targets_copy_of_shared_interactions(database: Database) -> None:
    def add(kind: InteractionKind, user: str, **extra: Any) -> None:
        write = parse_interaction(
            kind, {"userId": user, "itemId": "i", "cascadeCreate": True, **extra}
        )
        outcome = database.write_sync(lambda ctx: apply_interaction_writes(ctx, [write]))
        assert outcome == ["ok"]

    add(InteractionKind.PURCHASE, "target", timestamp=1, price=5)
    add(InteractionKind.PURCHASE, "source", timestamp=1, price=9)  # same key as the target's
    add(InteractionKind.PURCHASE, "source", timestamp=2)
    add(InteractionKind.VIEW_PORTION, "target", portion=0.5, sessionId="s", timestamp=1)
    add(InteractionKind.VIEW_PORTION, "source", portion=0.9, sessionId="s", timestamp=1)
    database.write_sync(
        lambda ctx: catalog.merge_users(ctx, "target", "source", cascade_create=False)
    )
    rows = database.read_sync(
        lambda ctx: ctx.conn.execute(
            "SELECT kind, user_id, epoch(ts), price, portion FROM interactions ORDER BY kind, ts"
        ).fetchall()
    )
    purchase, portion = InteractionKind.PURCHASE.code, InteractionKind.VIEW_PORTION.code
    assert rows == [
        (purchase, "target", 1.0, 5.0, None),
        (purchase, "target", 2.0, None, None),
        (portion, "target", 1.0, None, 0.5),
    ]
    assert ids(database, Entity.USER) == ["target"]
    with pytest.raises(EntityNotFound):
        database.write_sync(
            lambda ctx: catalog.merge_users(ctx, "target", "source", cascade_create=False)
        )
