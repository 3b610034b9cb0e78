"""`reqo evaluate`: offline evaluation of models on a database's interactions.

    reqo evaluate --config reqo.yaml --db demo [--models a,b]
                  [--protocol random|loo|temporal|cold-items|cold-users]
                  [--split 0.8,0.1,0.1] [--at TIME | --quantile Q] [--k 10,20] [--seeds 1,2,3]
                  [--cold-share 0.1] [--rank-among cold|all] [--cold-user-interactions N]
                  [--feedback implicit|weighted] [--include-seen] [--out DIR] [--no-progress]

Prints a Markdown table and writes a JSON record and a PNG chart under `--out`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.config import ConfigError, load_config

if TYPE_CHECKING:
    from storage.snapshot import Snapshot


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the `evaluate` sub-command to the `reqo` parser's sub-commands."""
    evaluate = commands.add_parser(
        "evaluate",
        help="measure models offline (top-K ranking metrics on held-out interactions)",
        description="Split a database's interactions, fit each model on the train part and "
        "rank every item for the test users. Read-only: stop a server that holds the database.",
    )
    evaluate.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    evaluate.add_argument("--db", required=True, help="database name from the config")
    evaluate.add_argument(
        "--models",
        type=_names,
        help="model names from the config, or algorithm names (default params); "
        "default: every configured model",
    )
    evaluate.add_argument(
        "--protocol",
        choices=["random", "loo", "temporal", "cold-items", "cold-users"],
        default="random",
        help="random: per-user ratio split (RecBole's); loo: each user's last interaction; "
        "temporal: a global cut in time; cold-items: a share of the items held out with all "
        "their interactions; cold-users: a share of the users keep only their first "
        "interactions (default: random)",
    )
    evaluate.add_argument(
        "--cold-share",
        type=_share,
        help="cold protocols: the share of items or users that are new (default 0.1)",
    )
    evaluate.add_argument(
        "--rank-among",
        choices=["cold", "all"],
        help="cold-items: rank each test user's cold items among the cold items (default) "
        "or among all items",
    )
    evaluate.add_argument(
        "--cold-user-interactions",
        type=_count,
        help="cold-users: how many of its first interactions a new user keeps in train "
        "(default 0: the user is known by its properties alone)",
    )
    evaluate.add_argument(
        "--split",
        type=_split,
        default=(0.8, 0.1, 0.1),
        help="train,valid,test ratios (default 0.8,0.1,0.1); temporal: the second is the "
        "validation share of the interactions before the cut",
    )
    cut = evaluate.add_mutually_exclusive_group()
    cut.add_argument("--at", type=_time, help="temporal cut: epoch seconds or an ISO time")
    cut.add_argument(
        "--quantile", type=_quantile, help="temporal cut at this quantile of the times (0.9)"
    )
    evaluate.add_argument("--k", type=_ks, default=(10, 20), help="cut-offs (default 10,20)")
    evaluate.add_argument("--seeds", type=_seeds, default=(1,), help="seeds (default 1)")
    evaluate.add_argument(
        "--feedback",
        choices=["implicit", "weighted"],
        default="implicit",
        help="implicit: every interaction weighs 1; weighted: the model's kind weights",
    )
    evaluate.add_argument(
        "--include-seen",
        action="store_true",
        help="rank the items the user interacted with before the test too (RecBole's "
        "sequential protocol); by default they are left out",
    )
    evaluate.add_argument(
        "--out",
        type=Path,
        help="directory for the JSON and PNG files (default: DATA_DIR/evaluation, where the "
        "console reads them)",
    )
    evaluate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    evaluate.set_defaults(run=run)
    parser: argparse.ArgumentParser = evaluate
    return parser


def run(args: argparse.Namespace) -> int:
    """Run an evaluation from parsed arguments; 0, or 1 (data) / 2 (usage) with a message."""
    from plugins.evaluation.cold import COLD_SHARE, COLD_USER_INTERACTIONS
    from plugins.evaluation.harness import COLD_PROTOCOLS, ModelSpec, Protocol, evaluate
    from plugins.evaluation.report import describe, markdown_table, write_outputs
    from plugins.evaluation.splits import SplitError
    from server.api.app import load_registry
    from server.training.artifacts import offline_algorithm
    from server.training.item_vectors import text_provider_for

    if args.protocol != "temporal" and (args.at is not None or args.quantile is not None):
        return _fail("--at and --quantile belong to --protocol temporal", 2)
    if args.protocol not in COLD_PROTOCOLS and args.cold_share is not None:
        return _fail("--cold-share belongs to --protocol cold-items or cold-users", 2)
    if args.protocol != "cold-items" and args.rank_among is not None:
        return _fail("--rank-among belongs to --protocol cold-items", 2)
    if args.protocol != "cold-users" and args.cold_user_interactions is not None:
        return _fail("--cold-user-interactions belongs to --protocol cold-users", 2)
    config = load_config(args.config)
    if args.db not in config.databases:
        raise ConfigError(config.source, f"databases.{args.db}", "no such database in the config")
    registry = load_registry(config)
    names = list(args.models) if args.models else sorted(config.models)
    specs = []
    for name in names:
        model = config.models.get(name)
        if model is not None:
            algorithm = offline_algorithm(config.models, registry, name)
            specs.append(ModelSpec(name, algorithm, model.params, model.weights))
        elif name in registry.algorithms:
            specs.append(ModelSpec(name, registry.algorithms[name]))
        else:
            known = ", ".join(sorted(set(config.models) | set(registry.algorithms)))
            return _fail(
                f"unknown model '{name}': neither configured nor an algorithm ({known})", 2
            )
    protocol = Protocol(
        name=args.protocol,
        split=args.split,
        at=args.at,
        quantile=0.9 if args.quantile is None else args.quantile,
        ks=args.k,
        seeds=args.seeds,
        feedback=args.feedback,
        exclude_seen=not args.include_seen,
        cold_share=COLD_SHARE if args.cold_share is None else args.cold_share,
        rank_among=args.rank_among or "cold",
        cold_user_interactions=(
            COLD_USER_INTERACTIONS
            if args.cold_user_interactions is None
            else args.cold_user_interactions
        ),
    )
    path = config.database_path(args.db)
    if not path.exists():
        return _fail(f"database '{args.db}' has no file yet ({path}): nothing to evaluate", 1)
    try:
        snapshot = read_snapshot(path)
    except DatabaseBusy:
        return _fail(
            f"database '{args.db}' is open in a running server; stop the server first "
            "(DuckDB lets one process hold a database file)",
            1,
        )
    except NotADatabase as error:
        return _fail(f"{path} is not a reqo database ({error})", 1)
    if not len(snapshot.users):
        return _fail(f"database '{args.db}' holds no interactions: nothing to evaluate", 1)
    try:
        # Text vectors are embedded as a model asks for them (no server's cache at hand here).
        texts = text_provider_for(registry, snapshot.item_properties, snapshot.n_items)
        evaluation = evaluate(
            snapshot,
            specs,
            protocol,
            progress=not args.no_progress,
            item_text_vectors=texts,
        )
    except SplitError as error:
        return _fail(str(error), 1)
    print(describe(evaluation, args.db))
    print()
    print(markdown_table(evaluation))
    record, chart = write_outputs(evaluation, args.db, args.out or config.evaluations_dir)
    print(f"\nwrote {record} and {chart}")
    return 0


class DatabaseBusy(Exception):
    """Another process (a running server) holds the database file."""


class NotADatabase(Exception):
    """A DuckDB file without reqo's tables."""


def read_snapshot(path: Path) -> Snapshot:
    """A snapshot of the database file, opened read-only (evaluating writes nothing, not even
    the start-up bootstrap a `Database` runs); DatabaseBusy where a server holds the file,
    NotADatabase where the file is not a reqo database."""
    import duckdb

    from server.offline.source import connect_for_reading
    from storage.database import ReadContext, load_schema
    from storage.snapshot import take_snapshot

    try:
        conn = connect_for_reading(path)
    except duckdb.IOException as error:
        raise DatabaseBusy(str(error)) from error
    try:
        conn.execute("SET TimeZone = 'UTC'")
        return take_snapshot(ReadContext(conn, load_schema(conn)))
    except duckdb.CatalogException as error:
        raise NotADatabase(str(error)) from error
    finally:
        conn.close()


def _fail(message: str, code: int) -> int:
    print(f"reqo evaluate: {message}", file=sys.stderr)
    return code


# -- argument types (argparse turns their ArgumentTypeError into a usage error, exit code 2) --


def _listed(convert: Callable[[str], Any], what: str) -> Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        parts = [part.strip() for part in text.split(",")]
        try:
            values = tuple(convert(part) for part in parts if part)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{what}: {error}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"{what}: give at least one")
        return values

    return parse


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} is not an integer >= 1")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a count is 0 or more, not {text}")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_listed(str, "model names")(text)))


def _ks(text: str) -> tuple[int, ...]:
    return tuple(sorted(set(_listed(_positive_int, "K")(text))))


def _seeds(text: str) -> tuple[int, ...]:
    return tuple(dict.fromkeys(_listed(int, "seeds")(text)))


def _split(text: str) -> tuple[float, float, float]:
    from plugins.evaluation.splits import SplitError, normalise_ratios

    ratios = _listed(float, "split")(text)
    try:
        return normalise_ratios(ratios)
    except SplitError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _quantile(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a quantile is between 0 and 1, not {text}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a share is between 0 and 1 (exclusive), not {text}")
    return value


def _time(text: str) -> float:
    from plugins.evaluation.splits import SplitError, parse_time

    try:
        return parse_time(text)
    except SplitError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
