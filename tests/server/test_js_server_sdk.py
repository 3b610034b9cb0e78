"""A second official client: Recombee's server-side Node SDK (`recombee-api-client`, see
tests/js/package.json), signing with the private token, over every area of the API against a
live server (tests/js/server_sdk.js drives it and prints what each call gave).

The SDK sends a Batch over HTTPS whatever its `protocol` option says (the request sets
`ensureHttps`), so the server runs on HTTPS with a certificate of a throw-away authority that
Node trusts through `NODE_EXTRA_CA_CERTS`, as in tests/server/test_client_side.py.

The script runs in two phases around a training of the models: `write` (items, users and their
properties, a batch of views, each interaction kind, merge, series, synonyms, segmentations,
Update and Delete More Items, the scenarios' listing) and `read` (recommendations of items and
users, Next Items, search with a synonym, a batch, segment recommendations and a composite).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.serving import REPO_ROOT, RunningServer

TOKEN = "node-sdk-private-0123456789"
SCRIPT = REPO_ROOT / "tests" / "js" / "server_sdk.js"
GENRES = ("scifi", "comedy", "drama")
FILMS = 18
FANS = 12
SCENARIOS: dict[str, Any] = {
    "genres": {"endpoint": "item-segments-to-user", "segmentation": "genres"},
    "film-genres": {"endpoint": "item-segments-to-item", "segmentation": "genres"},
    "related-genres": {"endpoint": "item-segments-to-item-segment", "segmentation": "genres"},
    "genre-films": {"endpoint": "items-to-item-segment", "segmentation": "genres"},
    "genre-search": {"endpoint": "search-item-segments", "segmentation": "genres"},
    "row": {"endpoint": "composite", "segmentation": "genres"},
}
"""The scenarios of the segment requests (a scenario names the segmentation they answer in)."""

Results = dict[str, Any]


def film(number: int) -> str:
    return f"film-{number:02d}"


def genre_of(film_id: str) -> str:
    return GENRES[int(film_id.split("-")[1]) % 3]


def seen_by(user: int) -> set[str]:
    """What fan-N viewed in the write phase (as `seenBy` in the script)."""
    return {film(n) for n in range(user % 3, FILMS, 3) if (n + user) % 4 != 0}


def value(results: Results, name: str) -> Any:
    """The value of a call that must have succeeded."""
    outcome = results[name]
    assert outcome["ok"], (name, outcome)
    return outcome["value"]


def status(results: Results, name: str) -> int:
    """The status of a call that must have failed."""
    outcome = results[name]
    assert not outcome["ok"], (name, outcome)
    code: int = outcome["status"]
    return code


def ids(answer: dict[str, Any]) -> list[str]:
    return [r["id"] for r in answer["recomms"]]


@pytest.fixture(scope="module")
def sdk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("node-sdk")
    running = RunningServer.over_tls(directory, {"test": TOKEN}, extra={"scenarios": SCENARIOS})
    running.start()
    yield running
    running.stop()


def run_phase(server: RunningServer, phase: str) -> Results:
    assert server.ca_file is not None
    run = subprocess.run(
        ["node", str(SCRIPT), phase, server.base_uri, "test", TOKEN],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO_ROOT / "tests" / "js",
        env={**os.environ, "NODE_EXTRA_CA_CERTS": server.ca_file},
    )
    assert run.returncode == 0, run.stderr
    results: Results = json.loads(run.stdout)
    return results


@pytest.fixture(scope="module")
def written(sdk_server: RunningServer) -> Results:
    return run_phase(sdk_server, "write")


@pytest.fixture(scope="module")
def read(sdk_server: RunningServer, written: Results) -> Results:
    """The read phase, after the models have trained on what the write phase stored."""
    trained = sdk_server.request("POST", "/-/train", json={})
    assert trained.status_code == 200, trained.text
    return run_phase(sdk_server, "read")


def test_items_and_item_properties(written: Results) -> None:
    assert value(written, "addItemProperty") == "ok"
    assert value(written, "itemPropertyInfo")["type"] == "set"
    properties = {p["name"]: p["type"] for p in value(written, "itemProperties")}
    assert properties == {"genre": "string", "title": "string", "year": "int", "tags": "set"}
    assert value(written, "setItemValues") == "ok"
    assert value(written, "getItemValues") == {
        "genre": "comedy",
        "title": "Funny business 1",
        "year": 2001,
        "tags": ["classic", "funny"],
    }
    # A new item's properties are all null, sets too, as Recombee documents.
    assert value(written, "addItem") == "ok"
    assert value(written, "newItemValues") == {
        "genre": None,
        "title": None,
        "year": None,
        "tags": None,
    }
    assert value(written, "listItems") == [film(n) for n in range(0, FILMS, 3)]
    assert value(written, "listItemsWithValues") == [
        {"itemId": film(n), "year": 2000 + n} for n in range(15, FILMS)
    ]
    assert value(written, "deleteItem") == "ok"
    assert status(written, "deletedItem") == 404
    assert value(written, "deleteItemProperty") == "ok"
    assert status(written, "deletedItemProperty") == 404


def test_users_and_user_properties(written: Results) -> None:
    assert value(written, "addUserProperty") == "ok"
    assert value(written, "userPropertyInfo")["type"] == "string"
    assert value(written, "setUserValues") == "ok"
    assert value(written, "getUserValues") == {"country": "CZ", "interests": None}
    assert value(written, "addUser") == "ok"
    assert value(written, "listUsers") == ["tester"]
    assert value(written, "deleteUser") == "ok"
    assert status(written, "deletedUser") == 404
    assert value(written, "deleteUserProperty") == "ok"
    assert [p["name"] for p in value(written, "userProperties")] == ["country"]


def test_a_batch_of_views(written: Results) -> None:
    answers = value(written, "batch")
    assert len(answers) == written["batchSize"] == sum(len(seen_by(u)) for u in range(FANS))
    assert {answer["code"] for answer in answers} == {200}


@pytest.mark.parametrize(
    ("kind", "item"),
    [
        ("DetailView", film(1)),
        ("Purchase", film(2)),
        ("Rating", film(4)),
        ("CartAddition", film(5)),
        ("Bookmark", film(7)),
        ("ViewPortion", film(8)),
    ],
)
def test_each_interaction_kind(written: Results, kind: str, item: str) -> None:
    calls = written["interactions"][kind]
    assert value(calls, "add") == "ok"
    by_user = value(calls, "byUser")
    assert [(i["userId"], i["itemId"]) for i in by_user] == [("tester", item)]
    assert "tester" in [i["userId"] for i in value(calls, "byItem")]
    if kind == "Purchase":
        assert (by_user[0]["amount"], by_user[0]["price"]) == (2, 9.5)
    if kind == "Rating":
        assert by_user[0]["rating"] == 0.5
    if kind == "ViewPortion":
        assert (by_user[0]["portion"], by_user[0]["sessionId"]) == (0.25, "s-1")
    assert value(calls, "delete") == "ok"
    assert value(calls, "afterDelete") == []


def test_merge_users(written: Results) -> None:
    assert value(written, "mergeUsers") == "ok"
    assert [view["itemId"] for view in value(written, "mergedViews")] == [film(10)]
    assert status(written, "mergedSource") == 404


def test_series(written: Results) -> None:
    assert value(written, "addSeries") == "ok"
    assert value(written, "insertToSeries") == "ok"
    assert value(written, "listSeries") == ["saga"]
    members = [(m["itemType"], m["itemId"], m["time"]) for m in value(written, "listSeriesItems")]
    assert members == [("item", film(0), 1), ("item", film(3), 2), ("item", film(6), 3)]
    assert value(written, "removeFromSeries") == "ok"
    assert [m["itemId"] for m in value(written, "seriesItemsAfterRemove")] == [film(0), film(6)]
    assert value(written, "deleteSeries") == "ok"
    assert value(written, "seriesAfterDelete") == []


def test_search_synonyms_and_search(written: Results, read: Results) -> None:
    added = value(written, "addSearchSynonym")
    assert (added["term"], added["synonym"], added["oneWay"]) == ("space", "star", True)
    listed = value(written, "listSearchSynonyms")["synonyms"]
    assert sorted(s["term"] for s in listed) == ["laugh", "space"]
    assert value(written, "deleteSearchSynonym") == "ok"
    assert [s["term"] for s in value(written, "synonymsAfterDelete")["synonyms"]] == ["space"]
    # "space" finds the "Star voyage" films through the synonym, and nothing without it.
    found = ids(value(read, "searchItems"))
    assert found, read["searchItems"]
    assert {genre_of(f) for f in found} == {"scifi"}
    assert value(read, "deleteAllSearchSynonyms") == "ok"
    assert value(read, "synonymsAfterDeleteAll")["synonyms"] == []
    assert ids(value(read, "searchWithoutSynonyms")) == []


def test_update_and_delete_more_items(written: Results) -> None:
    assert value(written, "updateMoreItems") == {"itemIds": ["old-1", "old-2"], "count": 2}
    assert value(written, "deleteMoreItems") == {"itemIds": ["old-1", "old-2"], "count": 2}


def test_recommendations(read: Results) -> None:
    first = value(read, "itemsToUser")
    assert len(first["recomms"]) == 2
    assert not set(ids(first)) & seen_by(0)
    # fan-0 watches science fiction only: the two science-fiction films they have not seen.
    assert [r["values"]["genre"] for r in first["recomms"]] == ["scifi", "scifi"]
    following = value(read, "nextItems")
    assert following["recommId"] == first["recommId"]
    assert len(following["recomms"]) == 2
    assert not set(ids(following)) & set(ids(first))
    similar = ids(value(read, "itemsToItem"))
    assert len(similar) == 3
    assert film(3) not in similar
    users = ids(value(read, "usersToItem"))
    assert len(users) == 3
    assert all(u.startswith("fan-") or u == "tester" for u in users)
    alike = ids(value(read, "usersToUser"))
    assert len(alike) == 3
    assert "fan-0" not in alike
    assert all(int(u.split("-")[1]) % 3 == 0 for u in alike)  # the other science-fiction fans
    answers = value(read, "batch")
    assert [answer["code"] for answer in answers] == [200, 200]
    assert len(answers[0]["json"]["recomms"]) == 2
    assert {genre_of(f) for f in ids(answers[1]["json"])} == {"comedy"}


def test_scenarios_are_listed(written: Results) -> None:
    listed = {s["id"]: s for s in value(written, "listScenarios")}
    assert set(SCENARIOS) <= set(listed)
    assert listed["genres"]["endpoint"] == "recommendItemSegmentsToUser"
    assert listed["genre-films"]["endpoint"] == "recommendItemsToItemSegment"


def test_segmentations(written: Results) -> None:
    for name in (
        "createPropertyBasedSegmentation",
        "updatePropertyBasedSegmentation",
        "createAutoReqlSegmentation",
        "updateAutoReqlSegmentation",
        "createManualReqlSegmentation",
        "addManualReqlSegment",
        "updateManualReqlSegment",
        "deleteManualReqlSegment",
        "updateManualReqlSegmentation",
        "deleteSegmentation",
    ):
        assert value(written, name) == "ok", name
    assert value(written, "getSegmentation") == {
        "segmentationId": "rows",
        "sourceType": "items",
        "segmentationType": "manualReQL",
        "title": "Rows",
        "description": "Home rows",
        "segments": [{"segmentId": "space", "filter": "'genre' != \"drama\"", "title": "Space"}],
    }
    listed = value(written, "listSegmentations")["segmentations"]
    assert [s["segmentationId"] for s in listed] == ["genres", "rows"]
    genres = listed[0]
    assert (genres["segmentationType"], genres["propertyName"]) == ("property", "genre")
    assert (genres["title"], genres["description"]) == ("Genres", "By genre")
    assert status(written, "deletedSegmentation") == 404


def test_segment_recommendations(read: Results) -> None:
    segments = value(read, "itemSegmentsToUser")
    assert len(segments["recomms"]) == 2
    assert set(ids(segments)) <= set(GENRES)
    assert ids(segments)[0] == "scifi"  # fan-0's genre
    following = value(read, "nextItemSegments")
    assert following["recommId"] == segments["recommId"]
    assert set(ids(following)) <= set(GENRES) - set(ids(segments))
    assert set(ids(value(read, "itemSegmentsToItem"))) <= set(GENRES)
    related = ids(value(read, "itemSegmentsToItemSegment"))
    assert related
    assert set(related) <= set(GENRES) - {"scifi"}
    comedies = ids(value(read, "itemsToItemSegment"))  # for fan-0, who saw none of them
    assert len(comedies) == 3
    assert {genre_of(f) for f in comedies} == {"comedy"}
    # Only the science-fiction films are called "Star voyage".
    assert "scifi" in ids(value(read, "searchItemSegments"))


def test_composite_recommendation(read: Results) -> None:
    answer = value(read, "composite")
    source = answer["source"]["id"]
    assert source in GENRES
    assert len(answer["recomms"]) == 2
    assert {genre_of(f) for f in ids(answer)} == {source}
    assert not set(ids(answer)) & seen_by(0)
