"""`reqo models list|rollback`: a database's model versions, and serving an older one.

A rollback points the model's `current` at another version; where a server runs, it also tells
the writer (a `models` entry of the change feed), so that every server swaps the version in
before it answers another request (servers would also notice it within a second)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from server.config import Config, ConfigError, load_config


def add_parser(commands: Any) -> None:
    models = commands.add_parser("models", help="list model versions, or roll a model back")
    actions = models.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the versions of each model, and which is live")
    listing.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    listing.add_argument("--db", required=True, help="database name from the config")
    listing.add_argument("--model", help="one model (default: every configured one)")
    listing.set_defaults(run=_list)
    back = actions.add_parser("rollback", help="serve an older version of a model")
    back.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    back.add_argument("--db", required=True, help="database name from the config")
    back.add_argument("--model", required=True)
    back.add_argument("--to", help="the version (default: the one before the live one)")
    back.set_defaults(run=_rollback)


def _checked(config: Config, database: str, model: str | None) -> list[str]:
    if database not in config.databases:
        raise ConfigError(config.source, f"databases.{database}", "no such database in the config")
    if model is not None and model not in config.models:
        raise ConfigError(config.source, f"models.{model}", "no such model in the config")
    return [model] if model is not None else sorted(config.models)


def _list(args: argparse.Namespace) -> int:
    from server.training.artifacts import model_versions

    config = load_config(args.config)
    directory = config.models_dir(args.db)
    for name in _checked(config, args.db, args.model):
        versions = model_versions(directory, name)
        print(f"{name} ({config.models[name].algorithm}): {len(versions)} version(s)")
        for version in versions:
            shown = version.to_json()
            live = "  live" if version.live else ""
            print(f"  {version.version}  saved {shown['savedAt']}  {shown['nItems']} items{live}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from server.cluster.supervisor import writer_answers
    from server.training.artifacts import VersionError, roll_back

    config = load_config(args.config)
    _checked(config, args.db, args.model)
    try:
        previous, version = roll_back(config.models_dir(args.db), args.model, args.to)
    except VersionError as error:
        print(f"reqo models rollback: {error}", file=sys.stderr)
        return 1
    print(f"{args.model}: {previous} -> {version}")
    if writer_answers(config):
        asyncio.run(_announce(config, args.db, args.model, version))
        print("the running servers serve it now")
    return 0


async def _announce(config: Config, database: str, model: str, version: str) -> None:
    from server.cluster.client import ask_local_writer

    payload = {"versions": {model: version}}
    message = {"op": "write", "db": database, "cmd": "models", "payload": payload}
    await ask_local_writer(config.data_dir, message)
