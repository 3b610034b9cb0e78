"""Vectorised interaction writes behave exactly like the same writes applied one by one."""

from __future__ import annotations

from typing import Any

import pytest

from storage import interactions
from storage.database import Database
from storage.errors import BadParameter, Conflict, EntityNotFound, InvalidInput, NotFound
from storage.interactions import InteractionKind, InteractionWrite, parse_interaction
from storage.schema import Entity

DV = InteractionKind.DETAIL_VIEW
VP = InteractionKind.VIEW_PORTION


def write(kind: InteractionKind = DV, **params: Any) -> InteractionWrite:
    return parse_interaction(kind, params)


def apply_together(db: Database, writes: list[InteractionWrite]) -> list[Any]:
    return db.write_sync(lambda ctx: interactions.apply_interaction_writes(ctx, writes))


def apply_one_by_one(db: Database, writes: list[InteractionWrite]) -> list[Any]:
    return [apply_together(db, [w])[0] for w in writes]


def outcome_names(outcomes: list[Any]) -> list[str]:
    return [o if isinstance(o, str) else type(o).__name__ for o in outcomes]


def scenario() -> list[InteractionWrite]:
    return [
        write(userId="u1", itemId="a", timestamp=1),  # nobody exists: 404
        write(userId="u1", itemId="a", timestamp=1, cascadeCreate=True),
        write(userId="u1", itemId="a", timestamp=1),  # duplicate of the previous
        write(userId="u1", itemId="a", timestamp=2),  # u1 and a now exist
        write(InteractionKind.PURCHASE, userId="u1", itemId="a", timestamp=1),  # other kind
        write(userId="u2", itemId="a", timestamp=3),  # u2 does not exist
        write(VP, userId="u1", itemId="a", portion=0.2, sessionId="s", timestamp=5),
        write(VP, userId="u1", itemId="a", portion=0.5, sessionId="s", timestamp=6),
        write(VP, userId="u1", itemId="a", portion=0.1, sessionId="s", timestamp=7),  # smaller
        write(VP, userId="u1", itemId="a", portion=0.3, timestamp=8),  # no session: own key
    ]


def test_together_equals_one_by_one(tmp_path: Any) -> None:
    together_db = Database("a", tmp_path / "a.duckdb")
    single_db = Database("b", tmp_path / "b.duckdb")
    try:
        together = outcome_names(apply_together(together_db, scenario()))
        single = outcome_names(apply_one_by_one(single_db, scenario()))
        query = "SELECT * FROM interactions ORDER BY kind, ts, session_id"
        rows_together = together_db.read_sync(lambda c: c.conn.execute(query).fetchall())
        rows_single = single_db.read_sync(lambda c: c.conn.execute(query).fetchall())
    finally:
        together_db.close()
        single_db.close()
    assert (
        together
        == single
        == [
            "EntityNotFound",
            "ok",
            "Conflict",
            "ok",
            "ok",
            "EntityNotFound",
            "ok",
            "ok",
            "Conflict",
            "ok",
        ]
    )
    assert rows_together == rows_single
    assert len(rows_together) == 5  # 2 views, 1 purchase, 2 view portions


def test_view_portion_keeps_time_spent_when_not_given(database: Database) -> None:
    apply_together(
        database,
        [
            write(
                VP,
                userId="u",
                itemId="i",
                portion=0.1,
                timeSpent=30,
                cascadeCreate=True,
                timestamp=1,
            )
        ],
    )
    apply_together(database, [write(VP, userId="u", itemId="i", portion=0.4, timestamp=2)])
    listed = database.read_sync(
        lambda ctx: interactions.list_interactions(ctx, VP, Entity.USER, "u")
    )
    assert [(p["portion"], p["timeSpent"]) for p in listed] == [(0.4, 30.0)]
    refused = apply_together(
        database, [write(VP, userId="u", itemId="i", portion=0.5, timeSpent=10, timestamp=3)]
    )
    assert isinstance(refused[0], Conflict)


@pytest.mark.parametrize(
    ("kind", "params", "error"),
    [
        (DV, {"itemId": "i"}, "userId"),
        (DV, {"userId": "u"}, "itemId"),
        (DV, {"userId": "u", "itemId": "i", "rating": 1}, "rating"),
        (InteractionKind.RATING, {"userId": "u", "itemId": "i", "rating": -1.5}, "rating"),
        (VP, {"userId": "u", "itemId": "i"}, "portion"),
        (VP, {"userId": "u", "itemId": "i", "portion": 0.5, "sessionId": "a b"}, "sessionId"),
        (DV, {"userId": "u", "itemId": "i", "additionalData": [1]}, "additionalData"),
        (InteractionKind.PURCHASE, {"userId": "u", "itemId": "i", "amount": -2}, "amount"),
    ],
)
def test_parse_refuses(kind: InteractionKind, params: dict[str, Any], error: str) -> None:
    with pytest.raises(BadParameter) as caught:
        parse_interaction(kind, params)
    assert caught.value.parameter == error


def test_delete_by_timestamp_or_pair(database: Database) -> None:
    apply_together(
        database,
        [write(userId="u", itemId="i", timestamp=t, cascadeCreate=True) for t in (1, 2, 3)],
    )

    def delete(**params: Any) -> str:
        return database.write_sync(lambda ctx: interactions.delete_interactions(ctx, DV, params))

    assert delete(userId="u", itemId="i", timestamp=2) == "ok"
    with pytest.raises(NotFound):
        delete(userId="u", itemId="i", timestamp=2)
    with pytest.raises(EntityNotFound):
        delete(userId="nobody", itemId="i")
    with pytest.raises(InvalidInput):
        delete(userId="u", itemId="i", sessionId="s")  # not a parameter of detail views
    assert delete(userId="u", itemId="i") == "ok"
    count = database.read_sync(
        lambda ctx: ctx.conn.execute("SELECT count(*) FROM interactions").fetchone()
    )
    assert count == (0,)


def test_kind_names() -> None:
    assert InteractionKind.from_name("detail_view") is DV
    assert InteractionKind.from_name("view_portions") is VP
    assert InteractionKind.from_name("cartadditions") is InteractionKind.CART_ADDITION
    with pytest.raises(InvalidInput):
        InteractionKind.from_name("likes")
    assert {k.code for k in InteractionKind} == {1, 2, 3, 4, 5, 6}
