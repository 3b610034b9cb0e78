"""Recombee's segment recommendations through the official client against a live server: Item
Segments to User / Item / Item Segment, Items to Item Segment, Search Item Segments, Recommend
Next Item Segments and Composite Recommendation, over a segmentation created with the client,
in batches, with their bad input and the scenarios' listing; and the segment scoring alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from recombee_api_client.api_requests import (
    AddDetailView,
    AddItemProperty,
    Batch,
    CompositeRecommendation,
    CreatePropertyBasedSegmentation,
    ListScenarios,
    RecommendItemSegmentsToItem,
    RecommendItemSegmentsToItemSegment,
    RecommendItemSegmentsToUser,
    RecommendItemsToItemSegment,
    RecommendItemsToUser,
    RecommendNextItems,
    RecommendNextItemSegments,
    ResetDatabase,
    SearchItemSegments,
    SetItemValues,
)
from recombee_api_client.api_requests.request import Request
from recombee_api_client.exceptions import ResponseException
from recombee_api_client.inputs.composite_recommendation_stage_parameters import (
    CompositeRecommendationStageParameters,
)

from server.serving.scenarios import ScenarioError, parse_models, parse_scenarios
from server.serving.segments import members_of, rank_members, top_k_means
from tests.serving import RunningServer, free_port

GENRES = ("scifi", "comedy", "drama")
TITLES = {"scifi": "Star voyage", "comedy": "Funny business", "drama": "Tears of rain"}
SCENARIOS: dict[str, Any] = {
    "genres": {"endpoint": "item-segments-to-user", "segmentation": "genres"},
    "film-genres": {"endpoint": "item-segments-to-item", "segmentation": "genres"},
    "related-genres": {"endpoint": "item-segments-to-item-segment", "segmentation": "genres"},
    "genre-films": {"endpoint": "items-to-item-segment", "segmentation": "genres"},
    "genre-search": {
        "endpoint": "search-item-segments",
        "segmentation": "genres",
        "personalisation": 0,
    },
    "row": {"endpoint": "composite", "segmentation": "genres"},
    "because": {"endpoint": "composite", "source": "items", "result": "items"},
    "ghost": {"endpoint": "item-segments-to-user", "segmentation": "no-such-segmentation"},
    "plain": {"endpoint": "items-to-user"},
}


@pytest.fixture(scope="module")
def segmenting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(
        tmp_path_factory.mktemp("segments"),
        free_port(),
        {"test": "segments-token-0123456789"},
        extra={"scenarios": SCENARIOS},
    )
    running.start()
    yield running
    running.stop()


def genre_of(film: str) -> str:
    return GENRES[int(film.split("-")[1]) % 3]


@pytest.fixture(scope="module")
def films(segmenting: RunningServer) -> RunningServer:
    """30 films in 3 genres (segmentation `genres`, by the property `genre`); 24 users who each
    watch films of one genre, 6 who watch science fiction and drama, and `scifi-fan`, who
    watched three science-fiction films only. Built once: the tests only read."""
    client = segmenting.client()
    client.send(ResetDatabase())
    writes: list[Any] = [AddItemProperty("genre", "string"), AddItemProperty("title", "string")]
    for i in range(30):
        genre = GENRES[i % 3]
        values = {"genre": genre, "title": f"{TITLES[genre]} {i}"}
        writes.append(SetItemValues(f"film-{i:02d}", values, cascade_create=True))
    for user in range(24):
        for film in range(user % 3, 30, 3):
            if (film + user) % 4 != 0:
                writes.append(
                    AddDetailView(f"user-{user}", f"film-{film:02d}", cascade_create=True)
                )
    for cross in range(6):
        for film in range(30):
            if film % 3 != 1 and (film + cross) % 3 != 2:
                writes.append(
                    AddDetailView(f"cross-{cross}", f"film-{film:02d}", cascade_create=True)
                )
    for film in (0, 3, 6):
        writes.append(AddDetailView("scifi-fan", f"film-{film:02d}", cascade_create=True))
    response = segmenting.request("POST", "/batch/", json=Batch(writes).get_body_parameters())
    assert response.status_code == 200, response.text
    assert all(answer["code"] < 300 for answer in response.json()), response.text
    client.send(CreatePropertyBasedSegmentation("genres", "items", "genre", title="Genres"))
    response = segmenting.request("POST", "/-/train", json={})
    assert response.status_code == 200, response.text
    return segmenting


def send(server: RunningServer, request: Request) -> Any:
    return server.client().send(request)


def ids(response: dict[str, Any]) -> list[str]:
    return [r["id"] for r in response["recomms"]]


def refused(server: RunningServer, request: Request) -> tuple[int, str]:
    with pytest.raises(ResponseException) as caught:
        server.client().send(request)
    return caught.value.status_code, caught.value.description


def test_item_segments_to_user_follow_the_users_taste(films: RunningServer) -> None:
    answer = send(films, RecommendItemSegmentsToUser("scifi-fan", 3, scenario="genres"))
    assert set(answer) == {"recommId", "recomms", "numberNextRecommsCalls"}
    assert ids(answer)[0] == "scifi"
    assert sorted(ids(answer)) == sorted(GENRES)
    assert all(set(record) == {"id"} for record in answer["recomms"])
    for user in range(3):
        first = ids(send(films, RecommendItemSegmentsToUser(f"user-{user}", 1, scenario="genres")))
        assert first == [GENRES[user % 3]]
    # A new user gets the popular segments (cascadeCreate); an unknown one without it, a 404.
    new = send(
        films, RecommendItemSegmentsToUser("newcomer", 2, scenario="genres", cascade_create=True)
    )
    assert len(ids(new)) == 2
    assert refused(films, RecommendItemSegmentsToUser("nobody", 2, scenario="genres"))[0] == 404


def test_filter_and_booster_are_over_the_items(films: RunningServer) -> None:
    without = send(
        films,
        RecommendItemSegmentsToUser(
            "scifi-fan", 3, scenario="genres", filter="'genre' != \"scifi\""
        ),
    )
    assert "scifi" not in ids(without)
    assert len(ids(without)) == 2
    boosted = send(
        films,
        RecommendItemSegmentsToUser(
            "scifi-fan", 3, scenario="genres", booster="if 'genre' == \"comedy\" then 1000 else 1"
        ),
    )
    assert ids(boosted)[0] == "comedy"


def test_next_item_segments_page_without_repeats(films: RunningServer) -> None:
    first = send(films, RecommendItemSegmentsToUser("user-4", 1, scenario="genres"))
    second = send(films, RecommendNextItemSegments(first["recommId"], 1))
    third = send(films, RecommendNextItemSegments(first["recommId"], 5))
    assert second["recommId"] == first["recommId"]
    assert (second["numberNextRecommsCalls"], third["numberNextRecommsCalls"]) == (1, 2)
    pages = ids(first) + ids(second) + ids(third)
    assert sorted(pages) == sorted(GENRES)  # every segment once
    assert ids(send(films, RecommendNextItemSegments(first["recommId"], 5))) == []
    # Each kind is paged by its own endpoint.
    status, message = refused(films, RecommendNextItems(first["recommId"], 2))
    assert status == 400
    assert "Recommend Next Item Segments" in message
    items = send(films, RecommendItemsToUser("user-4", 2))
    assert refused(films, RecommendNextItemSegments(items["recommId"], 2))[0] == 400


def test_items_to_item_segment_stay_in_the_segment(films: RunningServer) -> None:
    answer = send(
        films,
        RecommendItemsToItemSegment(
            "scifi",
            "user-1",
            5,
            scenario="genre-films",
            return_properties=True,
            included_properties=["genre"],
        ),
    )
    assert len(answer["recomms"]) == 5
    assert all(r["values"] == {"genre": "scifi"} for r in answer["recomms"])
    # The target user's own films are left out; the next page goes on in the segment.
    personal = send(
        films, RecommendItemsToItemSegment("scifi", "scifi-fan", 4, scenario="genre-films")
    )
    assert not set(ids(personal)) & {"film-00", "film-03", "film-06"}
    assert all(genre_of(film) == "scifi" for film in ids(personal))
    more = send(films, RecommendNextItems(personal["recommId"], 4))
    assert more["numberNextRecommsCalls"] == 1
    assert not set(ids(more)) & set(ids(personal))
    assert all(genre_of(film) == "scifi" for film in ids(more))
    status, message = refused(
        films, RecommendItemsToItemSegment("western", "user-1", 3, scenario="genre-films")
    )
    assert status == 404
    assert "western" in message


def test_item_segments_to_item_and_to_item_segment(films: RunningServer) -> None:
    for film in ("film-00", "film-04", "film-08"):
        answer = send(films, RecommendItemSegmentsToItem(film, "user-1", 3, scenario="film-genres"))
        assert ids(answer)[0] == genre_of(film)
    # The science-fiction and drama fans make drama the genre nearest to science fiction; a
    # segment is never its own relative.
    related = send(
        films,
        RecommendItemSegmentsToItemSegment(
            "scifi", "someone", 3, scenario="related-genres", cascade_create=True
        ),
    )
    assert ids(related) == ["drama", "comedy"]
    # The target user's taste counts too: a comedy fan gets comedy first.
    liked = send(
        films, RecommendItemSegmentsToItemSegment("scifi", "user-1", 3, scenario="related-genres")
    )
    assert ids(liked) == ["comedy", "drama"]
    assert (
        refused(
            films,
            RecommendItemSegmentsToItemSegment("western", "user-1", 2, scenario="related-genres"),
        )[0]
        == 404
    )


def test_search_item_segments_finds_segments_by_their_items(films: RunningServer) -> None:
    answer = send(films, SearchItemSegments("user-1", "star voyage", 3, scenario="genre-search"))
    assert ids(answer) == ["scifi"]
    assert ids(send(films, SearchItemSegments("user-1", "funny", 3, scenario="genre-search"))) == [
        "comedy"
    ]
    assert (
        ids(send(films, SearchItemSegments("user-1", "zzzqqq", 3, scenario="genre-search"))) == []
    )
    status, message = refused(films, SearchItemSegments("user-1", "", 3, scenario="genre-search"))
    assert status == 400
    assert "searchQuery" in message


def test_composite_gives_a_segment_and_its_items(films: RunningServer) -> None:
    answer = send(
        films,
        CompositeRecommendation(
            "row",
            4,
            user_id="scifi-fan",
            result_settings=CompositeRecommendationStageParameters(
                return_properties=True, included_properties=["genre"]
            ),
        ),
    )
    assert set(answer) == {"recommId", "source", "recomms", "numberNextRecommsCalls"}
    assert answer["source"] == {"id": "scifi"}
    assert len(answer["recomms"]) == 4
    assert all(r["values"] == {"genre": "scifi"} for r in answer["recomms"])
    assert not set(ids(answer)) & {"film-00", "film-03", "film-06"}  # the user's own
    # The source stage takes its settings: without science fiction, the fan's next genre.
    other = send(
        films,
        CompositeRecommendation(
            "row",
            3,
            user_id="scifi-fan",
            source_settings=CompositeRecommendationStageParameters(filter="'genre' != \"scifi\""),
        ),
    )
    assert other["source"]["id"] != "scifi"
    assert all(genre_of(film) == other["source"]["id"] for film in ids(other))
    # From a segment: the nearest other segment, then its films.
    near = send(films, CompositeRecommendation("row", 2, segment_id="scifi", user_id="scifi-fan"))
    assert near["source"] == {"id": "drama"}
    assert all(genre_of(film) == "drama" for film in ids(near))


def test_composite_from_an_item(films: RunningServer) -> None:
    answer = send(films, CompositeRecommendation("because", 3, item_id="film-04", user_id="user-7"))
    source = answer["source"]["id"]
    assert source != "film-04"
    assert genre_of(source) == "comedy"  # Items to Item from a comedy
    assert len(answer["recomms"]) == 3
    assert source not in ids(answer)
    assert sum(genre_of(film) == "comedy" for film in ids(answer)) >= 2
    # A composite is not paged.
    assert refused(films, RecommendNextItems(answer["recommId"], 2))[0] == 400


def test_composite_bad_input(films: RunningServer) -> None:
    for request, parameter in (
        (CompositeRecommendation("nowhere", 3, user_id="user-1"), "scenario"),
        (CompositeRecommendation("genres", 3, user_id="user-1"), "scenario"),
        (CompositeRecommendation("row", 3), "userId"),
        (CompositeRecommendation("row", 0, user_id="user-1"), "count"),
        (
            CompositeRecommendation(
                "row",
                3,
                user_id="user-1",
                result_settings=CompositeRecommendationStageParameters(filter="'gnere' == 1"),
            ),
            "resultSettings",
        ),
    ):
        status, message = refused(films, request)
        assert status == 400, message
        assert f"'{parameter}'" in message
    assert refused(films, CompositeRecommendation("row", 3, segment_id="western"))[0] == 404


def test_segment_requests_need_a_scenario_with_a_segmentation(films: RunningServer) -> None:
    for request in (
        RecommendItemSegmentsToUser("user-1", 3),
        RecommendItemSegmentsToUser("user-1", 3, scenario="plain"),
        RecommendItemsToItemSegment("scifi", "user-1", 3, scenario="unconfigured"),
    ):
        status, message = refused(films, request)
        assert status == 400
        assert "'scenario'" in message
    status, message = refused(films, RecommendItemSegmentsToUser("user-1", 3, scenario="ghost"))
    assert status == 404
    assert "no-such-segmentation" in message
    for request, parameter in (
        (RecommendItemSegmentsToUser("user-1", 0, scenario="genres"), "count"),
        (RecommendItemSegmentsToUser("user-1", 2, scenario="genres", filter="'genre' +"), "ReQL"),
        (
            RecommendItemSegmentsToUser(
                "user-1", 2, scenario="genres", reql_expressions={"n": "'genre'"}
            ),
            "reqlExpressions",
        ),
        (RecommendItemSegmentsToUser("user-1", 2, scenario="genres", logic="no-such"), "logic"),
    ):
        status, message = refused(films, request)
        assert status == 400, message
        assert parameter in message


def test_segment_recommendations_in_a_batch(films: RunningServer) -> None:
    batch = Batch(
        [
            RecommendItemSegmentsToUser("scifi-fan", 1, scenario="genres"),
            RecommendItemsToItemSegment("drama", "user-1", 2, scenario="genre-films"),
            CompositeRecommendation("row", 2, user_id="scifi-fan"),
            RecommendItemSegmentsToUser("user-1", 2, scenario="plain"),
        ]
    )
    response = films.request("POST", "/batch/", json=batch.get_body_parameters())
    assert response.status_code == 200, response.text
    segments, items, composite, bad = response.json()
    assert [r["id"] for r in segments["json"]["recomms"]] == ["scifi"]
    assert all(genre_of(r["id"]) == "drama" for r in items["json"]["recomms"])
    assert composite["json"]["source"] == {"id": "scifi"}
    assert bad["code"] == 400


def test_scenarios_list_their_segmentation(films: RunningServer) -> None:
    listed = {s["id"]: s for s in send(films, ListScenarios())}
    assert listed["genres"]["endpoint"] == "recommendItemSegmentsToUser"
    assert listed["genres"]["segmentation"] == "genres"
    assert listed["genre-films"]["endpoint"] == "recommendItemsToItemSegment"
    assert listed["genre-search"]["endpoint"] == "searchItemSegments"
    assert listed["row"]["endpoint"] == "compositeRecommendation"
    assert listed["row"]["composite"] == {"source": "item-segments", "result": "items"}
    assert "segmentation" not in listed["plain"]


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"endpoint": "items-to-user", "segmentation": "genres"}, "segmentation"),
        ({"endpoint": "item-segments-to-user", "segmentation": 3}, "segmentation"),
        ({"endpoint": "composite"}, "segmentation"),
        ({"endpoint": "composite", "segmentation": "g", "source": "users"}, "source"),
        ({"endpoint": "item-segments-to-user", "result": "items"}, "result"),
    ],
)
def test_the_segmentation_keys_are_checked_at_start_up(settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenarios({"s": settings}, parse_models(None))
    assert caught.value.key == f"scenarios.s.{key}"


def test_segments_score_by_their_best_items() -> None:
    listing = {"big": [f"i{n}" for n in range(10)], "small": ["i10"], "empty": []}
    indexes = {f"i{n}": n for n in range(11)}
    popularity = np.arange(11, dtype=np.float64)
    members = members_of(listing, indexes, popularity, limit=6)
    big = members.of("big")
    assert big is not None
    assert list(big) == [9, 8, 7, 6, 5, 4]  # the most popular, at most `limit`
    scores = np.zeros(11, dtype=np.float32)
    scores[[0, 1, 2, 3, 4, 5, 6]] = 0.5  # many fairly relevant items in "big"
    scores[10] = 1.0  # one very relevant item in "small"
    relevant = scores > 0
    boosts = np.ones(11)
    ranked = rank_members(members, scores, relevant, boosts, popularity, 5, k=3)
    # Three good items beat one excellent one; "empty" has no item at all.
    assert ranked == ["big", "small"]
    assert rank_members(members, scores, relevant, boosts, popularity, 5, k=1) == ["small", "big"]
    # A filtered-out item (-inf) does not count; with nothing relevant, popularity orders.
    scores[10] = -np.inf
    assert (
        rank_members(members, scores, relevant, boosts, popularity, 5, exclude=frozenset({"big"}))
        == []
    )
    flat = np.zeros(11, dtype=np.float32)
    assert rank_members(members, flat, flat > 0, boosts, popularity, 5) == ["big", "small"]
    assert rank_members(members, flat, flat > 0, boosts, popularity, 5, pad=False) == []


def test_top_k_means_count_missing_items_as_zero() -> None:
    owner = np.array([0, 0, 0, 1])
    values = np.array([1.0, 3.0, 2.0, 4.0])
    assert list(top_k_means(owner, values, 3, k=2)) == [2.5, 2.0, 0.0]
