"""Recombee's logic catalogue through the official client against a live server: each logic on a
small catalog built so that its answer is known, bad settings refused naming the setting, a
scenario's logic with settings, a plugin's logic (the example plugin's `example:under-price`),
and a logic name registered twice refused at start-up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from recombee_api_client.api_requests import (
    AddCartAddition,
    AddDetailView,
    AddItemProperty,
    AddPurchase,
    AddSeries,
    AddUserProperty,
    InsertToSeries,
    RecommendItemsToItem,
    RecommendItemsToUser,
    SetItemValues,
    SetUserValues,
    SetViewPortion,
)
from recombee_api_client.api_requests.request import Request
from recombee_api_client.exceptions import ResponseException

from plugins.manager import collect, get_plugin_manager
from server.config import ConfigError, parse_config
from server.serving.live_models import check_models
from tests.serving import RunningServer, free_port

NOW = int(time.time())
DAY = 86_400
SCENARIOS: dict[str, Any] = {
    "fresh-popular": {
        "endpoint": "items-to-user",
        "logic": {"name": "recombee:popular", "settings": {"timeWindow": DAY}},
        "filter": "'group' == \"pop\"",
    },
    "cheap": {
        "endpoint": "items-to-user",
        "logic": {"name": "example:under-price", "settings": {"maxPrice": 10}},
    },
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with a catalog in groups (property `group`), each built for one logic, and
    every model trained."""
    server = RunningServer(
        tmp_path_factory.mktemp("logics"),
        free_port(),
        {"test": "logics-token-0123456789"},
        extra={"scenarios": SCENARIOS},
    )
    server.start()
    client = server.client()
    client.send(AddItemProperty("group", "string"))
    client.send(AddItemProperty("price", "double"))
    client.send(AddUserProperty("country", "string"))
    # video: two films and a show of four episodes (in a series, by episode number).
    for item in ("film-half", "film-done", "film-new", "e1", "e2", "e3", "e4"):
        client.send(SetItemValues(item, {"group": "video"}, cascade_create=True))
    client.send(AddSeries("show"))
    for number in (1, 2, 3, 4):
        client.send(InsertToSeries("show", "item", f"e{number}", number))
    # popular: old-hit was popular ten days ago, new-hit and mid are popular today.
    for item in ("old-hit", "new-hit", "mid"):
        client.send(SetItemValues(item, {"group": "pop"}, cascade_create=True))
    # picks and prices.
    for item, price in (("p1", 5.0), ("p2", 8.0), ("p3", 30.0), ("p4", 50.0)):
        client.send(SetItemValues(item, {"group": "shop", "price": price}, cascade_create=True))
    for item in ("z1", "z2", "z3", "x"):
        client.send(SetItemValues(item, {"group": "picks"}, cascade_create=True))
    for fan in range(5):
        old = AddDetailView(f"fan{fan}", "old-hit", timestamp=NOW - 10 * DAY, cascade_create=True)
        client.send(old)
    for fan in range(3):
        client.send(AddDetailView(f"fan{fan}", "new-hit", timestamp=NOW - 3600))
    client.send(AddDetailView("fan3", "mid", timestamp=NOW - 60))
    client.send(AddPurchase("fan4", "mid", timestamp=NOW - 30))
    for fan_id in ("fan0", "fan3", "fan4"):
        client.send(SetUserValues(fan_id, {"country": "cz"}))
    # Users who view x view z2 too: item-kNN makes z2 x's neighbour.
    for user in range(3):
        client.send(AddDetailView(f"picker{user}", "x", cascade_create=True))
        client.send(AddDetailView(f"picker{user}", "z2"))
        client.send(AddDetailView(f"picker{user}", "p2"))
    client.send(AddDetailView("editor-fan", "x", cascade_create=True))
    # Shoppers who bought p1 bought p2; p1 was viewed with p3 by others.
    for user in range(3):
        client.send(AddPurchase(f"buyer{user}", "p1", cascade_create=True))
        client.send(AddPurchase(f"buyer{user}", "p2"))
        client.send(AddDetailView(f"looker{user}", "p1", cascade_create=True))
        client.send(AddDetailView(f"looker{user}", "p3"))
    trained = server.request("POST", "/-/train", json={})
    assert trained.status_code == 200, trained.text
    yield server
    server.stop()


def ids(server: RunningServer, request: Request) -> list[str]:
    return [r["id"] for r in server.client().send(request)["recomms"]]


def refused(server: RunningServer, request: Request) -> str:
    with pytest.raises(ResponseException) as caught:
        server.client().send(request)
    assert caught.value.status_code == 400, caught.value.description
    return str(caught.value.description)


def logic(name: str, **settings: Any) -> dict[str, Any]:
    return {"name": name, "settings": settings}


def test_continue_watching_returns_what_was_started_and_not_finished(
    served: RunningServer,
) -> None:
    client = served.client()
    client.send(SetViewPortion("watcher", "e1", 0.3, timestamp=NOW - 300, cascade_create=True))
    client.send(SetViewPortion("watcher", "film-half", 0.5, timestamp=NOW - 100))
    client.send(SetViewPortion("watcher", "film-done", 0.95, timestamp=NOW - 50))
    client.send(SetViewPortion("watcher", "film-new", 0.05, timestamp=NOW - 10))
    watching = logic("video:continue-watching")
    # The latest first; the finished film and the one barely begun are not there.
    assert ids(served, RecommendItemsToUser("watcher", 5, logic=watching)) == ["film-half", "e1"]
    movies = logic("video:continue-watching", assetType="movies")
    assert ids(served, RecommendItemsToUser("watcher", 5, logic=movies)) == ["film-half"]
    episodes = logic("video:continue-watching", assetType="episodes")
    assert ids(served, RecommendItemsToUser("watcher", 5, logic=episodes)) == ["e1"]
    wider = logic(
        "video:continue-watching", watchingStartedPercentage=1, watchingCompletedPercentage=99
    )
    assert ids(served, RecommendItemsToUser("watcher", 5, logic=wider)) == [
        "film-new",
        "film-done",
        "film-half",
        "e1",
    ]


def test_watch_next_returns_the_episode_after_the_last_watched(served: RunningServer) -> None:
    client = served.client()
    client.send(AddDetailView("binger", "e1", timestamp=NOW - 200, cascade_create=True))
    client.send(AddDetailView("binger", "e2", timestamp=NOW - 100))
    episodes = logic("video:watch-next", assetType="episodes")
    assert ids(served, RecommendItemsToUser("binger", 5, logic=episodes)) == ["e3"]
    # Items to Item: the context episode's next one comes first.
    after = ids(served, RecommendItemsToItem("e3", "binger", 3, logic=logic("video:watch-next")))
    assert after[0] == "e4"
    # Re-watching e1 last makes e2 the next one, unless what was watched is excluded.
    client.send(AddDetailView("binger", "e1", timestamp=NOW - 10))
    again = logic("video:watch-next", assetType="episodes", excludeAlreadyWatched=False)
    assert ids(served, RecommendItemsToUser("binger", 5, logic=again)) == ["e2"]
    assert ids(served, RecommendItemsToUser("binger", 5, logic=episodes)) == ["e3"]


def test_popular_with_a_window_counts_recent_interactions_only(served: RunningServer) -> None:
    pop = "'group' == \"pop\""
    # All time (the trained popularity model): the old hit leads.
    everyone = RecommendItemsToUser(
        "nobody", 3, logic="recombee:popular", filter=pop, cascade_create=True
    )
    plain = ids(served, everyone)
    assert plain[0] == "old-hit"
    day = logic("recombee:popular", timeWindow=DAY)
    recent = ids(served, RecommendItemsToUser("nobody", 2, logic=day, filter=pop))
    assert recent == ["new-hit", "mid"]
    # The scenario's logic, with the same settings from the YAML.
    scenario = ids(served, RecommendItemsToUser("nobody", 2, scenario="fresh-popular"))
    assert scenario == ["new-hit", "mid"]
    # Whose interactions count: users from cz (today fan0 viewed new-hit; fan3 and fan4 mid).
    cz = logic("recombee:popular", timeWindow=DAY, userFilter="'country' == \"cz\"")
    assert ids(served, RecommendItemsToUser("nobody", 2, logic=cz, filter=pop)) == [
        "mid",
        "new-hit",
    ]
    # Which kinds count: only mid was purchased.
    bought = logic("recombee:popular", interactionTypes=["purchases"])
    assert ids(served, RecommendItemsToUser("nobody", 1, logic=bought, filter=pop)) == ["mid"]


def test_recently_viewed_with_max_age_leaves_out_old_views(served: RunningServer) -> None:
    client = served.client()
    client.send(AddDetailView("browser", "p4", timestamp=NOW - 10 * DAY, cascade_create=True))
    client.send(AddDetailView("browser", "p3", timestamp=NOW - 120))
    client.send(AddDetailView("browser", "p1", timestamp=NOW - 60))
    client.send(AddDetailView("browser", "p3", timestamp=NOW - 30))
    client.send(AddDetailView("browser", "p3", timestamp=NOW - 20))
    client.send(AddDetailView("browser", "p2", timestamp=NOW - 5))
    everything = ids(served, RecommendItemsToUser("browser", 9, logic="recombee:recently-viewed"))
    assert everything == ["p2", "p3", "p1", "p4"]
    hour = logic("recombee:recently-viewed", maxAge=3600)
    assert ids(served, RecommendItemsToUser("browser", 9, logic=hour)) == ["p2", "p3", "p1"]
    most = logic("recombee:recently-viewed", maxAge=3600, recencyOrdering=False)
    assert ids(served, RecommendItemsToUser("browser", 9, logic=most)) == ["p3", "p2", "p1"]


def test_editorial_picks_keep_their_order_or_follow_the_user(served: RunningServer) -> None:
    picks = ["z3", "z1", "no-such-item", "z2"]
    kept = logic("video:editorial-picks", picks=picks)
    assert ids(served, RecommendItemsToUser("editor-fan", 5, logic=kept)) == ["z3", "z1", "z2"]
    # editor-fan viewed x, and x's viewers viewed z2: item-kNN puts z2 first.
    personal = logic("video:editorial-picks", picks=picks, personalizedReordering=True)
    assert ids(served, RecommendItemsToUser("editor-fan", 5, logic=personal)) == [
        "z2",
        "z3",
        "z1",
    ]
    with_x = logic("video:editorial-picks", picks=["x", "z1"], excludeAlreadyWatched=True)
    assert ids(served, RecommendItemsToUser("editor-fan", 5, logic=with_x)) == ["z1"]


def test_the_model_logics_serve_their_endpoints(served: RunningServer) -> None:
    shop = "'group' == \"shop\""
    # Cross-sell learns from purchases and carts: p1's complement is p2 (bought with it).
    complements = RecommendItemsToItem(
        "p1", "someone", 1, logic="ecommerce:cross-sell", filter=shop, cascade_create=True
    )
    assert ids(served, complements) == ["p2"]
    client = served.client()
    client.send(AddCartAddition("carter", "p1", cascade_create=True))
    assert ids(served, RecommendItemsToUser("carter", 1, logic="ecommerce:cross-sell")) == ["p2"]
    assert ids(served, RecommendItemsToItem("p1", "someone", 1, logic="recombee:similar"))
    personal = ("recombee:default", "recombee:homepage", "recombee:personal", "video:personal")
    for name in (*personal, "ecommerce:homepage"):
        found = ids(served, RecommendItemsToUser("editor-fan", 3, logic=name))
        assert len(found) == 3
        assert "x" not in found  # the user's own item is excluded
    assert ids(served, RecommendItemsToItem("x", "editor-fan", 1, logic="recombee:default"))


@pytest.mark.parametrize(
    ("name", "settings", "words"),
    [
        ("recombee:recently-viewed", {"maxAge": 0}, "settings.maxAge must be >= 1, not 0"),
        ("recombee:recently-viewed", {"maxAge": "soon"}, "settings.maxAge must be a whole"),
        ("recombee:recently-viewed", {"recency": True}, "settings.recency is not a setting"),
        ("recombee:popular", {"interactionTypes": ["likes"]}, "settings.interactionTypes"),
        ("recombee:popular", {"userFilter": "'nope' == 1"}, "settings.userFilter"),
        ("video:continue-watching", {"assetType": "films"}, "settings.assetType must be one of"),
        (
            "video:continue-watching",
            {"watchingStartedPercentage": 95},
            "settings.watchingStartedPercentage must be below",
        ),
        ("video:editorial-picks", {}, "settings.picks is required"),
        ("video:editorial-picks", {"picks": [1]}, "settings.picks must be a list of strings"),
        ("recombee:personal", {"anything": 1}, "settings.anything is not a setting"),
        ("item-knn", {"neighbours": 3}, "settings differ"),
    ],
)
def test_bad_settings_are_a_400_naming_the_setting(
    served: RunningServer, name: str, settings: dict[str, Any], words: str
) -> None:
    description = refused(
        served, RecommendItemsToUser("editor-fan", 3, logic=logic(name, **settings))
    )
    assert "logic" in description
    assert words in description


def test_a_logic_on_an_endpoint_it_does_not_serve_is_a_400(served: RunningServer) -> None:
    description = refused(
        served, RecommendItemsToItem("x", "editor-fan", 3, logic="video:continue-watching")
    )
    assert "logic 'video:continue-watching' does not serve items-to-item" in description


def test_hook_register_logics(served: RunningServer) -> None:
    """The example plugin's logic, found through its entry point, serves requests and a
    scenario; its required setting is checked like a built-in logic's."""
    info = {p.name: p for p in collect(get_plugin_manager()).plugins}["example"]
    assert info.logics == ("example:under-price",)
    under = logic("example:under-price", maxPrice=10)
    found = ids(served, RecommendItemsToUser("editor-fan", 9, logic=under))
    assert sorted(found) == ["p1", "p2"]
    assert set(ids(served, RecommendItemsToUser("editor-fan", 9, scenario="cheap"))) == set(found)
    description = refused(
        served, RecommendItemsToUser("editor-fan", 3, logic=logic("example:under-price"))
    )
    assert "settings.maxPrice is required" in description


def test_a_scenarios_logic_is_checked_at_start_up(tmp_path: Path) -> None:
    def scenario(value: Any) -> dict[str, Any]:
        return {"databases": {"d": {"token": "t"}}, "scenarios": {"s": {"logic": value}}}

    with pytest.raises(ConfigError) as caught:
        parse_config(
            scenario({"name": "recombee:popular", "settings": {"timeWindow": -1}}),
            source="x.yaml",
            base_dir=tmp_path,
        )
    assert caught.value.key == "scenarios.s.logic"
    assert "settings.timeWindow must be >= 1" in caught.value.problem
    # A plugin's logic is checked against the registry (the file alone cannot know it).
    registry = collect(get_plugin_manager())
    for value, problem in (
        ({"name": "example:under-price"}, "settings.maxPrice is required"),
        ("nonsense", "unknown model or logic 'nonsense'"),
    ):
        config = parse_config(scenario(value), source="x.yaml", base_dir=tmp_path)
        with pytest.raises(ConfigError) as caught:
            check_models(config, registry)
        assert caught.value.key == "scenarios.s.logic"
        assert problem in caught.value.problem
    fine = parse_config(
        scenario({"name": "example:under-price", "settings": {"maxPrice": 3}}),
        source="x.yaml",
        base_dir=tmp_path,
    )
    check_models(fine, registry)


def test_a_logic_name_registered_twice_stops_the_server(tmp_path: Path) -> None:
    plugin = tmp_path / "twice.py"
    plugin.write_text(
        "from plugins.hookspecs import hookimpl\n"
        "from plugins.logic import Logic\n\n"
        "@hookimpl\n"
        "def register_logics():\n"
        "    return [Logic('recombee:popular', ('items-to-user',), 'popularity')]\n"
    )
    plugins = {"plugins": [str(plugin)]}
    server = RunningServer(tmp_path, free_port(), {"test": "t0123456789"}, extra=plugins)
    with pytest.raises(RuntimeError) as caught:
        server.start()
    assert "the logic 'recombee:popular' is registered twice" in str(caught.value)
    assert "plugins.builtin.logics" in str(caught.value)
    assert str(plugin) in str(caught.value)
