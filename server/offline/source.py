"""Where an offline command (evaluate, kpi, plot) reads a database: its file, opened read-only,
or, while a server runs (its writer holds the file), the writer's latest snapshot, loaded into
memory. Either way the command never stops, or slows, the server's writes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb

from server.cluster.client import WriterClient
from server.cluster.paths import socket_path
from storage.errors import StorageError
from storage.export import load_tables

WRITER_WAIT = 1.0
"""Seconds to wait for a writer to answer before the file's lock is reported instead."""


def connect_for_reading(path: Path) -> duckdb.DuckDBPyConnection:
    """A connection that reads the database at `path` (`<data_dir>/<name>.duckdb`); raises
    duckdb.IOException where the file is held and no writer answers."""
    try:
        conn = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException:
        snapshot = writer_snapshot(path.parent, path.stem)
        if snapshot is None:
            raise
        conn = duckdb.connect(":memory:")
        load_tables(conn, snapshot)
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def writer_snapshot(data_dir: Path, database: str) -> Path | None:
    """The directory of a fresh snapshot from the running writer; None where none runs."""
    socket = socket_path(data_dir, "writer")
    if not socket.exists():
        return None

    async def ask() -> Path:
        client = WriterClient(socket, wait=WRITER_WAIT)
        try:
            path, _ = await client.snapshot(database)
            return path
        finally:
            await client.close()

    try:
        return asyncio.run(ask())
    except (StorageError, OSError):
        return None
