"""A full disk refuses writes (507) and nothing else: reads go on, nothing of a refused write is
stored, writes succeed again once space is freed (no restart), and a checkpoint never runs into
the full disk (which would invalidate the database and fail a write that had committed).

The server's data directory is a small tmpfs of its own, so that a filler file fills it. Mounting
one takes root, as the tests and CI run.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from storage.database import CHECKPOINT_FREE_MARGIN, CHECKPOINT_WAL_BYTES
from tests.serving import RunningServer, free_port

MiB = 2**20


@contextlib.contextmanager
def small_disk(directory: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted at `directory` for the block's duration (fails the test
    where mounting is not permitted)."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the tests run as root): {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        # Lazily where something still holds a file there: the mount must not outlive the test.
        if subprocess.run(["umount", str(directory)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Grow a filler file until `leave` bytes (or none) are free on `disk`."""
    filler = disk / "filler"
    chunk = b"\0" * MiB
    with filler.open("ab", buffering=0) as out:
        while (free := shutil.disk_usage(disk).free) > leave:
            try:
                out.write(chunk[: min(len(chunk), free - leave)])
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
    return filler


@contextlib.contextmanager
def server_on_small_disk(directory: Path, size: int) -> Iterator[RunningServer]:
    """A running server whose data directory is a tmpfs of `size` bytes. Only the data: the
    server's log stays on the big disk, so that it can still say what happens."""
    with small_disk(directory / "data", size):
        server = RunningServer(directory, free_port(), {"test": "disk-token"})
        server.start()
        try:
            yield server
        finally:
            server.stop()


def disk_of(server: RunningServer) -> Path:
    """The tmpfs that holds the server's database."""
    return server.directory / "data"


def wal_bytes(server: RunningServer) -> int:
    """The size of the database's WAL (0 once a checkpoint has removed it)."""
    wal = disk_of(server) / "test.duckdb.wal"
    try:
        return wal.stat().st_size
    except FileNotFoundError:  # removed by a checkpoint, perhaps between two looks
        return 0


def assert_refused_for_space(response: requests.Response) -> None:
    """The answer to a write that found the disk full: 507 and why, not a 500."""
    assert response.status_code == 507, response.text
    body = response.json()
    assert body["statusCode"] == 507
    assert "disk holding database 'test' is full" in body["error"]
    assert "not stored" in body["error"]


def stored_views(server: RunningServer, items: list[str]) -> int:
    """How many detail views of `items` the database holds."""
    total = 0
    for item in items:
        response = server.request("GET", f"/items/{item}/detailviews/")
        assert response.status_code == 200, response.text
        total += len(response.json())
    return total


def test_a_full_disk_refuses_writes_with_507_and_takes_them_again_once_freed(
    tmp_path: Path,
) -> None:
    with server_on_small_disk(tmp_path, 16 * MiB) as server:
        check_full_disk(server)


def check_full_disk(server: RunningServer) -> None:
    items = [f"item-{n}" for n in range(5)]
    assert server.request("PUT", "/items/properties/title?type=string").status_code == 201
    for item in items:
        response = server.request(
            "POST", f"/items/{item}", json={"title": f"title of {item}", "!cascadeCreate": True}
        )
        assert response.status_code == 200, response.text
    timestamp = iter(range(1_700_000_000, 1_800_000_000))
    views_stored = 0

    def view(item: str) -> int:
        body = {"userId": "u", "itemId": item, "timestamp": next(timestamp), "cascadeCreate": True}
        return server.request("POST", "/detailviews/", json=body).status_code

    for item in items:
        assert view(item) == 200
        views_stored += 1
    # Another user, who has seen one item: the others are recommended to her.
    seen = {"userId": "w", "itemId": items[0], "timestamp": next(timestamp), "cascadeCreate": True}
    assert server.request("POST", "/detailviews/", json=seen).status_code == 200
    views_stored += 1
    # The models are trained (by the trainer role) and saved in the data directory before the
    # disk is full.
    trained = server.request("POST", "/-/train", json={})
    assert trained.status_code == 200, trained.text
    recommended = server.request("GET", "/recomms/users/w/items/?count=3")
    assert recommended.status_code == 200, recommended.text
    filler = fill(disk_of(server))

    # A large write cannot fit in what the last page of the WAL has left.
    big = server.request(
        "POST", "/items/refused", json={"title": "x" * 64 * 1024, "!cascadeCreate": True}
    )
    assert_refused_for_space(big)
    # Small interactions from many clients at once: the writer commits them in groups, and a
    # group that finds no room is refused whole (none of its jobs is tried again alone). The
    # first few may still fit in the WAL's last page.
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(view, [items[n % len(items)] for n in range(128)]))
    assert set(statuses) <= {200, 507}, statuses
    assert statuses.count(507) > 0
    views_stored += statuses.count(200)

    # Reads go on while the disk is full.
    got = server.request("GET", "/items/item-0")
    assert got.status_code == 200, got.text
    assert got.json()["title"] == "title of item-0"
    recommended = server.request("GET", "/recomms/users/w/items/?count=3")
    assert recommended.status_code == 200, recommended.text
    assert len(recommended.json()["recomms"]) == 3
    assert server.request("GET", "/items/refused").status_code == 404

    # Space comes back: writes succeed again, with no restart.
    filler.unlink()
    after = server.request(
        "POST", "/items/after", json={"title": "x" * 64 * 1024, "!cascadeCreate": True}
    )
    assert after.status_code == 200, after.text
    assert view("after") == 200
    views_stored += 1

    # Every write answered 200 is stored, and none answered 507.
    assert stored_views(server, [*items, "after"]) == views_stored
    listed = server.request("GET", "/items/list/")
    assert sorted(listed.json()) == sorted([*items, "after"])
    assert server.process is not None
    assert server.process.poll() is None
    assert "Traceback" not in server.output()


# Room for a WAL past the checkpoint threshold, and (once the filler is gone) for the checkpoint.
_CHECKPOINT_DISK = 2 * (CHECKPOINT_WAL_BYTES + 8 * MiB) + CHECKPOINT_FREE_MARGIN + 32 * MiB


def test_a_checkpoint_never_runs_into_a_full_disk(tmp_path: Path) -> None:
    with server_on_small_disk(tmp_path, _CHECKPOINT_DISK) as server:
        check_checkpoint_waits_for_room(server)


def check_checkpoint_waits_for_room(server: RunningServer) -> None:
    assert server.request("PUT", "/items/properties/blob?type=string").status_code == 201
    answered: dict[str, int] = {}
    blob_bytes = 256 * 1024

    def write(n: int) -> int:
        # Random text: a checkpoint cannot compress it to next to nothing.
        blob = base64.b64encode(os.urandom(blob_bytes * 3 // 4)).decode()
        response = server.request(
            "POST", f"/items/blob-{n}", json={"blob": blob, "!cascadeCreate": True}
        )
        assert response.status_code in (200, 507), response.text
        if response.status_code == 507:
            assert_refused_for_space(response)
        answered[f"blob-{n}"] = response.status_code
        return response.status_code

    counter = iter(range(10_000))
    while wal_bytes(server) < CHECKPOINT_WAL_BYTES - 4 * MiB:
        assert write(next(counter)) == 200
    # 8 MiB left: the WAL passes the checkpoint threshold (4 MiB on) with far too little room
    # for a checkpoint (which DuckDB's automatic one would start all the same), and then the disk
    # fills up.
    filler = fill(disk_of(server), leave=8 * MiB)
    refusals = 0
    while refusals < 3:
        n = next(counter)
        assert n < 200, "the disk never filled"
        refusals += write(n) == 507
    assert wal_bytes(server) > CHECKPOINT_WAL_BYTES  # postponed, not attempted
    assert answered["blob-0"] == 200
    assert server.request("GET", "/items/blob-0").status_code == 200
    assert "invalidated" not in server.output()

    # Once space is back, the next commit is stored and then checkpointed.
    filler.unlink()
    assert write(next(counter)) == 200
    deadline = time.monotonic() + 10
    while wal_bytes(server) > CHECKPOINT_WAL_BYTES and time.monotonic() < deadline:
        time.sleep(0.05)
    assert wal_bytes(server) < CHECKPOINT_WAL_BYTES

    # Exactly the writes answered 200 are stored.
    listed = server.request("GET", "/items/list/")
    assert listed.status_code == 200, listed.text
    assert sorted(listed.json()) == sorted(i for i, status in answered.items() if status == 200)
    one = server.request("GET", "/items/blob-1")
    assert one.status_code == 200
    assert len(one.json()["blob"]) == blob_bytes
    assert "Traceback" not in server.output()
