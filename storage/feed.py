"""The change feed: every committed write of a database, in commit order, by sequence number.

The writer role records one entry (JSON text: the write as it can be applied again) per write
in the same transaction as the write itself, so that an acknowledged write is always in the feed
and a rolled-back one never is. Servers apply the entries to their copies of the database; a
server that was away asks for the entries after the last one it applied. The table keeps the
latest `RETAIN` entries; a server further behind than that loads a snapshot instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import duckdb

logger = logging.getLogger("reqo")

RETAIN = 200_000
"""Entries the feed table keeps (older ones are deleted now and then)."""

TRIM_EVERY = 1_000
"""Commits between two trims of the table."""

RELOAD_ENTRY = '{"cmd":"reload"}'
"""The entry of a write that servers do not replay but load from a snapshot (a bulk import)."""

Entry = tuple[int, str]
"""A sequence number and the write it numbers (JSON text)."""


def committed_seq(conn: duckdb.DuckDBPyConnection) -> int:
    """The sequence number of the last committed entry (0 for a database without one). The
    table always keeps its latest entries (trimming leaves `RETAIN`), so its largest number is
    the last committed."""
    row = conn.execute("SELECT coalesce(max(seq), 0) FROM reqo_feed").fetchone()
    return 0 if row is None else int(row[0])


class ChangeFeed:
    """The feed of the writer's database: stages a group's entries inside its transaction, and
    publishes them to the listeners once the transaction has committed (on the writer
    thread)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.committed_seq = committed_seq(conn)
        self.listeners: list[Callable[[Sequence[Entry]], None]] = []
        self._staged: list[Entry] = []
        self._commits = 0

    def stage(self, conn: duckdb.DuckDBPyConnection, entries: Sequence[str]) -> None:
        """Number a group's entries and insert them (inside the group's open transaction)."""
        start = self.committed_seq + 1
        staged = list(enumerate(entries, start))
        if len(staged) == 1:
            conn.execute("INSERT INTO reqo_feed VALUES (?, ?)", list(staged[0]))
        else:
            conn.execute(
                "INSERT INTO reqo_feed SELECT unnest($seqs::BIGINT[]), unnest($entries::VARCHAR[])",
                {"seqs": [seq for seq, _ in staged], "entries": list(entries)},
            )
        self._staged = staged

    def discard(self) -> None:
        """Forget the staged entries: their transaction rolled back."""
        self._staged = []

    def publish(self, conn: duckdb.DuckDBPyConnection) -> None:
        """The staged entries committed: they are the feed's newest (call before the writes are
        acknowledged, so that a client's next request finds them published)."""
        staged, self._staged = self._staged, []
        if not staged:
            return
        self.committed_seq = staged[-1][0]
        for listener in self.listeners:
            try:
                listener(staged)
            except Exception:
                logger.exception("a change feed listener failed")
        self._commits += 1
        if self._commits % TRIM_EVERY == 0:
            try:
                conn.execute("DELETE FROM reqo_feed WHERE seq <= ?", [self.committed_seq - RETAIN])
            except duckdb.Error:
                logger.exception("trimming the change feed failed")


def entries_after(conn: duckdb.DuckDBPyConnection, seq: int, limit: int) -> list[Entry] | None:
    """Up to `limit` entries after `seq`, oldest first; None where the feed no longer holds the
    entry right after `seq` (it was trimmed: the reader must load a snapshot)."""
    rows = conn.execute(
        "SELECT seq, entry FROM reqo_feed WHERE seq > ? ORDER BY seq LIMIT ?", [seq, limit]
    ).fetchall()
    if rows and rows[0][0] != seq + 1:
        return None
    if not rows and committed_seq(conn) > seq:
        return None
    return [(int(s), str(e)) for s, e in rows]
