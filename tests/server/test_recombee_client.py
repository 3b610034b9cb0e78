"""The official Recombee Python client, unchanged, against a real reqo server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from recombee_api_client.api_requests import (
    AddBookmark,
    AddCartAddition,
    AddDetailView,
    AddItem,
    AddItemProperty,
    AddPurchase,
    AddRating,
    AddUser,
    AddUserProperty,
    DeleteBookmark,
    DeleteCartAddition,
    DeleteDetailView,
    DeleteItem,
    DeleteItemProperty,
    DeletePurchase,
    DeleteRating,
    DeleteUser,
    DeleteUserProperty,
    DeleteViewPortion,
    GetItemPropertyInfo,
    GetItemValues,
    GetUserPropertyInfo,
    GetUserValues,
    ListItemBookmarks,
    ListItemCartAdditions,
    ListItemDetailViews,
    ListItemProperties,
    ListItemPurchases,
    ListItemRatings,
    ListItems,
    ListItemViewPortions,
    ListUserBookmarks,
    ListUserCartAdditions,
    ListUserDetailViews,
    ListUserProperties,
    ListUserPurchases,
    ListUserRatings,
    ListUsers,
    ListUserViewPortions,
    MergeUsers,
    ResetDatabase,
    SetItemValues,
    SetUserValues,
    SetViewPortion,
)
from recombee_api_client.api_requests.request import Request
from recombee_api_client.exceptions import ResponseException
from recombee_api_client.inputs import PropertyRole

from tests.serving import RunningServer


def send(live: RunningServer, request: Request) -> Any:
    return live.client().send(request)


def status_of(live: RunningServer, request: Request) -> int:
    with pytest.raises(ResponseException) as caught:
        live.client().send(request)
    code: int = caught.value.status_code
    return code


def test_item_properties_of_every_type(live: RunningServer) -> None:
    types = ["int", "double", "string", "boolean", "timestamp", "set", "image", "imageList"]
    for index, ptype in enumerate(types):
        assert send(live, AddItemProperty(f"p{index}", ptype)) == "ok"
    listed = send(live, ListItemProperties())
    assert listed == [{"name": f"p{i}", "type": t} for i, t in enumerate(types)]
    assert send(live, GetItemPropertyInfo("p4")) == {"name": "p4", "type": "timestamp"}
    assert status_of(live, AddItemProperty("p0", "int")) == 409
    assert status_of(live, AddItemProperty("itemId", "int")) == 400
    assert status_of(live, AddItemProperty("bad name", "int")) == 400
    assert status_of(live, AddItemProperty("x" * 64, "int")) == 400
    assert status_of(live, AddItemProperty("q", "float")) == 400
    assert send(live, DeleteItemProperty("p0")) == "ok"
    assert status_of(live, GetItemPropertyInfo("p0")) == 404
    assert status_of(live, DeleteItemProperty("p0")) == 404


def test_a_property_keeps_its_role_and_metadata(live: RunningServer) -> None:
    """SDK 6's `role` and `metadata` of Add Property are stored and read back; a malformed one
    is a 400 naming it, and creates nothing."""
    role = PropertyRole("title", {"language": "en"})
    assert send(live, AddItemProperty("title", "string", role=role)) == "ok"
    # SDK 6.3.1 cannot serialise a list of PropertyMetadata (TypeError): sent as its JSON.
    metadata = [{"name": "searchable"}, {"name": "weight", "settings": {"value": 3}}]
    added = live.request("PUT", "/items/properties/tags?type=set", json={"metadata": metadata})
    assert added.status_code == 201, added.text
    assert send(live, AddUserProperty("country", "string", role=PropertyRole("country"))) == "ok"
    title = {
        "name": "title",
        "type": "string",
        "role": {"name": "title", "settings": {"language": "en"}},
    }
    tags = {"name": "tags", "type": "set", "metadata": metadata}
    assert send(live, GetItemPropertyInfo("title")) == title
    assert send(live, GetItemPropertyInfo("tags")) == tags
    assert send(live, ListItemProperties()) == [title, tags]
    assert send(live, GetUserPropertyInfo("country"))["role"] == {"name": "country"}
    for bad, words in (
        ({"role": 42}, "parameter 'role': must be an object"),
        ({"role": {"settings": {}}}, "needs a 'name'"),
        ({"role": {"name": "title", "colour": 1}}, "unknown field 'colour'"),
        ({"metadata": {"name": "x"}}, "parameter 'metadata': must be a list"),
        ({"metadata": [{"name": "x", "settings": 3}]}, "parameter 'metadata[0]'"),
    ):
        response = live.request("PUT", "/items/properties/other?type=int", json=bad)
        assert response.status_code == 400, response.text
        assert words in response.json()["error"]
    assert status_of(live, GetItemPropertyInfo("other")) == 404


def test_user_properties_refuse_image_types(live: RunningServer) -> None:
    assert send(live, AddUserProperty("age", "int")) == "ok"
    assert status_of(live, AddUserProperty("avatar", "image")) == 400
    assert status_of(live, AddUserProperty("userid", "string")) == 400
    assert send(live, ListUserProperties()) == [{"name": "age", "type": "int"}]
    assert send(live, GetUserPropertyInfo("age")) == {"name": "age", "type": "int"}
    assert send(live, DeleteUserProperty("age")) == "ok"
    assert send(live, ListUserProperties()) == []


def test_set_values_with_cascade_create_and_read_back(live: RunningServer) -> None:
    for name, ptype in [
        ("title", "string"),
        ("price", "double"),
        ("stock", "int"),
        ("available", "boolean"),
        ("released", "timestamp"),
        ("tags", "set"),
        ("cover", "image"),
        ("gallery", "imageList"),
    ]:
        send(live, AddItemProperty(name, ptype))
    values = {
        "title": "Blue shirt",
        "price": 19.5,
        "stock": 3,
        "available": True,
        "released": "2024-05-01T12:00:00Z",
        "tags": ["shirts", "blue", "shirts"],
        "cover": "file:///img/1.png",
        "gallery": ["file:///img/2.png"],
    }
    assert status_of(live, SetItemValues("shirt-1", values)) == 404
    assert send(live, SetItemValues("shirt-1", values, cascade_create=True)) == "ok"
    stored = send(live, GetItemValues("shirt-1"))
    expected_ts = datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()
    assert stored == {**values, "released": expected_ts, "tags": ["shirts", "blue"]}
    # a datetime goes through the client as epoch seconds
    send(live, SetItemValues("shirt-1", {"released": datetime(2020, 1, 1, tzinfo=UTC)}))
    assert send(live, GetItemValues("shirt-1"))["released"] == 1577836800.0
    # null clears, a set as any other property (ReQL reads a null set as empty)
    send(live, SetItemValues("shirt-1", {"price": None, "tags": None}))
    after = send(live, GetItemValues("shirt-1"))
    assert after["price"] is None
    assert after["tags"] is None

    send(live, AddUserProperty("city", "string"))
    assert send(live, SetUserValues("u-1", {"city": "Prague"}, cascade_create=True)) == "ok"
    assert send(live, GetUserValues("u-1")) == {"city": "Prague"}


def test_set_values_errors(live: RunningServer) -> None:
    send(live, AddItemProperty("stock", "int"))
    send(live, AddItem("a"))
    assert status_of(live, SetItemValues("a", {"stock": "three"})) == 400
    assert status_of(live, SetItemValues("a", {"stock": 1.5})) == 400
    assert status_of(live, SetItemValues("a", {"nope": 1})) == 404
    assert status_of(live, GetItemValues("missing")) == 404
    assert send(live, GetItemValues("a")) == {"stock": None}


def test_items_and_users_add_list_delete(live: RunningServer) -> None:
    send(live, AddItemProperty("n", "int"))
    for index in range(5):
        assert send(live, AddItem(f"item-{index}")) == "ok"
        send(live, SetItemValues(f"item-{index}", {"n": index}))
    assert status_of(live, AddItem("item-0")) == 409
    assert status_of(live, AddItem("bad/id")) in (400, 404)
    assert status_of(live, AddItem("bad id!")) == 400
    assert send(live, ListItems()) == [f"item-{i}" for i in range(5)]
    assert send(live, ListItems(count=2, offset=1)) == ["item-1", "item-2"]
    with_props = send(live, ListItems(count=2, return_properties=True))
    assert with_props == [{"itemId": "item-0", "n": 0}, {"itemId": "item-1", "n": 1}]
    only = send(live, ListItems(count=1, return_properties=True, included_properties=["n"]))
    assert only == [{"itemId": "item-0", "n": 0}]
    assert send(live, DeleteItem("item-0")) == "ok"
    assert status_of(live, DeleteItem("item-0")) == 404
    assert send(live, ListItems()) == [f"item-{i}" for i in range(1, 5)]

    assert send(live, AddUser("alice")) == "ok"
    assert send(live, AddUser("bob")) == "ok"
    assert status_of(live, AddUser("alice")) == 409
    assert send(live, ListUsers()) == ["alice", "bob"]
    assert send(live, ListUsers(return_properties=True)) == [{"userId": "alice"}, {"userId": "bob"}]
    assert send(live, DeleteUser("bob")) == "ok"
    assert send(live, ListUsers()) == ["alice"]


ADDERS = {
    "detail_views": (AddDetailView, ListUserDetailViews, ListItemDetailViews, DeleteDetailView),
    "purchases": (AddPurchase, ListUserPurchases, ListItemPurchases, DeletePurchase),
    "cart_additions": (
        AddCartAddition,
        ListUserCartAdditions,
        ListItemCartAdditions,
        DeleteCartAddition,
    ),
    "bookmarks": (AddBookmark, ListUserBookmarks, ListItemBookmarks, DeleteBookmark),
}


@pytest.mark.parametrize("kind", sorted(ADDERS))
def test_interaction_add_list_delete(live: RunningServer, kind: str) -> None:
    add, list_user, list_item, delete = ADDERS[kind]
    assert status_of(live, add("u1", "i1", timestamp=100)) == 404  # nobody exists yet
    assert send(live, add("u1", "i1", timestamp=100, cascade_create=True, recomm_id="r-1")) == "ok"
    assert send(live, add("u1", "i1", timestamp="1970-01-01T00:03:20Z")) == "ok"
    assert status_of(live, add("u1", "i1", timestamp=100)) == 409
    by_user = send(live, list_user("u1"))
    assert [(r["itemId"], r["userId"], r["timestamp"]) for r in by_user] == [
        ("i1", "u1", 100.0),
        ("i1", "u1", 200.0),
    ]
    assert by_user[0]["recommId"] == "r-1"
    assert send(live, list_item("i1")) == by_user
    assert status_of(live, list_user("ghost")) == 404
    assert send(live, delete("u1", "i1", timestamp=100)) == "ok"
    assert status_of(live, delete("u1", "i1", timestamp=100)) == 404
    assert len(send(live, list_user("u1"))) == 1
    assert send(live, delete("u1", "i1")) == "ok"  # all of the pair
    assert send(live, list_user("u1")) == []


def test_interaction_fields_round_trip(live: RunningServer) -> None:
    send(
        live,
        AddDetailView(
            "u",
            "i",
            timestamp=10,
            duration=14,
            auto_presented=True,
            cascade_create=True,
            additional_data={"page": "home"},
        ),
    )
    send(live, AddPurchase("u", "i", timestamp=11, amount=2, price=30.5, profit=7))
    send(live, AddCartAddition("u", "i", timestamp=12, price=9.5))
    view = send(live, ListUserDetailViews("u"))[0]
    assert view["duration"] == 14
    assert view["autoPresented"] is True
    assert view["additionalData"] == {"page": "home"}
    purchase = send(live, ListItemPurchases("i"))[0]
    assert (purchase["amount"], purchase["price"], purchase["profit"]) == (2, 30.5, 7)
    cart = send(live, ListUserCartAdditions("u"))[0]
    assert (cart["amount"], cart["price"]) == (1, 9.5)


def test_ratings(live: RunningServer) -> None:
    assert send(live, AddRating("u", "i", 0.5, timestamp=5, cascade_create=True)) == "ok"
    assert status_of(live, AddRating("u", "i", 1.5, cascade_create=True)) == 400
    assert status_of(live, AddRating("u", "i", -1.01, cascade_create=True)) == 400
    assert send(live, ListUserRatings("u")) == [
        {"itemId": "i", "userId": "u", "timestamp": 5.0, "rating": 0.5}
    ]
    assert send(live, ListItemRatings("i"))[0]["rating"] == 0.5
    assert send(live, DeleteRating("u", "i", timestamp=5)) == "ok"
    assert send(live, ListUserRatings("u")) == []


def test_view_portions_upsert_by_session(live: RunningServer) -> None:
    send(
        live,
        SetViewPortion(
            "u", "movie", 0.1, session_id="s1", timestamp=10, cascade_create=True, time_spent=5
        ),
    )
    send(live, SetViewPortion("u", "movie", 0.4, session_id="s1", timestamp=20))
    send(live, SetViewPortion("u", "movie", 0.2, session_id="s2", timestamp=30))
    portions = send(live, ListUserViewPortions("u"))
    assert [(p["sessionId"], p["portion"], p["timeSpent"]) for p in portions] == [
        ("s1", 0.4, 5),
        ("s2", 0.2, 0),
    ]
    assert status_of(live, SetViewPortion("u", "movie", 0.3, session_id="s1")) == 409  # smaller
    assert status_of(live, SetViewPortion("u", "movie", 0.9, session_id="s1", timestamp=15)) == 409
    assert status_of(live, SetViewPortion("u", "movie", 1.5, session_id="s1")) == 400
    assert len(send(live, ListItemViewPortions("movie"))) == 2
    assert send(live, DeleteViewPortion("u", "movie", session_id="s2")) == "ok"
    assert status_of(live, DeleteViewPortion("u", "movie", session_id="s2")) == 404
    assert [p["sessionId"] for p in send(live, ListItemViewPortions("movie"))] == ["s1"]


def test_deleting_an_item_removes_its_interactions(live: RunningServer) -> None:
    send(live, AddDetailView("u", "gone", timestamp=1, cascade_create=True))
    send(live, AddDetailView("u", "kept", timestamp=2, cascade_create=True))
    send(live, DeleteItem("gone"))
    assert [v["itemId"] for v in send(live, ListUserDetailViews("u"))] == ["kept"]
    # re-adding the id gives a new item, without the old interactions
    send(live, AddItem("gone"))
    assert send(live, ListItemDetailViews("gone")) == []


def test_merge_users(live: RunningServer) -> None:
    send(live, AddPurchase("anon-1", "a", timestamp=1, cascade_create=True))
    send(live, AddPurchase("anon-1", "b", timestamp=2, cascade_create=True))
    send(live, AddPurchase("alice", "a", timestamp=1, cascade_create=True))
    assert send(live, MergeUsers("alice", "anon-1")) == "ok"
    assert [(p["itemId"], p["timestamp"]) for p in send(live, ListUserPurchases("alice"))] == [
        ("a", 1.0),
        ("b", 2.0),
    ]
    assert send(live, ListUsers()) == ["alice"]
    assert status_of(live, MergeUsers("alice", "anon-1")) == 404
    send(live, AddUser("anon-2"))
    assert status_of(live, MergeUsers("bob", "anon-2")) == 404
    assert send(live, MergeUsers("bob", "anon-2", cascade_create=True)) == "ok"
    assert send(live, ListUsers()) == ["alice", "bob"]


def test_reset_database_erases_everything(live: RunningServer) -> None:
    send(live, AddItemProperty("p", "int"))
    send(live, AddDetailView("u", "i", cascade_create=True))
    assert send(live, ResetDatabase()) == "ok"
    assert send(live, ListItems()) == []
    assert send(live, ListUsers()) == []
    assert send(live, ListItemProperties()) == []


def test_databases_are_separate(live: RunningServer) -> None:
    other = live.client("other")
    other.send(ResetDatabase())
    send(live, AddItem("only-in-test"))
    assert other.send(ListItems()) == []


def test_wrong_token_is_401(live: RunningServer) -> None:
    with pytest.raises(ResponseException) as caught:
        live.client("test", token="not-the-token").send(ListItems())
    assert caught.value.status_code == 401
