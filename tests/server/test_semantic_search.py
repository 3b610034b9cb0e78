"""Semantic search over a live `reqo serve`: the items' text vectors are cached in the database
through the writer (a server that starts again embeds nothing it embedded before, two servers
share what either embedded), and synonyms reach semantic queries."""

from __future__ import annotations

from pathlib import Path

import duckdb
from recombee_api_client.api_requests import (
    AddItemProperty,
    AddSearchSynonym,
    SearchItems,
    SetItemValues,
)

from tests.server.test_search import FILMS, eventually
from tests.server.test_telemetry import ADMIN, scrape, value
from tests.serving import RunningServer, free_port

TOKENS = {"test": "semantic-token-0123456789"}
SCENARIOS = {
    "meaning": {"endpoint": "search-items", "personalisation": 0, "search_mode": "semantic"},
}


def found(server: RunningServer, query: str, count: int = 3) -> list[str]:
    answer = server.client().send(
        SearchItems("searcher", query, count, scenario="meaning", cascade_create=True)
    )
    return [r["id"] for r in answer["recomms"]]


def vectors(server: RunningServer, source: str) -> float:
    samples = scrape(server)
    return value(samples, "reqo_text_vectors_total", db="test", embedder="minilm", source=source)


def states(server: RunningServer) -> dict[str, float]:
    samples = scrape(server)
    return {
        state: value(samples, "reqo_search_vectors", db="test", state=state)
        for state in ("indexed", "exact", "queued")
    }


def test_text_vectors_are_cached_in_the_database_across_restarts(tmp_path: Path) -> None:
    server = RunningServer(
        tmp_path,
        free_port(),
        TOKENS,
        admin_token=ADMIN,
        extra={"scenarios": SCENARIOS},
    )
    server.start()
    try:
        client = server.client()
        client.send(AddItemProperty("title", "string"))
        client.send(AddItemProperty("genres", "set"))
        for item, (title, genres, _) in FILMS.items():
            client.send(
                SetItemValues(item, {"title": title, "genres": genres}, cascade_create=True)
            )
        eventually(lambda: vectors(server, "embedded") == len(FILMS), "every film embedded")
        assert vectors(server, "cache") == 0
        # Seven items are fewer than a vector index is built for: all searched exactly (the
        # gauges are sampled every second).
        eventually(
            lambda: states(server) == {"indexed": 0, "exact": len(FILMS), "queued": 0},
            "the index's gauges",
        )
        assert set(found(server, "space adventure")) <= {"sw", "st", "esb", "alien"}
        # Synonyms reach a semantic query: a word the model cannot place, made to mean another.
        client.send(AddSearchSynonym("xyzzy", "cowboy toys", one_way=True))
        assert found(server, "xyzzy", 1) == ["toy"]
    finally:
        server.stop()
    database = tmp_path / "data" / "test.duckdb"
    with duckdb.connect(str(database), read_only=True) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM text_embeddings WHERE embedder = 'minilm'"
        ).fetchone()
    assert stored == (len(FILMS),)
    server.start()
    try:
        eventually(lambda: vectors(server, "cache") == len(FILMS), "every film from the cache")
        assert vectors(server, "embedded") == 0
        assert set(found(server, "space adventure")) <= {"sw", "st", "esb", "alien"}
    finally:
        server.stop()
