"""The recommendation log: next-items paging state, rotation counts and recommId attribution."""

from __future__ import annotations

import time

from storage import catalog
from storage.database import Database, WriteContext
from storage.interactions import InteractionKind, apply_interaction_writes, parse_interaction
from storage.recommendations import (
    Recommendation,
    attributed_interactions,
    extend_recommendation,
    get_recommendation,
    log_recommendation,
    recently_recommended,
)
from storage.schema import Entity


def record(recomm_id: str, returned: tuple[str, ...], at: float) -> Recommendation:
    return Recommendation(
        recomm_id, at, "items-to-user", "alice", None, "home", {"a": 1}, returned, 0
    )


def test_log_page_rotate_and_attribute(database: Database) -> None:
    now = time.time()

    def fill(ctx: WriteContext) -> None:
        for item in ("i1", "i2", "i3"):
            catalog.add_entity(ctx, Entity.ITEM, item)
        log_recommendation(ctx, record("r1", ("i1", "i2"), now - 10))
        log_recommendation(ctx, record("r0", ("i1",), now - 7200))
        writes = [
            parse_interaction(
                kind,
                {
                    "userId": "alice",
                    "itemId": item,
                    "recommId": rid,
                    "cascadeCreate": True,
                    **extra,
                },
            )
            for kind, item, rid, extra in (
                (InteractionKind.DETAIL_VIEW, "i2", "r1", {}),
                (InteractionKind.PURCHASE, "i2", "r1", {"price": 9.5}),
                (InteractionKind.DETAIL_VIEW, "i3", "r1", {}),  # not recommended by r1
                (InteractionKind.DETAIL_VIEW, "i1", "r0", {}),
            )
        ]
        assert apply_interaction_writes(ctx, writes) == ["ok"] * 4

    database.write_sync(fill)
    database.write_sync(lambda ctx: extend_recommendation(ctx, "r1", ["i3"]))
    logged = database.read_sync(lambda ctx: get_recommendation(ctx, "r1"))
    assert logged is not None
    assert logged.returned == ("i1", "i2", "i3")
    assert logged.next_calls == 1
    assert logged.params == {"a": 1}
    assert database.read_sync(lambda ctx: get_recommendation(ctx, "nope")) is None
    shown = database.read_sync(lambda ctx: recently_recommended(ctx, "alice", now - 3600))
    assert shown == {"i1": 1, "i2": 1, "i3": 1}
    earned = database.read_sync(lambda ctx: attributed_interactions(ctx, "r1"))
    assert [(e["type"], e["itemId"]) for e in earned] == [
        ("detail_views", "i2"),
        ("purchases", "i2"),
        ("detail_views", "i3"),  # i3 joined r1 through next items
    ]
    assert earned[1]["price"] == 9.5
