"""One reqo database: a DuckDB file, a single writer thread and a pool of readers.

All DuckDB work runs off the event loop. Writes go through one thread per database, so they are
serialised without lock conflicts; the writer commits the jobs that are waiting together (group
commit), so a stream of small writes costs one commit per group rather than one per write, and
no job is acknowledged before its commit. Reads run on a thread pool, each thread with its own
cursor, and see every acknowledged write.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import duckdb

from storage.errors import StorageError
from storage.schema import Entity, EntitySchema, PropertyInfo, PropertyType, Schema

T = TypeVar("T")

SCHEMA_VERSION = "1"
MAX_GROUP_SIZE = 512

_BOOTSTRAP = [
    "SET TimeZone = 'UTC'",
    "CREATE TABLE IF NOT EXISTS reqo_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    "CREATE SEQUENCE IF NOT EXISTS item_index_seq START 0 MINVALUE 0",
    "CREATE SEQUENCE IF NOT EXISTS user_index_seq START 0 MINVALUE 0",
    'CREATE TABLE IF NOT EXISTS items ("$idx" BIGINT PRIMARY KEY, "$id" VARCHAR NOT NULL UNIQUE)',
    'CREATE TABLE IF NOT EXISTS users ("$idx" BIGINT PRIMARY KEY, "$id" VARCHAR NOT NULL UNIQUE)',
    "CREATE TABLE IF NOT EXISTS item_properties "
    "(name VARCHAR PRIMARY KEY, type VARCHAR NOT NULL, position BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS user_properties "
    "(name VARCHAR PRIMARY KEY, type VARCHAR NOT NULL, position BIGINT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS interactions (
        kind UTINYINT NOT NULL,
        user_id VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        ts TIMESTAMP NOT NULL,
        recomm_id VARCHAR,
        additional_data VARCHAR,
        duration DOUBLE,
        auto_presented BOOLEAN,
        amount DOUBLE,
        price DOUBLE,
        profit DOUBLE,
        rating DOUBLE,
        portion DOUBLE,
        session_id VARCHAR,
        time_spent DOUBLE
    )""",
    """CREATE TABLE IF NOT EXISTS recommendations (
        recomm_id VARCHAR PRIMARY KEY,
        ts TIMESTAMP NOT NULL,
        endpoint VARCHAR NOT NULL,
        user_id VARCHAR,
        item_id VARCHAR,
        scenario VARCHAR,
        params VARCHAR NOT NULL,
        returned VARCHAR[] NOT NULL,
        next_calls INTEGER NOT NULL
    )""",
    # server/bandits.py: the variant of a scenario's experiment that served the recommendation
    # (added after the table's first release: older files get the column here).
    "ALTER TABLE recommendations ADD COLUMN IF NOT EXISTS variant VARCHAR",
    # server/bandits.py: which variant each user is held to (sticky allocation), and since when
    """CREATE TABLE IF NOT EXISTS variant_assignments (
        scenario VARCHAR NOT NULL,
        user_id VARCHAR NOT NULL,
        variant VARCHAR NOT NULL,
        assigned TIMESTAMP NOT NULL,
        PRIMARY KEY (scenario, user_id)
    )""",
    # storage/embeddings.py: image vectors by embedder, its settings and the image's content hash
    """CREATE TABLE IF NOT EXISTS image_embeddings (
        embedder VARCHAR NOT NULL,
        settings_digest VARCHAR NOT NULL,
        image_sha256 VARCHAR NOT NULL,
        vector FLOAT[] NOT NULL,
        PRIMARY KEY (embedder, settings_digest, image_sha256)
    )""",
]


def load_schema(conn: duckdb.DuckDBPyConnection) -> Schema:
    """Read the property catalogue as the connection's transaction sees it."""

    def entity_schema(entity: Entity) -> EntitySchema:
        rows = conn.execute(
            f"SELECT name, type FROM {entity.properties_table} ORDER BY position"
        ).fetchall()
        return EntitySchema(entity, tuple(PropertyInfo(n, PropertyType(t)) for n, t in rows))

    return Schema(entity_schema(Entity.ITEM), entity_schema(Entity.USER))


class WriteContext:
    """What a write job gets: the writer's connection, inside an open transaction."""

    def __init__(
        self, conn: duckdb.DuckDBPyConnection, schema: Schema, *, memory_only: bool = False
    ) -> None:
        self.conn = conn
        self.memory_only = memory_only
        """True for `Database.read_in_memory`: the context has no connection, and whatever
        would load data (from the file or from disk) raises `NeedsDatabase` instead."""
        self._schema = schema
        self._schema_dirty = False
        self.schema_was_changed = False
        self.catalog_changed = False
        self.interactions_changed = False

    @property
    def schema(self) -> Schema:
        """The property catalogue including this transaction's own changes."""
        if self._schema_dirty:
            self._schema = load_schema(self.conn)
            self._schema_dirty = False
        return self._schema

    def schema_changed(self) -> None:
        """Call after DDL, so that later jobs of the transaction see the new catalogue."""
        self._schema_dirty = True
        self.schema_was_changed = True
        self.catalog_changed = True

    def touched_catalog(self) -> None:
        """Call after changing items or users (bumps the catalog version)."""
        self.catalog_changed = True

    def touched_interactions(self) -> None:
        """Call after adding or deleting interactions (bumps the interactions version)."""
        self.interactions_changed = True


ReadContext = WriteContext
"""Reads get the same shape of context, over a reader cursor and the published schema."""


class NeedsDatabase(Exception):
    """A memory-only read (`Database.read_in_memory`) reached for the database."""

    def __init__(self, what: str) -> None:
        super().__init__(f"a memory-only read needs the database for {what}")


class _Unconnected:
    """The connection of a memory-only context: any use of it raises `NeedsDatabase`."""

    def __getattr__(self, name: str) -> Any:
        raise NeedsDatabase(f"conn.{name}")


_UNCONNECTED = cast(duckdb.DuckDBPyConnection, _Unconnected())


@dataclass
class WriteJob(Generic[T]):
    """A function of the write context; it must raise StorageError before writing anything."""

    run: Callable[[WriteContext], T]
    future: Future[T] = field(default_factory=Future)


@dataclass
class CoalescedJob:
    """One of many small writes of the same shape that the writer applies together.

    Consecutive coalesced jobs with the same `apply` are handed to it in one call, which returns
    one outcome per payload: a result, or the StorageError of that payload alone.
    """

    apply: Callable[[WriteContext, Sequence[Any]], list[Any]]
    payload: Any
    future: Future[Any] = field(default_factory=Future)


Job = WriteJob[Any] | CoalescedJob
_STOP = object()


class Database:
    """A reqo database (a Recombee "database id") stored in one DuckDB file.

    `path=None` keeps it in memory, for tests.
    """

    def __init__(self, name: str, path: Path | None, *, read_threads: int = 4) -> None:
        self.name = name
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = duckdb.connect(str(path) if path is not None else ":memory:")
        for statement in _BOOTSTRAP:
            self._conn.execute(statement)
        self._conn.execute(
            "INSERT OR IGNORE INTO reqo_meta VALUES ('schema_version', ?)", [SCHEMA_VERSION]
        )
        self._schema = load_schema(self._conn)
        self._version = itertools.count(1)
        self.catalog_version = 0
        """Moves on every commit that changed items, users or properties."""
        self.interactions_version = 0
        """Moves on every commit that changed interactions."""
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(read_threads, thread_name_prefix=f"reqo-read-{name}")
        self._writer = threading.Thread(target=self._write_loop, name=f"reqo-write-{name}")
        self._writer.daemon = True
        self._closed = False
        self._writer.start()

    # -- public surface ---------------------------------------------------------------------

    @property
    def schema(self) -> Schema:
        """The committed property catalogue (a snapshot; replaced whole on change)."""
        return self._schema

    def submit(self, job: Job) -> Future[Any]:
        """Queue a write job; the future resolves after the job's transaction commits."""
        if self._closed:
            raise RuntimeError(f"database {self.name!r} is closed")
        self._queue.put(job)
        return job.future

    def write_sync(self, run: Callable[[WriteContext], T]) -> T:
        """Run a write job and wait for its commit (for the CLI and tests)."""
        future: Future[T] = self.submit(WriteJob(run))
        return future.result()

    async def write(self, run: Callable[[WriteContext], T]) -> T:
        """Run a write job on the writer thread and wait for its commit."""
        return await asyncio.wrap_future(self.submit(WriteJob(run)))

    async def write_coalesced(
        self, apply: Callable[[WriteContext, Sequence[Any]], list[Any]], payload: Any
    ) -> Any:
        """Queue one small write that the writer may apply together with its neighbours."""
        return await asyncio.wrap_future(self.submit(CoalescedJob(apply, payload)))

    def read_sync(self, run: Callable[[ReadContext], T]) -> T:
        """Run a read on the calling thread with its own cursor."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._conn.cursor()
            cursor.execute("SET TimeZone = 'UTC'")
            self._local.cursor = cursor
        return run(ReadContext(cursor, self._schema))

    def read_in_memory(self, run: Callable[[ReadContext], T]) -> T:
        """Run a read on the calling thread (the event loop) without a connection, for reads that
        in-memory indexes and caches usually answer: it spares them the hop to a reader thread.
        Raises `NeedsDatabase` where `run` reaches for the connection; `run` must leave no
        partial state behind when it does, and the caller then repeats it with `read`."""
        return run(ReadContext(_UNCONNECTED, self._schema, memory_only=True))

    async def read(self, run: Callable[[ReadContext], T]) -> T:
        """Run a read on the reader pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.read_sync, run)

    def close(self) -> None:
        """Finish queued writes, stop the threads and close the file (checkpointing it)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._writer.join()
        self._readers.shutdown(wait=True)
        self._conn.close()

    # -- the writer thread ------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            jobs: list[Job] = [first]
            stop_after = False
            while len(jobs) < MAX_GROUP_SIZE:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop_after = True
                    break
                jobs.append(nxt)
            self._run_group(jobs)
            if stop_after:
                return

    def _run_group(self, jobs: list[Job]) -> None:
        conn = self._conn
        ctx = WriteContext(conn, self._schema)
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN TRANSACTION")
            index = 0
            while index < len(jobs):
                job = jobs[index]
                if isinstance(job, CoalescedJob):
                    end = index + 1
                    while (
                        end < len(jobs)
                        and isinstance(jobs[end], CoalescedJob)
                        and jobs[end].apply is job.apply  # type: ignore[union-attr]
                    ):
                        end += 1
                    payloads = [j.payload for j in jobs[index:end]]  # type: ignore[union-attr]
                    for result in job.apply(ctx, payloads):
                        outcomes.append((not isinstance(result, StorageError), result))
                    index = end
                    continue
                try:
                    outcomes.append((True, job.run(ctx)))
                except StorageError as error:
                    outcomes.append((False, error))
                    _ensure_alive(conn, error)
                index += 1
            conn.execute("COMMIT")
        except BaseException as error:
            # Something unexpected (not a refusal of one job): undo the group, then give each job
            # its own transaction, so that one broken job cannot fail its neighbours.
            _rollback(conn)
            if ctx.schema_was_changed:
                self._schema = load_schema(conn)
            if len(jobs) == 1:
                if not jobs[0].future.done():
                    cause = error.refusal if isinstance(error, _Aborted) else error
                    jobs[0].future.set_exception(cause)
                return
            for job in jobs:
                self._run_group([job])
            return
        if ctx.schema_was_changed:
            self._schema = load_schema(conn)
        if ctx.catalog_changed:
            self.catalog_version = next(self._version)
        if ctx.interactions_changed:
            self.interactions_version = next(self._version)
        for job, (ok, value) in zip(jobs, outcomes, strict=True):
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)


class _Aborted(Exception):
    """A job refused after a failed statement, which aborted the group's transaction."""

    def __init__(self, refusal: StorageError) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def _ensure_alive(conn: duckdb.DuckDBPyConnection, refusal: StorageError) -> None:
    # A statement that failed inside the transaction (e.g. a filter that overflowed) aborts it,
    # and DuckDB would then turn COMMIT into a silent rollback of the whole group.
    try:
        conn.execute("SELECT 1")
    except duckdb.Error:
        raise _Aborted(refusal) from None


def _rollback(conn: duckdb.DuckDBPyConnection) -> None:
    # The transaction may never have opened, or DuckDB may have aborted it already.
    with contextlib.suppress(duckdb.Error):
        conn.execute("ROLLBACK")
