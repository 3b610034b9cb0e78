"""Cold start in the pipeline, over HTTP: a scenario's `cold_start:` model scores users with few
interactions (from their properties, read from the database when the request comes) and
Items to Item for an item without interactions (from its attributes)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from recombee_api_client.api_requests import (
    AddItemProperty,
    AddUserProperty,
    RecommendItemsToItem,
    RecommendItemsToUser,
    SetItemValues,
    SetUserValues,
)

from server.config import ConfigError, load_config
from tests.serving import RunningServer, free_port

TOKEN = "cold-start-token-0123456789"
ITEMS = 24
USERS = 16
MODELS = {
    "fans": {"algorithm": "attribute-popularity"},
    "attributes": {
        "algorithm": "wide-deep",
        "params": {
            "embedding": 8,
            "hidden": [16],
            "output": 8,
            "epochs": 20,
            "batch_size": 64,
            "text_embedder": "",
            "seed": 3,
        },
    },
    "ridge": {
        "algorithm": "attribute-ridge",
        "params": {"text_embedder": "", "item_l2": 1.0, "user_l2": 1.0},
    },
}
SCENARIOS = {
    "home": {"endpoint": "items-to-user", "model": "item-knn", "cold_start": {"model": "fans"}},
    "plain": {"endpoint": "items-to-user", "model": "item-knn"},
    "related": {"endpoint": "items-to-item", "model": "item-knn", "cold_start": "attributes"},
    "home-ridge": {"endpoint": "items-to-user", "model": "item-knn", "cold_start": "ridge"},
    "related-ridge": {"endpoint": "items-to-item", "model": "item-knn", "cold_start": "ridge"},
}


def genre(item: int) -> str:
    return "X" if item % 2 == 0 else "Y"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Users of occupation A watch genre X, of B genre Y; item `fresh` (genre X) has no
    interactions."""
    server = RunningServer(
        tmp_path_factory.mktemp("cold"),
        free_port(),
        {"test": TOKEN},
        extra={"models": MODELS, "scenarios": SCENARIOS},
    )
    server.start()
    client = server.client()
    client.send(AddItemProperty("genre", "string"))
    client.send(AddUserProperty("occupation", "string"))
    for item in range(ITEMS):
        client.send(SetItemValues(f"i{item}", {"genre": genre(item)}, cascade_create=True))
    client.send(SetItemValues("fresh", {"genre": "X"}, cascade_create=True))
    rng = random.Random(5)
    views = []
    for user in range(USERS):
        occupation = "A" if user % 2 == 0 else "B"
        client.send(SetUserValues(f"u{user}", {"occupation": occupation}, cascade_create=True))
        liked = [i for i in range(ITEMS) if genre(i) == ("X" if occupation == "A" else "Y")]
        for item in rng.sample(liked, 6):
            params = {"userId": f"u{user}", "itemId": f"i{item}", "timestamp": 1_700_000_000 + item}
            views.append({"method": "POST", "path": "/detailviews/", "params": params})
    stored = server.request("POST", "/batch/", json={"requests": views})
    assert stored.status_code == 200, stored.text
    assert all(answer["code"] == 200 for answer in stored.json())
    # What the tests serve with.
    for model in ("popularity", "item-knn", "fans", "attributes", "ridge"):
        trained = server.request("POST", "/-/train", json={"model": model})
        assert trained.status_code == 200, trained.text
    yield server
    server.stop()


def recommended(server: RunningServer, request: object) -> list[str]:
    answer = server.client().send(request)
    return [r["id"] for r in answer["recomms"]]


@pytest.mark.parametrize("scenario", ["home", "home-ridge"])
def test_a_new_user_is_scored_from_their_properties(shop: RunningServer, scenario: str) -> None:
    client = shop.client()
    client.send(SetUserValues("newcomer-a", {"occupation": "A"}, cascade_create=True))
    client.send(SetUserValues("newcomer-b", {"occupation": "B"}, cascade_create=True))
    for user, wanted in (("newcomer-a", "X"), ("newcomer-b", "Y")):
        top = recommended(shop, RecommendItemsToUser(user, 5, scenario=scenario))
        assert len(top) == 5
        assert all(genre(int(i[1:])) == wanted for i in top if i != "fresh"), (user, top)
    # Without cold_start the same newcomers get the popularity fallback: the same list for both.
    plain_a = recommended(shop, RecommendItemsToUser("newcomer-a", 5, scenario="plain"))
    plain_b = recommended(shop, RecommendItemsToUser("newcomer-b", 5, scenario="plain"))
    assert plain_a == plain_b


def test_a_user_with_enough_interactions_is_scored_by_the_scenarios_model(
    shop: RunningServer,
) -> None:
    for user in ("u0", "u1", "u5"):
        home = recommended(shop, RecommendItemsToUser(user, 8, scenario="home-ridge"))
        plain = recommended(shop, RecommendItemsToUser(user, 8, scenario="plain"))
        # The items the scenario's model knows keep its order (its best five, which it has
        # evidence for); only a new item may join them.
        warm = [item for item in home if item != "fresh"]
        assert warm[:5] == plain[:5], (user, home, plain)


@pytest.mark.parametrize("scenario", ["home", "home-ridge"])
def test_a_new_item_reaches_the_users_its_attributes_suit(
    shop: RunningServer, scenario: str
) -> None:
    # "fresh" (genre X) had no interactions when item-kNN was trained: alone, item-kNN has no
    # evidence for it, and it is only padding; with cold_start, the attributes speak for it.
    x_fans, y_fans = ("u0", "u2", "u4"), ("u1", "u3", "u5")
    for user in x_fans:
        assert "fresh" in recommended(shop, RecommendItemsToUser(user, 6, scenario=scenario))
        assert "fresh" not in recommended(shop, RecommendItemsToUser(user, 6, scenario="plain"))
    for user in y_fans:
        assert "fresh" not in recommended(shop, RecommendItemsToUser(user, 5, scenario=scenario))


@pytest.mark.parametrize("scenario", ["related", "related-ridge"])
def test_an_item_without_interactions_gets_similar_items_from_its_attributes(
    shop: RunningServer, scenario: str
) -> None:
    related = recommended(shop, RecommendItemsToItem("fresh", "u0", 6, scenario=scenario))
    assert len(related) == 6
    same = sum(genre(int(i[1:])) == "X" for i in related)
    assert same >= 5, related
    # A warm item keeps item-kNN's neighbours (the cold-start model stays out).
    warm = recommended(shop, RecommendItemsToItem("i0", "u0", 4, scenario=scenario))
    knn = shop.client().send(RecommendItemsToItem("i0", "u0", 4, logic="recombee:similar"))
    assert warm == [r["id"] for r in knn["recomms"]]


def test_cold_start_settings_are_checked_at_load(tmp_path: Path) -> None:
    for cold_start, problem in (
        ({"model": "nowhere"}, "unknown model"),
        ({"model": "fans", "until": 0}, ">= 1"),
        ({"model": "fans", "after": 3}, "not a setting"),
        (7, "model name"),
    ):
        config = {
            "databases": {"d": {"token": TOKEN}},
            "models": MODELS,
            "scenarios": {"s": {"endpoint": "items-to-user", "cold_start": cold_start}},
        }
        path = tmp_path / "reqo.yaml"
        path.write_text(yaml.safe_dump(config))
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert "scenarios.s.cold_start" in str(caught.value)
        assert problem in str(caught.value)
