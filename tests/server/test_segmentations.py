"""Recombee's twelve segmentation operations through the official client against a live server:
property-based, auto ReQL and manual ReQL segmentations and their segments, the answers of List
and Get Segmentation, the errors Recombee documents, batches, Reset Database, and segmentations
kept across a restart and in a backup that is restored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from recombee_api_client.api_requests import (
    AddItemProperty,
    AddManualReqlSegment,
    CreateAutoReqlSegmentation,
    CreateManualReqlSegmentation,
    CreatePropertyBasedSegmentation,
    DeleteManualReqlSegment,
    DeleteSegmentation,
    GetSegmentation,
    ListSegmentations,
    ResetDatabase,
    UpdateAutoReqlSegmentation,
    UpdateManualReqlSegment,
    UpdateManualReqlSegmentation,
    UpdatePropertyBasedSegmentation,
)
from recombee_api_client.api_requests.request import Request
from recombee_api_client.exceptions import ResponseException

from server.cli.main import main
from tests.serving import RunningServer, free_port


def send(server: RunningServer, request: Request) -> Any:
    return server.client().send(request)


def refused(server: RunningServer, request: Request) -> tuple[int, str]:
    with pytest.raises(ResponseException) as caught:
        server.client().send(request)
    return caught.value.status_code, caught.value.description


def listed(server: RunningServer) -> list[dict[str, Any]]:
    answer: dict[str, list[dict[str, Any]]] = send(server, ListSegmentations("items"))
    return answer["segmentations"]


def add_properties(server: RunningServer) -> None:
    send(server, AddItemProperty("genre", "string"))
    send(server, AddItemProperty("tags", "set"))
    send(server, AddItemProperty("price", "double"))


GENRE = {"sourceType": "items", "propertyName": "genre"}


def status_of(server: RunningServer, method: str, path: str, body: Any = None) -> int:
    return server.request(method, path, json=body).status_code


def test_property_based_segmentations(live: RunningServer) -> None:
    add_properties(live)
    request = CreatePropertyBasedSegmentation(
        "genres", "items", "genre", title="Genres", description="By genre"
    )
    assert send(live, request) == "ok"
    assert send(live, GetSegmentation("genres")) == {
        "segmentationId": "genres",
        "sourceType": "items",
        "segmentationType": "property",
        "title": "Genres",
        "description": "By genre",
        "propertyName": "genre",
    }
    # An update changes what it is given and keeps the rest.
    assert send(live, UpdatePropertyBasedSegmentation("genres", property_name="tags")) == "ok"
    assert send(live, UpdatePropertyBasedSegmentation("genres", description="By tag")) == "ok"
    answer = send(live, GetSegmentation("genres"))
    assert (answer["propertyName"], answer["title"], answer["description"]) == (
        "tags",
        "Genres",
        "By tag",
    )
    # Without title or description, the answer has neither.
    send(live, CreatePropertyBasedSegmentation("bare", "items", "genre"))
    assert send(live, GetSegmentation("bare")) == {
        "segmentationId": "bare",
        "sourceType": "items",
        "segmentationType": "property",
        "propertyName": "genre",
    }
    # The statuses Recombee's document gives: 201 for a create and for an update.
    body = {"sourceType": "items", "propertyName": "genre"}
    assert status_of(live, "PUT", "/segmentations/property-based/third", body) == 201
    assert status_of(live, "POST", "/segmentations/property-based/third", {"title": "T"}) == 201
    assert [s["segmentationId"] for s in listed(live)] == ["bare", "genres", "third"]


def test_auto_reql_segmentations(live: RunningServer) -> None:
    add_properties(live)
    expression = 'if \'price\' < 10 then "cheap" else "dear"'
    assert send(live, CreateAutoReqlSegmentation("prices", "items", expression)) == "ok"
    assert send(live, GetSegmentation("prices")) == {
        "segmentationId": "prices",
        "sourceType": "items",
        "segmentationType": "autoReQL",
        "expression": expression,
    }
    sets = "'tags' + {\"all\"}"
    request = UpdateAutoReqlSegmentation("prices", expression=sets, title="Prices")
    assert send(live, request) == "ok"
    answer = send(live, GetSegmentation("prices"))
    assert (answer["expression"], answer["title"]) == (sets, "Prices")


def test_manual_reql_segmentations_and_their_segments(live: RunningServer) -> None:
    add_properties(live)
    request = CreateManualReqlSegmentation("rows", "items", title="Rows", description="Home")
    assert send(live, request) == "ok"
    assert send(live, AddManualReqlSegment("rows", "cheap", "'price' < 10", title="Cheap")) == "ok"
    assert send(live, AddManualReqlSegment("rows", "crime", "'genre' == \"crime\"")) == "ok"
    assert send(live, AddManualReqlSegment("rows", "all", "true")) == "ok"
    assert send(live, GetSegmentation("rows")) == {
        "segmentationId": "rows",
        "sourceType": "items",
        "segmentationType": "manualReQL",
        "title": "Rows",
        "description": "Home",
        "segments": [
            {"segmentId": "cheap", "filter": "'price' < 10", "title": "Cheap"},
            {"segmentId": "crime", "filter": "'genre' == \"crime\""},
            {"segmentId": "all", "filter": "true"},
        ],
    }
    assert send(live, UpdateManualReqlSegment("rows", "crime", "\"noir\" in 'tags'")) == "ok"
    assert send(live, UpdateManualReqlSegment("rows", "cheap", "'price' < 5", title="Bargains"))
    assert send(live, DeleteManualReqlSegment("rows", "all")) == "ok"
    assert send(live, UpdateManualReqlSegmentation("rows", title="Home rows")) == "ok"
    answer = send(live, GetSegmentation("rows"))
    assert (answer["title"], answer["description"]) == ("Home rows", "Home")
    assert answer["segments"] == [
        {"segmentId": "cheap", "filter": "'price' < 5", "title": "Bargains"},
        {"segmentId": "crime", "filter": "\"noir\" in 'tags'"},
    ]
    # Recombee's document: 201 for adding, updating and deleting a segment.
    segment = "/segmentations/manual-reql/rows/segments/new"
    assert status_of(live, "PUT", segment, {"filter": "true"}) == 201
    assert status_of(live, "POST", segment, {"filter": "false"}) == 201
    assert status_of(live, "DELETE", segment) == 201


def test_segmentations_are_listed_and_deleted(live: RunningServer) -> None:
    add_properties(live)
    send(live, CreateManualReqlSegmentation("rows", "items", title="Rows"))
    send(live, AddManualReqlSegment("rows", "all", "true"))
    send(live, CreatePropertyBasedSegmentation("genres", "items", "genre"))
    send(live, CreateAutoReqlSegmentation("auto", "items", "'tags'", description="Tags"))
    assert listed(live) == [
        {
            "segmentationId": "auto",
            "sourceType": "items",
            "segmentationType": "autoReQL",
            "description": "Tags",
            "expression": "'tags'",
        },
        {
            "segmentationId": "genres",
            "sourceType": "items",
            "segmentationType": "property",
            "propertyName": "genre",
        },
        {
            "segmentationId": "rows",
            "sourceType": "items",
            "segmentationType": "manualReQL",
            "title": "Rows",
            "segments": [{"segmentId": "all", "filter": "true"}],
        },
    ]
    assert status_of(live, "DELETE", "/segmentations/auto") == 200
    assert send(live, DeleteSegmentation("rows")) == "ok"
    assert [s["segmentationId"] for s in listed(live)] == ["genres"]
    assert refused(live, GetSegmentation("rows"))[0] == 404
    # A manual segmentation of a deleted one's id starts without segments.
    send(live, CreateManualReqlSegmentation("rows", "items"))
    assert "segments" in (answer := send(live, GetSegmentation("rows")))
    assert answer["segments"] == []


@pytest.mark.parametrize(
    ("request_", "status", "words"),
    [
        (CreatePropertyBasedSegmentation("bad id!", "items", "genre"), 400, "segmentationId"),
        (CreatePropertyBasedSegmentation("new", "items", "nope"), 404, "propertyName"),
        (CreatePropertyBasedSegmentation("new", "items", "price"), 400, "propertyName"),
        (CreatePropertyBasedSegmentation("new", "users", "genre"), 400, "sourceType"),
        (CreatePropertyBasedSegmentation("known", "items", "genre"), 409, "already exists"),
        (UpdatePropertyBasedSegmentation("nope", title="T"), 404, "segmentation 'nope'"),
        (UpdatePropertyBasedSegmentation("known", title="T"), 400, "manual ReQL"),
        (UpdatePropertyBasedSegmentation("genres", property_name="nope"), 404, "propertyName"),
        (UpdatePropertyBasedSegmentation("genres", property_name="price"), 400, "double"),
        (CreateAutoReqlSegmentation("new", "items", "'price'"), 400, "segment id"),
        (CreateAutoReqlSegmentation("new", "items", "'nope'"), 400, "nope"),
        (CreateAutoReqlSegmentation("new", "items", "(("), 400, "ReQL"),
        (CreateAutoReqlSegmentation("known", "items", "'genre'"), 409, "already exists"),
        (UpdateAutoReqlSegmentation("nope", expression="'genre'"), 404, "segmentation 'nope'"),
        (UpdateAutoReqlSegmentation("genres", expression="'genre'"), 400, "property-based"),
        (CreateManualReqlSegmentation("known", "items"), 409, "already exists"),
        (CreateManualReqlSegmentation("new", "item"), 400, "sourceType"),
        (UpdateManualReqlSegmentation("nope", title="T"), 404, "segmentation 'nope'"),
        (AddManualReqlSegment("known", "new", "'price'"), 400, "boolean"),
        (AddManualReqlSegment("known", "new", "'nope' > 1"), 400, "nope"),
        (AddManualReqlSegment("known", "new", "'price' >"), 400, "ReQL"),
        (AddManualReqlSegment("known", "bad id!", "true"), 400, "segmentId"),
        (AddManualReqlSegment("known", "s", "true"), 409, "segment 's' exists"),
        (AddManualReqlSegment("nope", "s", "true"), 404, "segmentation 'nope'"),
        (AddManualReqlSegment("genres", "s", "true"), 400, "property-based"),
        (UpdateManualReqlSegment("known", "missing", "true"), 404, "segment 'missing'"),
        (UpdateManualReqlSegment("known", "s", "1 + 1"), 400, "boolean"),
        (DeleteManualReqlSegment("known", "missing"), 404, "segment 'missing'"),
        (DeleteManualReqlSegment("nope", "s"), 404, "segmentation 'nope'"),
        (GetSegmentation("nope"), 404, "segmentation 'nope'"),
        (GetSegmentation("bad id!"), 400, "segmentationId"),
        (DeleteSegmentation("nope"), 404, "segmentation 'nope'"),
        (ListSegmentations("users"), 400, "sourceType"),
    ],
)
def test_bad_segmentation_requests_say_why_and_change_nothing(
    live: RunningServer, request_: Request, status: int, words: str
) -> None:
    add_properties(live)
    send(live, CreateManualReqlSegmentation("known", "items", title="Known"))
    send(live, AddManualReqlSegment("known", "s", "true", title="S"))
    send(live, CreatePropertyBasedSegmentation("genres", "items", "genre"))
    before = listed(live)
    code, description = refused(live, request_)
    assert code == status, description
    assert words in description
    assert listed(live) == before


@pytest.mark.parametrize(
    ("method", "path", "body", "words"),
    [
        ("PUT", "property-based/x", {"sourceType": "items", "propertyNam": "genre"}, "propertyNam"),
        ("PUT", "property-based/x", {"sourceType": "items"}, "propertyName"),
        ("PUT", "property-based/x", {"propertyName": "genre"}, "sourceType"),
        ("PUT", "property-based/x", {"sourceType": 1, "propertyName": "genre"}, "sourceType"),
        ("PUT", "property-based/x", {"sourceType": "items", "propertyName": 5}, "propertyName"),
        ("PUT", "property-based/x", {**GENRE, "title": 5}, "title"),
        ("PUT", "auto-reql/x", {"sourceType": "items", "expression": ["'genre'"]}, "expression"),
        ("PUT", "auto-reql/x", {"sourceType": "items"}, "expression"),
        ("PUT", "manual-reql/x", {"sourceType": "items", "description": {}}, "description"),
        ("PUT", "manual-reql/x", {"sourceType": "items", "title": "x" * 5000}, "title"),
        ("POST", "manual-reql/known", {"tilte": "T"}, "tilte"),
        ("PUT", "manual-reql/known/segments/new", {}, "filter"),
        ("PUT", "manual-reql/known/segments/new", {"filter": True}, "filter"),
        ("PUT", "manual-reql/known/segments/new", {"filter": "true", "name": "N"}, "name"),
        ("POST", "manual-reql/known/segments/s", {"title": "only a title"}, "filter"),
        ("GET", "list/?sourceType=items&count=5", None, "count"),
        ("GET", "list/", None, "sourceType"),
    ],
)
def test_mistyped_and_missing_parameters_are_400s(
    live: RunningServer, method: str, path: str, body: Any, words: str
) -> None:
    add_properties(live)
    send(live, CreateManualReqlSegmentation("known", "items"))
    send(live, AddManualReqlSegment("known", "s", "true"))
    before = listed(live)
    response = live.request(method, f"/segmentations/{path}", json=body)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]
    assert listed(live) == before


def test_segmentations_in_a_batch_and_after_a_reset(live: RunningServer) -> None:
    batch = {
        "requests": [
            {"method": "PUT", "path": "/items/properties/genre", "params": {"type": "string"}},
            {
                "method": "PUT",
                "path": "/segmentations/property-based/genres",
                "params": {"sourceType": "items", "propertyName": "genre"},
            },
            {
                "method": "PUT",
                "path": "/segmentations/manual-reql/rows",
                "params": {"sourceType": "items"},
            },
            {
                "method": "PUT",
                "path": "/segmentations/manual-reql/rows/segments/crime",
                "params": {"filter": "'genre' == \"crime\""},
            },
            {
                "method": "PUT",
                "path": "/segmentations/manual-reql/rows/segments/bad",
                "params": {"filter": "'genre'"},
            },
            {"method": "GET", "path": "/segmentations/list/rows"},
            {"method": "GET", "path": "/segmentations/list/", "params": {"sourceType": "items"}},
            {
                "method": "PUT",
                "path": "/segmentations/manual-reql/rows",
                "params": {"sourceType": "items"},
            },
            {"method": "DELETE", "path": "/segmentations/genres"},
        ]
    }
    response = live.request("POST", "/batch/", json=batch)
    assert response.status_code == 200, response.text
    answers = response.json()
    assert [a["code"] for a in answers] == [201, 201, 201, 201, 400, 200, 200, 409, 200]
    assert answers[5]["json"]["segments"] == [
        {"segmentId": "crime", "filter": "'genre' == \"crime\""}
    ]
    assert [s["segmentationId"] for s in answers[6]["json"]["segmentations"]] == [
        "genres",
        "rows",
    ]
    assert [s["segmentationId"] for s in listed(live)] == ["rows"]
    send(live, ResetDatabase())
    assert listed(live) == []
    assert refused(live, GetSegmentation("rows"))[0] == 404


def test_segmentations_survive_a_restart_and_are_in_a_backup(tmp_path: Path) -> None:
    server = RunningServer(tmp_path, free_port(), {"test": "segmentations-token-0123456789"})
    server.start()
    try:
        add_properties(server)
        send(server, CreatePropertyBasedSegmentation("genres", "items", "genre", title="G"))
        send(server, CreateManualReqlSegmentation("rows", "items"))
        send(server, AddManualReqlSegment("rows", "cheap", "'price' < 10", title="Cheap"))
        send(server, CreateAutoReqlSegmentation("auto", "items", "'tags'"))
        stored = listed(server)
        assert len(stored) == 3
        server.stop()
        server.start()
        assert listed(server) == stored

        out = tmp_path / "backup"
        config = str(server.config_path)
        assert main(["backup", "--config", config, "--db", "test", str(out)]) == 0
        rows = pq.read_table(out / "segmentation_segments.parquet").to_pylist()
        assert [(row["segmentation_id"], row["segment_id"]) for row in rows] == [("rows", "cheap")]
        send(server, ResetDatabase())
        assert listed(server) == []
        assert main(["restore", "--config", config, "--db", "test", str(out)]) == 0
        assert listed(server) == stored
        # The restored segmentations take writes as before.
        assert send(server, DeleteManualReqlSegment("rows", "cheap")) == "ok"
        assert send(server, GetSegmentation("rows"))["segments"] == []
    finally:
        server.stop()
