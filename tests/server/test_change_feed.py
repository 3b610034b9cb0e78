"""The change feed: what the writer stores, a server's copy reproduces by applying the feed's
entries with the same functions (real DuckDB files, no server processes)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from server.writer.commands import apply_entries
from server.writer.service import submit
from storage.database import Database, WriteJob
from storage.errors import StorageError
from storage.export import export_snapshot, import_snapshot
from storage.feed import RETAIN, entries_after

TABLES = (
    "items",
    "users",
    "item_properties",
    "interactions",
    "recommendations",
    "variant_assignments",
    "reqo_counters",
)


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Database]:
    database = Database("feed", tmp_path / "feed.duckdb", feed=True)
    yield database
    database.close()


@pytest.fixture
def copy() -> Iterator[Database]:
    database = Database("copy", None)
    yield database
    database.close()


def call(op: str, args: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
    return {"calls": [{"op": op, "args": args or {}, "query": {}, "body": body}]}


def replay(writer: Database, copy: Database, after: int = 0) -> int:
    """Apply the writer's feed after `after` to the copy; returns the last applied seq."""
    entries = writer.read_sync(lambda ctx: entries_after(ctx.conn, after, 10**6))
    assert entries is not None
    import orjson

    payloads = [orjson.loads(text) for _, text in entries]
    refused = copy.write_sync(lambda ctx: apply_entries(ctx, payloads))
    assert refused == 0
    return entries[-1][0] if entries else after


def dump(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    def read(ctx: Any) -> dict[str, list[tuple[Any, ...]]]:
        return {
            table: sorted(
                ctx.conn.execute(f"SELECT * FROM {table}").fetchall(), key=lambda r: repr(r)
            )
            for table in TABLES
        }

    return database.read_sync(read)


def test_a_copy_that_applies_the_feed_holds_what_the_writer_holds(
    writer: Database, copy: Database
) -> None:
    view = call("add detail views", userId="u1", itemId="a", cascadeCreate=True)
    futures: list[Future[Any]] = [
        submit(writer, "calls", call("add item property", {"propertyName": "g"}, type="string")),
        submit(writer, "calls", call("add item", {"itemId": "a"})),
        # Interactions without a timestamp: the copy must store the writer's time, not its own.
        submit(writer, "calls", view),
        submit(writer, "calls", call("add purchases", userId="u2", itemId="b", cascadeCreate=True)),
        # Refused ones (an unknown item without cascadeCreate) must not reach the feed.
        submit(writer, "calls", call("add ratings", userId="u3", itemId="zz", rating=0.5)),
        submit(writer, "calls", call("set item values", {"itemId": "b"}, g="drama")),
    ]
    answers = [f.result() for f in futures]
    assert [a[0]["code"] for a in answers] == [201, 201, 200, 200, 404, 200]
    submit(writer, "log", {"records": [_record("r1", "u1", ["a", "b"])]}).result()
    submit(writer, "extend", {"recommId": "r1", "ids": ["c"]}).result()
    submit(writer, "context", {"userId": "u9", "itemId": None, "cascade": True}).result()
    submit(writer, "assign", {"assignments": [["s", "u1", "v1", 1_700_000_000.0]]}).result()

    seq = replay(writer, copy)

    assert seq == writer.feed.committed_seq if writer.feed else False
    assert dump(copy) == dump(writer)
    assert dump(copy)["interactions"], "the interactions were replayed"


def test_a_group_rolled_back_and_retried_numbers_items_as_its_copy_does(
    writer: Database, copy: Database
) -> None:
    """A failure that is not a refusal undoes the writer's whole group, which then runs job by
    job: the dense indexes the retried jobs get must be the ones the copy gives them."""

    def broken(ctx: Any) -> None:
        raise RuntimeError("a bug in one job")

    writer.submit(WriteJob(lambda ctx: ctx.conn.execute("SELECT 1")))  # keeps the writer busy
    jobs = [submit(writer, "calls", call("add item", {"itemId": f"i{n}"})) for n in range(5)]
    failed = writer.submit(WriteJob(broken))
    jobs += [submit(writer, "calls", call("add user", {"userId": f"u{n}"})) for n in range(3)]
    for job in jobs:
        job.result()
    with pytest.raises(RuntimeError):
        failed.result()

    replay(writer, copy)

    assert dump(copy)["items"] == dump(writer)["items"]
    assert dump(copy)["users"] == dump(writer)["users"]
    idx = sorted(row[0] for row in dump(writer)["items"])
    assert idx == list(range(len(idx))), "no index is lost to the rolled-back group"


def test_a_copy_loaded_from_a_snapshot_continues_from_its_sequence_number(
    writer: Database, copy: Database, tmp_path: Path
) -> None:
    submit(writer, "calls", call("add item", {"itemId": "before"})).result()
    snapshot = writer.read_sync(lambda ctx: export_snapshot(ctx, tmp_path))
    seq = copy.write_sync(lambda ctx: import_snapshot(ctx, snapshot))
    submit(writer, "calls", call("add item", {"itemId": "after"})).result()
    # The next item of the copy must get the writer's next index.
    submit(writer, "calls", call("add user", {"userId": "u"})).result()

    replay(writer, copy, after=seq)

    assert dump(copy) == dump(writer)


def test_the_feed_says_so_when_it_no_longer_reaches_back(writer: Database) -> None:
    submit(writer, "calls", call("add item", {"itemId": "a"})).result()
    submit(writer, "calls", call("add item", {"itemId": "b"})).result()
    assert writer.read_sync(lambda ctx: entries_after(ctx.conn, 0, 10)) is not None
    writer.write_sync(lambda ctx: ctx.conn.execute("DELETE FROM reqo_feed WHERE seq = 1"))
    assert writer.read_sync(lambda ctx: entries_after(ctx.conn, 0, 10)) is None
    assert writer.read_sync(lambda ctx: entries_after(ctx.conn, 1, 10)) is not None
    assert RETAIN >= 100_000


def test_a_failed_write_command_reaches_neither_the_file_nor_the_feed(writer: Database) -> None:
    before = writer.feed.committed_seq if writer.feed else -1
    with pytest.raises(StorageError):
        submit(writer, "context", {"userId": "nobody", "itemId": None, "cascade": False}).result()
    assert writer.feed is not None
    assert writer.feed.committed_seq == before


def _record(recomm_id: str, user: str, returned: list[str]) -> dict[str, Any]:
    return {
        "recommId": recomm_id,
        "timestamp": 1_700_000_000.5,
        "endpoint": "items-to-user",
        "userId": user,
        "itemId": None,
        "scenario": None,
        "params": {"count": 2},
        "returned": returned,
        "nextCalls": 0,
        "variant": None,
    }
