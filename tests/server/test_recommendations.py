"""The recommendation endpoints with the official client against a real server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from recombee_api_client.api_requests import (
    AddDetailView,
    AddItemProperty,
    AddPurchase,
    Batch,
    RecommendItemsToItem,
    RecommendItemsToUser,
    RecommendNextItems,
    RecommendUsersToItem,
    RecommendUsersToUser,
    SetItemValues,
)
from recombee_api_client.exceptions import ResponseException

from tests.serving import RunningServer

GENRES = ["action", "comedy", "drama"]


@pytest.fixture
def shop(live: RunningServer) -> RunningServer:
    """30 films in 3 genres; 24 users who each watch films of one genre (written in one batch:
    every test builds the shop again)."""
    writes: list[Any] = [AddItemProperty("genre", "string"), AddItemProperty("year", "int")]
    for i in range(30):
        writes.append(
            SetItemValues(
                f"film-{i:02d}", {"genre": GENRES[i % 3], "year": 1980 + i}, cascade_create=True
            )
        )
    for user in range(24):
        genre = user % 3
        for film in range(genre, 30, 3):
            if (film + user) % 4 != 0:
                writes.append(
                    AddDetailView(f"user-{user}", f"film-{film:02d}", cascade_create=True)
                )
        writes.append(AddPurchase(f"user-{user}", f"film-{genre:02d}", cascade_create=True))
    # The official client sends a Batch over HTTPS only; its body goes over this test's HTTP.
    body = Batch(writes).get_body_parameters()
    response = live.request("POST", "/batch/", json=body)
    assert response.status_code == 200, response.text
    assert all(answer["code"] < 300 for answer in response.json()), response.text
    response = live.request("POST", "/-/train", json={})
    assert response.status_code == 200, response.text
    return live


def ids(response: dict[str, Any]) -> list[str]:
    return [r["id"] for r in response["recomms"]]


def test_items_to_user_follows_taste_and_excludes_seen(shop: RunningServer) -> None:
    client = shop.client()
    response = client.send(RecommendItemsToUser("user-0", 5))
    assert set(response) == {"recommId", "recomms", "numberNextRecommsCalls"}
    recommended = ids(response)
    assert len(recommended) == 5
    seen = {f"film-{f:02d}" for f in range(0, 30, 3) if f % 4 != 0} | {"film-00"}
    assert not set(recommended) & seen
    # user-0 likes action (films 0, 3, 6, …): the best unseen ones come first.
    assert int(recommended[0][-2:]) % 3 == 0


def test_filter_booster_and_properties(shop: RunningServer) -> None:
    client = shop.client()
    filtered = client.send(
        RecommendItemsToUser("user-1", 10, filter="'year' >= 2000", return_properties=True)
    )
    assert filtered["recomms"]
    assert all(r["values"]["year"] >= 2000 for r in filtered["recomms"])
    boosted = client.send(
        RecommendItemsToUser("user-1", 3, booster="if 'itemId' == \"film-29\" then 100 else 1")
    )
    assert ids(boosted)[0] == "film-29"
    evaluated = client.send(
        RecommendItemsToUser(
            "user-1", 2, reql_expressions={"genre": "'genre'", "old": "'year' < 1990"}
        )
    )
    for record in evaluated["recomms"]:
        assert set(record["reqlEvaluations"]) == {"genre", "old"}


def test_items_to_item_and_users_endpoints(shop: RunningServer) -> None:
    client = shop.client()
    similar = ids(client.send(RecommendItemsToItem("film-04", "user-5", 5)))
    assert "film-04" not in similar
    assert sum(int(i[-2:]) % 3 == 1 for i in similar) >= 4  # comedies like film-04
    users = ids(client.send(RecommendUsersToItem("film-05", 4)))
    assert len(users) == 4
    assert all(int(u.split("-")[1]) % 3 == 2 for u in users)  # drama fans
    peers = ids(client.send(RecommendUsersToUser("user-3", 3)))
    assert "user-3" not in peers
    assert all(int(u.split("-")[1]) % 3 == 0 for u in peers)


def test_next_items_never_repeat(shop: RunningServer) -> None:
    client = shop.client()
    first = client.send(RecommendItemsToUser("user-2", 4))
    second = client.send(RecommendNextItems(first["recommId"], 4))
    assert second["recommId"] == first["recommId"]
    assert second["numberNextRecommsCalls"] == 1
    assert not set(ids(first)) & set(ids(second))
    third = client.send(RecommendNextItems(first["recommId"], 4))
    assert not (set(ids(first)) | set(ids(second))) & set(ids(third))
    with pytest.raises(ResponseException) as caught:
        client.send(RecommendNextItems("no-such-recommendation", 4))
    assert caught.value.status_code == 400  # not a UUID, as Recombee's document says
    assert "recommId" in caught.value.description
    with pytest.raises(ResponseException) as caught:
        client.send(RecommendNextItems(str(uuid.uuid4()), 4))
    assert caught.value.status_code == 404


def test_rotation_changes_the_next_list(shop: RunningServer) -> None:
    client = shop.client()
    first = ids(client.send(RecommendItemsToUser("user-4", 3, rotation_rate=1.0)))
    second = ids(client.send(RecommendItemsToUser("user-4", 3, rotation_rate=1.0)))
    assert first != second


@pytest.mark.parametrize(
    ("request_", "status", "words"),
    [
        (RecommendItemsToUser("user-0", 0), 400, "count"),
        (RecommendItemsToUser("nobody", 3), 404, "user 'nobody'"),
        (RecommendItemsToUser("user-0", 3, logic="no-such-logic"), 400, "logic"),
        (RecommendItemsToUser("user-0", 3, diversity=1.5), 400, "diversity"),
        (RecommendItemsToUser("user-0", 3, filter="'year'"), 400, "must be boolean"),
        (RecommendItemsToItem("no-film", "user-0", 3), 404, "item 'no-film'"),
    ],
)
def test_bad_requests(shop: RunningServer, request_: Any, status: int, words: str) -> None:
    with pytest.raises(ResponseException) as caught:
        shop.client().send(request_)
    assert caught.value.status_code == status
    assert words in caught.value.description


def test_cascade_create_gives_a_new_user_popular_items(shop: RunningServer) -> None:
    response = shop.client().send(RecommendItemsToUser("newcomer", 3, cascade_create=True))
    assert len(ids(response)) == 3


def test_distinct_recomms_in_a_batch(shop: RunningServer) -> None:
    sub = {"method": "POST", "path": "/recomms/users/user-6/items/", "params": {"count": 4}}
    for distinct, overlap in ((True, False), (False, True)):
        response = shop.request(
            "POST", "/batch/", json={"requests": [sub, sub], "distinctRecomms": distinct}
        )
        assert response.status_code == 200, response.text
        first, second = (set(ids(r["json"])) for r in response.json())
        assert len(first) == len(second) == 4
        assert bool(first & second) is overlap
    bad = {"method": "POST", "path": "/recomms/users/user-6/items/", "params": {"count": -1}}
    response = shop.request("POST", "/batch/", json={"requests": [bad, sub]})
    codes = [r["code"] for r in response.json()]
    assert codes == [400, 200]


def test_diversity_spreads_the_list_across_genres(shop: RunningServer) -> None:
    client = shop.client()

    def genres(diversity: float) -> set[int]:
        response = client.send(RecommendItemsToItem("film-04", "user-5", 5, diversity=diversity))
        return {int(i[-2:]) % 3 for i in ids(response)}

    assert len(genres(1.0)) > len(genres(0.0))
