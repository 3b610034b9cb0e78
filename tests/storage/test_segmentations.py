"""Segmentations on a real DuckDB file: the items each segment holds (property-based with string
and set properties, auto ReQL, manual ReQL), restricted to given items, for one item, and what a
change of the catalog under a stored definition, a failing expression or the time limit give."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from storage import catalog
from storage import segmentation_writes as writes
from storage.database import Database, WriteContext
from storage.entities import create_entities
from storage.errors import BadParameter, Conflict, InvalidInput, NotFound
from storage.reql_queries import LIMITS, BadExpression
from storage.schema import Entity
from storage.segmentations import (
    BrokenSegmentation,
    Segmentation,
    SegmentationNotFound,
    SegmentNotFound,
    get_segmentation,
    item_segment_ids,
    list_segmentation_ids,
    segment_items,
)

ITEMS: dict[str, dict[str, Any]] = {
    "heat": {"genre": "crime", "tags": ["thriller", "la"], "price": 4.0, "year": 1995},
    "fargo": {"genre": "crime", "tags": ["snow"], "price": 12.0, "year": 1996},
    "alien": {"genre": "sci-fi", "tags": ["space", "thriller"], "price": 8.0, "year": 1979},
    "up": {"genre": "", "tags": [], "price": 20.0, "year": 2009},
    "blank": {},
}


@pytest.fixture
def db(database: Database) -> Database:
    """The database with five films: three in genres, one with an empty genre, one bare."""

    def build(ctx: WriteContext) -> None:
        for name, kind in (("genre", "string"), ("tags", "set"), ("price", "double")):
            catalog.add_property(ctx, Entity.ITEM, name, kind)
        catalog.add_property(ctx, Entity.ITEM, "year", "int")
        for item, values in ITEMS.items():
            catalog.set_values(ctx, Entity.ITEM, item, values, cascade_create=True)

    database.write_sync(build)
    return database


def write(db: Database, run: Callable[[WriteContext], object]) -> object:
    return db.write_sync(run)


def segmentation(db: Database, segmentation_id: str) -> Segmentation:
    return db.read_sync(lambda ctx: get_segmentation(ctx, segmentation_id))


def segments(db: Database, segmentation_id: str, items: list[str] | None = None) -> Any:
    found = segmentation(db, segmentation_id)
    return db.read_sync(lambda ctx: segment_items(ctx, found, items))


def segments_of(db: Database, segmentation_id: str, item: str) -> list[str]:
    found = segmentation(db, segmentation_id)
    return db.read_sync(lambda ctx: item_segment_ids(ctx, found, item))


def test_a_string_property_gives_a_segment_per_value(db: Database) -> None:
    write(db, lambda ctx: writes.create_property_based(ctx, "genres", "items", "genre", "Genres"))
    assert segmentation(db, "genres") == Segmentation(
        "genres", "items", "property", "Genres", None, "genre", None, ()
    )
    # Null and the empty string are no segment.
    assert segments(db, "genres") == {"crime": ["fargo", "heat"], "sci-fi": ["alien"]}
    assert segments(db, "genres", ["heat", "alien", "up", "unknown"]) == {
        "crime": ["heat"],
        "sci-fi": ["alien"],
    }
    assert segments(db, "genres", []) == {}
    assert segments_of(db, "genres", "fargo") == ["crime"]
    assert segments_of(db, "genres", "up") == []
    assert segments_of(db, "genres", "unknown") == []


def test_a_set_property_puts_an_item_in_a_segment_per_value(db: Database) -> None:
    write(db, lambda ctx: writes.create_property_based(ctx, "tags", "items", "tags"))
    assert segments(db, "tags") == {
        "la": ["heat"],
        "snow": ["fargo"],
        "space": ["alien"],
        "thriller": ["alien", "heat"],
    }
    assert segments_of(db, "tags", "alien") == ["space", "thriller"]
    assert segments(db, "tags", ["heat"]) == {"la": ["heat"], "thriller": ["heat"]}
    # An update to another property segments by it at once.
    write(db, lambda ctx: writes.update_property_based(ctx, "tags", property_name="genre"))
    assert segments_of(db, "tags", "alien") == ["sci-fi"]


def test_an_auto_reql_expression_gives_a_segment_id_or_a_set_of_them(db: Database) -> None:
    cheap = 'if \'price\' < 10 then "cheap" else "dear"'
    write(db, lambda ctx: writes.create_auto_reql(ctx, "price", "items", cheap))
    # The bare item has no price: the condition is null, and null is not < 10.
    assert segments(db, "price") == {
        "cheap": ["alien", "heat"],
        "dear": ["blank", "fargo", "up"],
    }
    decades = 'if \'year\' >= 1990 then {"recent", "all"} else {"all"}'
    write(db, lambda ctx: writes.update_auto_reql(ctx, "price", expression=decades))
    assert segments(db, "price") == {
        "recent": ["fargo", "heat", "up"],
        "all": ["alien", "blank", "fargo", "heat", "up"],
    }
    assert segments_of(db, "price", "heat") == ["all", "recent"]
    assert segments_of(db, "price", "alien") == ["all"]
    # A set property is a set of segment ids as it is.
    write(db, lambda ctx: writes.update_auto_reql(ctx, "price", expression="'tags'"))
    assert segments(db, "price", ["alien", "up"]) == {"space": ["alien"], "thriller": ["alien"]}


def test_manual_reql_segments_hold_what_their_filters_pass(db: Database) -> None:
    write(db, lambda ctx: writes.create_manual_reql(ctx, "rows", "items", "Rows", "Home rows"))
    write(
        db, lambda ctx: writes.add_segment(ctx, "rows", "thrillers", "\"thriller\" in 'tags'", None)
    )
    write(db, lambda ctx: writes.add_segment(ctx, "rows", "classics", "'year' < 1990", "Classics"))
    write(db, lambda ctx: writes.add_segment(ctx, "rows", "none", "'price' > 100", None))
    write(db, lambda ctx: writes.add_segment(ctx, "rows", "all", "true", None))
    assert segmentation(db, "rows").segments == (
        ("thrillers", "\"thriller\" in 'tags'", None),
        ("classics", "'year' < 1990", "Classics"),
        ("none", "'price' > 100", None),
        ("all", "true", None),
    )
    # Every segment, in the order they were added, an empty one too.
    assert list(segments(db, "rows").items()) == [
        ("thrillers", ["alien", "heat"]),
        ("classics", ["alien"]),
        ("none", []),
        ("all", ["alien", "blank", "fargo", "heat", "up"]),
    ]
    assert segments(db, "rows", ["heat"]) == {
        "thrillers": ["heat"],
        "classics": [],
        "none": [],
        "all": ["heat"],
    }
    assert segments_of(db, "rows", "alien") == ["thrillers", "classics", "all"]
    # An updated segment keeps its place; a deleted one is gone.
    write(db, lambda ctx: writes.update_segment(ctx, "rows", "thrillers", "'price' > 10"))
    write(db, lambda ctx: writes.delete_segment(ctx, "rows", "classics"))
    assert list(segments(db, "rows").items()) == [
        ("thrillers", ["fargo", "up"]),
        ("none", []),
        ("all", ["alien", "blank", "fargo", "heat", "up"]),
    ]


def test_segmentations_are_listed_and_deleted(db: Database) -> None:
    write(db, lambda ctx: writes.create_manual_reql(ctx, "b", "items"))
    write(db, lambda ctx: writes.add_segment(ctx, "b", "s", "true", None))
    write(db, lambda ctx: writes.create_property_based(ctx, "a", "items", "genre"))
    assert db.read_sync(list_segmentation_ids) == ["a", "b"]
    write(db, lambda ctx: writes.delete_segmentation(ctx, "b"))
    assert db.read_sync(list_segmentation_ids) == ["a"]
    with pytest.raises(SegmentationNotFound, match="segmentation 'b' does not exist"):
        segmentation(db, "b")
    # Its segments went with it: a new one of the same id starts empty.
    write(db, lambda ctx: writes.create_manual_reql(ctx, "b", "items"))
    assert segmentation(db, "b").segments == ()


def test_refused_writes_store_nothing(db: Database) -> None:
    write(db, lambda ctx: writes.create_manual_reql(ctx, "rows", "items", "Rows"))
    write(db, lambda ctx: writes.add_segment(ctx, "rows", "s", "true", "S"))
    before = segmentation(db, "rows")
    refused: list[tuple[Callable[[WriteContext], object], type[Exception], str]] = [
        (lambda ctx: writes.create_manual_reql(ctx, "rows", "items"), Conflict, "exists"),
        (lambda ctx: writes.add_segment(ctx, "rows", "s", "true", None), Conflict, "'s' exists"),
        (lambda ctx: writes.add_segment(ctx, "rows", "t", "'price'", None), BadExpression, "bool"),
        (
            lambda ctx: writes.add_segment(ctx, "rows", "t", "'nope' > 1", None),
            BadExpression,
            "nope",
        ),
        (lambda ctx: writes.add_segment(ctx, "rows", "t", "((", None), BadExpression, "."),
        (lambda ctx: writes.add_segment(ctx, "rows", "t", 7, None), BadParameter, "filter"),
        (lambda ctx: writes.add_segment(ctx, "rows", "t", "true", 7), BadParameter, "title"),
        (lambda ctx: writes.add_segment(ctx, "rows", "bad id", "true", None), BadParameter, "seg"),
        (lambda ctx: writes.update_segment(ctx, "rows", "t", "true"), SegmentNotFound, "'t'"),
        (lambda ctx: writes.update_segment(ctx, "rows", "s", "1"), BadExpression, "boolean"),
        (lambda ctx: writes.delete_segment(ctx, "rows", "t"), SegmentNotFound, "'t'"),
        (lambda ctx: writes.update_auto_reql(ctx, "rows", title="x"), InvalidInput, "manual"),
        (
            lambda ctx: writes.update_manual_reql(ctx, "rows", title="T", description=1),
            BadParameter,
            "description",
        ),
        (lambda ctx: writes.update_manual_reql(ctx, "nope"), SegmentationNotFound, "'nope'"),
        (lambda ctx: writes.create_manual_reql(ctx, "new", "users"), BadParameter, "sourceType"),
        (lambda ctx: writes.create_property_based(ctx, "n", "items", "nope"), NotFound, "nope"),
        (
            lambda ctx: writes.create_property_based(ctx, "n", "items", "price"),
            BadParameter,
            "propertyName",
        ),
        (lambda ctx: writes.create_auto_reql(ctx, "n", "items", "'year'"), BadParameter, "int"),
        (lambda ctx: writes.create_auto_reql(ctx, "n", "items", "{1, 2}"), BadParameter, "set"),
        (lambda ctx: writes.create_auto_reql(ctx, "n", "items", ""), BadParameter, "required"),
    ]
    for run, error, words in refused:
        with pytest.raises(error, match=words):
            write(db, run)
    assert segmentation(db, "rows") == before
    assert db.read_sync(list_segmentation_ids) == ["rows"]


def test_a_definition_the_catalog_no_longer_fits_is_a_clear_error(db: Database) -> None:
    write(db, lambda ctx: writes.create_property_based(ctx, "genres", "items", "genre"))
    write(db, lambda ctx: writes.create_auto_reql(ctx, "auto", "items", "'genre'"))
    write(db, lambda ctx: writes.create_manual_reql(ctx, "rows", "items"))
    write(db, lambda ctx: writes.add_segment(ctx, "rows", "crime", "'genre' == \"crime\"", None))
    write(db, lambda ctx: catalog.delete_property(ctx, Entity.ITEM, "genre"))
    for name, words in (
        ("genres", "its item property 'genre' no longer exists"),
        ("auto", "its expression no longer compiles"),
        ("rows", "its filter no longer compiles"),
    ):
        with pytest.raises(BrokenSegmentation, match=f"segmentation '{name}': {words}"):
            segments(db, name)
    write(db, lambda ctx: catalog.add_property(ctx, Entity.ITEM, "genre", "int"))
    with pytest.raises(BrokenSegmentation, match="is now int, not string or set"):
        segments(db, "genres")


def test_an_expression_that_fails_on_the_data_is_a_bad_expression(db: Database) -> None:
    overflow = 'if abs(\'year\' * 9223372036854775807) > 0 then "big" else "small"'
    write(db, lambda ctx: writes.create_auto_reql(ctx, "auto", "items", overflow))
    with pytest.raises(BadExpression, match="cannot evaluate"):
        segments(db, "auto")


def test_evaluation_is_bounded_by_the_query_time_limit(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def build(ctx: WriteContext) -> None:
        catalog.add_property(ctx, Entity.ITEM, "text", "string")
        create_entities(ctx, Entity.ITEM, [f"i{n}" for n in range(200_000)])
        ctx.conn.execute("UPDATE items SET text = repeat('ab', 200)")

    database.write_sync(build)
    slow = 'if matches(\'text\' + \'text\', "(a|b)*c") then "c" else "none"'
    write(database, lambda ctx: writes.create_auto_reql(ctx, "slow", "items", slow))
    monkeypatch.setattr(LIMITS, "timeout", 0.001)
    with pytest.raises(BadExpression, match="took longer than the limit"):
        segments(database, "slow")
