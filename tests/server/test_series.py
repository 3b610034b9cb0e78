"""Recombee's six series operations through the official client against a live server: series
of items and of series in time order, what cascadeCreate and cascadeDelete create and delete,
the errors Recombee documents, and series in a batch and after a reset."""

from __future__ import annotations

from typing import Any

import pytest
from recombee_api_client.api_requests import (
    AddItem,
    AddItemProperty,
    AddSeries,
    DeleteItem,
    DeleteSeries,
    InsertToSeries,
    ListItems,
    ListSeries,
    ListSeriesItems,
    RemoveFromSeries,
    ResetDatabase,
    SearchItems,
    SetItemValues,
)
from recombee_api_client.api_requests.request import Request
from recombee_api_client.exceptions import ResponseException

from tests.serving import RunningServer


def send(server: RunningServer, request: Request) -> Any:
    return server.client().send(request)


def refused(server: RunningServer, request: Request) -> tuple[int, str]:
    with pytest.raises(ResponseException) as caught:
        server.client().send(request)
    return caught.value.status_code, caught.value.description


def members(server: RunningServer, series_id: str) -> list[tuple[str, str, float]]:
    return [
        (m["itemType"], m["itemId"], m["time"]) for m in send(server, ListSeriesItems(series_id))
    ]


def test_series_hold_items_and_series_in_time_order(live: RunningServer) -> None:
    assert send(live, AddSeries("show")) == "ok"
    assert "show" in send(live, ListItems())  # cascadeCreate is on by default
    assert send(live, AddSeries("season-2", cascade_create=False)) == "ok"
    assert "season-2" not in send(live, ListItems())
    assert send(live, ListSeries()) == ["season-2", "show"]
    for episode, time in (("e3", 3), ("e1", 1), ("e2", 2.5)):
        send(live, AddItem(episode))
        assert send(live, InsertToSeries("show", "item", episode, time)) == "ok"
    assert send(live, InsertToSeries("show", "series", "season-2", 10)) == "ok"
    assert members(live, "show") == [
        ("item", "e1", 1),
        ("item", "e2", 2.5),
        ("item", "e3", 3),
        ("series", "season-2", 10),
    ]
    # The same member at the same time again is a 409; at another time, a second place.
    assert refused(live, InsertToSeries("show", "item", "e1", 1))[0] == 409
    assert send(live, InsertToSeries("show", "item", "e1", 4)) == "ok"
    assert send(live, RemoveFromSeries("show", "item", "e1")) == "ok"  # every place of it
    assert [m[1] for m in members(live, "show")] == ["e2", "e3", "season-2"]
    # A deleted item leaves the series.
    send(live, DeleteItem("e3"))
    assert [m[1] for m in members(live, "show")] == ["e2", "season-2"]
    # Deleting a series leaves its item, unless cascadeDelete; it leaves other series too.
    assert send(live, DeleteSeries("season-2")) == "ok"
    assert [m[1] for m in members(live, "show")] == ["e2"]
    assert send(live, DeleteSeries("show", cascade_delete=True)) == "ok"
    assert "show" not in send(live, ListItems())
    assert send(live, ListSeries()) == []


def test_cascade_create_makes_what_an_insert_names(live: RunningServer) -> None:
    assert send(live, InsertToSeries("new-show", "item", "pilot", 1, cascade_create=True)) == "ok"
    assert send(live, InsertToSeries("new-show", "series", "s1", 2, cascade_create=True)) == "ok"
    assert send(live, ListSeries()) == ["new-show", "s1"]
    assert {"new-show", "pilot", "s1"} <= set(send(live, ListItems()))
    assert members(live, "new-show") == [("item", "pilot", 1), ("series", "s1", 2)]


@pytest.mark.parametrize(
    ("request_", "status", "words"),
    [
        (AddSeries("bad id!"), 400, "seriesId"),
        (ListSeriesItems("nope"), 404, "series 'nope'"),
        (DeleteSeries("nope"), 404, "series 'nope'"),
        (InsertToSeries("nope", "item", "x", 1), 404, "series 'nope'"),
        (InsertToSeries("known", "item", "missing", 1), 404, "item 'missing'"),
        (InsertToSeries("known", "series", "missing", 1), 404, "series 'missing'"),
        (InsertToSeries("known", "episode", "x", 1), 400, "itemType"),
        (InsertToSeries("known", "series", "known", 1), 400, "itself"),
        (RemoveFromSeries("known", "item", "never-in-it"), 404, "not in series 'known'"),
        (RemoveFromSeries("known", "film", "x"), 400, "itemType"),
    ],
)
def test_bad_series_requests_say_why(
    live: RunningServer, request_: Request, status: int, words: str
) -> None:
    send(live, AddSeries("known"))
    code, description = refused(live, request_)
    assert code == status
    assert words in description
    # A refused insert creates nothing.
    assert send(live, ListSeries()) == ["known"]


def test_time_must_be_a_real_number(live: RunningServer) -> None:
    send(live, AddSeries("show"))
    send(live, AddItem("e1"))
    for time in ("one", None, True, [1]):
        response = live.request(
            "POST", "/series/show/items/", json={"itemType": "item", "itemId": "e1", "time": time}
        )
        assert response.status_code == 400, response.text
        assert "time" in response.json()["error"]
    assert members(live, "show") == []


def test_series_in_a_batch_and_after_a_reset(live: RunningServer) -> None:
    batch = {
        "requests": [
            {"method": "PUT", "path": "/series/show"},
            {"method": "PUT", "path": "/items/e1"},
            {
                "method": "POST",
                "path": "/series/show/items/",
                "params": {"itemType": "item", "itemId": "e1", "time": 1},
            },
            {"method": "GET", "path": "/series/show/items/"},
            {"method": "PUT", "path": "/series/show"},
        ]
    }
    response = live.request("POST", "/batch/", json=batch)
    assert response.status_code == 200, response.text
    answers = response.json()
    assert [a["code"] for a in answers] == [201, 201, 200, 200, 409]
    assert answers[3]["json"] == [{"itemType": "item", "itemId": "e1", "time": 1}]
    send(live, ResetDatabase())
    assert send(live, ListSeries()) == []


def test_an_item_that_deleting_a_series_deletes_leaves_the_search(live: RunningServer) -> None:
    send(live, AddItemProperty("title", "string"))
    send(live, AddSeries("show"))
    send(live, SetItemValues("show", {"title": "Galactic Voyage"}))

    def found() -> list[str]:
        answer = send(live, SearchItems("viewer", "galactic", 5, cascade_create=True))
        return [r["id"] for r in answer["recomms"]]

    assert found() == ["show"]
    send(live, DeleteSeries("show", cascade_delete=True))
    assert found() == []
