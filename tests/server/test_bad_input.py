"""Bad input gets a 400 that names the problem, and nothing of the request is stored."""

from __future__ import annotations

from typing import Any

import pytest

from tests.serving import RunningServer


@pytest.fixture
def shop(live: RunningServer) -> RunningServer:
    assert live.request("PUT", "/items/properties/stock?type=int").status_code == 201
    assert live.request("PUT", "/items/properties/tags?type=set").status_code == 201
    assert live.request("PUT", "/items/known").status_code == 201
    assert live.request("PUT", "/users/someone").status_code == 201
    return live


def snapshot(server: RunningServer) -> dict[str, Any]:
    """Everything a request could have changed."""
    items = server.request("GET", "/items/list/?returnProperties=true").json()
    users = server.request("GET", "/users/list/").json()
    interactions = {
        kind: server.request("GET", f"/users/someone/{kind}/").json()
        for kind in (
            "detailviews",
            "purchases",
            "ratings",
            "cartadditions",
            "bookmarks",
            "viewportions",
        )
    }
    return {"items": items, "users": users, "interactions": interactions}


LONG_ID = "x" * 257
CASES: list[tuple[str, str, Any, list[str]]] = [
    # (method, path, body, expected words in the error)
    ("POST", "/detailviews/", b'{"userId": "someone", "itemId": ', ["JSON"]),
    ("POST", "/detailviews/", b"[1, 2]", ["JSON object"]),
    ("POST", "/items/known", {"stock": "three"}, ["stock", "int"]),
    ("POST", "/items/known", {"stock": 1, "tags": [1, 2]}, ["tags", "strings"]),
    ("POST", "/items/new-one", {"stock": "x", "!cascadeCreate": True}, ["stock"]),
    ("POST", "/detailviews/", {"userId": LONG_ID, "itemId": "known"}, ["userId", "256"]),
    ("POST", "/detailviews/", {"userId": "some one", "itemId": "known"}, ["userId", "match"]),
    ("POST", "/purchases/", {"userId": "someone", "itemId": "kn/own"}, ["itemId"]),
    ("POST", "/ratings/", {"userId": "someone", "itemId": "known", "rating": 1.5}, ["rating"]),
    ("POST", "/ratings/", {"userId": "someone", "itemId": "known"}, ["rating", "required"]),
    ("POST", "/ratings/", {"userId": "someone", "itemId": "known", "rating": "good"}, ["rating"]),
    (
        "POST",
        "/viewportions/",
        {"userId": "someone", "itemId": "known", "portion": 1.01},
        ["portion"],
    ),
    (
        "POST",
        "/viewportions/",
        {"userId": "someone", "itemId": "known", "portion": -0.5},
        ["portion"],
    ),
    (
        "POST",
        "/detailviews/",
        {"userId": "someone", "itemId": "known", "timestamp": "yesterday"},
        ["timestamp", "ISO-8601"],
    ),
    (
        "POST",
        "/detailviews/",
        {"userId": "someone", "itemId": "known", "timestamp": -5},
        ["timestamp", "1970"],
    ),
    (
        "POST",
        "/bookmarks/",
        {"userId": "someone", "itemId": "known", "colour": "red"},
        ["colour", "unknown parameter"],
    ),
    (
        "POST",
        "/detailviews/",
        {"userId": "someone", "itemId": "known", "duration": -1},
        ["duration"],
    ),
    (
        "POST",
        "/detailviews/",
        {"userId": "someone", "itemId": "new", "cascadeCreate": "maybe"},
        ["cascadeCreate"],
    ),
    ("PUT", "/items/properties/price?type=money", None, ["type", "money"]),
    ("PUT", "/items/properties/price", None, ["type", "required"]),
    ("PUT", "/items/properties/id?type=int", None, ["reserved"]),
    ("GET", "/items/list/?count=-1", None, ["count"]),
    ("GET", "/items/list/?count=ten", None, ["count"]),
    ("GET", "/items/list/?returnProperties=yes", None, ["returnProperties"]),
    ("DELETE", "/detailviews/?userId=someone&itemId=known&timestamp=soon", None, ["timestamp"]),
]
VIEW = b'"userId": "someone", "itemId": "known"'
HOSTILE: list[tuple[str, str, Any, list[str]]] = [
    # JSON that Python's parser accepts but that broke the server further on (500s before):
    # nesting deep enough to exhaust the stack, lone surrogates (no UTF-8 encoder takes them),
    # integers that overflow float(), numbers that parse as infinity.
    ("POST", "/detailviews/", b'{"userId": ' + b"[" * 970 + b"]" * 970 + b"}", ["nested"]),
    ("POST", "/detailviews/", b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", ["nested"]),
    ("POST", "/batch/", b'{"requests": ' + b"[" * 100 + b"]" * 100 + b"}", ["nested"]),
    ("POST", "/detailviews/", b'{"userId": "some\\ud800", "itemId": "known"}', ["surrogate"]),
    ("POST", "/detailviews/", b"{" + VIEW + b', "recommId": "\\udfff"}', ["surrogate"]),
    ("POST", "/detailviews/", b"{" + VIEW + b', "\\ud800": 1}', ["surrogate"]),
    ("POST", "/items/known", b'{"tags": ["fine", "\\ud800"]}', ["surrogate", "tags[1]"]),
    ("POST", "/items/known", b'{"stock": 1, "\\udbff": 2}', ["surrogate"]),
    ("GET", "/items/list/", b'{"filter": "\\"\\ud800\\" in ' + b"'tags'" + b'"}', ["surrogate"]),
    ("POST", "/purchases/", b"{" + VIEW + b', "amount": 1' + b"0" * 400 + b"}", ["64 bits"]),
    ("POST", "/purchases/", b"{" + VIEW + b', "price": 1e400}', ["out of range"]),
    ("POST", "/ratings/", b"{" + VIEW + b', "rating": -1' + b"0" * 310 + b"}", ["64 bits"]),
    ("POST", "/detailviews/", b"{" + VIEW + b', "timestamp": 9' + b"9" * 320 + b"}", ["64"]),
    ("POST", "/viewportions/", b"{" + VIEW + b', "portion": 1' + b"0" * 309 + b"}", ["64"]),
    ("POST", "/items/known", b'{"stock": 9' + b"9" * 5000 + b"}", ["64 bits"]),
    ("POST", "/items/known", b'{"stock": 9223372036854775808}', ["64 bits"]),
    (
        "POST",
        "/recomms/users/someone/items/",
        b'{"count": 5, "diversity": 1' + b"0" * 400 + b"}",
        ["64 bits"],
    ),
    ("POST", "/recomms/users/someone/items/", b'{"count": 5, "rotationTime": 1e999}', ["range"]),
    (
        "POST",
        "/recomms/items/known/items/",
        b'{"count": 5, "targetUserId": "someone", "userImpact": 1' + b"0" * 400 + b"}",
        ["64 bits"],
    ),
    ("GET", "/items/list/?filter=" + "1" * 5000 + "%3E0", None, ["out of range"]),
]


@pytest.mark.parametrize(("method", "path", "body", "words"), CASES + HOSTILE)
def test_bad_input_is_400_and_stores_nothing(
    shop: RunningServer, method: str, path: str, body: Any, words: list[str]
) -> None:
    before = snapshot(shop)
    if isinstance(body, bytes):
        response = shop.request(method, path, data=body)
    else:
        response = shop.request(method, path, json=body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["statusCode"] == 400
    for word in words:
        assert word in payload["error"], payload["error"]
    assert snapshot(shop) == before


def test_unknown_property_is_404_as_in_recombee(shop: RunningServer) -> None:
    before = snapshot(shop)
    response = shop.request("POST", "/items/known", json={"stock": 5, "colour": "red"})
    assert response.status_code == 404
    assert "colour" in response.json()["error"]
    assert snapshot(shop) == before  # stock was not set either


def test_unknown_included_property_is_reported(shop: RunningServer) -> None:
    response = shop.request("GET", "/items/list/?returnProperties=true&includedProperties=nope")
    assert response.status_code == 404
    assert "nope" in response.json()["error"]


def test_unknown_database_and_path(shop: RunningServer) -> None:
    # Without a valid signature, an unknown database answers as a known one does: the answer
    # must not tell which databases exist.
    for signed_with in (None, "some-guessed-token"):
        unknown_database = shop.request(
            "GET",
            "/items/list/",
            database="nowhere",
            signed=signed_with is not None,
            token=signed_with,
        )
        known_database = shop.request(
            "GET", "/items/list/", signed=signed_with is not None, token=signed_with
        )
        assert unknown_database.status_code == known_database.status_code == 401
        assert unknown_database.json() == known_database.json()
    unknown = shop.request("GET", "/nothing-here/")
    assert unknown.status_code == 404
    assert unknown.json()["statusCode"] == 404
    wrong_method = shop.request("PATCH", "/items/known")
    assert wrong_method.status_code == 405


def test_an_oversized_body_is_413(shop: RunningServer) -> None:
    before = snapshot(shop)
    response = shop.request("POST", "/batch/", data=b" " * (64 * 2**20 + 1))
    assert response.status_code == 413
    assert "limit" in response.json()["error"]
    assert snapshot(shop) == before
