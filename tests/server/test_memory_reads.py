"""Requests answered from memory on the event loop (`Database.read_in_memory`), and the
recommendation log written behind the responses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from recombee_api_client.api_requests import AddDetailView, RecommendItemsToUser

from plugins.manager import collect, get_plugin_manager
from server.serving.live_models import LiveModels
from server.serving.pipeline import Pipeline, Query
from server.serving.recommendation_log import RecommendationLog, Send
from server.serving.reql_engine import ExpressionEngine
from server.serving.scenarios import parse_models
from storage.database import Database, NeedsDatabase, ReadContext
from storage.recommendations import Recommendation, get_recommendation, log_recommendations
from tests.plugins.catalog import build_catalog
from tests.serving import RunningServer, free_port


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    directory = tmp_path_factory.mktemp("memory")
    database = build_catalog(directory / "catalog.duckdb", users=30, items=60, interactions=900)
    registry = collect(get_plugin_manager())
    models = LiveModels(database, parse_models(None), registry, directory / "models")
    yield Pipeline(ExpressionEngine(database), models)
    database.close()


def _on_reader(pipeline: Pipeline, query: Query) -> list[str]:
    return pipeline.engine.database.read_sync(lambda ctx: pipeline.run(ctx, query)).ids


def _in_memory(pipeline: Pipeline, query: Query) -> list[str]:
    return pipeline.engine.database.read_in_memory(lambda ctx: pipeline.run(ctx, query)).ids


def test_a_warm_request_is_answered_from_memory_alike(pipeline: Pipeline) -> None:
    query = Query(
        endpoint="items-to-user",
        count=5,
        model="item-knn",
        user_id="u4",
        filters=("'genre' != \"g2\"",),
        boosters=("if 'genre' == \"g1\" then 3 else 1",),
    )
    pipeline.histories.load()
    expected = _on_reader(pipeline, query)
    assert len(expected) == 5
    assert _in_memory(pipeline, query) == expected


def test_what_is_not_in_memory_needs_the_database(pipeline: Pipeline) -> None:
    pipeline.histories.load()
    _on_reader(pipeline, Query(endpoint="items-to-user", count=3, model="item-knn", user_id="u1"))
    cold_filter = Query(
        endpoint="items-to-user",
        count=3,
        model="item-knn",
        user_id="u1",
        filters=("'genre' == \"g0\"",),
    )
    with pytest.raises(NeedsDatabase, match="conn"):
        _in_memory(pipeline, cold_filter)
    # The reader fills the cache; then memory answers, and alike.
    expected = _on_reader(pipeline, cold_filter)
    assert _in_memory(pipeline, cold_filter) == expected
    # A model that no request has loaded yet is loaded (or trained) on a reader.
    assert pipeline.models.peek("recently-viewed") is None
    unloaded = Query(endpoint="items-to-user", count=3, model="recently-viewed", user_id="u1")
    with pytest.raises(NeedsDatabase, match="model 'recently-viewed'"):
        _in_memory(pipeline, unloaded)


def _get(ctx: ReadContext, recomm_id: str) -> Recommendation | None:
    return get_recommendation(ctx, recomm_id)


def _record(recomm_id: str) -> Recommendation:
    return Recommendation(
        recomm_id, time.time(), "items-to-user", "u1", None, None, {}, ("i1", "i2"), 0
    )


def into(database: Database) -> Send:
    """A sink that stores records in a database, as the writer does."""

    async def send(records: list[Recommendation]) -> None:
        await database.write(lambda ctx: log_recommendations(ctx, records))

    return send


def test_the_log_is_written_behind_and_settles(tmp_path: Path) -> None:
    database = Database("log", tmp_path / "log.duckdb")

    async def scenario() -> None:
        log = RecommendationLog(into(database), delay=30.0)  # only `settled` writes it here
        log.add(_record("a"))
        log.add(_record("b"))
        assert database.read_sync(lambda ctx: get_recommendation(ctx, "a")) is None
        await log.settled()
        for recomm_id in ("a", "b"):
            found = database.read_sync(partial(_get, recomm_id=recomm_id))
            assert found is not None
            assert found.returned == ("i1", "i2")

        quick = RecommendationLog(into(database), delay=0.01)
        quick.add(_record("c"))
        await asyncio.sleep(0.3)  # the timer flushes it, and the writer commits it
        assert database.read_sync(lambda ctx: get_recommendation(ctx, "c")) is not None
        assert quick.failures == 0

    try:
        asyncio.run(scenario())
    finally:
        database.close()


def test_a_failed_log_write_is_counted_not_raised(tmp_path: Path) -> None:
    database = Database("log", tmp_path / "log.duckdb")

    async def scenario() -> int:
        log = RecommendationLog(into(database), delay=30.0)
        log.add(_record("other"))
        log.add(_record("same"))
        log.add(_record("same"))  # a duplicate recommId: the batch's INSERT fails
        await log.settled()
        return log.failures

    try:
        # The batch fails, then each record is written alone: only the duplicate is lost,
        # not its neighbours (whose recommIds would otherwise answer 404).
        assert asyncio.run(scenario()) == 1
        assert database.read_sync(lambda ctx: get_recommendation(ctx, "same")) is not None
        assert database.read_sync(lambda ctx: get_recommendation(ctx, "other")) is not None
    finally:
        database.close()


def test_a_graceful_shutdown_writes_the_log_of_every_response(tmp_path: Path) -> None:
    server = RunningServer(tmp_path, free_port(), {"test": "t"}, allow_unsigned=True)
    server.start()
    try:
        client = server.client(token="t")
        for item in ("i1", "i2", "i3"):
            client.send(AddDetailView("u1", item, cascade_create=True))
        client.send(AddDetailView("u2", "i4", cascade_create=True))
        sent = [client.send(RecommendItemsToUser("u2", 2))["recommId"] for _ in range(5)]
    finally:
        server.stop()
    assert "not logged" not in server.output()
    database = Database("test", tmp_path / "data" / "test.duckdb")
    try:
        for recomm_id in sent:
            found = database.read_sync(partial(_get, recomm_id=recomm_id))
            assert found is not None
            assert found.user_id == "u2"
    finally:
        database.close()
