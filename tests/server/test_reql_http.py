"""ReQL over HTTP: filters on list endpoints and Delete/Update More Items, with the official
client against a real server."""

from __future__ import annotations

from typing import Any

import pytest
from recombee_api_client.api_requests import (
    AddDetailView,
    AddItemProperty,
    AddPurchase,
    AddUserProperty,
    DeleteMoreItems,
    GetItemValues,
    ListItemDetailViews,
    ListItems,
    ListUsers,
    SetItemValues,
    SetUserValues,
    UpdateMoreItems,
)
from recombee_api_client.exceptions import ResponseException

from tests.serving import RunningServer

ITEMS: dict[str, dict[str, Any]] = {
    "shoe-1": {"price": 50.0, "category": "shoes", "in_stock": True, "year": 2019},
    "shoe-2": {"price": 150.0, "category": "shoes", "in_stock": False, "year": 2021},
    "hat-1": {"price": 20.0, "category": "hats", "in_stock": True, "year": 1999},
    "coat-1": {"price": None, "category": None, "in_stock": None, "year": None},
}


@pytest.fixture
def shop(live: RunningServer) -> RunningServer:
    client = live.client()
    for name, ptype in (
        ("price", "double"),
        ("category", "string"),
        ("in_stock", "boolean"),
        ("year", "int"),
    ):
        client.send(AddItemProperty(name, ptype))
    client.send(AddUserProperty("city", "string"))
    for item_id, values in ITEMS.items():
        client.send(SetItemValues(item_id, values, cascade_create=True))
    client.send(SetUserValues("alice", {"city": "Prague"}, cascade_create=True))
    client.send(SetUserValues("bob", {"city": "Brno"}, cascade_create=True))
    client.send(AddDetailView("alice", "shoe-2"))
    client.send(AddPurchase("bob", "hat-1"))
    return live


def test_list_items_with_a_filter(shop: RunningServer) -> None:
    client = shop.client()
    assert client.send(ListItems(filter="'price' < 100")) == ["hat-1", "shoe-1"]
    assert client.send(ListItems(filter="'in_stock' and 'category' in {\"shoes\", \"hats\"}")) == [
        "hat-1",
        "shoe-1",
    ]
    assert client.send(ListItems(filter="'price' == null")) == ["coat-1"]
    listed = client.send(ListItems(filter="'year' > 2000", return_properties=True))
    assert [record["itemId"] for record in listed] == ["shoe-1", "shoe-2"]
    assert listed[1]["price"] == 150.0
    assert client.send(ListItems(filter="'price' > 0", count=1, offset=1)) == ["shoe-1"]
    assert client.send(ListItems(filter="num_item_purchases('itemId') > 0")) == ["hat-1"]


def test_list_users_with_a_filter(shop: RunningServer) -> None:
    assert shop.client().send(ListUsers(filter="'city' == \"Brno\"")) == ["bob"]
    assert shop.client().send(ListUsers(filter="'userId' != \"bob\"")) == ["alice"]


def test_a_misspelt_property_is_reported_with_position_and_caret(shop: RunningServer) -> None:
    """List Items answers a filter on a property that does not exist with 404, as Recombee
    documents; everywhere else it is a bad filter (400). The report is the same."""
    report = "ReQL: unknown property 'prise' (did you mean 'price'?) at 1:1\n'prise' < 100\n^"
    response = shop.request("GET", "/items/list/?filter=%27prise%27%20%3C%20100")
    assert response.status_code == 404
    assert response.json() == {"statusCode": 404, "error": report}
    users = shop.request("GET", "/users/list/?filter=%27cty%27%20%3D%3D%20%22Brno%22")
    assert users.status_code == 404
    assert "unknown property 'cty' (did you mean 'city'?)" in users.json()["error"]
    recommended = shop.request(
        "GET", "/recomms/users/alice/items/?count=3&filter=%27prise%27%20%3C%20100"
    )
    assert recommended.status_code == 400
    assert recommended.json() == {"statusCode": 400, "error": report}
    # An unknown function is not a missing property: 400 on List Items too.
    function = shop.request("GET", "/items/list/?filter=sizee(%27tags%27)%20%3E%200")
    assert function.status_code == 400


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("'price' <", "unexpected end"),
        ("'price' < 100 and", "unexpected end"),
        ('"unclosed', "unclosed string"),
        ("'price'", "a filter must be boolean"),
        ('context_item["price"] > 1', "no context item"),
        ('upper(1) == "1"', "argument 1 of upper()"),
        ("sizee('tags') > 0", "unknown function 'sizee'"),
        ("(" * 101 + "1" + ")" * 101 + " > 0", "nested deeper than 100"),
        ("'price' > " + "1 + " * 2600 + "1", "the limit is 10,000"),
        ("abs('year' * 9223372036854775807) > 0", "cannot evaluate"),
    ],
)
def test_bad_filters_are_400s_that_say_why(
    shop: RunningServer, expression: str, words: str
) -> None:
    for request in (ListItems(filter=expression), DeleteMoreItems(expression)):
        with pytest.raises(ResponseException) as caught:
            shop.client().send(request)
        assert caught.value.status_code == 400
        assert words in caught.value.description
    assert len(shop.client().send(ListItems())) == len(ITEMS)


def test_delete_more_items(shop: RunningServer) -> None:
    client = shop.client()
    result = client.send(DeleteMoreItems("'category' == \"shoes\""))
    assert result == {"itemIds": ["shoe-1", "shoe-2"], "count": 2}
    assert client.send(ListItems()) == ["coat-1", "hat-1"]
    # The deleted items' interactions went with them; the others' stayed.
    with pytest.raises(ResponseException):
        client.send(ListItemDetailViews("shoe-2"))
    assert client.send(DeleteMoreItems("'price' > 1000")) == {"itemIds": [], "count": 0}


def test_update_more_items(shop: RunningServer) -> None:
    client = shop.client()
    result = client.send(UpdateMoreItems("'price' < 100", {"in_stock": False, "year": 2000}))
    assert result == {"itemIds": ["hat-1", "shoe-1"], "count": 2}
    assert client.send(GetItemValues("shoe-1"))["in_stock"] is False
    assert client.send(GetItemValues("hat-1"))["year"] == 2000
    assert client.send(GetItemValues("shoe-2"))["year"] == 2021


@pytest.mark.parametrize(
    ("changes", "status"),
    [({"nope": 1}, 404), ({"year": "not a number"}, 400), ({"year": 1, "nope": 2}, 404)],
)
def test_update_more_items_with_bad_changes_changes_nothing(
    shop: RunningServer, changes: dict[str, Any], status: int
) -> None:
    with pytest.raises(ResponseException) as caught:
        shop.client().send(UpdateMoreItems("'price' < 100", changes))
    assert caught.value.status_code == status
    assert shop.client().send(GetItemValues("shoe-1"))["year"] == 2019


def test_more_items_inside_a_batch(shop: RunningServer) -> None:
    # (The official client sends batches over HTTPS only; tests/server/test_batch.py covers that.)
    requests = [
        {
            "method": "POST",
            "path": "/more-items/",
            "params": {"filter": "'category' == \"hats\"", "changes": {"price": 25.0}},
        },
        {"method": "DELETE", "path": "/more-items/", "params": {"filter": "'prise' > 1"}},
        {"method": "DELETE", "path": "/more-items/", "params": {"filter": "'price' == null"}},
    ]
    response = shop.request("POST", "/batch/", json={"requests": requests})
    assert response.status_code == 200
    responses = response.json()
    assert responses[0] == {"code": 200, "json": {"itemIds": ["hat-1"], "count": 1}}
    assert responses[1]["code"] == 400
    assert "did you mean 'price'" in responses[1]["json"]["error"]
    assert responses[2] == {"code": 200, "json": {"itemIds": ["coat-1"], "count": 1}}
    assert shop.client().send(GetItemValues("hat-1"))["price"] == 25.0


def test_more_items_need_a_filter(shop: RunningServer) -> None:
    response = shop.request("DELETE", "/more-items/", json={})
    assert response.status_code == 400
    assert "filter" in response.json()["error"]
    response = shop.request("POST", "/more-items/", json={"filter": "'price' > 1"})
    assert response.status_code == 400
    assert "changes" in response.json()["error"]
