"""A scenario with two variants over HTTP, with the official client: `abGroup` in the responses,
sticky users, detail views and purchases attributed by recommId, the KPI endpoint's exact
figures, and the same figures, posteriors and assignments after a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from recombee_api_client.api_requests import (
    AddDetailView,
    AddPurchase,
    RecommendItemsToUser,
    RecommendNextItems,
)

from tests.serving import RunningServer, free_port

CONFIG: dict[str, Any] = {
    "scenarios": {
        "home": {
            "variants": [
                {"name": "pop", "model": "popularity"},
                {"name": "knn", "logic": "recombee:personal"},
            ],
            "allocation": {"method": "split", "split": {"pop": 0.5, "knn": 0.5}},
        },
        "plain": {"model": "popularity"},
    }
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path, free_port(), {"test": "kpi-token"}, extra=CONFIG)
    running.start()
    client = running.client()
    for user in range(20):
        for film in range(12):
            if film % 4 == user % 4 or film == (user * 5) % 12:
                client.send(AddDetailView(f"u{user}", f"f{film:02d}", cascade_create=True))
    assert running.request("POST", "/-/train", json={}).status_code == 200
    yield running
    running.stop()


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server without data, for the requests that are refused."""
    directory = tmp_path_factory.mktemp("bare")
    running = RunningServer(directory, free_port(), {"test": "kpi-token"}, extra=CONFIG)
    running.start()
    yield running
    running.stop()


def kpi(server: RunningServer, query: str = "") -> requests.Response:
    return server.request("GET", f"/-/kpi{query}")


def figures(entry: dict[str, Any]) -> dict[str, Any]:
    keys = ("recommendations", "clicks", "purchases", "conversions", "revenue", "profit", "ctr")
    return {key: entry[key] for key in (*keys, "conversion")}


def expected(served: int, clicks: int, purchases: int, revenue: float, profit: float) -> Any:
    return {
        "recommendations": served,
        "clicks": clicks,
        "purchases": purchases,
        "conversions": purchases,
        "revenue": pytest.approx(revenue),
        "profit": pytest.approx(profit),
        "ctr": pytest.approx(clicks / served) if served else None,
        "conversion": pytest.approx(purchases / served) if served else None,
    }


def test_variants_serve_and_earn_what_the_kpi_endpoint_reports(server: RunningServer) -> None:
    client = server.client()
    groups: dict[str, str] = {}
    responses: dict[str, dict[str, Any]] = {}
    # Users until both variants serve (each is drawn with probability 1/2).
    for number in range(20):
        name = f"u{number}"
        response = client.send(RecommendItemsToUser(name, 3, scenario="home", return_ab_group=True))
        assert response["abGroup"] in ("pop", "knn")
        assert len(response["recomms"]) == 3
        groups[name], responses[name] = response["abGroup"], response
        if len(set(groups.values())) == 2 and len(groups) >= 6:
            break
    assert set(groups.values()) == {"pop", "knn"}
    # Sticky: a user's next request is served by the same variant; without returnAbGroup the
    # response has no abGroup, and a scenario without variants has none either.
    again = client.send(RecommendItemsToUser("u0", 3, scenario="home", return_ab_group=True))
    assert again["abGroup"] == groups["u0"]
    quiet = client.send(RecommendItemsToUser("u0", 3, scenario="home"))
    assert "abGroup" not in quiet
    plain = client.send(RecommendItemsToUser("u0", 3, scenario="plain", return_ab_group=True))
    assert "abGroup" not in plain
    # A request that names its own logic takes no part in the experiment.
    own = client.send(
        RecommendItemsToUser("u1", 3, scenario="home", logic="popularity", return_ab_group=True)
    )
    assert "abGroup" not in own
    # Next items come from the variant of the first page.
    more = client.send(RecommendNextItems(again["recommId"], 2))
    assert more["abGroup"] == groups["u0"]
    # A batch allocates its recommendations too (the client sends batches over HTTPS only).
    params = {"count": 2, "scenario": "home", "returnAbGroup": True}
    sub = {"method": "POST", "path": "/recomms/users/u1/items/", "params": params}
    batch = server.request("POST", "/batch/", json={"requests": [sub]})
    assert batch.status_code == 200, batch.text
    assert batch.json()[0]["json"]["abGroup"] == groups["u1"]

    served = {"pop": 0, "knn": 0}
    for group in groups.values():
        served[group] += 1
    served[groups["u0"]] += 2  # `again` and `quiet`
    served[groups["u1"]] += 1  # the batch's
    clicks, purchases = {"pop": 0, "knn": 0}, {"pop": 0, "knn": 0}
    revenue, profit = {"pop": 0.0, "knn": 0.0}, {"pop": 0.0, "knn": 0.0}
    stamp = time.time()
    for position, (user, response) in enumerate(responses.items()):
        group, recomm_id = groups[user], response["recommId"]
        items = [r["id"] for r in response["recomms"]]
        if position % 3 != 2:
            # Two detail views of one recommendation: one click.
            for offset, item in enumerate(items[:2]):
                client.send(
                    AddDetailView(user, item, timestamp=stamp + offset, recomm_id=recomm_id)
                )
            clicks[group] += 1
        if position % 2 == 0:
            price, margin = 10.0 + position, 2.5
            client.send(
                AddPurchase(user, items[0], price=price, profit=margin, recomm_id=recomm_id)
            )
            purchases[group] += 1
            revenue[group] += price
            profit[group] += margin
    # Not attributed: an unknown recommId, and an item the recommendation did not return.
    client.send(AddPurchase("u0", "f00", price=999.0, recomm_id="no-such-recommendation"))
    returned = {r["id"] for r in responses["u0"]["recomms"]}
    other = next(f"f{i:02d}" for i in range(12) if f"f{i:02d}" not in returned)
    client.send(AddPurchase("u0", other, price=555.0, recomm_id=responses["u0"]["recommId"]))

    response = kpi(server, "?scenario=home")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [entry["scenario"] for entry in body["scenarios"]] == ["home"]
    home = body["scenarios"][0]
    by_variant = {entry["variant"]: entry for entry in home["variants"]}
    # The request that named its own logic is the scenario's, outside the experiment.
    assert set(by_variant) == {None, "pop", "knn"}
    assert figures(by_variant[None]) == expected(1, 0, 0, 0, 0)
    for group in ("pop", "knn"):
        want = expected(
            served[group], clicks[group], purchases[group], revenue[group], profit[group]
        )
        assert figures(by_variant[group]) == want, group
    total = expected(
        sum(served.values()) + 1,
        sum(clicks.values()),
        sum(purchases.values()),
        sum(revenue.values()),
        sum(profit.values()),
    )
    assert figures(home) == total
    bandit = home["bandit"]
    assert bandit["method"] == "split"
    for group in ("pop", "knn"):
        state = bandit["variants"][group]
        assert (state["served"], state["clicks"]) == (served[group], clicks[group])
        assert state["posteriorMean"] == pytest.approx((1 + clicks[group]) / (2 + served[group]))
    # Every scenario: `plain` (no variants) and the request outside the experiment as well.
    everything = kpi(server).json()
    listed = {entry["scenario"]: entry for entry in everything["scenarios"]}
    assert listed["plain"]["recommendations"] == 1
    assert listed["plain"]["variants"] == [{"variant": None, **figures(listed["plain"])}]
    assert figures(listed["home"]) == total
    # Nothing was served after a time in the future.
    future = kpi(server, f"?scenario=home&since={time.time() + 3600:.0f}").json()
    assert [figures(e) for e in future["scenarios"][0]["variants"]] == [expected(0, 0, 0, 0, 0)] * 2
    assert [e["variant"] for e in future["scenarios"][0]["variants"]] == ["knn", "pop"]
    iso = kpi(server, "?scenario=home&since=2000-01-01T00:00:00Z").json()
    assert figures(iso["scenarios"][0]) == total

    server.stop()
    server.start()
    restarted = kpi(server, "?scenario=home").json()["scenarios"][0]
    assert figures(restarted) == total
    assert {e["variant"]: figures(e) for e in restarted["variants"]} == {
        e["variant"]: figures(e) for e in home["variants"]
    }
    for group in ("pop", "knn"):
        before, after = bandit["variants"][group], restarted["bandit"]["variants"][group]
        for key in ("served", "clicks", "revenue", "profit", "posteriorMean", "posteriorSd"):
            assert after[key] == pytest.approx(before[key]), (group, key)
    # The users are still held to their variants.
    for user, group in groups.items():
        response = client.send(RecommendItemsToUser(user, 1, scenario="home", return_ab_group=True))
        assert response["abGroup"] == group


@pytest.mark.parametrize(
    ("query", "status", "parameter"),
    [
        ("?since=yesterday", 400, "since"),
        ("?since=-5", 400, "since"),
        ("?count=3", 400, "count"),
        ("?scenario=nowhere", 404, "nowhere"),
    ],
)
def test_bad_kpi_requests_name_the_parameter(
    bare: RunningServer, query: str, status: int, parameter: str
) -> None:
    response = kpi(bare, query)
    assert response.status_code == status, response.text
    assert parameter in response.json()["error"]


def test_the_openapi_document_describes_the_kpi_endpoint(bare: RunningServer) -> None:
    from server.api.kpi import PARAMETERS

    response = requests.get(bare.url + "/-/openapi.yaml", timeout=60)
    document = yaml.safe_load(response.text)
    operation = document["paths"]["/{databaseId}/-/kpi"]["get"]
    documented = {p["name"] for p in operation["parameters"]} - {"databaseId"}
    assert documented == set(PARAMETERS)
