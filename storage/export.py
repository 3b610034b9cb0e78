"""Whole-database snapshots as Parquet files: the writer exports one at a sequence number of the
change feed; a server (or a trainer, or an offline command) loads it into a database of its own
and, for a server, applies the feed after that number.

A snapshot directory holds one Parquet file per table and `snapshot.json` with the tables'
definitions and the sequence number. It is written under a temporary name and renamed into
place, so that a directory with that file is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import duckdb

from storage.contexts import ReadContext, WriteContext
from storage.feed import committed_seq

MANIFEST = "snapshot.json"
SKIPPED = frozenset({"reqo_feed"})
"""Tables a snapshot leaves out: the feed itself (a snapshot is the state the feed leads to)."""


def export_snapshot(ctx: ReadContext, parent: Path) -> Path:
    """Write every table as of one moment into `parent/<seq>`, where seq is the change feed's
    sequence number at that moment; returns that directory."""
    conn = ctx.conn
    staging = parent / f".{os.getpid()}-{time.monotonic_ns()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    conn.execute("BEGIN TRANSACTION")
    # One thread: a snapshot (for a trainer, say) must not take the cores that serve requests.
    threads = conn.execute("SELECT current_setting('threads')").fetchone()
    conn.execute("SET threads = 1")
    try:
        seq = committed_seq(conn)
        tables: list[dict[str, Any]] = []
        rows = conn.execute(
            "SELECT table_name, sql FROM duckdb_tables() "
            "WHERE database_name = current_database() AND schema_name = 'main' "
            "ORDER BY table_name"
        ).fetchall()
        for name, sql in rows:
            if name in SKIPPED:
                continue
            path = staging / f"{name}.parquet"
            conn.execute(f"COPY (SELECT * FROM \"{name}\") TO '{path}' (FORMAT parquet)")
            tables.append({"name": name, "sql": sql})
    finally:
        conn.execute("ROLLBACK")  # it wrote nothing
        conn.execute(f"SET threads = {int(threads[0]) if threads else 1}")
    (staging / MANIFEST).write_text(json.dumps({"seq": seq, "tables": tables}))
    target = parent / str(seq)
    if (target / MANIFEST).exists():
        shutil.rmtree(staging, ignore_errors=True)  # the same state was exported meanwhile
    else:
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def snapshot_seq(directory: Path) -> int:
    """The sequence number of a snapshot directory."""
    manifest: dict[str, Any] = json.loads((directory / MANIFEST).read_text())
    return int(manifest["seq"])


def import_snapshot(ctx: WriteContext, directory: Path) -> int:
    """Replace every table of the database by the snapshot's (inside the caller's transaction);
    returns the snapshot's sequence number."""
    seq = load_tables(ctx.conn, directory)
    ctx.schema_changed()
    ctx.touched_interactions()
    return seq


def load_tables(conn: duckdb.DuckDBPyConnection, directory: Path) -> int:
    """Create the snapshot's tables on a connection (replacing any of the same names) and fill
    them; returns the snapshot's sequence number."""
    manifest: dict[str, Any] = json.loads((directory / MANIFEST).read_text())
    for table in manifest["tables"]:
        name = table["name"]
        conn.execute(f'DROP TABLE IF EXISTS "{name}"')
        conn.execute(table["sql"])
        path = directory / f"{name}.parquet"
        conn.execute(f"INSERT INTO \"{name}\" SELECT * FROM read_parquet('{path}')")
    return int(manifest["seq"])
