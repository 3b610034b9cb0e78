"""Batch over HTTPS (the official client sends Batch over HTTPS only), with a throw-away CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from recombee_api_client.api_requests import (
    AddDetailView,
    AddItem,
    AddItemProperty,
    AddPurchase,
    AddRating,
    Batch,
    DeleteItem,
    GetItemValues,
    ListItemDetailViews,
    ListItems,
    ListUserDetailViews,
    ResetDatabase,
    SetItemValues,
)

from tests.serving import RunningServer

TOKEN = "batch-token-abcdef"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer.over_tls(tmp_path_factory.mktemp("tls"), {"test": TOKEN})
    running.start()
    yield running
    running.stop()


@pytest.fixture
def secure(tls_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    assert tls_server.ca_file is not None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_server.ca_file)
    tls_server.client().send(ResetDatabase())
    return tls_server


def codes(responses: list[dict[str, Any]]) -> list[int]:
    return [r["code"] for r in responses]


def test_batch_runs_in_order_with_own_outcomes(secure: RunningServer) -> None:
    client = secure.client()
    responses = client.send(
        Batch(
            [
                AddItemProperty("price", "double"),
                AddItem("a"),
                SetItemValues("a", {"price": 10}),
                AddItem("a"),  # 409, the batch goes on
                AddDetailView("u1", "a", timestamp=1, cascade_create=True),
                AddDetailView("u1", "a", timestamp=1),  # duplicate of the previous one
                AddDetailView("u2", "a", timestamp=2),  # u2 does not exist
                AddRating("u1", "a", 7.0),  # out of range
                GetItemValues("a"),
                ListItemDetailViews("a"),
                DeleteItem("missing"),
            ]
        )
    )
    assert codes(responses) == [201, 201, 200, 409, 200, 409, 404, 400, 200, 200, 404]
    assert responses[8]["json"] == {"price": 10.0}
    assert [v["userId"] for v in responses[9]["json"]] == ["u1"]
    assert "rating" in responses[7]["json"]["error"]
    assert client.send(ListItems()) == ["a"]


def test_ten_thousand_interactions_in_one_batch(secure: RunningServer) -> None:
    client = secure.client()
    views = [
        AddDetailView(
            f"user-{i % 100}", f"item-{i % 250}", timestamp=1_000_000 + i, cascade_create=True
        )
        for i in range(10_000)
    ]
    responses = client.send(Batch(views))
    assert len(responses) == 10_000
    assert set(codes(responses)) == {200}
    assert len(client.send(ListItems())) == 250
    assert len(client.send(ListUserDetailViews("user-7"))) == 100
    # the same batch again: every one is now a duplicate, and nothing changes
    again = client.send(Batch(views[:500]))
    assert set(codes(again)) == {409}


def test_client_splits_batches_above_the_limit(secure: RunningServer) -> None:
    client = secure.client()
    purchases = [
        AddPurchase("u", f"i{i}", timestamp=i + 1, cascade_create=True) for i in range(10_001)
    ]
    responses = client.send(Batch(purchases))
    assert len(responses) == 10_001
    assert set(codes(responses)) == {200}


def post_batch(server: RunningServer, body: dict[str, Any]) -> requests.Response:
    return server.request("POST", "/batch/", json=body)


def test_batch_above_ten_thousand_is_413(secure: RunningServer) -> None:
    request = {"method": "PUT", "path": "/items/x"}
    response = post_batch(secure, {"requests": [request] * 10_001})
    assert response.status_code == 413
    assert "10000" in response.json()["error"]
    assert secure.client().send(ListItems()) == []


def test_batch_with_an_unknown_path_is_not_executed(secure: RunningServer) -> None:
    body = {
        "requests": [
            {"method": "PUT", "path": "/items/should-not-exist"},
            {"method": "POST", "path": "/no-such-endpoint/"},
        ]
    }
    response = post_batch(secure, body)
    assert response.status_code == 404
    assert "requests[1]" in response.json()["error"]
    assert secure.client().send(ListItems()) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({}, "requests"),
        ({"requests": "x"}, "requests"),
        ({"requests": [{"path": "/items/x"}]}, "requests[0]"),
        ({"requests": [], "extra": 1}, "extra"),
    ],
)
def test_malformed_batch_is_400(secure: RunningServer, body: dict[str, Any], problem: str) -> None:
    response = post_batch(secure, body)
    assert response.status_code == 400
    assert problem in response.json()["error"]


def test_tls_certificate_is_checked(tls_server: RunningServer, tmp_path: Path) -> None:
    # Without the throw-away CA, the client must refuse the server's certificate.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_server.url}/-/health", timeout=5, verify=True)
