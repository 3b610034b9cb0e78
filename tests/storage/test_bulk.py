"""Bulk import (`reqo import`): formats, type inference, validation with row numbers, atomicity."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from server.cli.main import main
from storage import catalog
from storage.bulk import BulkImportError, import_file
from storage.database import Database
from storage.interactions import InteractionKind
from storage.schema import Entity

Rows = Sequence[dict[str, Any]]
FORMATS = ("csv", "parquet", "ndjson")


@contextmanager
def open_db(path: Path) -> Iterator[Database]:
    db = Database("test", path / "test.duckdb")
    try:
        yield db
    finally:
        db.close()


def write_file(
    path: Path, fmt: str, rows: Rows, arrow_types: dict[str, pa.DataType] | None = None
) -> Path:
    """Write rows as CSV (cells as given, None empty), Parquet (via pyarrow) or NDJSON."""
    target = path.with_suffix("." + fmt)
    columns = list(dict.fromkeys(name for row in rows for name in row))
    if fmt == "csv":
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in rows:
                writer.writerow(["" if row.get(c) is None else _cell(row[c]) for c in columns])
    elif fmt == "parquet":
        types = arrow_types or {}
        arrays = {c: pa.array([row.get(c) for row in rows], type=types.get(c)) for c in columns}
        pq.write_table(pa.table(arrays), target)
    else:
        target.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return target


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def query(db: Database, sql: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = db.read_sync(lambda ctx: ctx.conn.execute(sql).fetchall())
    return rows


def counts(db: Database) -> dict[str, Any]:
    """Everything an import can change, to show that a failed one changed nothing."""
    tables = ("items", "users", "interactions", "item_properties", "user_properties")
    found: dict[str, Any] = {t: query(db, f"SELECT count(*) FROM {t}")[0][0] for t in tables}
    found["item_columns"] = len(query(db, "DESCRIBE items"))
    found["schema"] = db.schema
    return found


def temp_tables(db: Database) -> list[tuple[Any, ...]]:
    """Temporary tables of the writer's connection (the import stages files there)."""
    sql = "SELECT table_name FROM duckdb_tables() WHERE temporary"
    rows: list[tuple[Any, ...]] = db.write_sync(lambda ctx: ctx.conn.execute(sql).fetchall())
    return rows


def properties(db: Database, entity: Entity) -> dict[str, str]:
    return {p.name: p.type.value for p in db.schema.of(entity).properties}


# -- items and users -----------------------------------------------------------------------

ITEMS: Rows = [
    {
        "itemId": "a-1",
        "price": 1.5,
        "year": 2001,
        "title": "Alpha",
        "on_sale": True,
        "released": "2024-05-01T12:00:00Z",
        "tags": ["x", "y", "x"],
    },
    {
        "itemId": "b:2",
        "price": 2.0,
        "year": 2002,
        "title": None,
        "on_sale": False,
        "released": "2024-05-01T14:00:00+02:00",
        "tags": [],
    },
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_items_in_every_format(tmp_path: Path, fmt: str) -> None:
    arrow = {"released": pa.timestamp("us", tz="UTC"), "tags": pa.list_(pa.string())}
    rows = [dict(r) for r in ITEMS]
    if fmt == "parquet":
        for row in rows:
            row["released"] = datetime.fromisoformat(str(row["released"]))
    path = write_file(tmp_path / "items", fmt, rows, arrow)
    # CSV and JSON carry timestamps as text, and CSV has no lists: the schema says what they are.
    schema = {"csv": "released:timestamp,tags:set", "ndjson": "released:timestamp"}.get(fmt)
    with open_db(tmp_path) as db:
        report = import_file(db, "items", path, schema=schema, progress=False)
        assert report.startswith("imported 2 items (2 new, 0 updated, 6 new properties)")
        assert properties(db, Entity.ITEM) == {
            "price": "double",
            "year": "int",
            "title": "string",
            "on_sale": "boolean",
            "released": "timestamp",
            "tags": "set",
        }
        got = query(
            db,
            'SELECT "$id", price, year, title, on_sale, released, tags FROM items ORDER BY "$idx"',
        )
    noon = datetime(2024, 5, 1, 12)
    assert got == [
        ("a-1", 1.5, 2001, "Alpha", True, noon, ["x", "y"]),
        ("b:2", 2.0, 2002, None, False, noon, []),
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_users_in_every_format(tmp_path: Path, fmt: str) -> None:
    rows: Rows = [
        {"user_id": "u1", "age": 30, "country": "CZ"},
        {"user_id": "u2", "age": None, "country": "DE"},
    ]
    path = write_file(tmp_path / "users", fmt, rows)
    with open_db(tmp_path) as db:
        import_file(db, "users", path, progress=False)
        assert properties(db, Entity.USER) == {"age": "int", "country": "string"}
        assert query(db, 'SELECT "$id", age, country FROM users ORDER BY "$idx"') == [
            ("u1", 30, "CZ"),
            ("u2", None, "DE"),
        ]


def test_schema_text_and_yaml_override_inference(tmp_path: Path) -> None:
    path = write_file(
        tmp_path / "items",
        "csv",
        [
            {
                "id": "a",
                "code": "007",
                "year": "1999",
                "tags": "red|blue|red",
                "when": "1700000000",
            },
            {
                "id": "b",
                "code": "010",
                "year": "2000.0",
                "tags": '["x"]',
                "when": "2024-01-01 10:00",
            },
        ],
    )
    yaml_schema = tmp_path / "schema.yaml"
    yaml_schema.write_text("code: string\nyear: double\ntags: set\n", encoding="utf-8")
    with open_db(tmp_path) as db:
        import_file(
            db, "items", path, schema="code:string,year:int,tags:set,when:timestamp", progress=False
        )
        assert properties(db, Entity.ITEM) == {
            "code": "string",
            "year": "int",
            "tags": "set",
            "when": "timestamp",
        }
        assert query(db, 'SELECT code, year, tags, "when" FROM items ORDER BY "$id"') == [
            ("007", 1999, ["red", "blue"], datetime(2023, 11, 14, 22, 13, 20)),
            ("010", 2000, ["x"], datetime(2024, 1, 1, 10)),
        ]
    with open_db(tmp_path / "other") as db:
        import_file(db, "items", path, schema=str(yaml_schema), progress=False)
        assert properties(db, Entity.ITEM) == {
            "code": "string",
            "year": "double",
            "tags": "set",
            "when": "string",
        }


def test_existing_items_are_updated_and_keep_other_values(tmp_path: Path) -> None:
    with open_db(tmp_path) as db:
        db.write_sync(lambda ctx: catalog.add_property(ctx, Entity.ITEM, "price", "double"))
        db.write_sync(lambda ctx: catalog.add_property(ctx, Entity.ITEM, "color", "string"))
        db.write_sync(
            lambda ctx: catalog.set_values(
                ctx, Entity.ITEM, "a", {"price": 9, "color": "red"}, cascade_create=True
            )
        )
        # An int column fills the stored double property.
        path = write_file(
            tmp_path / "items",
            "parquet",
            [{"itemId": "b", "price": 2}, {"itemId": "a", "price": 1}],
        )
        report = import_file(db, "items", path, progress=False)
        assert "(1 new, 1 updated, 0 new properties)" in report
        assert query(db, 'SELECT "$idx", "$id", price, color FROM items ORDER BY "$idx"') == [
            (0, "a", 1.0, "red"),
            (1, "b", 2.0, None),
        ]


# -- interactions --------------------------------------------------------------------------

INTERACTIONS: Rows = [
    {
        "userId": "u1",
        "itemId": "i1",
        "timestamp": 1700000000,
        "type": "detail_view",
        "duration": 3.5,
    },
    {"userId": "u1", "itemId": "i2", "timestamp": 1700000001, "type": "purchases", "price": 9.5},
    {"userId": "u2", "itemId": "i1", "timestamp": 1700000002, "type": "rating", "rating": -0.5},
    {
        "userId": "u2",
        "itemId": "i2",
        "timestamp": 1700000003,
        "type": "Cart-Additions",
        "amount": 2,
    },
    {"userId": "u3", "itemId": "i1", "timestamp": 1700000004, "type": "bookmark", "recommId": "r1"},
    {
        "userId": "u3",
        "itemId": "i2",
        "timestamp": 1700000005,
        "type": "view_portion",
        "portion": 0.5,
        "sessionId": "s1",
        "additionalData": {"page": 2},
    },
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_interactions_in_every_format_with_defaults(tmp_path: Path, fmt: str) -> None:
    rows = [dict(r) for r in INTERACTIONS]
    if fmt == "csv":
        rows[5]["additionalData"] = json.dumps(rows[5]["additionalData"])
    path = write_file(tmp_path / "interactions", fmt, rows)
    with open_db(tmp_path) as db:
        report = import_file(db, "interactions", path, progress=False)
        assert report.startswith("imported 6 interactions (3 new users, 2 new items) from ")
        got = query(db, "SELECT * FROM interactions ORDER BY ts")
        assert query(db, 'SELECT "$id" FROM users ORDER BY "$idx"') == [("u1",), ("u2",), ("u3",)]
    kinds = [InteractionKind.from_code(row[0]) for row in got]
    assert kinds == [
        InteractionKind.DETAIL_VIEW,
        InteractionKind.PURCHASE,
        InteractionKind.RATING,
        InteractionKind.CART_ADDITION,
        InteractionKind.BOOKMARK,
        InteractionKind.VIEW_PORTION,
    ]
    assert got[0][1:] == (
        "u1",
        "i1",
        datetime(2023, 11, 14, 22, 13, 20),
        None,
        None,
        3.5,
        False,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    )
    assert got[1][8:10] == (1.0, 9.5)  # amount defaults to 1
    assert got[2][11] == -0.5
    assert got[3][8] == 2.0
    assert got[4][4] == "r1"
    portion = got[5]
    assert json.loads(portion[5]) == {"page": 2}
    assert (portion[7], portion[12], portion[13], portion[14]) == (False, 0.5, "s1", 0.0)


def test_kind_argument_and_missing_timestamps(tmp_path: Path) -> None:
    path = write_file(
        tmp_path / "buys",
        "csv",
        [
            {"user_id": "u", "item_id": "i"},
            {"user_id": "u", "item_id": "i"},
        ],
    )
    with open_db(tmp_path) as db:
        import_file(db, "interactions", path, kind="purchases", progress=True)
        rows = query(db, "SELECT kind, amount, ts FROM interactions ORDER BY ts")
    assert [r[:2] for r in rows] == [(InteractionKind.PURCHASE.code, 1.0)] * 2
    # Rows without timestamps get the import time, one microsecond apart, in file order.
    assert (rows[1][2] - rows[0][2]).total_seconds() == pytest.approx(1e-6)


def test_cascade_creates_only_missing_users_and_items(tmp_path: Path) -> None:
    with open_db(tmp_path) as db:
        db.write_sync(lambda ctx: catalog.add_entity(ctx, Entity.USER, "old"))
        db.write_sync(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, "i1"))
        path = write_file(
            tmp_path / "views",
            "parquet",
            [
                {"userId": "old", "itemId": "i1", "timestamp": 1.0},
                {"userId": "new", "itemId": "i2", "timestamp": 2.0},
                {"userId": "new", "itemId": "i3", "timestamp": 3.0},
            ],
        )
        report = import_file(db, "interactions", path, kind="detail_views", progress=False)
        assert "(1 new users, 2 new items)" in report
        assert query(db, 'SELECT "$idx", "$id" FROM users ORDER BY 1') == [(0, "old"), (1, "new")]
        assert query(db, 'SELECT "$id" FROM items ORDER BY "$idx"') == [("i1",), ("i2",), ("i3",)]


# -- bad files: the first bad row is named and nothing is written ---------------------------

V = "detail_view"
BAD_FILES: list[tuple[str, str, Rows, dict[str, str], str]] = [
    (
        "items",
        "csv",
        [{"itemId": "ok", "color": "red"}, {"itemId": "not ok", "color": "blue"}],
        {},
        "row 2 (line 3): column 'itemId': must match",
    ),
    (
        "users",
        "parquet",
        [{"userId": "u"}, {"userId": "v"}, {"userId": "x" * 257, "age": 3}],
        {},
        "row 3: column 'userId': is longer than 256 characters",
    ),
    (
        "items",
        "csv",
        [{"itemId": "a", "color": "red", "bad name": 1}],
        {},
        "column 'bad name': parameter 'propertyName': 'bad name' does not match",
    ),
    (
        "items",
        "ndjson",
        [{"itemId": "a", "year": 1}, {"itemId": "b", "year": "abc"}],
        {"schema": "year:int"},
        "row 2: column 'year': cannot be read as an integer, got 'abc'",
    ),
    (
        "items",
        "csv",
        [{"itemId": "a", "n": 1}, {"itemId": "b", "n": 2}, {"itemId": "a", "n": 3}],
        {},
        "row 3 (line 4): column 'itemId': repeats the id of row 1",
    ),
    (
        "interactions",
        "ndjson",
        [{"userId": "u", "itemId": "i", "type": "rating", "rating": 1}] * 1
        + [{"userId": "u", "itemId": "j", "type": "rating", "rating": 2.0}],
        {},
        "row 2: column 'rating': must be between -1 and 1",
    ),
    (
        "interactions",
        "csv",
        [
            {"userId": "u", "itemId": "i", "type": "view_portion", "portion": "0.5"},
            {"userId": "u", "itemId": "j", "type": "view_portion", "portion": "-0.1"},
        ],
        {},
        "row 2 (line 3): column 'portion': must be between 0 and 1",
    ),
    (
        "interactions",
        "csv",
        [
            {"userId": "u", "itemId": "i", "timestamp": "2024-01-01T00:00:00Z"},
            {"userId": "u", "itemId": "i", "timestamp": "yesterday"},
        ],
        {"kind": "detail_views"},
        "row 2 (line 3): column 'timestamp': cannot be read as ISO-8601",
    ),
    (
        "interactions",
        "parquet",
        [{"userId": "u", "itemId": "i", "type": V, "color": "red", "size": 1}],
        {},
        "unknown columns 'color', 'size' (accepted: type, userId",
    ),
    (
        "interactions",
        "parquet",
        [{"userId": "u", "itemId": "i", "type": V}, {"userId": "u", "itemId": "i", "type": "like"}],
        {},
        "row 2: column 'type': unknown interaction type",
    ),
    (
        "interactions",
        "csv",
        [{"userId": "u", "itemId": "i", "type": V, "timestamp": t} for t in (5, 6, 7, 5)],
        {},
        "row 4 (line 5): repeats row 1",
    ),
    (
        "interactions",
        "ndjson",
        [{"userId": "u", "itemId": "i", "type": "purchase", "rating": 0.5}],
        {},
        "row 1: column 'rating': must be empty for this interaction type",
    ),
]


@pytest.mark.parametrize(("what", "fmt", "rows", "options", "expected"), BAD_FILES)
def test_a_bad_row_is_named_and_nothing_is_written(
    tmp_path: Path, what: str, fmt: str, rows: Rows, options: dict[str, str], expected: str
) -> None:
    path = write_file(tmp_path / "bad", fmt, rows)
    with open_db(tmp_path) as db:
        db.write_sync(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, "existing"))
        before = counts(db)
        with pytest.raises(BulkImportError) as raised:
            import_file(db, what, path, progress=False, **options)
        assert expected in str(raised.value)
        assert str(path) in str(raised.value)
        assert counts(db) == before
        assert temp_tables(db) == []


def test_a_stored_duplicate_is_refused(tmp_path: Path) -> None:
    first = write_file(
        tmp_path / "first",
        "parquet",
        [
            {"userId": "u", "itemId": "i", "type": V, "timestamp": 10},
            {
                "userId": "u",
                "itemId": "i",
                "type": "view_portion",
                "portion": 0.2,
                "sessionId": "s",
            },
        ],
    )
    second = write_file(
        tmp_path / "second",
        "ndjson",
        [
            {"userId": "new", "itemId": "i", "type": V, "timestamp": 10},
            {"userId": "u", "itemId": "i", "type": V, "timestamp": 11},
            {
                "userId": "u",
                "itemId": "i",
                "type": "view_portions",
                "portion": 0.9,
                "sessionId": "s",
            },
        ],
    )
    third = write_file(
        tmp_path / "third",
        "ndjson",
        [
            {"userId": "other", "itemId": "new", "type": V, "timestamp": 12},
            {
                "userId": "u",
                "itemId": "i",
                "type": "detailviews",
                "timestamp": "1970-01-01T00:00:10",
            },
        ],
    )
    with open_db(tmp_path) as db:
        import_file(db, "interactions", first, progress=False)
        before = counts(db)
        for path, row in ((second, 3), (third, 2)):
            with pytest.raises(BulkImportError, match=f"row {row}: is already stored"):
                import_file(db, "interactions", path, progress=False)
            assert counts(db) == before


def test_a_type_clash_rolls_back_the_properties_created_before_it(tmp_path: Path) -> None:
    # 'color' comes first, so the import has created it when 'price' clashes.
    path = write_file(
        tmp_path / "items", "csv", [{"itemId": "a", "color": "red", "price": "cheap"}]
    )
    with open_db(tmp_path) as db:
        db.write_sync(lambda ctx: catalog.add_property(ctx, Entity.ITEM, "price", "int"))
        before = counts(db)
        with pytest.raises(BulkImportError, match="'price' exists with type int, not string"):
            import_file(db, "items", path, progress=False)
        assert counts(db) == before
        assert properties(db, Entity.ITEM) == {"price": "int"}


def test_arguments_and_schemas_are_checked(tmp_path: Path) -> None:
    path = write_file(tmp_path / "items", "csv", [{"itemId": "a", "n": 1}])
    with open_db(tmp_path) as db:
        for options, message in (
            ({"schema": "n:integer"}, "'integer' is not a property type"),
            ({"schema": "m:int"}, "the schema names 'm'"),
            ({"kind": "purchases"}, "--kind is for interactions"),
            ({"file_format": "xlsx"}, "unknown format"),
        ):
            with pytest.raises(BulkImportError, match=message):
                import_file(db, "items", path, progress=False, **options)
        with pytest.raises(BulkImportError, match="no such file"):
            import_file(db, "users", tmp_path / "missing.csv", progress=False)
        with pytest.raises(BulkImportError, match="no 'type' column"):
            import_file(
                db,
                "interactions",
                write_file(tmp_path / "v", "csv", [{"userId": "u", "itemId": "i"}]),
                progress=False,
            )


# -- the command line ----------------------------------------------------------------------


def test_cli_imports_and_reports_a_bad_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "reqo.yaml"
    config.write_text("data_dir: data\ndatabases:\n  shop: {token: a-long-test-token}\n", "utf-8")
    good = write_file(tmp_path / "good", "csv", [dict(r) for r in INTERACTIONS[:3]])
    bad = write_file(
        tmp_path / "bad",
        "csv",
        [
            {"userId": "u", "itemId": "i", "type": "rating", "rating": "0.5"},
            {"userId": "u", "itemId": "i", "type": "rating"},
        ],
    )
    base = ["import", "--config", str(config), "--db", "shop", "--no-progress", "interactions"]
    assert main([*base, str(good)]) == 0
    assert "imported 3 interactions (2 new users, 2 new items)" in capsys.readouterr().out
    assert main([*base, str(bad)]) == 1
    error = capsys.readouterr().err
    assert "row 2 (line 3): column 'rating': is required for ratings" in error
    db = Database("shop", tmp_path / "data" / "shop.duckdb")
    try:
        assert query(db, "SELECT count(*) FROM interactions") == [(3,)]
    finally:
        db.close()


def test_ndjson_values_after_duckdbs_type_sample_are_kept(tmp_path: Path) -> None:
    # DuckDB samples 20,480 lines by default; a column that is null throughout the sample
    # would read as NULL even where it has values later.
    rows: list[dict[str, Any]] = [{"itemId": f"i{n}", "year": None} for n in range(25_000)]
    rows[-1]["year"] = 1999
    rows[-1]["late"] = "only here"
    path = write_file(tmp_path / "items", "ndjson", rows)
    with open_db(tmp_path) as db:
        import_file(db, "items", path, progress=False)
        assert properties(db, Entity.ITEM) == {"year": "int", "late": "string"}
        assert query(db, 'SELECT "$id", year, late FROM items WHERE year IS NOT NULL') == [
            ("i24999", 1999, "only here")
        ]
        assert temp_tables(db) == []


def test_images_follow_the_schema_and_users_cannot_have_them(tmp_path: Path) -> None:
    rows: Rows = [{"id": "a", "photo": "http://x/a.png", "gallery": ["http://x/1.png"]}]
    path = write_file(tmp_path / "items", "parquet", rows)
    with open_db(tmp_path) as db:
        import_file(db, "items", path, schema="photo:image,gallery:imageList", progress=False)
        assert properties(db, Entity.ITEM) == {"photo": "image", "gallery": "imageList"}
        with pytest.raises(BulkImportError, match="'image' is not allowed for user properties"):
            import_file(db, "users", path, schema="photo:image", progress=False)


def test_an_unreadable_file_is_reported_and_the_writer_stays_usable(tmp_path: Path) -> None:
    broken = tmp_path / "broken.ndjson"
    broken.write_text('{"itemId": "a", "n": 1}\n{"itemId": \n', encoding="utf-8")
    with open_db(tmp_path) as db:
        before = counts(db)
        with pytest.raises(BulkImportError, match=r"broken\.ndjson: cannot be read: .*JSON"):
            import_file(db, "items", broken, progress=False)
        assert counts(db) == before
        assert temp_tables(db) == []
        good = write_file(tmp_path / "good", "ndjson", [{"itemId": "a", "n": 1}])
        assert "1 items (1 new" in import_file(db, "items", good, progress=False)
