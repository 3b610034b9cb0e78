"""ReQL filters over a synthetic catalog of 1,000,000 items: evaluation, compilation and SQL.

    .venv/bin/python -m bench.reql_filter [--items N] [--repeat N] [--directory DIR]
                                          [--rebuild] [--no-report]

The catalog (10 typed properties, deterministic values) is built once in a DuckDB file under
`--directory` (by default a folder in the system's temporary directory) and reused by later runs
while it is complete. Figures are medians over `--repeat` runs:

- the typical filter through `ExpressionEngine.mask`, cold (a fresh engine and reql's compile
  cache cleared: compile, SQL, mask) and cached (the same engine again: the result cache answers);
- the compilation (parse, check, compile) of a 20-term expression, with the cache cleared;
- the compiled SQL against the same predicate written by hand with inline literals, both fetched
  with `fetchnumpy`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

import reql
from bench._report import publish
from server.serving.expressions import compile_for, current_time
from server.serving.reql_engine import ExpressionEngine
from storage.catalog import add_property
from storage.database import Database, ReadContext, WriteContext
from storage.schema import Entity, PropertyType

ITEMS = 1_000_000
SEED = 20_240_601
GENERATOR = "2"
"""Bump when the generated values change, so that an old file is rebuilt rather than reused."""
MARKER = "bench_reql_filter"

PROPERTIES: tuple[tuple[str, PropertyType], ...] = (
    ("price", PropertyType.DOUBLE),
    ("category", PropertyType.STRING),
    ("in_stock", PropertyType.BOOLEAN),
    ("brand", PropertyType.STRING),
    ("year", PropertyType.INT),
    ("published", PropertyType.TIMESTAMP),
    ("tags", PropertyType.SET),
    ("rating", PropertyType.DOUBLE),
    ("stock", PropertyType.INT),
    ("title", PropertyType.STRING),
)

TYPICAL = """'price' < 100 and 'category' in {"a","b"} and 'in_stock'"""
HAND_WRITTEN = (
    "SELECT \"$idx\" AS i FROM items WHERE price < 100 AND category IN ('a','b') AND in_stock"
)
TWENTY_TERMS = " and ".join(
    [
        "'price' >= 1",
        "'price' < 900",
        """'category' in {"a", "b", "c", "d", "e"}""",
        "'in_stock'",
        """'brand' != "brand-7\"""",
        "'year' >= 1990",
        "'year' <= 2020",
        "'published' > 1500000000",
        "'published' < now()",
        """"tag-3" not in 'tags'""",
        "size('tags') >= 1",
        "'rating' > 1.5",
        "'rating' != null",
        "'stock' > 0",
        "'stock' % 2 == 0",
        """'title' != \"\"""",
        """starts_with('title', "Item")""",
        "'price' * 1.2 < 1000",
        "not ('category' == \"t\")",
        "('stock' < 500 or 'year' > 2000)",
    ]
)

TARGET_COLD_MS = 100.0
TARGET_CACHED_MS = 1.0
TARGET_COMPILE_MS = 2.0
TARGET_RATIO = 1.2


# -- the synthetic catalog ------------------------------------------------------------------------


STREAMS = 12
"""Independent pseudo-random numbers per row, `u0` .. `u11`."""


def _uniform_columns(count: int) -> str:
    """A query of `i` over range(count) and `u0` .. `u11`, deterministic numbers in [0, 1).

    Each `u{k}` is a 32-bit integer hash (two xor-shift-multiply rounds, Thomas Mueller's) of `i`
    xor a seed of its own, in plain integer arithmetic: the values depend neither on DuckDB's
    hash or random functions nor on the threads that run the INSERT. One subquery per round keeps
    the SQL linear in size.
    """
    modulus = 2**32
    seeds = [(SEED * (2 * k + 1) * 2654435761) % modulus for k in range(STREAMS)]
    query = (
        "SELECT range AS i, "
        + ", ".join(f"xor(range, {seed}) AS h{k}" for k, seed in enumerate(seeds))
        + f" FROM range({count})"
    )
    for _ in range(2):
        mixed = ", ".join(
            f"(xor(h{k} >> 16, h{k}) * 73244475) % {modulus} AS h{k}" for k in range(STREAMS)
        )
        query = f"SELECT i, {mixed} FROM ({query})"
    uniform = ", ".join(f"xor(h{k} >> 16, h{k}) / {float(modulus)} AS u{k}" for k in range(STREAMS))
    return f"SELECT i, {uniform} FROM ({query})"


def _fill_sql(count: int) -> str:
    columns = {
        '"$idx"': "i",
        '"$id"': "'item-' || i",
        "price": "round(u0 * 1000, 2)",
        "category": "chr(97 + CAST(floor(u1 * 20) AS INTEGER))",
        "in_stock": "u2 < 0.7",
        "brand": "'brand-' || CAST(floor(u3 * 200) AS BIGINT)",
        "year": "1980 + CAST(floor(u4 * 45) AS BIGINT)",
        "published": "epoch_ms(1500000000000 + CAST(floor(u5 * 250000000) AS BIGINT) * 1000)",
        # One to three distinct tags out of 50 (t, t + d, t + 2d modulo 50 with 0 < d < 25).
        "tags": (
            "list_slice(['tag-' || (t % 50), 'tag-' || ((t + d) % 50), "
            "'tag-' || ((t + 2 * d) % 50)], 1, n)"
        ),
        "rating": "CASE WHEN u6 < 0.05 THEN NULL ELSE round(1 + u7 * 4, 1) END",
        "stock": "CAST(floor(u8 * 1000) AS BIGINT)",
        "title": "'Item ' || i",
    }
    names = ", ".join(columns)
    values = ", ".join(columns.values())
    return (
        f"INSERT INTO items ({names}) SELECT {values} FROM ("
        "SELECT *, CAST(floor(u9 * 50) AS BIGINT) AS t, "
        "1 + CAST(floor(u10 * 24) AS BIGINT) AS d, "
        f"1 + CAST(floor(u11 * 3) AS BIGINT) AS n FROM ({_uniform_columns(count)}))"
    )


def _complete(database: Database, count: int) -> bool:
    """Whether the file holds the finished catalog of this generator and size."""
    wanted = dict(PROPERTIES)
    have = {p.name: p.type for p in database.schema.items.properties}
    if have != wanted:
        return False

    def check(ctx: ReadContext) -> bool:
        marker = ctx.conn.execute("SELECT value FROM reqo_meta WHERE key = ?", [MARKER]).fetchone()
        sizes = ctx.conn.execute(
            'SELECT count(*), coalesce(max("$idx"), -1), count(DISTINCT "$id") FROM items'
        ).fetchone()
        expected = f"{GENERATOR}:{SEED}:{count}"
        return marker is not None and marker[0] == expected and sizes == (count, count - 1, count)

    return database.read_sync(check)


def _build(database: Database, count: int) -> None:
    """Create the properties and fill `count` items in one transaction (with its marker)."""

    def job(ctx: WriteContext) -> None:
        for name, ptype in PROPERTIES:
            add_property(ctx, Entity.ITEM, name, ptype.value)
        ctx.conn.execute(_fill_sql(count))
        # Give out the indexes used, so that an item added later gets the next one.
        ctx.conn.execute(
            "INSERT OR REPLACE INTO reqo_counters VALUES ('next_item_index', ?)", [count]
        )
        ctx.conn.execute(
            "INSERT OR REPLACE INTO reqo_meta VALUES (?, ?)",
            [MARKER, f"{GENERATOR}:{SEED}:{count}"],
        )
        ctx.touched_catalog()

    database.write_sync(job)


def open_catalog(directory: Path, count: int, rebuild: bool) -> tuple[Database, float | None]:
    """The database with the catalog, and the build time in seconds (None when reused)."""
    path = directory / f"reql-filter-{count}.duckdb"
    if path.exists() and not rebuild:
        database = Database("bench", path)
        if _complete(database, count):
            return database, None
        database.close()
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    database = Database("bench", path)
    started = time.perf_counter()
    _build(database, count)
    database.close()  # checkpoint, so that the measurements read a settled file
    elapsed = time.perf_counter() - started
    return Database("bench", path), elapsed


# -- measurements -------------------------------------------------------------------------------


def _timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1000


def _mask(database: Database, engine: ExpressionEngine) -> tuple[float, int]:
    """One evaluation of the typical filter: seconds, and how many items it selects."""
    started = time.perf_counter()
    mask = database.read_sync(lambda ctx: engine.mask(ctx, TYPICAL))
    elapsed = time.perf_counter() - started
    return elapsed, int(np.count_nonzero(mask))


def measure_mask(database: Database, repeat: int) -> dict[str, Any]:
    """Cold and cached evaluations of the typical filter through ExpressionEngine.mask."""
    reql._compile.cache_clear()
    first, selected = _mask(database, ExpressionEngine(database))
    cold: list[float] = []
    cached: list[float] = []
    for _ in range(repeat):
        engine = ExpressionEngine(database)
        reql._compile.cache_clear()
        cold.append(_mask(database, engine)[0])
        hits = engine.results.hits
        cached += [_mask(database, engine)[0] for _ in range(10)]
        if engine.results.hits != hits + 10:
            raise RuntimeError("the result cache did not answer the repeated filter")
    return {
        "first_ms": first * 1000,
        "cold_ms": _median_ms(cold),
        "cold_min_ms": min(cold) * 1000,
        "cached_ms": _median_ms(cached),
        "cached_samples": len(cached),
        "selected": selected,
    }


def measure_compile(database: Database, repeat: int) -> dict[str, Any]:
    """Parse + check + compile of the 20-term expression, reql's cache cleared each time."""
    schema = database.schema
    samples: list[float] = []
    for _ in range(repeat):
        reql._compile.cache_clear()
        samples.append(
            _timed(
                lambda: compile_for(schema, TWENTY_TERMS, reql.Purpose.FILTER, parameter="filter")
            )
        )
    compiled = compile_for(schema, TWENTY_TERMS, reql.Purpose.FILTER, parameter="filter")
    return {
        "compile_ms": _median_ms(samples),
        "compile_min_ms": min(samples) * 1000,
        "sql_chars": len(compiled.sql),
        "parameters": len(compiled.parameters),
    }


def measure_sql(database: Database, repeat: int) -> dict[str, Any]:
    """The compiled SQL of the typical filter against the hand-written query, interleaved."""
    compiled = compile_for(database.schema, TYPICAL, reql.Purpose.FILTER, parameter="filter")
    alias = compiled.candidate_alias
    sql = f'SELECT {alias}."$idx" AS i FROM items AS {alias} WHERE {compiled.sql}'
    parameters = compiled.bind(now=current_time())

    def run(ctx: ReadContext) -> dict[str, Any]:
        conn = ctx.conn

        def compiled_query() -> Any:
            return conn.execute(sql, parameters).fetchnumpy()["i"]

        def hand_query() -> Any:
            return conn.execute(HAND_WRITTEN).fetchnumpy()["i"]

        ours, theirs = compiled_query(), hand_query()  # warm up, and check they agree
        if not np.array_equal(np.sort(np.asarray(ours)), np.sort(np.asarray(theirs))):
            raise RuntimeError("the compiled filter and the hand-written SQL disagree")
        compiled_times: list[float] = []
        hand_times: list[float] = []
        for n in range(repeat):
            pair = [(compiled_times, compiled_query), (hand_times, hand_query)]
            for samples, query in pair if n % 2 == 0 else reversed(pair):
                samples.append(_timed(query))
        return {
            "compiled_ms": _median_ms(compiled_times),
            "hand_ms": _median_ms(hand_times),
            "rows": len(theirs),
        }

    figures = database.read_sync(run)
    figures["ratio"] = figures["compiled_ms"] / figures["hand_ms"]
    figures["sql"] = sql
    return figures


def _verdict(value: float, target: float) -> str:
    return "met" if value <= target else "**missed**"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=ITEMS)
    parser.add_argument("--repeat", type=int, default=50, help="runs per figure (medians)")
    parser.add_argument(
        "--directory",
        type=Path,
        default=Path(tempfile.gettempdir()) / "reqo-bench-reql-filter",
        help="where the catalog's DuckDB file is built and kept for later runs",
    )
    parser.add_argument("--rebuild", action="store_true", help="build the catalog afresh")
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)

    database, build_seconds = open_catalog(args.directory, args.items, args.rebuild)
    try:
        if build_seconds is None:
            print(f"reusing the catalog in {database.path}")
        else:
            print(f"built {args.items:,} items in {build_seconds:.1f} s in {database.path}")
        mask = measure_mask(database, args.repeat)
        compiling = measure_compile(database, max(args.repeat, 200))
        sql = measure_sql(database, args.repeat)
    finally:
        database.close()

    n = args.repeat
    lines = [
        f"- {args.items:,} items with 10 properties (double, string, boolean, int, timestamp, "
        f"set), deterministic synthetic values, one DuckDB file"
        + ("" if build_seconds is None else f" (built in {build_seconds:.1f} s)"),
        f"- filter `{TYPICAL}` selects {mask['selected']:,} items",
        f"- cold `ExpressionEngine.mask` (fresh engine, compile cache cleared), median of {n}: "
        f"**{mask['cold_ms']:.1f} ms** (target <= {TARGET_COLD_MS:.0f} ms: "
        f"{_verdict(mask['cold_ms'], TARGET_COLD_MS)}); min {mask['cold_min_ms']:.1f} ms; "
        f"first after opening the file {mask['first_ms']:.1f} ms",
        f"- cached `mask` (same engine, result cache), median of {mask['cached_samples']}: "
        f"**{mask['cached_ms'] * 1000:.0f} us** (target <= {TARGET_CACHED_MS:.0f} ms: "
        f"{_verdict(mask['cached_ms'], TARGET_CACHED_MS)})",
        f"- compile (parse + check + compile) of a 20-term filter "
        f"({compiling['parameters']} parameters, {compiling['sql_chars']:,} characters of SQL), "
        f"cache cleared, median of {max(n, 200)}: **{compiling['compile_ms']:.2f} ms** "
        f"(target <= {TARGET_COMPILE_MS:.0f} ms: "
        f"{_verdict(compiling['compile_ms'], TARGET_COMPILE_MS)})",
        f"- compiled SQL vs hand-written SQL with inline literals, `fetchnumpy` of "
        f"{sql['rows']:,} indexes, median of {n} each (interleaved): "
        f"{sql['compiled_ms']:.1f} ms vs {sql['hand_ms']:.1f} ms = ratio "
        f"**{sql['ratio']:.2f}** (target <= {TARGET_RATIO}: "
        f"{_verdict(sql['ratio'], TARGET_RATIO)})",
        f"- duckdb {duckdb.__version__}",
    ]
    print(f"compiled SQL: {sql['sql']}")
    if args.no_report:
        print("\n".join(lines))
    else:
        publish(f"ReQL filters on {args.items:,} items", "bench.reql_filter", argv, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
