"""The evaluation API of ReQL for the recommendation pipeline: masks, boosts and values over the
dense item index, and the caches that make a repeated filter cost no SQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.serving.expressions import BadExpression, Context
from server.serving.reql_engine import ExpressionEngine
from storage import catalog
from storage.database import Database, ReadContext
from storage.interactions import InteractionKind, apply_interaction_writes, parse_interaction
from storage.schema import Entity
from tests.reql.shop import build_shop


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Database]:
    database, _ = build_shop(tmp_path / "shop.duckdb")
    yield database
    database.close()


class CountingConnection:
    """A connection that counts the statements run through it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements = 0

    def execute(self, *args: Any) -> Any:
        self.statements += 1
        return self.conn.execute(*args)


def counted(database: Database, run: Any) -> tuple[Any, int]:
    def job(ctx: ReadContext) -> tuple[Any, int]:
        counter = CountingConnection(ctx.conn)
        result = run(ReadContext(counter, ctx.schema))  # type: ignore[arg-type]
        return result, counter.statements

    result: tuple[Any, int] = database.read_sync(job)
    return result


def indexes(database: Database) -> dict[str, int]:
    rows = database.read_sync(
        lambda ctx: ctx.conn.execute('SELECT "$id", "$idx" FROM items').fetchall()
    )
    return dict(rows)


def passing(database: Database, mask: np.ndarray[Any, Any]) -> list[str]:
    return sorted(item for item, index in indexes(database).items() if mask[index])


def test_mask_is_over_the_dense_index(shop: Database) -> None:
    engine = ExpressionEngine(shop)
    mask = shop.read_sync(lambda ctx: engine.mask(ctx, "'price' < 100"))
    assert mask.dtype == np.bool_
    assert len(mask) == max(indexes(shop).values()) + 1
    assert passing(shop, mask) == ["i1", "i3", "i6", "i8"]


def test_a_repeated_filter_costs_no_sql(shop: Database) -> None:
    engine = ExpressionEngine(shop)
    text = "'price' < 100 and 'category' in {\"shoes\", \"hats\"} and 'in_stock'"
    first, statements = counted(shop, lambda ctx: engine.mask(ctx, text))
    assert statements >= 1
    again, statements = counted(shop, lambda ctx: engine.mask(ctx, text))
    assert statements == 0
    assert again is first
    assert not first.flags.writeable  # shared between requests: nobody may change it


def test_context_values_are_cached_too(shop: Database) -> None:
    engine = ExpressionEngine(shop)
    text = "context_user[\"city\"] in 'cities'"
    prague, _ = counted(shop, lambda ctx: engine.mask(ctx, text, Context(user_id="u1")))
    brno, _ = counted(shop, lambda ctx: engine.mask(ctx, text, Context(user_id="u2")))
    assert passing(shop, prague) == ["i1", "i3", "i6", "i8"]
    assert passing(shop, brno) == ["i1", "i2"]
    _, statements = counted(shop, lambda ctx: engine.mask(ctx, text, Context(user_id="u1")))
    assert statements == 0
    unknown = shop.read_sync(lambda ctx: engine.mask(ctx, text, Context(user_id="nobody")))
    assert passing(shop, unknown) == []


def test_a_catalog_change_invalidates_results(shop: Database) -> None:
    engine = ExpressionEngine(shop)
    before = shop.read_sync(lambda ctx: engine.mask(ctx, "'price' < 10"))
    assert passing(shop, before) == ["i6", "i8"]
    shop.write_sync(
        lambda ctx: catalog.set_values(ctx, Entity.ITEM, "i1", {"price": 1.0}, cascade_create=False)
    )
    shop.write_sync(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, "i9"))
    after = shop.read_sync(lambda ctx: engine.mask(ctx, "'price' < 10"))
    assert passing(shop, after) == ["i1", "i6", "i8"]
    assert len(after) == len(before) + 1


def test_interactions_invalidate_only_what_reads_them(shop: Database) -> None:
    engine = ExpressionEngine(shop)
    counts = "num_item_purchases('itemId') > 0"
    plain = "'price' < 100"
    assert passing(shop, shop.read_sync(lambda ctx: engine.mask(ctx, counts))) == ["i1", "i3", "i4"]
    shop.read_sync(lambda ctx: engine.mask(ctx, plain))

    def purchase(ctx: Any) -> None:
        write = parse_interaction(InteractionKind.PURCHASE, {"userId": "u3", "itemId": "i8"})
        assert apply_interaction_writes(ctx, [write]) == ["ok"]

    shop.write_sync(purchase)
    _, statements = counted(shop, lambda ctx: engine.mask(ctx, plain))
    assert statements == 0
    after = shop.read_sync(lambda ctx: engine.mask(ctx, counts))
    assert passing(shop, after) == ["i1", "i3", "i4", "i8"]


def test_random_is_never_cached(shop: Database) -> None:
    engine = ExpressionEngine(shop)
    shop.read_sync(lambda ctx: engine.mask(ctx, "random() < 0.5"))
    _, statements = counted(shop, lambda ctx: engine.mask(ctx, "random() < 0.5"))
    assert statements >= 1


def test_boosts_are_one_where_null_or_nan(shop: Database) -> None:
    engine = ExpressionEngine(shop)
    index = indexes(shop)
    boosts = shop.read_sync(lambda ctx: engine.boosts(ctx, "'price' / 10"))
    assert boosts[index["i1"]] == pytest.approx(5.0)
    assert boosts[index["i5"]] == 1.0  # price is null
    boosts = shop.read_sync(lambda ctx: engine.boosts(ctx, "'price' / 0"))
    assert boosts[index["i1"]] == 1.0  # NaN
    assert boosts[index["i8"]] == 1.0  # 0 / 0


def test_values_in_json_form(shop: Database) -> None:
    engine = ExpressionEngine(shop)
    values = shop.read_sync(
        lambda ctx: engine.values(ctx, "upper('title')", ["i3", "missing", "i1"])
    )
    assert values == ["GREEN HAT", None, "RED SHOES"]
    nan = shop.read_sync(lambda ctx: engine.values(ctx, "'price' / 0", ["i1"]))
    assert nan == [None]
    items = shop.read_sync(
        lambda ctx: engine.values(ctx, 'user_interactions("u2", {"purchases"})', ["i1"])
    )
    assert [(i["itemId"], i["type"]) for i in items[0]] == [("i4", "purchases")]


def test_context_item_needs_a_context_item(shop: Database) -> None:
    engine = ExpressionEngine(shop)
    with pytest.raises(BadExpression, match="no context item"):
        shop.read_sync(lambda ctx: engine.mask(ctx, "'brand' == context_item[\"brand\"]"))
    mask = shop.read_sync(
        lambda ctx: engine.mask(ctx, "'brand' == context_item[\"brand\"]", Context(item_id="i3"))
    )
    assert passing(shop, mask) == ["i3", "i6"]
