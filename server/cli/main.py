"""The `reqo` command: serve, import, dataset, train, evaluate, kpi, plot, plugins."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.cli.backup import add_parser as add_backup_parser
from server.cli.check import add_parser as add_check_parser
from server.cli.models import add_parser as add_models_parser
from server.cli.recombee import add_parser as add_recombee_parser
from server.cli.roles import add_parser as add_roles_parser
from server.config import CONFIG_EXIT, Config, ConfigError, load_config
from server.offline.evaluate import add_parser as add_evaluate_parser
from server.offline.kpi import add_parser as add_kpi_parser
from server.offline.optimize import add_parser as add_optimize_parser

if TYPE_CHECKING:
    from storage.database import Database


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as error:
        print(f"reqo: configuration error: {error}", file=sys.stderr)
        # A role's refusal is told apart from its crash: the supervisor stops, not restarts.
        return CONFIG_EXIT if args.command == "role" else 2
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reqo", description="reqo recommendation server")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    serve.add_argument("--host", help="address to listen on (default: the config's server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port)")
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--workers", type=int, help="server processes (default: the config's server.workers)"
    )
    serve.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run on a Ray cluster (its address; default: server.ray.address, else a Ray "
        "instance of this machine's own); needs pip install reqo[ray]",
    )
    serve.set_defaults(run=_serve)
    add_roles_parser(commands)
    add_models_parser(commands)
    add_check_parser(commands)
    add_backup_parser(commands)
    add_recombee_parser(commands)

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

    trainer = commands.add_parser(
        "train", help="fit the configured models and publish new versions of them"
    )
    trainer.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    trainer.add_argument("--db", help="only this database (default: all)")
    trainer.add_argument("--model", help="only this model (default: all)")
    trainer.add_argument(
        "--missing-only", action="store_true", help="only models that have no trained version"
    )
    trainer.set_defaults(run=_train)

    dataset = commands.add_parser("dataset", help="public datasets")
    datasets = dataset.add_subparsers(dest="dataset_command", required=True)
    loader = datasets.add_parser("load", help="load a dataset into a database")
    loader.set_defaults(run=_dataset_load)
    loader.add_argument(
        "name",
        choices=["ml-100k", "fashion-mnist", "fashion-sessions"],
        help="the dataset: MovieLens-100K, Fashion-MNIST (70,000 product images), or "
        "fashion-sessions (part of Fashion-MNIST with SYNTHETIC browsing sessions)",
    )
    loader.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    loader.add_argument("--db", required=True, help="database name from the config")
    loader.add_argument("--path", type=Path, help="a directory with the dataset's files")
    loader.add_argument(
        "--replace", action="store_true", help="empty a database that holds data first"
    )
    loader.add_argument(
        "--skip-if-loaded",
        action="store_true",
        help="do nothing (and succeed) when the database holds interactions (ml-100k) or "
        "items (fashion-mnist) already",
    )
    loader.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    loader.add_argument(
        "--limit",
        type=int,
        default=2000,
        help="fashion-sessions: the first LIMIT pictures of each split (default 2000)",
    )
    loader.add_argument(
        "--users", type=int, default=3000, help="fashion-sessions: simulated users (3000)"
    )
    loader.add_argument("--seed", type=int, default=0, help="fashion-sessions: the seed (0)")

    plot = commands.add_parser("plot", help="draw maps of a database's models")
    plots = plot.add_subparsers(dest="plot_command", required=True)
    embeddings = plots.add_parser(
        "embeddings", help="a 2-D t-SNE map of a model's item vectors, coloured by a property"
    )
    embeddings.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    embeddings.add_argument("--db", required=True, help="database name from the config")
    embeddings.add_argument("--model", required=True, help="a model that embeds items")
    embeddings.add_argument(
        "--color-by", required=True, help="the item property that colours the points"
    )
    embeddings.add_argument(
        "-o",
        "--output",
        type=Path,
        help="the PNG to write (default: DATA_DIR/maps/DB/MODEL-PROPERTY.png, where the console "
        "shows it)",
    )
    embeddings.add_argument(
        "--sample", type=int, default=5000, help="items drawn at random (default 5000)"
    )
    embeddings.add_argument("--seed", type=int, default=0, help="seeds the sample and t-SNE")
    embeddings.set_defaults(run=_plot_embeddings)

    add_evaluate_parser(commands)
    add_kpi_parser(commands)
    add_optimize_parser(commands)

    lister = commands.add_parser("plugins", help="list the plugins and their algorithms")
    lister.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    lister.add_argument("--json", action="store_true", help="print JSON (as GET /-/plugins)")
    lister.set_defaults(run=_plugins)
    return parser


"""The longest request line and headers the server reads."""


def _serve(args: argparse.Namespace) -> int:
    from server.cluster.supervisor import Supervisor

    config = load_config(args.config)
    host = args.host or config.host
    port = config.port if args.port is None else args.port
    workers = config.workers if args.workers is None else args.workers
    if workers < 1:
        raise ConfigError(config.source, "server.workers", f"must be at least 1 (got {workers})")
    # Everything the machine decides, checked before anything opens: afterwards uvicorn and
    # DuckDB would report a problem as a traceback, or (TLS) without naming the file.
    config.check_serving(host)
    config.check_address(host, port)
    config.check_tls()
    config.check_data_dir()
    from server.config_telemetry import LogsConfig
    from server.telemetry.logs import configure_logging

    log_format = (config.logs or LogsConfig()).format
    configure_logging(role="supervisor", level=args.log_level, log_format=log_format)
    if args.ray is not None:
        return _serve_on_ray(config, args)
    supervisor = Supervisor(
        config,
        args.config,
        host=host,
        port=port,
        workers=workers,
        log_level=args.log_level,
    )
    return supervisor.run()


def _serve_on_ray(config: Config, args: argparse.Namespace) -> int:
    from dataclasses import replace

    try:
        from server.distributed.launch import serve_on_ray
    except ImportError as error:
        print(
            f"reqo serve --ray: Ray is not installed ({error}); pip install 'reqo[ray]'",
            file=sys.stderr,
        )
        return 2
    if args.host or args.port is not None:
        config = replace(config, host=args.host or config.host, port=args.port or config.port)
    return serve_on_ray(config, args.config, args.ray or None)


def _open_database(config: Config, name: str, command: str) -> Database | None:
    """A configured database for a command that writes it; None (having said why) while a
    running server holds the file (DuckDB lets one process write a database file)."""
    import duckdb

    from storage.database import Database

    if name not in config.databases:
        raise ConfigError(config.source, f"databases.{name}", "no such database in the config")
    try:
        return Database(name, config.database_path(name))
    except duckdb.IOException:
        print(
            f"reqo {command}: database '{name}' is open in a running server; stop it first",
            file=sys.stderr,
        )
        return None


def _import(args: argparse.Namespace) -> int:
    from storage.bulk import BulkImportError, import_file

    config = load_config(args.config)
    from server.cluster.supervisor import writer_answers

    if config.database_path(args.db).exists() and writer_answers(config):
        return _import_through_writer(config, args)
    database = _open_database(config, args.db, "import")
    if database is None:
        return 1
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


def _import_through_writer(config: Config, args: argparse.Namespace) -> int:
    """Import while the server runs: its writer imports the file (all or nothing, as here), and
    the servers load the result from a snapshot."""
    import asyncio

    from server.cluster.client import ask_local_writer
    from storage.errors import StorageError

    if args.db not in config.databases:
        raise ConfigError(config.source, f"databases.{args.db}", "no such database in the config")
    message = {
        "op": "import",
        "db": args.db,
        "what": args.what,
        "path": str(Path(args.file).resolve()),
        "schema": args.schema,
        "kind": args.kind,
        "format": args.format,
    }

    async def send() -> str:
        reply = await ask_local_writer(config.data_dir, message)
        return str(reply["report"])

    print(f"reqo import: the server is running; its writer imports {args.file}")
    try:
        report = asyncio.run(send())
    except StorageError as error:
        print(f"reqo import: {error.message}", file=sys.stderr)
        return 1
    print(report)
    return 0


def _dataset_load(args: argparse.Namespace) -> int:
    from storage import fashion_mnist, fashion_sessions, movielens
    from storage.errors import InvalidInput

    # What "loaded already" means: ml-100k is about its interactions, fashion-mnist (a catalog
    # for visual similarity, without interactions) about its items.
    fashion = args.name == "fashion-mnist"
    count = fashion_mnist.item_count if fashion else movielens.interaction_count
    what = "items" if fashion else "interactions"
    if args.name == "fashion-sessions" and (args.limit < 1 or args.users < 1):
        print("reqo dataset: --limit and --users must be at least 1", file=sys.stderr)
        return 2
    database = _open_database(load_config(args.config), args.db, "dataset")
    if database is None:
        return 1
    try:
        if args.skip_if_loaded and database.read_sync(count):
            print(f"{args.db}: holds {what} already; not loading {args.name}")
            return 0
        progress = not args.no_progress
        if args.name == "fashion-sessions":
            settings = fashion_sessions.Simulation(users=args.users, seed=args.seed)
            report = fashion_sessions.load(
                database,
                settings,
                limit=args.limit,
                path=args.path,
                replace=args.replace,
                progress=progress,
            )
        else:
            load = fashion_mnist.load if fashion else movielens.load
            report = load(database, args.path, replace=args.replace, progress=progress)
    except InvalidInput as error:  # DatasetError, or BulkImportError from the import
        print(f"reqo dataset: {error}", file=sys.stderr)
        return 1
    finally:
        database.close()
    print(report)
    return 0


def _plot_embeddings(args: argparse.Namespace) -> int:
    from server.offline.plot import PlotError, plot_embeddings

    config = load_config(args.config)
    if args.db not in config.databases:
        raise ConfigError(config.source, f"databases.{args.db}", "no such database in the config")
    try:
        report = plot_embeddings(
            config.models_dir(args.db),
            config.database_path(args.db),
            args.db,
            args.model,
            args.color_by,
            args.output or config.maps_dir(args.db) / f"{args.model}-{args.color_by}.png",
            sample=args.sample,
            seed=args.seed,
        )
    except PlotError as error:
        print(f"reqo plot: {error}", file=sys.stderr)
        return 1
    print(report)
    return 0


def _train(args: argparse.Namespace) -> int:
    """Train in this process; if a running server holds the database, ask it to train instead
    (DuckDB lets one process open a database file for writing)."""
    import duckdb
    from tqdm import tqdm

    from server.api.app import load_registry
    from server.training.artifacts import current_version, train_model, training_order
    from storage.database import Database

    config = load_config(args.config)
    registry = load_registry(config)
    databases = [args.db] if args.db else sorted(config.databases)
    models = [args.model] if args.model else sorted(config.models)
    for name in databases:
        if name not in config.databases:
            raise ConfigError(config.source, f"databases.{name}", "no such database in the config")
    for model in models:
        if model not in config.models:
            raise ConfigError(config.source, f"models.{model}", "no such model in the config")
    for name in databases:
        try:
            database = Database(name, config.database_path(name))
        except duckdb.IOException:
            print(f"{name}: the database is open in a running server; asking it to train")
            for model in models:
                print(f"{name}/{model}: {_train_remotely(config, name, model)}")
            continue
        todo = models
        if args.missing_only:
            versions = {m: current_version(config.models_dir(name), m) for m in models}
            todo = [m for m in models if versions[m] is None]
            for model in sorted(set(models) - set(todo)):
                print(f"{name}/{model}: trained already ({versions[model]})")
        try:
            # An ensemble after its members; it trains members that have no version yet.
            todo = training_order(todo, config.models, registry)
            bar = tqdm(todo, desc=f"training {name}", unit="model", disable=None)
            for model in bar:
                bar.set_postfix_str(model)
                started = time.perf_counter()
                path = train_model(
                    database,
                    config.models[model],
                    registry,
                    config.models_dir(name),
                    config.models,
                )
                bar.write(f"{name}/{model}: {path.name} in {time.perf_counter() - started:.1f} s")
        finally:
            database.close()
    return 0


def _train_remotely(config: Config, database: str, model: str) -> str:
    import json
    import urllib.request

    from server.api.auth import sign

    path = f"/{database}/-/train?model={model}&hmac_timestamp={int(time.time())}"
    path += f"&hmac_sign={sign(path, config.databases[database].token)}"
    scheme = "https" if config.tls is not None else "http"
    request = urllib.request.Request(
        f"{scheme}://{config.host}:{config.port}{path}",
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=3600) as response:
        return str(json.load(response)["trained"][model])


def _plugins(args: argparse.Namespace) -> int:
    import json

    from server.api.admin import plugins_json
    from server.api.app import load_registry

    config = load_config(args.config) if args.config.exists() else None
    if config is not None:
        registry = load_registry(config)
    else:
        from plugins.manager import collect, get_plugin_manager

        registry = collect(get_plugin_manager())
    listing = plugins_json(registry)
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    for plugin in listing["plugins"]:
        version = f" {plugin['version']}" if plugin["version"] else ""
        print(f"{plugin['name']}{version}")
        for kind, key in (("algorithm", "algorithms"), ("embedder", "embedders")):
            for name in plugin[key]:
                # A plugin's embedders are image or text embedders.
                text = key == "embedders" and name in listing["textEmbedders"]
                entry = listing["textEmbedders" if text else key][name]
                print(f"    {'text embedder' if text else kind}  {name}: {entry['description']}")
                for parameter, shown in entry["parameterHelp"].items():
                    print(f"        {_parameter_line(parameter, shown)}")
        if plugin["reqlFunctions"]:
            print(f"    ReQL functions  {', '.join(plugin['reqlFunctions'])}")
    return 0


def _parameter_line(name: str, shown: dict[str, Any]) -> str:
    limits = []
    if "choices" in shown:
        limits.append("one of " + ", ".join(map(str, shown["choices"])))
    if "minimum" in shown:
        limits.append(f">= {shown['minimum']:g}")
    if "maximum" in shown:
        limits.append(f"<= {shown['maximum']:g}")
    extra = f"; {', '.join(limits)}" if limits else ""
    return f"{name} ({shown['type']}, default {shown['default']!r}{extra}): {shown['description']}"


if __name__ == "__main__":
    sys.exit(main())
