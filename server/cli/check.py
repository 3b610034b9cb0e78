"""`reqo check --config FILE`: every start-up check of `reqo serve`, without serving: the file
(keys, values, models, scenarios), the plugins, TLS files, the data directory, and each
scenario's ReQL and property names against its databases' schemas (read from their files, or
from the running writer's snapshot)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(commands: Any) -> None:
    check = commands.add_parser("check", help="check a configuration without serving")
    check.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    check.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    from server.config import ConfigError

    try:
        checked = check(args.config)
    except ConfigError as error:
        print(f"reqo check: {error}", file=sys.stderr)
        return 1
    print(f"{args.config}: {checked}")
    return 0


def check(path: Path) -> str:
    """Run the checks; a summary of what was checked, or ConfigError."""
    import duckdb

    from server.api.app import load_registry
    from server.config import ConfigError, load_config
    from server.offline.source import connect_for_reading
    from server.serving.scenario_check import check_scenarios
    from storage.contexts import load_schema
    from storage.schema import Entity, EntitySchema, Schema

    config = load_config(path)
    config.check_tls()
    config.check_data_dir()
    registry = load_registry(config)  # the plugins, and every model against its algorithm
    schemas: dict[str, Schema] = {}
    for name in config.databases:
        file = config.database_path(name)
        if not file.exists():
            continue  # created empty at start-up: checked against no properties below
        try:
            conn = connect_for_reading(file)
        except duckdb.IOException as error:
            raise ConfigError(
                config.source, f"databases.{name}", f"cannot be read: {error}"
            ) from None
        try:
            schemas[name] = load_schema(conn)
        finally:
            conn.close()
    for name in config.databases:
        if name not in schemas:
            schemas[name] = Schema(EntitySchema(Entity.ITEM), EntitySchema(Entity.USER))
    check_scenarios(config, schemas, registry.functions)
    return (
        f"ok: {len(config.databases)} database(s), {len(config.models)} model(s), "
        f"{len(config.scenarios)} scenario(s)"
    )
