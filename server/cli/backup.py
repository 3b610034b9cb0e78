"""`reqo backup --db D OUT` and `reqo restore --db D IN`: a consistent copy of a database while
the server runs and writes go on, and bringing one back.

A backup is a snapshot directory (storage.export: every table as Parquet at one change feed
sequence number, `snapshot.json`), taken by the running writer in one read transaction, or from
the file when no server runs. A restore replaces every table by the backup's: through the
running writer (servers then load a fresh snapshot, as after a bulk import), or in the file.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from server.config import Config, ConfigError, load_config


def add_parser(commands: Any) -> None:
    backup = commands.add_parser("backup", help="copy a database consistently (while it serves)")
    backup.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    backup.add_argument("--db", required=True, help="database name from the config")
    backup.add_argument("out", type=Path, help="a new directory for the backup")
    backup.set_defaults(run=_backup)
    restore = commands.add_parser("restore", help="replace a database by a backup")
    restore.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    restore.add_argument("--db", required=True, help="database name from the config")
    restore.add_argument("backup", type=Path, help="a directory that `reqo backup` wrote")
    restore.set_defaults(run=_restore)


def _configured(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if args.db not in config.databases:
        raise ConfigError(config.source, f"databases.{args.db}", "no such database in the config")
    return config


def _backup(args: argparse.Namespace) -> int:
    from server.cluster.supervisor import writer_answers

    config = _configured(args)
    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        print(f"reqo backup: {out} exists and is not empty", file=sys.stderr)
        return 1
    if writer_answers(config):
        snapshot, seq = asyncio.run(_from_writer(config, args.db))
        shutil.copytree(snapshot, out, dirs_exist_ok=True)
    else:
        database = _open(config, args.db, "backup")
        if database is None:
            return 1
        try:
            seq = _export(database, out)
        finally:
            database.close()
    print(f"{args.db}: backed up at change {seq} into {out}")
    return 0


def _export(database: Any, out: Path) -> int:
    from storage.export import export_snapshot

    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as parent:
        path: Path = database.read_sync(lambda ctx: export_snapshot(ctx, Path(parent)))
        shutil.copytree(path, out, dirs_exist_ok=True)
        return int(path.name)


async def _from_writer(config: Config, database: str) -> tuple[Path, int]:
    from server.cluster.client import ask_local_writer

    reply = await ask_local_writer(config.data_dir, {"op": "snapshot", "db": database})
    return Path(reply["path"]), int(reply["seq"])


def _restore(args: argparse.Namespace) -> int:
    from server.cluster.supervisor import writer_answers
    from storage.errors import StorageError
    from storage.export import MANIFEST, import_snapshot

    config = _configured(args)
    source: Path = args.backup.resolve()
    if not (source / MANIFEST).is_file():
        print(f"reqo restore: {source} is not a backup (no {MANIFEST})", file=sys.stderr)
        return 1
    if writer_answers(config):
        try:
            asyncio.run(_through_writer(config, args.db, source))
        except StorageError as error:
            print(f"reqo restore: {error.message}", file=sys.stderr)
            return 1
        print(f"{args.db}: restored from {source}; the running servers serve it now")
        return 0
    database = _open(config, args.db, "restore")
    if database is None:
        return 1
    try:
        database.write_sync(lambda ctx: import_snapshot(ctx, source))
    finally:
        database.close()
    print(f"{args.db}: restored from {source}")
    return 0


async def _through_writer(config: Config, database: str, source: Path) -> None:
    from server.cluster.client import ask_local_writer

    await ask_local_writer(config.data_dir, {"op": "restore", "db": database, "path": str(source)})


def _open(config: Config, name: str, command: str) -> Any:
    import duckdb

    from storage.database import Database

    try:
        return Database(name, config.database_path(name))
    except duckdb.IOException:
        print(f"reqo {command}: database '{name}' is held by another process", file=sys.stderr)
        return None
