"""One reqo database: a DuckDB file, a single writer thread and a pool of readers.

All DuckDB work runs off the event loop. Writes go through one thread per database, so they are
serialised without lock conflicts; the writer commits the jobs that are waiting together (group
commit), so a stream of small writes costs one commit per group rather than one per write, and
no job is acknowledged before its commit. Reads run on a thread pool, each thread with its own
cursor, and see every acknowledged write.

A full disk must not take the database down. DuckDB's automatic checkpoint is off, because when
it fails for lack of space it invalidates the database (every later statement fails until the
file is reopened) and turns a durable commit into an error: the writer checkpoints itself, after
a commit has been acknowledged, and only where the filesystem has room for it. A commit that
fails for lack of space (its WAL write) stores nothing and leaves the connection usable: its jobs
are refused with `DiskFull` (507), reads go on, and writes succeed again once space is freed.
Should the database be invalidated all the same, the writer reopens the file (DuckDB replays the
WAL) and the readers move to fresh cursors.

The jobs and their contexts live in `storage.contexts`, the handling of DuckDB's failures in
`storage.failures`; this module re-exports what its callers import from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from storage.contexts import (
    UNCONNECTED,
    CoalescedJob,
    Job,
    NeedsDatabase,
    ReadContext,
    WriteContext,
    WriteJob,
    load_schema,
)
from storage.errors import DiskFull, StorageError
from storage.failures import (
    Aborted,
    Gate,
    durable,
    ensure_alive,
    invalidated,
    is_dead,
    is_disk_full,
    refused_as_invalid,
    rollback,
)
from storage.feed import ChangeFeed
from storage.schema import Schema, quote_identifier

__all__ = [
    "CHECKPOINT_FREE_MARGIN",
    "CHECKPOINT_WAL_BYTES",
    "MAX_GROUP_SIZE",
    "RECOVERY_WAIT",
    "REOPEN_INTERVAL",
    "SCHEMA_VERSION",
    "CoalescedJob",
    "Database",
    "Job",
    "NeedsDatabase",
    "ReadContext",
    "WriteContext",
    "WriteJob",
    "load_schema",
]

T = TypeVar("T")

logger = logging.getLogger("reqo")

SCHEMA_VERSION = "1"
MAX_GROUP_SIZE = 512

CHECKPOINT_WAL_BYTES = 16 * 2**20
"""The writer checkpoints after a commit that leaves the WAL larger than this (DuckDB's own
automatic checkpoint, at the same size by default, is off)."""

CHECKPOINT_FREE_MARGIN = 64 * 2**20
"""Free bytes, beyond twice the WAL's size, that a checkpoint waits for. A checkpoint writes the
changed data to new blocks before it releases the old ones, and may rewrite more than the WAL
holds (the rest of a row group that an update touched); one that runs out of space invalidates
the database."""

REOPEN_INTERVAL = 1.0
"""Seconds between the writer's tries to reopen read-write a database it could not reopen."""

RECOVERY_WAIT = 10.0
"""Seconds that a read which met an invalidated connection waits for the writer to reopen it."""

_CONNECT_CONFIG = {"checkpoint_threshold": "1000TB"}
"""DuckDB's settings for every connection: no automatic checkpoint (see the module's doc)."""

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
    # A property's role and metadata (Recombee's SDK 6 fields of Add Property), as JSON text;
    # files from before them gain the columns here
    "ALTER TABLE item_properties ADD COLUMN IF NOT EXISTS role VARCHAR",
    "ALTER TABLE item_properties ADD COLUMN IF NOT EXISTS metadata VARCHAR",
    "ALTER TABLE user_properties ADD COLUMN IF NOT EXISTS role VARCHAR",
    "ALTER TABLE user_properties ADD COLUMN IF NOT EXISTS metadata VARCHAR",
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
    # storage/entities.py: the next dense index of items and users (transactional, unlike a
    # sequence); files from before it start after their largest index
    "CREATE TABLE IF NOT EXISTS reqo_counters (name VARCHAR PRIMARY KEY, value BIGINT NOT NULL)",
    """INSERT OR IGNORE INTO reqo_counters
       SELECT 'next_item_index', coalesce(max("$idx") + 1, 0) FROM items""",
    """INSERT OR IGNORE INTO reqo_counters
       SELECT 'next_user_index', coalesce(max("$idx") + 1, 0) FROM users""",
    # storage/feed.py: the change feed, each committed write by its sequence number
    "CREATE TABLE IF NOT EXISTS reqo_feed (seq BIGINT NOT NULL, entry VARCHAR NOT NULL)",
    # storage/series.py: series, and their members (items or series) in time order
    "CREATE TABLE IF NOT EXISTS series (id VARCHAR PRIMARY KEY)",
    """CREATE TABLE IF NOT EXISTS series_items (
        series_id VARCHAR NOT NULL,
        item_type VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        time DOUBLE NOT NULL,
        PRIMARY KEY (series_id, item_type, item_id, time)
    )""",
    # storage/synonyms.py: search synonyms
    """CREATE TABLE IF NOT EXISTS search_synonyms (
        id VARCHAR PRIMARY KEY,
        term VARCHAR NOT NULL,
        synonym VARCHAR NOT NULL,
        one_way BOOLEAN NOT NULL
    )""",
    # storage/segmentations.py: segmentations (property-based, auto ReQL, manual ReQL) and the
    # segments of the manual ReQL ones, in the order they were added
    """CREATE TABLE IF NOT EXISTS segmentations (
        id VARCHAR PRIMARY KEY,
        source_type VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        title VARCHAR,
        description VARCHAR,
        property_name VARCHAR,
        expression VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS segmentation_segments (
        segmentation_id VARCHAR NOT NULL,
        segment_id VARCHAR NOT NULL,
        filter VARCHAR NOT NULL,
        title VARCHAR,
        position BIGINT NOT NULL,
        PRIMARY KEY (segmentation_id, segment_id)
    )""",
    # storage/embeddings.py: image vectors by embedder, its settings and the image's content hash
    """CREATE TABLE IF NOT EXISTS image_embeddings (
        embedder VARCHAR NOT NULL,
        settings_digest VARCHAR NOT NULL,
        image_sha256 VARCHAR NOT NULL,
        vector FLOAT[] NOT NULL,
        PRIMARY KEY (embedder, settings_digest, image_sha256)
    )""",
    # storage/text_vectors.py: item text vectors by text embedder, its settings and the text's
    # content hash (Search Items' semantic index, TrainingData.item_text_vectors)
    """CREATE TABLE IF NOT EXISTS text_embeddings (
        embedder VARCHAR NOT NULL,
        settings_digest VARCHAR NOT NULL,
        text_sha256 VARCHAR NOT NULL,
        vector FLOAT[] NOT NULL,
        PRIMARY KEY (embedder, settings_digest, text_sha256)
    )""",
]


def _drop_list_defaults(conn: duckdb.DuckDBPyConnection) -> None:
    """Files from before sets were null until set gave set and imageList columns the default
    `[]`; without it, the new items and users of such a file get null too."""
    rows = conn.execute(
        "SELECT table_name, column_name FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main' "
        "AND table_name IN ('items', 'users') AND column_default IS NOT NULL"
    ).fetchall()
    for table, column in rows:
        conn.execute(f"ALTER TABLE {table} ALTER COLUMN {quote_identifier(column)} DROP DEFAULT")


_STOP = object()
_CHECK = object()
"""Queued by a read that met an invalidated database: the writer checks its connection."""


class Database:
    """A reqo database (a Recombee "database id") stored in one DuckDB file.

    `path=None` keeps it in memory, for tests.
    """

    def __init__(
        self, name: str, path: Path | None, *, read_threads: int = 4, feed: bool = False
    ) -> None:
        self.name = name
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        for statement in _BOOTSTRAP:
            conn.execute(statement)
        _drop_list_defaults(conn)
        conn.execute(
            "INSERT OR IGNORE INTO reqo_meta VALUES ('schema_version', ?)", [SCHEMA_VERSION]
        )
        self._conn: duckdb.DuckDBPyConnection | None = conn
        """The connection that the writer and the readers' cursors use; replaced by the writer
        when DuckDB invalidates it (None while the file cannot be opened at all)."""
        self._schema = load_schema(conn)
        self.feed: ChangeFeed | None = ChangeFeed(conn) if feed else None
        """The change feed of the writer role's database (None elsewhere)."""
        self._version = itertools.count(1)
        self.catalog_version = 0
        """Moves on every commit that changed items, users or properties."""
        self.interactions_version = 0
        """Moves on every commit that changed interactions."""
        self.disk_full = False
        """True from a write refused for lack of space until the next commit that succeeds."""
        self._writable = True
        """False while `_conn` is read-only (or absent): the file could not be reopened
        read-write after DuckDB invalidated it."""
        self._generation = 0
        """Moves each time `_conn` is replaced; a reader's cursor of an older one is stale."""
        self._gate = Gate()
        self._reopened = threading.Condition()
        """Notified after `_conn` is replaced, for the reads that wait for it."""
        self._open_error: duckdb.Error | None = None
        self._open_failures = 0
        self._last_reopen = 0.0
        self._checkpoint_postponed = False
        self.group_wait = 0.0
        """Seconds the writer waits for more jobs before it commits a group, while writes come
        concurrently (0: it commits what is queued at once)."""
        self._concurrent = False
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
        """Run a read on the calling thread with its own cursor.

        A read that meets an invalidated database runs once more, on a cursor of the connection
        that the writer opens in its place."""
        # A read within a read cannot wait for the writer: the outer one holds the gate.
        nested = self._gate.held()
        for attempt in range(2):
            with self._gate.shared():
                cursor, generation = self._cursor()
                try:
                    return run(ReadContext(cursor, self._schema))
                except duckdb.Error as error:
                    if attempt or nested or not invalidated(error):
                        raise
            self._await_reopen(generation)
        raise AssertionError("unreachable: the second attempt returns or raises")

    def read_in_memory(self, run: Callable[[ReadContext], T]) -> T:
        """Run a read on the calling thread (the event loop) without a connection, for reads that
        in-memory indexes and caches usually answer: it spares them the hop to a reader thread.
        Raises `NeedsDatabase` where `run` reaches for the connection; `run` must leave no
        partial state behind when it does, and the caller then repeats it with `read`."""
        return run(ReadContext(UNCONNECTED, self._schema, memory_only=True))

    async def read(self, run: Callable[[ReadContext], T]) -> T:
        """Run a read on the reader pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.read_sync, run)

    def close(self) -> None:
        """Finish queued writes, stop the threads and close the file.

        DuckDB checkpoints the file as it closes it; where the disk has no room for that, the
        checkpoint fails without harm (the WAL stays, and the next open replays it)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._writer.join()
        self._readers.shutdown(wait=True)
        with self._reopened:
            self._reopened.notify_all()  # reads waiting for a reopen that will not come
        with self._gate.exclusive():
            if self._conn is not None:
                try:
                    self._conn.close()
                except duckdb.Error:
                    logger.exception("database %r: closing the file failed", self.name)

    # -- connections ------------------------------------------------------------------------

    def _connect(self, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        conn = duckdb.connect(
            str(self.path) if self.path is not None else ":memory:",
            read_only=read_only,
            config=dict(_CONNECT_CONFIG),
        )
        conn.execute("SET TimeZone = 'UTC'")
        return conn

    def _cursor(self) -> tuple[duckdb.DuckDBPyConnection, int]:
        """The calling thread's cursor on the current connection, and that connection's
        generation (call with the gate held)."""
        generation = self._generation
        held: tuple[duckdb.DuckDBPyConnection, int] | None = getattr(self._local, "cursor", None)
        if held is not None and held[1] == generation:
            return held
        conn = self._conn
        if conn is None:
            if self.disk_full:
                raise DiskFull(self.name, "the database cannot be read until it is reopened")
            raise RuntimeError(f"database {self.name!r} cannot be opened: {self._open_error}")
        # A cursor of a replaced connection was closed with it.
        cursor = conn.cursor()
        cursor.execute("SET TimeZone = 'UTC'")
        self._local.cursor = (cursor, generation)
        return cursor, generation

    def _await_reopen(self, generation: int) -> None:
        """Have the writer check the connection, and wait (a while) until it has replaced it."""
        with self._reopened:
            if self._generation != generation or self._closed:
                return
            self._queue.put(_CHECK)
            self._reopened.wait_for(
                lambda: self._generation != generation or self._closed, timeout=RECOVERY_WAIT
            )

    def _reopen(self) -> bool:
        """Close the connection and open the file again (on the writer thread): read-write where
        possible (DuckDB replays the WAL, so every committed write is there), else read-only, so
        that reads go on meanwhile. Returns whether writes can go on."""
        if self.path is None:
            return self._writable  # in memory: a new connection would start empty
        self._last_reopen = time.monotonic()
        with self._gate.exclusive():
            if self._conn is not None:
                # DuckDB caches one instance per file: only once this one is closed does a
                # connect open the file anew (rather than hand back the invalidated instance).
                with contextlib.suppress(duckdb.Error):
                    self._conn.close()
                self._conn = None
            conn: duckdb.DuckDBPyConnection | None = None
            writable = False
            for read_only in (False, True):
                try:
                    conn = self._connect(read_only=read_only)
                    self._schema = load_schema(conn)
                except duckdb.Error as error:
                    if conn is not None:
                        with contextlib.suppress(duckdb.Error):
                            conn.close()
                        conn = None
                    if not read_only:
                        self._open_failed(error)
                    continue
                writable = not read_only
                break
            self._conn = conn
            self._writable = writable
            self._generation += 1
        with self._reopened:
            self._reopened.notify_all()
        if writable:
            if self._open_failures:
                logger.warning("database %r: reopened read-write", self.name)
            else:
                logger.warning("database %r: reopened after DuckDB invalidated it", self.name)
            self._open_failures = 0
            self._open_error = None
        return writable

    def _open_failed(self, error: duckdb.Error) -> None:
        self._open_error = error
        if is_disk_full(error):
            self.disk_full = True
        if self._open_failures % 60 == 0:  # once a minute or so, while it goes on
            logger.error(
                "database %r cannot be reopened read-write (writes are refused): %s",
                self.name,
                error,
            )
        self._open_failures += 1

    def _wal_bytes(self) -> int:
        try:
            return Path(f"{self.path}.wal").stat().st_size
        except OSError:
            return 0

    def _room_for_checkpoint(self, wal_bytes: int) -> bool:
        assert self.path is not None
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            return False
        needed = 2 * wal_bytes + CHECKPOINT_FREE_MARGIN
        if free >= needed:
            self._checkpoint_postponed = False
            return True
        if not self._checkpoint_postponed:
            logger.warning(
                "database %r: checkpoint postponed until the disk has %d MiB free (it has %d)",
                self.name,
                needed >> 20,
                free >> 20,
            )
            self._checkpoint_postponed = True
        return False

    # -- the writer thread ------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            try:
                # A database that could not be reopened read-write is tried again now and then,
                # so that the reads move off the read-only connection once space is back.
                first = self._queue.get(timeout=None if self._writable else REOPEN_INTERVAL)
            except queue.Empty:
                self._reopen()
                continue
            jobs: list[Job] = []
            check = stop = False
            item = first
            # Under concurrent load (the last group held several jobs), wait a moment for more:
            # a commit costs the same for one job as for many.
            wait_until = time.monotonic() + self.group_wait if self._concurrent else 0.0
            while True:
                if item is _STOP:
                    stop = True
                    break
                if item is _CHECK:
                    check = True
                else:
                    jobs.append(item)
                if len(jobs) >= MAX_GROUP_SIZE:
                    break
                try:
                    remaining = wait_until - time.monotonic()
                    if remaining > 0:
                        item = self._queue.get(timeout=remaining)
                    else:
                        item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._concurrent = len(jobs) > 1
            if jobs:
                self._run_group(jobs)
            if check and (self._conn is None or is_dead(self._conn)):
                self._reopen()
            if stop:
                return

    def _run_group(self, jobs: list[Job], *, retried: bool = False) -> None:
        if not self._writable and not self._reopen_if_due():
            self._refuse(jobs, self._refusal())
            return
        conn = self._conn
        assert conn is not None
        ctx = WriteContext(conn, self._schema)
        ctx.recording = self.feed is not None
        outcomes: list[tuple[bool, Any]] = []
        committing = False
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
                    ensure_alive(conn, error)
                index += 1
            ctx.store_counters()
            if self.feed is not None and ctx.feed_entries:
                self.feed.stage(conn, ctx.feed_entries)
            committing = True
            conn.execute("COMMIT")
        except BaseException as error:
            if committing and durable(error):
                # DuckDB stored the group, then failed a checkpoint of its own (it is told to run
                # none) and invalidated the database: the jobs are answered as committed.
                self._reopen()
                self._acknowledge(jobs, outcomes, ctx, reload_schema=False)
                return
            rollback(conn)
            if self.feed is not None:
                self.feed.discard()
            if is_dead(conn):
                self._recover(jobs, error, committing=committing, retried=retried)
                return
            if is_disk_full(error):
                # The commit's WAL write (or a block of a large insert) found no room: nothing
                # of the group is stored and the connection goes on. Each job would fail alone
                # as well, so none is tried again; the client may resend once space is freed.
                self._refuse_for_space(jobs, ctx)
                return
            # Something unexpected (not a refusal of one job): undo the group, then give each job
            # its own transaction, so that one broken job cannot fail its neighbours.
            if ctx.schema_was_changed:
                self._schema = load_schema(conn)
            if len(jobs) == 1:
                if not jobs[0].future.done():
                    cause = error.refusal if isinstance(error, Aborted) else error
                    jobs[0].future.set_exception(cause)
                return
            for job in jobs:
                self._run_group([job])
            return
        self._acknowledge(jobs, outcomes, ctx, reload_schema=True)
        # Only now, with every job answered: a checkpoint must never hold up (or fail) a write
        # that has committed.
        self._maybe_checkpoint()

    def _acknowledge(
        self,
        jobs: list[Job],
        outcomes: list[tuple[bool, Any]],
        ctx: WriteContext,
        *,
        reload_schema: bool,
    ) -> None:
        """Publish a committed group's changes and answer its jobs."""
        self.disk_full = False
        if self.feed is not None and self._conn is not None:
            self.feed.publish(self._conn)
        if ctx.schema_was_changed and reload_schema:
            self._schema = load_schema(ctx.conn)
        if ctx.catalog_changed:
            self.catalog_version = next(self._version)
        if ctx.interactions_changed:
            self.interactions_version = next(self._version)
        for job, (ok, value) in zip(jobs, outcomes, strict=True):
            if job.future.done():
                continue  # its waiter gave up (a cancelled request): the write stands all the same
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    def _refuse_for_space(self, jobs: list[Job], ctx: WriteContext) -> None:
        if not self.disk_full:
            logger.error("database %r: the disk is full; writes are refused", self.name)
        self.disk_full = True
        if ctx.schema_was_changed:
            self._schema = load_schema(ctx.conn)
        self._refuse(jobs, lambda: DiskFull(self.name))

    def _recover(
        self, jobs: list[Job], error: BaseException, *, committing: bool, retried: bool
    ) -> None:
        """Reopen a database that DuckDB invalidated during the group, and answer the group."""
        logger.error("database %r was invalidated: %s", self.name, error)
        # Nothing of the group is stored where the database failed before COMMIT, or refused
        # COMMIT because it had been invalidated already. Any other fatal error at COMMIT leaves
        # it unknown whether the group was stored: it must not run again, and its jobs get the
        # error itself (never DiskFull, which says that nothing was stored).
        unknown = committing and not refused_as_invalid(error)
        writable = self._reopen()
        if unknown:
            self._refuse(jobs, lambda: error)
        elif writable and not retried:
            self._run_group(jobs, retried=True)
        else:
            self._refuse(jobs, self._refusal(error))

    def _reopen_if_due(self) -> bool:
        """Try to reopen read-write, at most every `REOPEN_INTERVAL` (a try costs the reads a
        pause); returns whether writes can go on."""
        if time.monotonic() - self._last_reopen < REOPEN_INTERVAL:
            return False
        return self._reopen()

    def _refusal(self, cause: BaseException | None = None) -> Callable[[], BaseException]:
        """What refuses a write while the database cannot take one."""
        if self.disk_full:
            return lambda: DiskFull(self.name)
        if cause is not None:
            return lambda: cause
        return lambda: RuntimeError(
            f"database {self.name!r} cannot be written: it could not be reopened "
            f"read-write ({self._open_error})"
        )

    @staticmethod
    def _refuse(jobs: list[Job], error: Callable[[], BaseException]) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error())

    def _maybe_checkpoint(self) -> None:
        """Checkpoint once the WAL is past `CHECKPOINT_WAL_BYTES`, where the disk has room."""
        if self.path is None:
            return
        wal = self._wal_bytes()
        if wal <= CHECKPOINT_WAL_BYTES or not self._room_for_checkpoint(wal):
            return  # tried again after a later commit
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("CHECKPOINT")
        except duckdb.Error as error:
            logger.error("database %r: checkpoint failed: %s", self.name, error)
            if is_dead(conn):
                self._reopen()
