"""Every property of a new item or user is null until set, sets and image lists included, as
Recombee documents ("all the item properties for the newly created items are set to null"),
while ReQL keeps reading an unset set as the empty set; and a database file from before, whose
set columns had the default `[]`, gives its new items null too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
from recombee_api_client.api_requests import (
    AddDetailView,
    AddItem,
    AddItemProperty,
    AddUser,
    AddUserProperty,
    GetItemValues,
    GetUserValues,
    ListItems,
    RecommendItemsToUser,
    SetItemValues,
    SetUserValues,
)
from recombee_api_client.api_requests.request import Request

from storage import catalog
from storage.database import Database
from storage.schema import Entity
from tests.serving import RunningServer


def send(server: RunningServer, request: Request) -> Any:
    return server.client().send(request)


def listed(server: RunningServer, text: str) -> list[str]:
    found: list[str] = send(server, ListItems(filter=text))
    return found


def test_new_items_and_users_have_null_sets_until_set(live: RunningServer) -> None:
    for name, ptype in (("title", "string"), ("tags", "set"), ("gallery", "imageList")):
        send(live, AddItemProperty(name, ptype))
    send(live, AddUserProperty("interests", "set"))
    unset = {"title": None, "tags": None, "gallery": None}
    assert send(live, AddItem("added")) == "ok"
    assert send(live, GetItemValues("added")) == unset
    # Created by an interaction's cascadeCreate, and by Set Values of another property.
    send(live, AddDetailView("viewer", "viewed", cascade_create=True))
    assert send(live, GetItemValues("viewed")) == unset
    send(live, SetItemValues("titled", {"title": "Titled"}, cascade_create=True))
    assert send(live, GetItemValues("titled")) == {**unset, "title": "Titled"}
    assert send(live, AddUser("someone")) == "ok"
    assert send(live, GetUserValues("someone")) == {"interests": None}
    assert send(live, GetUserValues("viewer")) == {"interests": None}

    values = {"tags": ["blue", "red"], "gallery": ["file:///img/1.png"]}
    send(live, SetItemValues("added", values))
    assert send(live, GetItemValues("added")) == {**unset, **values}
    send(live, SetUserValues("someone", {"interests": ["jazz"]}))
    assert send(live, GetUserValues("someone")) == {"interests": ["jazz"]}
    listing = send(live, ListItems(return_properties=True, included_properties=["tags"]))
    assert listing == [
        {"itemId": "added", "tags": ["blue", "red"]},
        {"itemId": "titled", "tags": None},
        {"itemId": "viewed", "tags": None},
    ]


def test_reql_reads_a_null_set_as_empty(live: RunningServer) -> None:
    send(live, AddItemProperty("tags", "set"))
    send(live, SetItemValues("tagged", {"tags": ["blue"]}, cascade_create=True))
    send(live, AddItem("untagged"))
    send(live, SetItemValues("cleared", {"tags": ["red"]}, cascade_create=True))
    send(live, SetItemValues("cleared", {"tags": None}))
    assert send(live, GetItemValues("cleared")) == {"tags": None}
    assert listed(live, "\"blue\" in 'tags'") == ["tagged"]
    assert listed(live, "\"blue\" not in 'tags'") == ["cleared", "untagged"]
    assert listed(live, "size('tags') == 0") == ["cleared", "untagged"]
    assert listed(live, "'tags' == {}") == ["cleared", "untagged"]
    assert listed(live, "'tags' == null") == []
    assert listed(live, "size('tags' + {\"x\"}) == 1") == ["cleared", "untagged"]
    # The same in a recommendation's filter (a new user gets the popular items).
    for item in ("tagged", "untagged", "cleared"):
        send(live, AddDetailView("fan", item, cascade_create=True))
    trained = live.request("POST", "/-/train", json={})
    assert trained.status_code == 200, trained.text
    recommended = send(
        live, RecommendItemsToUser("newcomer", 3, filter="size('tags') == 0", cascade_create=True)
    )
    assert sorted(r["id"] for r in recommended["recomms"]) == ["cleared", "untagged"]


def test_a_file_from_before_gives_new_items_null_sets(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    Database("old", path).close()
    # What add_property did before: a set column with the default [].
    with duckdb.connect(str(path)) as conn:
        conn.execute('ALTER TABLE items ADD COLUMN "tags" VARCHAR[] DEFAULT []')
        conn.execute("INSERT INTO item_properties (name, type, position) VALUES ('tags', 'set', 1)")
    database = Database("old", path)
    try:
        database.write_sync(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, "new"))
        values = database.read_sync(lambda ctx: catalog.get_values(ctx, Entity.ITEM, "new"))
        assert values == {"tags": None}
    finally:
        database.close()
