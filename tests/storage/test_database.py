"""The writer thread: group commit, refusals, isolation of a broken job, durability on reopen,
and a full disk (refused writes, checkpoints that wait for room, reopening an invalidated file)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import duckdb
import pytest

from storage import catalog
from storage import database as database_module
from storage.database import CoalescedJob, Database, WriteContext, WriteJob
from storage.errors import Conflict, DiskFull, EntityNotFound, InvalidInput
from storage.interactions import InteractionKind, apply_interaction_writes, parse_interaction
from storage.schema import Entity
from tests.server.test_disk_full import MiB, fill, small_disk


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


# -- a full disk ---------------------------------------------------------------------------------


@pytest.fixture
def on_small_disk(tmp_path: Path) -> Iterator[tuple[Database, Path]]:
    """A database in a real DuckDB file on a 16 MiB tmpfs (root only, as the tests run)."""
    with small_disk(tmp_path / "disk", 16 * MiB) as disk:
        db = Database("small", disk / "small.duckdb")
        try:
            yield db, disk
        finally:
            db.close()


def add_items(db: Database, prefix: str, count: int, *, title_bytes: int = 0) -> None:
    """`count` items (one write job each), with a title of `title_bytes` characters if any."""
    title = "x" * title_bytes

    def add(ctx: WriteContext, item: str) -> None:
        catalog.add_entity(ctx, Entity.ITEM, item)
        if title_bytes:
            catalog.set_values(ctx, Entity.ITEM, item, {"title": title}, cascade_create=False)

    for n in range(count):
        db.write_sync(lambda ctx, n=n: add(ctx, f"{prefix}-{n}"))  # type: ignore[misc]


def test_a_commit_without_room_refuses_its_whole_group_and_stores_nothing(
    on_small_disk: tuple[Database, Path],
) -> None:
    db, disk = on_small_disk
    db.write_sync(lambda ctx: catalog.add_property(ctx, Entity.ITEM, "title", "string"))
    add_items(db, "kept", 3)
    filler = fill(disk)
    title = "x" * 64 * 1024  # more than the WAL's last page can still take
    jobs: list[Any] = [
        WriteJob(lambda ctx: catalog.add_entity(ctx, Entity.ITEM, "refused-a")),
        WriteJob(
            lambda ctx: catalog.set_values(
                ctx, Entity.ITEM, "refused-b", {"title": title}, cascade_create=True
            )
        ),
        CoalescedJob(
            apply_interaction_writes,
            parse_interaction(
                InteractionKind.DETAIL_VIEW,
                {"userId": "u", "itemId": "kept-0", "cascadeCreate": True},
            ),
        ),
    ]
    db._run_group(list(jobs))  # as the writer thread would, with all three in one group
    futures: list[Future[Any]] = [job.future for job in jobs]
    for future in futures:
        with pytest.raises(DiskFull, match="disk holding database 'small' is full"):
            future.result()
    assert db.disk_full
    assert count(db, "items") == 3  # reads go on
    assert count(db, "interactions") == 0

    filler.unlink()
    add_items(db, "after", 1, title_bytes=64 * 1024)
    assert not db.disk_full
    assert count(db, "items") == 4


def test_an_invalidated_database_reopens_and_the_read_that_met_it_runs_again(
    on_small_disk: tuple[Database, Path],
) -> None:
    db, disk = on_small_disk
    db.write_sync(lambda ctx: catalog.add_property(ctx, Entity.ITEM, "title", "string"))
    add_items(db, "kept", 50)
    filler = fill(disk)
    attempts: list[int] = []

    def checkpoint_then_count(ctx: WriteContext) -> int:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            # A checkpoint that finds no room invalidates the database (what DuckDB's automatic
            # one did, and what the writer's own must never meet).
            with pytest.raises(duckdb.FatalException):
                ctx.conn.execute("CHECKPOINT")
            ctx.conn.execute("SELECT 1")  # raises: every statement fails now
        row = ctx.conn.execute("SELECT count(*) FROM items").fetchone()
        assert row is not None
        return int(row[0])

    assert db.read_sync(checkpoint_then_count) == 50
    assert attempts == [0, 1]
    with pytest.raises(DiskFull):
        add_items(db, "refused", 1, title_bytes=64 * 1024)
    filler.unlink()
    add_items(db, "after", 2)
    assert count(db, "items") == 52


def test_writes_wait_for_a_read_write_reopen_and_reads_go_on_meanwhile(
    on_small_disk: tuple[Database, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, disk = on_small_disk
    monkeypatch.setattr(database_module, "REOPEN_INTERVAL", 0.05)
    add_items(db, "kept", 5)
    no_room = threading.Event()
    no_room.set()
    connect = Database._connect

    def connect_unless_full(self: Database, *, read_only: bool = False) -> Any:
        if no_room.is_set() and not read_only:
            raise duckdb.IOException(f'Could not write file "{self.path}": No space left on device')
        return connect(self, read_only=read_only)

    monkeypatch.setattr(Database, "_connect", connect_unless_full)
    filler = fill(disk)
    invalidated: list[bool] = []

    def checkpoint_once(ctx: WriteContext) -> None:
        if not invalidated:
            invalidated.append(True)
            ctx.conn.execute("CHECKPOINT")  # no room: DuckDB invalidates the database

    db.read_sync(checkpoint_once)  # runs again, on the read-only connection
    filler.unlink()  # the file still cannot be reopened read-write (connect_unless_full)
    assert count(db, "items") == 5
    with pytest.raises(DiskFull):
        add_items(db, "refused", 1)
    assert db.disk_full
    no_room.clear()
    deadline = time.monotonic() + 5
    while True:
        try:
            add_items(db, "after", 1)
            break
        except DiskFull:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    assert not db.disk_full
    assert count(db, "items") == 6


@pytest.mark.parametrize("room", [True, False])
def test_the_writer_checkpoints_past_the_wal_threshold_only_with_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, room: bool
) -> None:
    monkeypatch.setattr(database_module, "CHECKPOINT_WAL_BYTES", 64 * 1024)
    monkeypatch.setattr(database_module, "CHECKPOINT_FREE_MARGIN", 0 if room else 2**60)
    db = Database("wal", tmp_path / "wal.duckdb")
    wal = tmp_path / "wal.duckdb.wal"
    try:
        db.write_sync(lambda ctx: catalog.add_property(ctx, Entity.ITEM, "title", "string"))
        add_items(db, "item", 4, title_bytes=32 * 1024)
        # The write that passes the threshold is answered before the checkpoint runs.
        deadline = time.monotonic() + 5
        while room and _size(wal) > 64 * 1024:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        size = _size(wal)
        assert (size < 64 * 1024) if room else (size > 64 * 1024)
    finally:
        db.close()


def _size(path: Path) -> int:
    """A file's size, 0 where it is gone (a checkpoint removes the WAL, perhaps mid-look)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
