"""`reqo kpi`: what the recommendations earned, per scenario and per variant, read from the
database file (read-only; stop the server that holds it, or ask it `GET /{db}/-/kpi`).

    reqo kpi --config reqo.yaml --db demo [--scenario home] [--since TIME] [--json]
             [--plot ctr.png] [--bucket 1h]

Prints the same figures as the endpoint as a table; `--plot` draws each variant's CTR per time
bucket (matplotlib, Agg).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.config import ConfigError, load_config

if TYPE_CHECKING:
    import duckdb

    from storage.kpi import Bucket

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_COLUMNS = (
    ("recommendations", "recomms"),
    ("clicks", "clicks"),
    ("ctr", "CTR"),
    ("purchases", "purchases"),
    ("conversion", "conversion"),
    ("revenue", "revenue"),
    ("profit", "profit"),
)


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the `kpi` sub-command to the `reqo` parser's sub-commands."""
    kpi = commands.add_parser(
        "kpi",
        help="recommendations, clicks, purchases, revenue, CTR and conversion per scenario and "
        "variant",
        description="KPIs from the recommendation log and the interactions that carry a "
        "recommId. Read-only: stop a server that holds the database (or use GET /{db}/-/kpi).",
    )
    kpi.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    kpi.add_argument("--db", required=True, help="database name from the config")
    kpi.add_argument("--scenario", help="only this scenario")
    kpi.add_argument("--since", type=_time, help="only recommendations since (epoch s or ISO)")
    kpi.add_argument("--json", action="store_true", help="print the endpoint's JSON instead")
    kpi.add_argument("--plot", type=Path, help="write a PNG of CTR over time per variant")
    kpi.add_argument(
        "--bucket", type=_duration, default=3600.0, help="the plot's time bucket (1h; 30m, 1d)"
    )
    kpi.set_defaults(run=run)
    parser: argparse.ArgumentParser = kpi
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the KPIs (and draw the plot); 0, or 1 with a message."""
    from server.api.kpi import report
    from storage.errors import StorageError
    from storage.kpi import outcomes, series

    config = load_config(args.config)
    if args.db not in config.databases:
        raise ConfigError(config.source, f"databases.{args.db}", "no such database in the config")
    path = config.database_path(args.db)
    if not path.exists():
        return _fail(f"database '{args.db}' has no file yet ({path})")
    try:
        conn = _open(path)
    except OSError as error:
        return _fail(str(error))
    try:
        from storage.database import ReadContext, load_schema

        ctx = ReadContext(conn, load_schema(conn))
        found = outcomes(ctx, args.scenario, args.since)
        buckets = series(ctx, args.bucket, args.scenario, args.since) if args.plot else []
    finally:
        conn.close()
    try:
        document = report(found, config.scenarios, args.scenario, args.since)
    except StorageError as error:
        return _fail(error.message)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(table(document))
    if args.plot:
        plot_ctr(buckets, args.plot, args.bucket)
        print(f"\nwrote {args.plot}")
    return 0


def _open(path: Path) -> duckdb.DuckDBPyConnection:
    import duckdb

    from server.offline.source import connect_for_reading

    try:
        conn = connect_for_reading(path)
    except duckdb.IOException as error:
        raise OSError(
            f"{path} is open in a running server (ask it: GET /{{db}}/-/kpi), or unreadable: "
            f"{error}"
        ) from None
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def table(document: dict[str, Any]) -> str:
    """The KPI document as a Markdown table: a row per scenario, then one per variant."""
    lines = [
        "| scenario | variant | " + " | ".join(title for _, title in _COLUMNS) + " |",
        "|---|---|" + "---:|" * len(_COLUMNS),
    ]
    for entry in document["scenarios"]:
        scenario = entry["scenario"] or "(none)"
        lines.append(_row(scenario, "all", entry))
        for variant in entry["variants"]:
            if variant["variant"] is not None or len(entry["variants"]) > 1:
                lines.append(_row("", variant["variant"] or "(none)", variant))
    return "\n".join(lines)


def _row(scenario: str, variant: str, figures: dict[str, Any]) -> str:
    cells = []
    for key, _ in _COLUMNS:
        value = figures[key]
        if value is None:
            cells.append("-")
        elif key in ("ctr", "conversion"):
            cells.append(f"{100 * value:.2f} %")
        elif key in ("revenue", "profit"):
            cells.append(f"{value:,.2f}")
        else:
            cells.append(f"{value:,}")
    return f"| {scenario} | {variant} | " + " | ".join(cells) + " |"


def plot_ctr(buckets: Sequence[Bucket], path: Path, bucket_seconds: float) -> None:
    """Each (scenario, variant)'s CTR per time bucket, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lines: dict[str, tuple[list[int], list[float]]] = {}
    for b in buckets:
        label = f"{b.scenario or '(none)'} / {b.variant or '(none)'}"
        times, values = lines.setdefault(label, ([], []))
        times.append(int(b.start))
        values.append(100 * b.clicks / b.served if b.served else 0.0)
    figure, axes = plt.subplots(figsize=(9, 4.5))
    for label, (times, values) in sorted(lines.items()):
        axes.plot(
            np.array(times, dtype="datetime64[s]"), values, marker="o", markersize=3, label=label
        )
    axes.set_ylabel("CTR (%)")
    axes.set_xlabel(f"time (UTC), buckets of {_describe(bucket_seconds)}")
    axes.set_title("CTR per scenario and variant")
    if lines:
        axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _describe(seconds: float) -> str:
    for unit, size in sorted(_UNITS.items(), key=lambda u: -u[1]):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3600, 30m, 1h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def _time(text: str) -> float:
    from storage.errors import BadParameter
    from storage.timestamps import parse_timestamp

    try:
        return parse_timestamp(text, "since") / 1e6
    except BadParameter as error:
        raise argparse.ArgumentTypeError(error.message) from None


def _fail(message: str) -> int:
    print(f"reqo kpi: {message}", file=sys.stderr)
    return 1
