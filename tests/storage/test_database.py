"""The writer thread: group commit, refusals, isolation of a broken job, durability on reopen."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import duckdb
import pytest

from storage import catalog
from storage.database import CoalescedJob, Database, WriteContext, WriteJob
from storage.errors import Conflict, EntityNotFound, InvalidInput
from storage.interactions import InteractionKind, apply_interaction_writes, parse_interaction
from storage.schema import Entity


class Gate:
    """Holds the writer thread busy, so that the jobs queued meanwhile form one group."""

    def __init__(self, db: Database) -> None:
        self._open = threading.Event()
        self._future = db.submit(WriteJob(lambda ctx: self._open.wait(10)))

    def release(self) -> None:
        self._open.set()
        self._future.result()


def count(db: Database, table: str) -> int:
    row = db.read_sync(lambda ctx: ctx.conn.execute(f"SELECT count(*) FROM {table}").fetchone())
    assert row is not None
    value: int = row[0]
    return value


def test_writes_survive_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    db = Database("shop", path)
    db.write_sync(lambda ctx: catalog.add_property(ctx, Entity.ITEM, "price", "double"))
    db.write_sync(
        lambda ctx: catalog.set_values(ctx, Entity.ITEM, "a", {"price": 2}, cascade_create=True)
    )
    db.close()
    reopened = Database("shop", path)
    try:
        assert reopened.schema.items.names == ("price",)
        values = reopened.read_sync(lambda ctx: catalog.get_values(ctx, Entity.ITEM, "a"))
        assert values == {"price": 2.0}
    finally:
        reopened.close()


def test_a_refusal_does_not_fail_its_group(database: Database) -> None:
    database.write_sync(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, "a"))
    gate = Gate(database)
    jobs: list[WriteJob[Any]] = [
        WriteJob(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, "b")),
        WriteJob(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, "a")),  # 409
        WriteJob(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, "c")),
    ]
    futures = [database.submit(job) for job in jobs]
    gate.release()
    assert futures[0].result() == "ok"
    with pytest.raises(Conflict):
        futures[1].result()
    assert futures[2].result() == "ok"
    assert count(database, "items") == 3


def test_an_unexpected_failure_is_isolated_to_its_job(database: Database) -> None:
    def broken(ctx: WriteContext) -> None:
        ctx.conn.execute("INSERT INTO items VALUES (100, 'half-written')")
        raise RuntimeError("bug in a job")

    gate = Gate(database)
    futures: list[Future[Any]] = [
        database.submit(WriteJob(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, "x"))),
        database.submit(WriteJob(broken)),
        database.submit(WriteJob(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, "y"))),
    ]
    gate.release()
    assert futures[0].result() == "ok"
    with pytest.raises(RuntimeError, match="bug in a job"):
        futures[1].result()
    assert futures[2].result() == "ok"
    ids = database.read_sync(
        lambda ctx: catalog.list_entities(
            ctx,
            Entity.ITEM,
            count=None,
            offset=0,
            return_properties=False,
            included_properties=None,
        )
    )
    assert ids == ["x", "y"]  # the broken job's half write was rolled back


def test_coalesced_interactions_get_one_outcome_each(database: Database) -> None:
    def job(user: str, cascade: bool) -> CoalescedJob:
        write = parse_interaction(
            InteractionKind.DETAIL_VIEW,
            {"userId": user, "itemId": "i", "timestamp": 5, "cascadeCreate": cascade},
        )
        return CoalescedJob(apply_interaction_writes, write)

    gate = Gate(database)
    futures = [
        database.submit(job("u1", True)),
        database.submit(job("u1", True)),  # the same view again: 409
        database.submit(job("u2", False)),  # u2 does not exist: 404
    ]
    gate.release()
    assert futures[0].result() == "ok"
    with pytest.raises(Conflict):
        futures[1].result()
    with pytest.raises(EntityNotFound):
        futures[2].result()
    assert count(database, "interactions") == 1


def test_schema_snapshot_changes_only_after_commit(database: Database) -> None:
    before = database.schema
    database.write_sync(lambda ctx: catalog.add_property(ctx, Entity.USER, "age", "int"))
    assert before.users.names == ()
    assert database.schema.users.names == ("age",)


def test_async_read_and_write(database: Database) -> None:
    async def scenario() -> list[Any]:
        await database.write(lambda ctx: catalog.add_entity(ctx, Entity.USER, "u"))
        return await database.read(
            lambda ctx: catalog.list_entities(
                ctx,
                Entity.USER,
                count=None,
                offset=0,
                return_properties=True,
                included_properties=None,
            )
        )

    assert asyncio.run(scenario()) == [{"userId": "u"}]


def test_catalog_version_moves_with_writes(database: Database) -> None:
    start = database.catalog_version
    database.write_sync(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, "a"))
    assert database.catalog_version > start


def test_dense_indexes_are_never_reused(database: Database) -> None:
    def indexes() -> dict[str, int]:
        rows = database.read_sync(
            lambda ctx: ctx.conn.execute('SELECT "$id", "$idx" FROM items').fetchall()
        )
        return dict(rows)

    def add(item: str) -> None:
        database.write_sync(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, item))

    for item in ("a", "b", "c"):
        add(item)
    assert indexes() == {"a": 0, "b": 1, "c": 2}
    database.write_sync(lambda ctx: catalog.delete_entity(ctx, Entity.ITEM, "b"))
    add("b")
    assert indexes() == {"a": 0, "c": 2, "b": 3}


def test_an_in_memory_database_shares_one_store_between_writer_and_readers() -> None:
    db = Database("memory", None)
    try:
        db.write_sync(lambda ctx: catalog.add_entity(ctx, Entity.USER, "u"))
        assert count(db, "users") == 1
    finally:
        db.close()


def test_a_refusal_after_a_failed_statement_does_not_lose_its_neighbours(
    database: Database,
) -> None:
    # A filter that fails at run time (an overflow) aborts DuckDB's transaction; the writer must
    # notice, instead of letting COMMIT silently roll back the other jobs of the group.
    database.write_sync(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, "a"))

    def failing(ctx: WriteContext) -> str:
        try:
            ctx.conn.execute("SELECT 9223372036854775807 + count(*) FROM items").fetchall()
        except duckdb.Error:
            raise InvalidInput("the filter overflowed") from None
        return "unreachable"

    jobs = [
        WriteJob(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, "b")),
        WriteJob(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, "c")),
        WriteJob(failing),
    ]
    database._run_group(list(jobs))  # as the writer thread would, with all three in one group
    assert jobs[0].future.result() == "ok"
    assert jobs[1].future.result() == "ok"
    with pytest.raises(InvalidInput, match="overflowed"):
        jobs[2].future.result()
    ids = database.read_sync(
        lambda ctx: catalog.list_entities(
            ctx,
            Entity.ITEM,
            count=None,
            offset=0,
            return_properties=False,
            included_properties=None,
        )
    )
    assert ids == ["a", "b", "c"]
