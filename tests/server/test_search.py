"""Search Items through Recombee's official client against a live server: full-text retrieval
(exact, typo, prefix, lower case, phrase), an index that follows the catalog's writes, synonyms,
a scenario's fields and personalisation, filters and boosters, batches and Recommend Next Items,
and bad input (a 400 naming the parameter; no string gives a 500)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from recombee_api_client.api_requests import (
    AddDetailView,
    AddItemProperty,
    AddSearchSynonym,
    DeleteAllSearchSynonyms,
    DeleteItem,
    DeleteItemProperty,
    ListScenarios,
    RecommendNextItems,
    SearchItems,
    SetItemValues,
)
from recombee_api_client.exceptions import ResponseException

from server.config import ConfigError, load_config
from server.serving.scenario_check import check_scenarios
from storage.schema import Entity, EntitySchema, PropertyInfo, PropertyType, Schema
from tests.serving import RunningServer, free_port

FILMS = {
    "sw": ("Star Wars", ["Sci-Fi", "Action"], 1977),
    "st": ("Star Trek: The Motion Picture", ["Sci-Fi"], 1979),
    "esb": ("The Empire Strikes Back", ["Sci-Fi", "Action"], 1980),
    "toy": ("Toy Story", ["Animation", "Children's"], 1995),
    "roses": ("Wars of the Roses", ["Drama"], 1989),
    "alien": ("Alien", ["Horror", "Sci-Fi"], 1979),
    "fargo": ("Fargo", ["Crime", "Drama"], 1996),
}
SCENARIOS = {
    "titles": {"endpoint": "search-items", "search_fields": {"title": 1}, "personalisation": 0},
    "personal": {"endpoint": "search-items", "personalisation": 1, "model": "item-knn"},
    "plain": {"endpoint": "search-items", "personalisation": 0},
    "meaning": {"endpoint": "search-items", "personalisation": 0, "search_mode": "semantic"},
    "both": {"endpoint": "search-items", "personalisation": 0, "search_mode": "hybrid"},
}


@pytest.fixture(scope="module")
def searching(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(
        tmp_path_factory.mktemp("search"),
        free_port(),
        {"test": "search-token-0123456789"},
        extra={"scenarios": SCENARIOS},
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
def films(searching: RunningServer) -> RunningServer:
    """The server with FILMS (title, genres, year) and no synonyms."""
    client = searching.client()
    client.send(DeleteAllSearchSynonyms())
    existing = {p["name"] for p in searching.request("GET", "/items/properties/list/").json()}
    for name, kind in (("title", "string"), ("genres", "set"), ("year", "int")):
        if name not in existing:
            client.send(AddItemProperty(name, kind))
    for item, (title, genres, year) in FILMS.items():
        values = {"title": title, "genres": genres, "year": year}
        client.send(SetItemValues(item, values, cascade_create=True))
    return searching


def found(server: RunningServer, query: str, count: int = 5, **options: Any) -> list[str]:
    answer = server.client().send(
        SearchItems("searcher", query, count, cascade_create=True, **options)
    )
    return [r["id"] for r in answer["recomms"]]


def test_known_items_are_found_by_title_typo_prefix_and_case(films: RunningServer) -> None:
    assert found(films, "Star Wars")[0] == "sw"
    assert found(films, "star wars")[0] == "sw"
    assert found(films, "stra wars")[0] == "sw"  # a typo
    assert found(films, "empire strikes")[0] == "esb"
    assert found(films, "toy sto")[0] == "toy"  # the last word as a prefix, as one types
    assert found(films, "fargo") == ["fargo"]
    # The phrase ranks above the same words apart (and above one of them).
    assert found(films, "star wars")[:2] == ["sw", "roses"]
    # A search answers with matches only: never padded with other items.
    assert found(films, "zzzzqqq") == []
    # Set properties are searched too.
    assert set(found(films, "horror")) == {"alien"}


def test_the_index_follows_the_catalog(films: RunningServer) -> None:
    client = films.client()
    client.send(
        SetItemValues("new", {"title": "Blade Runner", "genres": ["Sci-Fi"]}, cascade_create=True)
    )
    assert found(films, "blade runner") == ["new"]  # on the very next request
    client.send(SetItemValues("new", {"title": "Metropolis"}))
    assert found(films, "blade runner") == []
    assert found(films, "metropolis") == ["new"]
    client.send(DeleteItem("new"))
    assert found(films, "metropolis") == []
    # Update More Items changes what it selects; a new searchable property is indexed.
    changed = films.request(
        "POST",
        "/more-items/",
        json={"filter": "'year' == 1996", "changes": {"title": "Fargo Returns"}},
    )
    assert changed.status_code == 200, changed.text
    assert found(films, "returns") == ["fargo"]
    client.send(AddItemProperty("tagline", "string"))
    client.send(SetItemValues("alien", {"tagline": "In space no one can hear you scream"}))
    assert found(films, "scream") == ["alien"]
    client.send(DeleteItemProperty("tagline"))
    assert found(films, "scream") == []
    client.send(SetItemValues("fargo", {"title": "Fargo"}))


def test_synonyms_widen_full_text_queries(films: RunningServer) -> None:
    client = films.client()
    assert found(films, "scifi") == []
    client.send(AddSearchSynonym("scifi", "sci-fi"))
    assert set(found(films, "scifi", 10)) == {"sw", "st", "esb", "alien"}
    client.send(AddSearchSynonym("space opera", "star wars", one_way=True))
    assert found(films, "space opera")[0] == "sw"
    # One way: the synonym does not find the term.
    assert "space opera" not in str(found(films, "star wars"))
    client.send(DeleteAllSearchSynonyms())
    assert found(films, "scifi") == []


def test_a_scenario_searches_its_fields(films: RunningServer) -> None:
    assert "roses" in found(films, "drama", scenario="plain")
    assert found(films, "drama", scenario="titles") == []
    listed = films.client().send(ListScenarios())
    assert {"id": "titles", "endpoint": "searchItems", "model": None} in listed


def test_filters_boosters_and_returned_values(films: RunningServer) -> None:
    assert found(films, "star", filter="'year' > 1978") == ["st"]
    boosted = found(films, "star", booster="if 'year' == 1979 then 10 else 1")
    assert boosted[0] == "st"
    answer = films.client().send(
        SearchItems("searcher", "alien", 1, return_properties=True, included_properties=["year"])
    )
    assert answer["recomms"] == [{"id": "alien", "values": {"year": 1979}}]
    with pytest.raises(ResponseException) as caught:
        films.client().send(SearchItems("searcher", "alien", 1, filter="'year'"))
    assert caught.value.status_code == 400
    assert "filter" in caught.value.description


def test_personalisation_reorders_what_the_text_finds(films: RunningServer) -> None:
    client = films.client()
    # Viewers of Alien also watch The Empire Strikes Back; a fan of Alien searches "sci-fi".
    for viewer in range(6):
        client.send(AddDetailView(f"viewer-{viewer}", "alien", cascade_create=True))
        client.send(AddDetailView(f"viewer-{viewer}", "esb", cascade_create=True))
        client.send(AddDetailView(f"viewer-{viewer}", "toy", cascade_create=True))
    client.send(AddDetailView("fan", "alien", cascade_create=True))
    trained = films.request("POST", "/-/train?model=item-knn")
    assert trained.status_code == 200, trained.text
    plain = found(films, "star action", scenario="plain")
    personal = [
        r["id"]
        for r in client.send(SearchItems("fan", "star action", 5, scenario="personal"))["recomms"]
    ]
    # The text decides what is found, and alone ranks Star Wars (both words) first; the fan's
    # taste puts The Empire Strikes Back first.
    assert set(plain) == set(personal) == {"sw", "st", "esb"}
    assert plain[0] == "sw"
    assert personal[0] == "esb"


def test_a_search_pages_with_next_items_and_runs_in_a_batch(films: RunningServer) -> None:
    client = films.client()
    first = client.send(SearchItems("pager", "sci-fi", 2, cascade_create=True))
    following = client.send(RecommendNextItems(first["recommId"], 2))
    firsts = [r["id"] for r in first["recomms"]]
    seconds = [r["id"] for r in following["recomms"]]
    assert len(firsts) == 2
    assert len(seconds) == 2
    assert not set(firsts) & set(seconds)
    assert set(firsts + seconds) == {"sw", "st", "esb", "alien"}
    body = {
        "requests": [
            {
                "method": "POST",
                "path": "/search/users/batcher/items/",
                "params": {"searchQuery": "toy story", "count": 1, "cascadeCreate": True},
            }
        ]
    }
    answers = films.request("POST", "/batch/", json=body).json()
    assert answers[0]["code"] == 200
    assert answers[0]["json"]["recomms"] == [{"id": "toy"}]


def test_bad_searches_are_refused_naming_the_parameter(films: RunningServer) -> None:
    client = films.client()
    for query, problem in (
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 1001, "longer"),
    ):
        with pytest.raises(ResponseException) as caught:
            client.send(SearchItems("searcher", query, 5))
        assert caught.value.status_code == 400
        assert "searchQuery" in caught.value.description
        assert problem in caught.value.description
    for body, parameter in (
        ({"count": 5}, "searchQuery"),
        ({"searchQuery": 3, "count": 5}, "searchQuery"),
        ({"searchQuery": "star"}, "count"),
        ({"searchQuery": "star", "count": 5, "diversity": 0.5}, "diversity"),
    ):
        reply = films.request("POST", "/search/users/searcher/items/", json=body)
        assert reply.status_code == 400, reply.text
        assert parameter in reply.json()["error"]


def test_no_search_text_gives_a_server_error(films: RunningServer) -> None:
    rng = random.Random(18)
    alphabet = "abcdeéß星 \t\"'():*~^-+!?&|/\\[]{}<>AND OR NOT\u0000\ud7ff\U0001f600"
    queries = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) for _ in range(150)]
    queries += ["*", "title:star", '"unclosed', "star~2", "a" * 1000, "🙂" * 300]
    for query in queries:
        reply = films.request(
            "POST",
            "/search/users/fuzzer/items/",
            json={"searchQuery": query, "count": 3, "cascadeCreate": True},
        )
        assert reply.status_code in (200, 400), (query, reply.status_code, reply.text)


def test_a_scenarios_search_settings_are_checked_before_it_serves(tmp_path: Path) -> None:
    def config(scenario: dict[str, Any]) -> Path:
        path = tmp_path / "reqo.yaml"
        data = {"databases": {"shop": {"token": "t"}}, "scenarios": {"find": scenario}}
        path.write_text(yaml.safe_dump(data))
        return path

    for scenario, key in (
        ({"endpoint": "items-to-user", "personalisation": 0.5}, "scenarios.find.personalisation"),
        ({"endpoint": "search-items", "personalisation": 2}, "scenarios.find.personalisation"),
        (
            {"endpoint": "search-items", "search_fields": {"title": 0}},
            "scenarios.find.search_fields.title",
        ),
        ({"endpoint": "search-items", "search_fields": ["title"]}, "scenarios.find.search_fields"),
    ):
        with pytest.raises(ConfigError) as caught:
            load_config(config(scenario))
        assert caught.value.key == key
    loaded = load_config(config({"endpoint": "search-items", "search_fields": {"year": 2}}))
    items = (PropertyInfo("title", PropertyType.STRING), PropertyInfo("year", PropertyType.INT))
    schema = Schema(EntitySchema(Entity.ITEM, items), EntitySchema(Entity.USER))
    with pytest.raises(ConfigError) as caught:
        check_scenarios(loaded, {"shop": schema})
    assert caught.value.key == "scenarios.find.search_fields.year"
    assert "not searchable" in str(caught.value)


def test_a_restore_while_serving_rebuilds_the_index(films: RunningServer, tmp_path: Path) -> None:
    """A restore reaches the servers as a new snapshot of the database: the index is built
    again from it, so a film deleted after the backup is found again."""
    from server.cli.main import main

    out = tmp_path / "backup"
    config = str(films.config_path)
    assert main(["backup", "--config", config, "--db", "test", str(out)]) == 0
    films.client().send(DeleteItem("alien"))
    assert found(films, "alien") == []
    assert main(["restore", "--config", config, "--db", "test", str(out)]) == 0
    assert found(films, "alien") == ["alien"]


def eventually(condition: Any, what: str, wait: float = 60.0) -> None:
    """Poll until `condition()` holds (semantic vectors are computed in the background)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {wait} s: {what}")


def test_semantic_search_finds_by_meaning_and_follows_writes(films: RunningServer) -> None:
    # No word of the query is in the catalog: full text finds nothing, meaning does.
    assert found(films, "space adventure", scenario="plain") == []
    eventually(
        lambda: found(films, "space adventure", 3, scenario="meaning"),
        "the catalog embedded",
    )
    near = found(films, "space adventure", 3, scenario="meaning")
    assert set(near) <= {"sw", "st", "esb", "alien"}, near
    assert "toy" not in found(films, "space adventure", 7, scenario="meaning")[:4]
    # Hybrid: the text's matches and the meaning's, fused by rank.
    both = found(films, "star", 7, scenario="both")
    assert {"sw", "st"} <= set(both)
    assert both[0] in ("sw", "st")
    # A film written now is found by meaning within seconds.
    films.client().send(
        SetItemValues("voyage", {"title": "Journey Beyond the Galaxy"}, cascade_create=True)
    )
    eventually(
        lambda: "voyage" in found(films, "interstellar travel", 3, scenario="meaning"),
        "the new film embedded",
    )
    films.client().send(DeleteItem("voyage"))
    assert "voyage" not in found(films, "interstellar travel", 3, scenario="meaning")


def test_an_unknown_text_embedder_is_refused_at_start_up(tmp_path: Path) -> None:
    from server.api.app import load_registry

    path = tmp_path / "reqo.yaml"
    scenario = {"endpoint": "search-items", "search_mode": "hybrid", "text_embedder": "nope"}
    data = {"databases": {"shop": {"token": "t"}}, "scenarios": {"find": scenario}}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        load_registry(load_config(path))
    assert caught.value.key == "scenarios.find.text_embedder"
    assert "minilm" in str(caught.value)
