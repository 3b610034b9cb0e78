"""Benchmark `reqo import`: synthetic interactions from Parquet into a fresh database file.

    .venv/bin/python -m bench.import_parquet [--rows N] [--repeat K] [--no-report]

Each run imports the same file into a new database; the figure is the best run's
interactions per second, timed from the call to the commit (closing the database, which
checkpoints it, is timed separately).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench._report import publish
from storage.bulk import import_file
from storage.database import Database

USERS = 50_000
ITEMS = 20_000
KINDS = ("detail_view", "purchase", "rating", "cart_addition")
KIND_WEIGHTS = (0.7, 0.1, 0.1, 0.1)


def generate(path: Path, rows: int, seed: int = 42) -> None:
    """Write `rows` interactions: 4 kinds, increasing timestamps, ratings and amounts."""
    rng = np.random.default_rng(seed)
    users = pa.array([f"user-{i}" for i in range(USERS)])
    items = pa.array([f"item-{i}" for i in range(ITEMS)])
    kind = rng.choice(len(KINDS), size=rows, p=KIND_WEIGHTS).astype(np.int32)
    # Strictly increasing microseconds: no two rows share a timestamp, so none is a duplicate.
    ts = 1_700_000_000_000_000 + np.cumsum(rng.integers(1, 2_000_000, size=rows))
    rating = np.round(rng.uniform(-1, 1, size=rows), 2)
    is_rating = kind == KINDS.index("rating")
    is_order = (kind == KINDS.index("purchase")) | (kind == KINDS.index("cart_addition"))
    table = pa.table(
        {
            # Dictionary columns, as Parquet writers store repetitive strings anyway.
            "userId": pa.DictionaryArray.from_arrays(
                pa.array(rng.integers(0, USERS, size=rows, dtype=np.int32)), users
            ),
            "itemId": pa.DictionaryArray.from_arrays(
                pa.array(rng.integers(0, ITEMS, size=rows, dtype=np.int32)), items
            ),
            "timestamp": pa.array(ts, type=pa.timestamp("us")),
            "type": pa.DictionaryArray.from_arrays(pa.array(kind), pa.array(KINDS)),
            "rating": pa.array(rating, mask=~is_rating),
            "amount": pa.array(rng.integers(1, 4, size=rows).astype(np.float64), mask=~is_order),
            "price": pa.array(np.round(rng.uniform(1, 100, size=rows), 2), mask=~is_order),
        }
    )
    pq.write_table(table, path)


def main(argv: list[str] | None = None) -> int:
    """Generate the file, import it `--repeat` times, print the figures and record the best."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="imports, each into a fresh file")
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="reqo-bench-") as tmp:
        source = Path(tmp) / "interactions.parquet"
        started = time.perf_counter()
        generate(source, args.rows)
        print(f"generated {args.rows} rows in {time.perf_counter() - started:.1f} s")
        timings, closes = [], []
        for run in range(args.repeat):
            database = Database("bench", Path(tmp) / f"bench-{run}.duckdb")
            try:
                started = time.perf_counter()
                report = import_file(database, "interactions", source, progress=False)
                timings.append(time.perf_counter() - started)
            finally:
                started = time.perf_counter()
                database.close()
                closes.append(time.perf_counter() - started)
            print(f"run {run + 1}: {report}; {args.rows / timings[-1]:,.0f} interactions/s")

    best = min(timings)
    rate = args.rows / best
    print(f"best: {rate:,.0f} interactions/s ({best:.2f} s for {args.rows} rows)")
    if not args.no_report:
        publish(
            "Parquet import of interactions (`reqo import`)",
            "bench.import_parquet",
            argv,
            [
                f"- {args.rows:,} interactions ({USERS:,} users, {ITEMS:,} items, {len(KINDS)} "
                "kinds, increasing timestamps), one Parquet file, into a fresh database file",
                f"- import, best of {len(timings)}: {best:.2f} s = **{rate:,.0f} interactions/s** "
                "(target >= 1,000,000)",
                f"- import, median: {statistics.median(timings):.2f} s; "
                f"closing (checkpoint), median: {statistics.median(closes):.2f} s",
                f"- duckdb {duckdb.__version__}",
            ],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
