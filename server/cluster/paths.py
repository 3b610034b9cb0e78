"""Where the roles of one data directory meet: the writer's and the trainer's sockets, the
committed sequence number of each database, and the snapshots."""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import tempfile
from pathlib import Path

_MAX_SOCKET_PATH = 100
"""Unix socket paths are limited to about 108 bytes."""


def runtime_dir(data_dir: Path) -> Path:
    """The data directory's folder for the roles' meeting points."""
    path = data_dir / ".reqo"
    path.mkdir(parents=True, exist_ok=True)
    return path


def socket_path(data_dir: Path, role: str) -> Path:
    """The Unix socket of a role (`writer`, `trainer`) serving the data directory: in it where
    the path is short enough, else in a private folder of the temporary directory."""
    path = runtime_dir(data_dir) / f"{role}.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    private = Path(tempfile.gettempdir()) / f"reqo-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    return private / f"{digest}-{role}.sock"


def snapshots_dir(data_dir: Path, database: str) -> Path:
    path = runtime_dir(data_dir) / "snapshots" / database
    path.mkdir(parents=True, exist_ok=True)
    return path


_SEQ = struct.Struct("<q")


class CommittedSeq:
    """The last committed change feed sequence number of a database, in a small file that every
    process on the machine maps: the writer stores it after each commit (before acknowledging
    the commit's writes); a server reads it as a request arrives, at the cost of a memory read."""

    def __init__(self, data_dir: Path, database: str, *, writable: bool = False) -> None:
        path = runtime_dir(data_dir) / f"{database}.seq"
        if writable and (not path.exists() or path.stat().st_size != _SEQ.size):
            path.write_bytes(_SEQ.pack(0))
        self._file = path.open("r+b" if writable else "rb")
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        self._map = mmap.mmap(self._file.fileno(), _SEQ.size, access=access)

    def get(self) -> int:
        value: int = _SEQ.unpack_from(self._map, 0)[0]
        return value

    def set(self, seq: int) -> None:
        _SEQ.pack_into(self._map, 0, seq)

    def close(self) -> None:
        self._map.close()
        self._file.close()
