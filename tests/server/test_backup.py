"""`reqo backup` while the server runs and writes go on, `reqo restore` through the running
writer, and both offline."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from server.cli.main import main
from tests.plugins.catalog import build_catalog
from tests.serving import RunningServer, free_port

TOKENS = {"test": "backup-token-0123456789"}


def item_ids(backup: Path) -> set[str]:
    return set(pq.read_table(backup / "items.parquet", columns=["$id"]).column(0).to_pylist())


def listed(server: RunningServer) -> set[str]:
    reply = server.request("GET", "/items/list/?count=100000")
    assert reply.status_code == 200, reply.text
    return set(reply.json())


def test_a_backup_during_writes_holds_every_write_acknowledged_before_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = RunningServer(tmp_path, free_port(), TOKENS)
    server.start()
    try:
        acknowledged: list[tuple[float, str]] = []
        sent: list[str] = []
        stop = threading.Event()

        def write() -> None:
            n = 0
            while not stop.is_set():
                item = f"b-{n}"
                n += 1
                sent.append(item)
                if server.request("PUT", f"/items/{item}").status_code == 201:
                    acknowledged.append((time.monotonic(), item))

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(1.0)
        out = tmp_path / "backup"
        started = time.monotonic()
        assert main(["backup", "--config", str(server.config_path), "--db", "test", str(out)]) == 0
        time.sleep(0.5)
        stop.set()
        writer.join()
        backed_up = item_ids(out)
        before = {item for at, item in acknowledged if at < started}
        assert len(before) > 5
        assert before <= backed_up  # every write acknowledged before the backup is in it
        assert backed_up <= set(sent)  # and nothing that was never written
        assert len(backed_up) < len(sent)  # the writes went on past it
        assert "backed up at change" in capsys.readouterr().out

        # A restore through the running writer: every server serves the backup's items only.
        server.request("PUT", "/items/after-the-backup")
        assert main(["restore", "--config", str(server.config_path), "--db", "test", str(out)]) == 0
        assert listed(server) == backed_up
        # The database takes writes again, numbered after the restored ones.
        assert server.request("PUT", "/items/after-the-restore").status_code == 201
        assert listed(server) == backed_up | {"after-the-restore"}
    finally:
        server.stop()


def test_backup_and_restore_offline(tmp_path: Path) -> None:
    database = build_catalog(tmp_path / "data" / "test.duckdb")
    database.close()
    config = tmp_path / "reqo.yaml"
    config.write_text("data_dir: data\ndatabases: {test: {token: backup-token-0123456789}}\n")
    out = tmp_path / "copy"
    assert main(["backup", "--config", str(config), "--db", "test", str(out)]) == 0
    original = item_ids(out)
    assert len(original) == 30
    assert main(["backup", "--config", str(config), "--db", "test", str(out)]) == 1  # not empty
    (tmp_path / "data" / "test.duckdb").unlink()
    assert main(["restore", "--config", str(config), "--db", "test", str(out)]) == 0
    again = tmp_path / "again"
    assert main(["backup", "--config", str(config), "--db", "test", str(again)]) == 0
    assert item_ids(again) == original
    assert main(["restore", "--config", str(config), "--db", "test", str(tmp_path)]) == 1
