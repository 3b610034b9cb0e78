"""How the writer tells DuckDB's failures apart and survives them: the gate that lets the writer
replace a connection while no read uses it, the refusal of a job whose failed statement aborted
the group's transaction, and the classifiers of errors (a full disk, an invalidated database, a
commit that is durable all the same).
"""

from __future__ import annotations

import contextlib
import errno
import threading
from collections.abc import Iterator

import duckdb

from storage.errors import StorageError

_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_DISK_FULL_SIGNS = ("no space left on device", "file too large", "disk quota exceeded")
"""How DuckDB words the OS errors above in its messages (it keeps no errno)."""


class Gate:
    """Lets any number of reads use the connection at once, and the writer replace it (close the
    old one, open a new one) while none does: closing a connection under a running query is not
    safe. Reentrant for reads, since a read may read again within itself."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._replacing = False
        self._local = threading.local()

    def held(self) -> bool:
        """Whether the calling thread is inside a read."""
        depth: int = getattr(self._local, "depth", 0)
        return depth > 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Held by a read for as long as it uses its cursor."""
        depth: int = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._condition:
                self._condition.wait_for(lambda: not self._replacing)
                self._readers += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._condition:
                    self._readers -= 1
                    self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held while the connection is replaced; waits for the reads under way to finish."""
        with self._condition:
            self._condition.wait_for(lambda: not self._replacing)
            # Reads that start from here on wait, so that a stream of them cannot hold off the
            # writer for ever.
            self._replacing = True
            self._condition.wait_for(lambda: self._readers == 0)
        try:
            yield
        finally:
            with self._condition:
                self._replacing = False
                self._condition.notify_all()


class Aborted(Exception):
    """A job refused after a failed statement, which aborted the group's transaction."""

    def __init__(self, refusal: StorageError) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def ensure_alive(conn: duckdb.DuckDBPyConnection, refusal: StorageError) -> None:
    # A statement that failed inside the transaction (e.g. a filter that overflowed) aborts it,
    # and DuckDB would then turn COMMIT into a silent rollback of the whole group.
    try:
        conn.execute("SELECT 1")
    except duckdb.Error:
        raise Aborted(refusal) from None


def rollback(conn: duckdb.DuckDBPyConnection) -> None:
    # The transaction may never have opened, or DuckDB may have aborted it already.
    with contextlib.suppress(duckdb.Error):
        conn.execute("ROLLBACK")


def is_disk_full(error: BaseException) -> bool:
    """Whether a DuckDB (or OS) error says that the filesystem had no room."""
    if isinstance(error, OSError):
        return error.errno in _DISK_FULL_ERRNOS
    if not isinstance(error, duckdb.Error):
        return False  # e.g. a job's own exception that happens to quote such a message
    text = str(error).lower()
    return any(sign in text for sign in _DISK_FULL_SIGNS)


def invalidated(error: BaseException) -> bool:
    """Whether an error comes from a database that DuckDB has invalidated (after a fatal error,
    every statement on every connection of the instance fails until the file is reopened)."""
    return isinstance(error, duckdb.FatalException) or "has been invalidated" in str(error)


def refused_as_invalid(error: BaseException) -> bool:
    """Whether DuckDB refused a statement because of an earlier fatal error (so did nothing)."""
    return "has been invalidated" in str(error)


def durable(error: BaseException) -> bool:
    """Whether a failed COMMIT says that the transaction was stored all the same (DuckDB: "...
    COMMIT succeeded and is durable, but the autocheckpoint failed")."""
    return isinstance(error, duckdb.Error) and "is durable" in str(error)


def is_dead(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether the connection's database has been invalidated."""
    try:
        conn.execute("SELECT 1").fetchall()
    except duckdb.Error as error:
        return invalidated(error)
    return False
