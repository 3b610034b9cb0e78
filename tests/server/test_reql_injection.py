"""Hostile text in ReQL: as string literals, property names, dictionary keys and context values,
in list filters and Delete/Update More Items. Nothing of it may reach SQL as SQL: literals find
exactly the items that hold them, bad names are 400s that say why, and the database is left as it
was wherever nothing was meant to change.

Over HTTP with the official client against a real server, and through the ExpressionEngine
against the shop in a real DuckDB file (tests/reql/shop.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from recombee_api_client.api_requests import (
    AddDetailView,
    AddItemProperty,
    AddUserProperty,
    DeleteMoreItems,
    GetItemValues,
    ListItemDetailViews,
    ListItemProperties,
    ListItems,
    ListUserProperties,
    ListUsers,
    ResetDatabase,
    SetItemValues,
    SetUserValues,
    UpdateMoreItems,
)
from recombee_api_client.api_requests.request import Request
from recombee_api_client.exceptions import ResponseException

from server.serving.expressions import BadExpression, Context
from server.serving.reql_engine import ExpressionEngine
from storage import catalog
from storage.database import Database, WriteContext
from storage.schema import Entity
from tests.reql.shop import build_shop
from tests.serving import RunningServer

HOSTILE = [
    "'",
    '"',
    "''",
    '""',
    "\\",
    "\\\\",
    '\\"',
    "\\'",
    "\\u0027",
    "\\n",
    ";",
    "--",
    "/* */",
    "/*",
    "*/",
    "//",
    "DROP TABLE items",
    "'; DROP TABLE items; --",
    '"; DROP TABLE items; --',
    "x'); DELETE FROM items; --",
    "' OR 1=1 --",
    '" OR 1=1 --',
    "' OR '1'='1",
    "') OR ('1'='1",
    "1; SELECT * FROM users",
    "$1",
    "$p0",
    "$now",
    "?",
    ":name",
    "%s",
    "{0}",
    "{}",
    "[]",
    "\x00",
    "a\x00b'; DROP TABLE items; --",
    "\n",
    "line one\nline two",
    "\r\n",
    "\t",
    "\x1b[31m",
    "\u202egnp.exe",
    "\u200f\u200e\u202a\u202c",
    "\ufeff",
    "😀",
    "👩\u200d👩\u200d👧\u200d👦",
    "e\u0301",
    "中文'--",
    "\u210c\U0001d522\U0001d529\U0001d529\U0001d52c",
    "NULL",
    "null",
    "true",
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "x" * 4000,
    "'" * 2000,
    "\\" * 2000,
    '"' * 2000,
    "😀" * 2000,
    "'; DROP TABLE items; --" * 150,
]
assert len(set(HOSTILE)) == len(HOSTILE)
IDS = {text: f"h{index:02d}" for index, text in enumerate(HOSTILE)}
SHORT = [h for h in HOSTILE if len(h) <= 100]
SHORT_IDS = [IDS[h] for h in SHORT]
# Two items that no hostile literal should ever find: one plain, one without a title.
PLAIN = {"plain": "Plain Shoes", "untitled": None}
TITLES: dict[str, str | None] = {**{IDS[h]: h for h in HOSTILE}, **PLAIN}
PROPERTY_NAME = re.compile(r"[a-zA-Z0-9_\-:]{1,63}")  # REQL.md's lexical rule

# Filters that would do harm if they reached SQL as text; each must be a 400.
INJECTIONS = [
    "'title' == \"a\"; DROP TABLE items; --",
    "'title' == \"a\" -- DROP TABLE items",
    "'title' == \"a\" /* DROP TABLE items */",
    "' OR 1=1 --",
    "'title' == \"a\" OR 1=1",
    "'title' == '' OR ''=''",
    "'title' == \"a\") OR (1 == 1",
    "'title' == \"a\\\" OR 1 == 1",
    "1 == 1; DELETE FROM items",
    "'title' == \"\x00\" or",
    "\x00'title' == \"a\"",
    "'$id' != \"x\"",
    '\'items"."$id\' != "x"',
    '\'title"\' != "x"',
    "true) OR (true",
    "$p0",
    "'price' > $now",
    '"a" == "a" UNION SELECT * FROM items',
]


def check_report(report: str) -> None:
    """A ReQL error report: `ReQL: <message> at L:C`, the line of the expression, a caret."""
    assert report.startswith("ReQL: "), report
    lines = report.split("\n")
    # The message is one line: text from the expression (a key with a newline) is not echoed
    # raw into it.
    assert re.search(r" at \d+:\d+$", lines[0]), report
    assert re.fullmatch(r" *\^", lines[-1]), report


def check_name_problem(name: str, message: str) -> None:
    """A 400 for the property `'name'` says what is wrong with the name."""
    check_report(message)
    if "'" in name or "\n" in name:
        return  # the quotes do not even delimit it: any syntax error will do
    if PROPERTY_NAME.fullmatch(name):
        assert re.search(f"unknown (item )?property '{re.escape(name)}'", message), message
    else:
        assert "invalid property name" in message, message


def reql_string(text: str) -> str:
    """`text` as a ReQL string literal, escaped as REQL.md says."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def reql_string_unicode(text: str) -> str:
    """`text` as a ReQL string literal with every character of the BMP written as \\uXXXX."""
    parts = [f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in text]
    return '"' + "".join(parts) + '"'


def contains(text: str) -> list[str]:
    """The ids of the items whose title contains `text`, sorted."""
    return sorted(i for i, title in TITLES.items() if title is not None and text in title)


# -- over HTTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str  # the message of the JSON body


@dataclass(frozen=True)
class HttpShop:
    """Items h00… titled with a hostile string each (their tags hold it too), and two others, in
    one database of the live server, spoken to with the official client."""

    server: RunningServer
    database: str

    def send(self, request: Request) -> Any:
        return self.server.client(self.database).send(request)

    def list(self, expression: str) -> Any:
        return self.send(ListItems(filter=expression))

    def refused(self, request: Request) -> Refusal:
        """The request must fail with a 4xx that says why in a JSON body, never a 5xx."""
        with pytest.raises(ResponseException) as caught:
            self.send(request)
        status: int = caught.value.status_code
        assert 400 <= status < 500, (status, caught.value.description)
        payload = json.loads(caught.value.description)
        assert payload["statusCode"] == status
        return Refusal(status, payload["error"])

    def snapshot(self) -> dict[str, Any]:
        """Everything a filter could have changed or destroyed."""
        return {
            "items": self.send(ListItems(return_properties=True)),
            "users": self.send(ListUsers(return_properties=True)),
            "item properties": self.send(ListItemProperties()),
            "user properties": self.send(ListUserProperties()),
            "views": self.send(ListItemDetailViews("plain")),
        }

    def build(self) -> HttpShop:
        self.send(ResetDatabase())
        self.send(AddItemProperty("title", "string"))
        self.send(AddItemProperty("tags", "set"))
        self.send(AddItemProperty("price", "double"))
        self.send(AddUserProperty("nick", "string"))
        for item_id, title in TITLES.items():
            tags = [title] if title is not None else []
            values = {"title": title, "tags": tags, "price": 10.0}
            self.send(SetItemValues(item_id, values, cascade_create=True))
        nick = {"nick": "'; DROP TABLE users; --"}
        self.send(SetUserValues("alice", nick, cascade_create=True))
        self.send(AddDetailView("alice", "plain"))
        return self


@pytest.fixture(scope="module")
def shared_shop(server: RunningServer) -> Iterator[HttpShop]:
    """One shop for the tests that must change nothing (each checks that it did not), in the
    server's second database, built once for the module."""
    shop = HttpShop(server, "other").build()
    yield shop
    shop.send(ResetDatabase())


@pytest.fixture
def shop(live: RunningServer) -> HttpShop:
    """A fresh shop, for the tests that change it."""
    return HttpShop(live, "test").build()


def test_the_shop_holds_every_hostile_string_intact(shared_shop: HttpShop) -> None:
    for item_id, title in TITLES.items():
        assert shared_shop.send(GetItemValues(item_id))["title"] == title, item_id


@pytest.mark.parametrize("literal", [reql_string, reql_string_unicode])
def test_hostile_string_literals_find_exactly_their_items(
    shared_shop: HttpShop, literal: Any
) -> None:
    shop = shared_shop
    before = shop.snapshot()
    everything = sorted(TITLES)
    for text in HOSTILE:
        if literal is reql_string_unicode and len(text) > 1000:
            continue  # six characters each: beyond the limit of the expression's length
        mine, value = IDS[text], literal(text)
        found = shop.list(f"'title' == {value}")
        assert found == [mine], (text, found)
        found = shop.list(f"'title' != {value}")
        assert found == [i for i in everything if i != mine], (text, found)
        found = shop.list(f"{value} in 'tags'")
        assert found == [mine], (text, found)
        found = shop.list(f"{value} in 'title'")
        assert found == contains(text), (text, found)
        found = shop.list(f"'itemId' == {value} or 'title' == {value}")
        assert found == [mine], (text, found)
        records = shop.send(ListItems(filter=f"'title' == {value}", return_properties=True))
        assert [r["title"] for r in records] == [text]
    assert shop.snapshot() == before


def test_a_hostile_literal_longer_than_the_limit_is_a_400(shared_shop: HttpShop) -> None:
    before = shared_shop.snapshot()
    for text in ("x" * 10_001, "'; DROP TABLE items; --" * 500):
        for request in (
            ListItems(filter=f"'title' == {reql_string(text)}"),
            DeleteMoreItems(f"'title' == {reql_string(text)}"),
        ):
            error = shared_shop.refused(request)
            assert error.status == 400
            assert "the limit is 10,000" in error.error
    assert shared_shop.snapshot() == before


@pytest.mark.parametrize("text", SHORT, ids=SHORT_IDS)
def test_hostile_property_names_are_refused_saying_why(shared_shop: HttpShop, text: str) -> None:
    before = shared_shop.snapshot()
    for expression in (f"'{text}' == 1", f"size('{text}') > 0", f"'price' > 1 and '{text}'"):
        for request in (ListItems(filter=expression), DeleteMoreItems(expression)):
            error = shared_shop.refused(request)
            # Recombee answers a List filter naming a property that does not exist with 404; a
            # name that cannot be a property is a 400 everywhere.
            listing = isinstance(request, ListItems) and "unknown property" in error.error
            assert error.status == (404 if listing else 400), error
            check_name_problem(text, error.error)
    # As a key of a dictionary, the same text is a value, not a name: a 400 for a missing key.
    key = reql_string(text)
    error = shared_shop.refused(ListItems(filter=f"item_values('itemId')[{key}] == 1"))
    assert "the dictionary has no key" in error.error, error.error
    check_report(error.error)
    assert shared_shop.snapshot() == before


@pytest.mark.parametrize("name", ["DROP_TABLE_items", "items", "select", "id", "idx", "price--"])
def test_sql_words_as_property_names_are_unknown_properties(
    shared_shop: HttpShop, name: str
) -> None:
    before = shared_shop.snapshot()
    error = shared_shop.refused(DeleteMoreItems(f"'{name}' == 1"))
    assert error.status == 400
    check_name_problem(name, error.error)
    assert shared_shop.snapshot() == before


@pytest.mark.parametrize("expression", INJECTIONS)
def test_injected_sql_is_a_400_and_changes_nothing(shared_shop: HttpShop, expression: str) -> None:
    before = shared_shop.snapshot()
    for request in (
        ListItems(filter=expression),
        DeleteMoreItems(expression),
        UpdateMoreItems(expression, {"title": "pwned"}),
    ):
        error = shared_shop.refused(request)
        assert error.status == 400
        check_report(error.error)
    assert shared_shop.snapshot() == before


def test_delete_more_items_with_hostile_literals_deletes_exactly_those(shop: HttpShop) -> None:
    users_before = shop.send(ListUsers(return_properties=True))
    remaining = sorted(TITLES)
    for text in HOSTILE:
        result = shop.send(DeleteMoreItems(f"'title' == {reql_string(text)}"))
        assert result == {"itemIds": [IDS[text]], "count": 1}, (text, result)
        remaining.remove(IDS[text])
        assert shop.send(ListItems()) == remaining
        # Again: nothing left to delete.
        again = shop.send(DeleteMoreItems(f"{reql_string(text)} in 'tags'"))
        assert again == {"itemIds": [], "count": 0}
    assert remaining == sorted(PLAIN)
    assert shop.send(GetItemValues("plain"))["title"] == "Plain Shoes"
    assert shop.send(ListItemDetailViews("plain"))[0]["userId"] == "alice"
    assert shop.send(ListUsers(return_properties=True)) == users_before
    assert shop.send(ListItemProperties()) == [
        {"name": "title", "type": "string"},
        {"name": "tags", "type": "set"},
        {"name": "price", "type": "double"},
    ]


def test_update_more_items_with_hostile_literals_and_values(shop: HttpShop) -> None:
    users_before = shop.send(ListUsers(return_properties=True))
    plain_before = {item_id: shop.send(GetItemValues(item_id)) for item_id in PLAIN}
    # Each item's title becomes the next hostile string (marked); its tags keep the old one.
    following = {
        text: after + "\u2063"
        for text, after in zip(HOSTILE, [*HOSTILE[1:], HOSTILE[0]], strict=True)
    }
    for text in HOSTILE:
        changes = {"title": following[text], "price": 1.0}
        result = shop.send(UpdateMoreItems(f"'title' == {reql_string(text)}", changes))
        assert result == {"itemIds": [IDS[text]], "count": 1}, (text, result)
    for text in HOSTILE:
        values = shop.send(GetItemValues(IDS[text]))
        assert values["title"] == following[text], text
        assert values["tags"] == [text], text
        assert values["price"] == 1.0
        assert shop.list(f"'title' == {reql_string(following[text])}") == [IDS[text]], text
    for item_id in PLAIN:
        assert shop.send(GetItemValues(item_id)) == plain_before[item_id]
    assert shop.send(ListUsers(return_properties=True)) == users_before


@pytest.mark.parametrize(
    "changes",
    [
        {"'; DROP TABLE items; --": 1},
        {'title" = 1; --': 1, "title": "pwned"},
        {"title": "pwned", "$id": "x"},
        {"title": "pwned", "price": "1; DROP TABLE items"},
        {"title": "pwned", "tags": ["ok", 1]},
    ],
)
def test_update_more_items_with_hostile_changes_changes_nothing(
    shared_shop: HttpShop, changes: dict[str, Any]
) -> None:
    before = shared_shop.snapshot()
    error = shared_shop.refused(UpdateMoreItems("'price' > 0", changes))
    assert error.status in (400, 404)
    assert shared_shop.snapshot() == before


# -- through the ExpressionEngine ---------------------------------------------------------------

ENGINE_HOSTILE = [h for h in HOSTILE if len(h) < 3000]


class EngineShop:
    """The shop with items x00… titled with hostile strings and users e00… living in them."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.engine = ExpressionEngine(database)
        rows = database.read_sync(
            lambda ctx: ctx.conn.execute('SELECT "$id", "$idx", title FROM items').fetchall()
        )
        self.index = {row[0]: row[1] for row in rows}
        self.titles: dict[str, str | None] = {row[0]: row[2] for row in rows}

    def passing(self, text: str, context: Context) -> list[str]:
        mask = self.database.read_sync(lambda ctx: self.engine.mask(ctx, text, context))
        return sorted(i for i, index in self.index.items() if mask[index])

    def values(self, text: str, item_ids: list[str], context: Context) -> list[Any]:
        found: list[Any] = self.database.read_sync(
            lambda ctx: self.engine.values(ctx, text, item_ids, context)
        )
        return found

    def state(self) -> dict[str, Any]:
        """Every table, and every row of each."""

        def read(ctx: Any) -> dict[str, Any]:
            tables = [
                row[0]
                for row in ctx.conn.execute(
                    "SELECT table_name FROM information_schema.tables ORDER BY table_name"
                ).fetchall()
            ]
            return {
                table: sorted(map(repr, ctx.conn.execute(f'SELECT * FROM "{table}"').fetchall()))
                for table in tables
            }

        found: dict[str, Any] = self.database.read_sync(read)
        return found


@pytest.fixture(scope="module")
def engine_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineShop]:
    database, _ = build_shop(tmp_path_factory.mktemp("injection") / "shop.duckdb")

    def load(ctx: WriteContext) -> None:
        for index, text in enumerate(ENGINE_HOSTILE):
            catalog.set_values(
                ctx, Entity.ITEM, f"x{index:02d}", {"title": text}, cascade_create=True
            )
            values = {"city": text, "topics": [text]}
            catalog.set_values(ctx, Entity.USER, f"e{index:02d}", values, cascade_create=True)

    database.write_sync(load)
    yield EngineShop(database)
    database.close()


def engine_error(shop: EngineShop, text: str, context: Context) -> BadExpression:
    with pytest.raises(BadExpression) as caught:
        shop.passing(text, context)
    assert caught.value.status == 400
    assert str(caught.value).startswith("ReQL: ")
    return caught.value


def test_the_engine_shop_holds_the_hostile_titles(engine_shop: EngineShop) -> None:
    for index, text in enumerate(ENGINE_HOSTILE):
        assert engine_shop.titles[f"x{index:02d}"] == text


def test_hostile_literals_through_the_engine(engine_shop: EngineShop) -> None:
    before = engine_shop.state()
    for index, text in enumerate(ENGINE_HOSTILE):
        mine = f"x{index:02d}"
        literals = [reql_string(text), reql_string_unicode(text)]
        for literal in literals if len(text) <= 1000 else literals[:1]:
            assert engine_shop.passing(f"'title' == {literal}", Context()) == [mine], text
            values = engine_shop.values(literal, [mine, "i1"], Context())
            assert values == [text, text]
        expected = sorted(i for i, t in engine_shop.titles.items() if t is not None and text in t)
        assert engine_shop.passing(f"{reql_string(text)} in 'title'", Context()) == expected
    assert engine_shop.state() == before


def test_hostile_context_user_values(engine_shop: EngineShop) -> None:
    before = engine_shop.state()
    for index, text in enumerate(ENGINE_HOSTILE):
        mine, user = f"x{index:02d}", Context(user_id=f"e{index:02d}")
        assert engine_shop.passing("'title' == context_user[\"city\"]", user) == [mine], text
        assert engine_shop.passing("'title' in context_user[\"topics\"]", user) == [mine], text
        expected = sorted(i for i, t in engine_shop.titles.items() if t is not None and text in t)
        assert engine_shop.passing("context_user[\"city\"] in 'title'", user) == expected, text
        assert engine_shop.values('context_user["city"]', ["i1"], user) == [text]
        every = sorted(engine_shop.index)
        assert engine_shop.passing(f'context_user["city"] == {reql_string(text)}', user) == every
    assert engine_shop.state() == before


def test_hostile_context_item_values(engine_shop: EngineShop) -> None:
    before = engine_shop.state()
    for index, text in enumerate(ENGINE_HOSTILE):
        mine, item = f"x{index:02d}", Context(item_id=f"x{index:02d}")
        assert engine_shop.passing("'title' == context_item[\"title\"]", item) == [mine], text
        assert engine_shop.values('context_item["title"] + "!"', ["i1"], item) == [text + "!"]
    assert engine_shop.state() == before


@pytest.mark.parametrize("text", SHORT, ids=SHORT_IDS)
def test_hostile_ids_of_the_context(engine_shop: EngineShop, text: str) -> None:
    """The ids of the request's user and item are values too: an unknown user or item whose id
    is hostile has only that id, and null properties."""
    before = engine_shop.state()
    context = Context(item_id=text, user_id=text)
    every = sorted(engine_shop.index)
    literal = reql_string(text)
    assert engine_shop.passing(f'context_user["userId"] == {literal}', context) == every
    assert engine_shop.passing(f'context_item["itemId"] == {literal}', context) == every
    assert engine_shop.passing('context_user["city"] == null', context) == every
    assert engine_shop.passing("'title' == context_item[\"title\"]", context) == []
    assert engine_shop.values('context_user["userId"]', ["i1"], context) == [text]
    assert engine_shop.state() == before


@pytest.mark.parametrize("text", SHORT, ids=SHORT_IDS)
def test_hostile_names_of_context_properties(engine_shop: EngineShop, text: str) -> None:
    before = engine_shop.state()
    context = Context(item_id="i1", user_id="u1")
    literal = reql_string(text)
    for entity in ("user", "item"):
        error = engine_error(engine_shop, f"context_{entity}[{literal}] == 1", context)
        check_report(str(error))
        assert "unknown" in str(error).split("\n")[0], str(error)
        assert entity in str(error).split("\n")[0], str(error)
    error = engine_error(engine_shop, f"'{text}' == 1", context)
    check_name_problem(text, str(error))
    assert engine_shop.state() == before


def test_the_engine_shop_is_still_whole(engine_shop: EngineShop) -> None:
    """After all of the above (module order), every table and the shop's own items are there."""
    state = engine_shop.state()
    assert {"items", "users", "interactions"} <= set(state)
    mask = engine_shop.database.read_sync(
        lambda ctx: engine_shop.engine.mask(ctx, "'price' < 100", Context())
    )
    assert isinstance(mask, np.ndarray)
    assert engine_shop.passing("'price' < 100", Context()) == ["i1", "i3", "i6", "i8"]
    assert len(engine_shop.index) == 8 + len(ENGINE_HOSTILE)
