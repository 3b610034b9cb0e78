"""Search synonyms through Recombee's official client against a live server: add (two-way and
one-way), list in term order with paging, delete one, delete all; bad input is a 400 that names
the parameter, a duplicate a 409, an unknown id a 404; Reset Database removes them."""

from __future__ import annotations

import pytest
from recombee_api_client.api_requests import (
    AddSearchSynonym,
    DeleteAllSearchSynonyms,
    DeleteSearchSynonym,
    ListSearchSynonyms,
    ResetDatabase,
)
from recombee_api_client.exceptions import ResponseException

from tests.serving import RunningServer


def test_synonyms_are_added_listed_and_deleted(live: RunningServer) -> None:
    client = live.client()
    scifi = client.send(AddSearchSynonym("Sci-Fi", "science  fiction"))
    assert scifi["term"] == "sci-fi"
    assert scifi["synonym"] == "science fiction"  # compared as search compares: lower, spaced
    assert scifi["oneWay"] is False
    tv = client.send(AddSearchSynonym("tv", "television", one_way=True))
    assert tv["oneWay"] is True
    assert scifi["id"] != tv["id"]
    listed = client.send(ListSearchSynonyms())["synonyms"]
    assert [s["term"] for s in listed] == ["sci-fi", "tv"]
    assert client.send(ListSearchSynonyms(count=1, offset=1))["synonyms"] == [tv]
    client.send(DeleteSearchSynonym(scifi["id"]))
    assert client.send(ListSearchSynonyms())["synonyms"] == [tv]
    client.send(DeleteAllSearchSynonyms())
    assert client.send(ListSearchSynonyms())["synonyms"] == []


def test_bad_synonyms_are_refused_naming_the_problem(live: RunningServer) -> None:
    client = live.client()
    client.send(AddSearchSynonym("couch", "sofa"))
    with pytest.raises(ResponseException) as caught:
        client.send(AddSearchSynonym("Couch", "SOFA"))
    assert caught.value.status_code == 409
    for term, synonym, parameter in (
        ("", "x", "term"),
        ("x", "   ", "synonym"),
        ("same", "Same", "synonym"),
        ("x" * 201, "y", "term"),
    ):
        with pytest.raises(ResponseException) as caught:
            client.send(AddSearchSynonym(term, synonym))
        assert caught.value.status_code == 400
        assert parameter in caught.value.description
    missing = live.request("POST", "/synonyms/items/", json={"term": "a", "synonym": 3})
    assert missing.status_code == 400
    assert "synonym" in missing.json()["error"]
    with pytest.raises(ResponseException) as caught:
        client.send(DeleteSearchSynonym("no-such-id"))
    assert caught.value.status_code == 404
    # Nothing was half-stored.
    assert [s["term"] for s in client.send(ListSearchSynonyms())["synonyms"]] == ["couch"]


def test_synonyms_in_a_batch_and_after_a_reset(live: RunningServer) -> None:
    # Raw: the official client sends a batch over HTTPS only.
    body = {
        "requests": [
            {"method": "POST", "path": "/synonyms/items/", "params": {"term": "a", "synonym": "b"}},
            {"method": "GET", "path": "/synonyms/items/", "params": {}},
        ]
    }
    answers = live.request("POST", "/batch/", json=body).json()
    assert [a["code"] for a in answers] == [201, 200]
    assert answers[1]["json"]["synonyms"][0]["synonym"] == "b"
    client = live.client()
    client.send(ResetDatabase())
    assert client.send(ListSearchSynonyms())["synonyms"] == []
