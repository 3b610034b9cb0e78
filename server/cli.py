"""The `reqo` command: serve, import."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from pathlib import Path

from server.config import Config, ConfigError, load_config


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as error:
        print(f"reqo: configuration error: {error}", file=sys.stderr)
        return 2
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reqo", description="reqo recommendation server")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    serve.add_argument("--host", help="address to listen on (default: the config's server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=_serve)

    importer = commands.add_parser(
        "import", help="bulk-load items, users or interactions from CSV, Parquet or NDJSON"
    )
    importer.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    importer.add_argument("--db", required=True, help="database name from the config")
    importer.add_argument("what", choices=["items", "users", "interactions"])
    importer.add_argument("file", type=Path)
    importer.add_argument(
        "--schema",
        help="property types, 'name:type,...' or a YAML/JSON file (default: from the columns)",
    )
    importer.add_argument(
        "--kind",
        help="interaction kind for files without a 'type' column (e.g. detail_views, purchases)",
    )
    importer.add_argument(
        "--format", choices=["csv", "parquet", "ndjson"], help="default: from the file name"
    )
    importer.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    importer.set_defaults(run=_import)
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app

    config = load_config(args.config)
    host = args.host or config.host
    port = config.port if args.port is None else args.port
    config.check_serving(host)
    # A batch allocates hundreds of thousands of short-lived objects; with the default
    # thresholds the collector ran often enough to take half of a batch's parsing time.
    gc.set_threshold(100_000, 50, 100)
    tls = {}
    if config.tls is not None:
        tls = {"ssl_certfile": str(config.tls.certfile), "ssl_keyfile": str(config.tls.keyfile)}
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
        **tls,  # type: ignore[arg-type]
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    from storage.bulk import BulkImportError, import_file
    from storage.database import Database

    config: Config = load_config(args.config)
    if args.db not in config.databases:
        raise ConfigError(config.source, f"databases.{args.db}", "no such database in the config")
    database = Database(args.db, config.database_path(args.db))
    try:
        report = import_file(
            database,
            args.what,
            args.file,
            schema=args.schema,
            kind=args.kind,
            file_format=args.format,
            progress=not args.no_progress,
        )
    except BulkImportError as error:
        print(f"reqo import: {error}", file=sys.stderr)
        return 1
    finally:
        database.close()
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
