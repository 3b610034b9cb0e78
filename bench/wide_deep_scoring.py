"""Scoring cost of `wide-deep` per request at 100,000 items, in process, beside
`attribute-ridge` (the other cold-start model that reads user properties) on the same data.

    .venv/bin/python -m bench.wide_deep_scoring [--items N] [--users N] [--interactions N]
                                                [--requests N] [--text-dimensions D]
                                                [--no-report]

A synthetic catalog built in memory (no database): items with a genre (50 values), a set of
tags, a price and a 384-d text vector (random, as the host's text embedder would hand it over);
users with an occupation, a gender and an age; interactions of users with items of the genres
their occupation prefers. A model with two crosses (genre x occupation, tags x gender) and the
default towers is trained for one epoch (its quality is not the point: the scoring cost does not
depend on it), then, after a warm-up, each request scores every item for one user:

- a known user (its id, training-time properties and its latest 50 items),
- a new user known by its properties alone,
- as the host calls it (`score_users`: widened to the item count, candidates applied),
- a batch of 32 known users (per user),

with latency percentiles over `--requests` requests each. torch runs on one thread, as a server
under load gets; `attribute-ridge` (default parameters, fitted on the same data) is timed on the
same requests, its BLAS on one thread too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from bench._report import publish
from plugins.algorithm import Algorithm, UserHistory
from plugins.builtin.attribute_ridge import AttributeRidge
from plugins.builtin.wide_deep import WideDeepModel
from plugins.training import DEFAULT_WEIGHTS, ItemEmbeddings, TrainingData

GENRES, OCCUPATIONS = 50, 20


def catalog(
    n_items: int, n_users: int, n_interactions: int, dimensions: int, seed: int = 0
) -> TrainingData:
    """The synthetic training data (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    genre = rng.integers(0, GENRES, n_items)
    tags = [
        [f"t{t}" for t in rng.choice(200, size=rng.integers(1, 5), replace=False)]
        for _ in range(n_items)
    ]
    items = pa.table(
        {
            "$idx": np.arange(n_items),
            "$id": [f"i{i}" for i in range(n_items)],
            "genre": [f"g{g}" for g in genre],
            "tags": tags,
            "price": rng.gamma(2.0, 20.0, n_items),
        }
    )
    occupation = rng.integers(0, OCCUPATIONS, n_users)
    users_table = pa.table(
        {
            "$idx": np.arange(n_users),
            "$id": [f"u{u}" for u in range(n_users)],
            "occupation": [f"o{o}" for o in occupation],
            "gender": rng.choice(["F", "M"], n_users).tolist(),
            "age": rng.integers(15, 80, n_users),
        }
    )
    # Each occupation prefers three genres; popularity within a genre is skewed.
    by_genre = [np.flatnonzero(genre == g) for g in range(GENRES)]
    users = np.sort(rng.integers(0, n_users, n_interactions))
    liked = (occupation[users][:, None] * 3 + np.arange(3)) % GENRES
    picked = liked[np.arange(n_interactions), rng.integers(0, 3, n_interactions)]
    chosen = np.array(
        [by_genre[g][min(int(rng.zipf(1.5)) - 1, len(by_genre[g]) - 1)] for g in picked]
    )
    noise = rng.random(n_interactions) < 0.2
    chosen[noise] = rng.integers(0, n_items, int(noise.sum()))
    weights = np.ones(n_interactions, dtype=np.float32)
    matrix = sp.csr_matrix((weights, (users, chosen)), shape=(n_users, n_items), dtype=np.float32)
    matrix.sum_duplicates()
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    vectors = rng.normal(size=(n_items, dimensions)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def text_vectors(*, embedder: str) -> ItemEmbeddings:
        return ItemEmbeddings(vectors, np.ones(n_items, dtype=bool))

    return TrainingData(
        matrix=matrix,
        users=users.astype(np.int64),
        items=chosen.astype(np.int64),
        kinds=np.zeros(n_interactions, dtype=np.uint8),
        timestamps=np.arange(n_interactions, dtype=np.float64),
        weights=weights,
        indptr=indptr,
        item_ids=[f"i{i}" for i in range(n_items)],
        user_ids=[f"u{u}" for u in range(n_users)],
        item_properties=items,
        kind_weights=dict(DEFAULT_WEIGHTS),
        item_text_vectors=text_vectors if dimensions else None,
        user_properties=users_table,
    )


def percentiles(call: Callable[[], Any], requests: int, per: int = 1) -> tuple[float, float]:
    """p50 and p99 in milliseconds (per user where a call scores `per` users)."""
    for _ in range(min(20, requests)):
        call()
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000 / per)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--text-dimensions", type=int, default=384)
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    data = catalog(args.items, args.users, args.interactions, args.text_dimensions)
    built = time.perf_counter() - start
    settings: dict[str, Any] = {
        "crosses": [["genre", "occupation"], ["tags", "gender"]],
        "epochs": 1,
        "seed": 0,
        "device": "cpu",
    }
    model = WideDeepModel(**settings)
    start = time.perf_counter()
    model.fit(data)
    fitted = time.perf_counter() - start
    from threadpoolctl import threadpool_limits

    ridge = AttributeRidge()
    start = time.perf_counter()
    ridge.fit(data)
    ridge_fitted = time.perf_counter() - start
    rng = np.random.default_rng(1)
    active = np.flatnonzero(np.diff(data.indptr) > 0)

    def known() -> UserHistory:
        user = int(rng.choice(active))
        return UserHistory(data.sequence(user), user=user)

    def new() -> UserHistory:
        return UserHistory(
            np.zeros(0, dtype=np.int64),
            properties={"occupation": f"o{rng.integers(OCCUPATIONS)}", "gender": "F", "age": 30},
        )

    candidates = rng.random(data.n_items) < 0.9
    rows: list[tuple[str, Callable[[Algorithm], Any], int]] = [
        ("known user (id, properties, 50 latest items)", lambda m: m.user_scores([known()]), 1),
        ("new user (properties only)", lambda m: m.user_scores([new()]), 1),
        (
            "known user through `score_users` (90 % of items candidates)",
            lambda m: m.score_users([known()], data.n_items, candidates),
            1,
        ),
        (
            "batch of 32 known users, per user",
            lambda m: m.user_scores([known() for _ in range(32)]),
            32,
        ),
    ]
    lines = [
        f"- {args.items:,} items, {args.users:,} users, {args.interactions:,} interactions "
        f"(synthetic; built in {built:.1f} s); text vectors {args.text_dimensions}-d; crosses "
        f"genre x occupation and tags x gender; default towers (embedding 16, hidden [64], "
        f"output 32); fitted for 1 epoch in {fitted:.1f} s; torch on 1 thread; "
        f"attribute-ridge (defaults: text vectors, genre, tags, price in 10 bins; occupation, "
        f"gender, age) fitted in {ridge_fitted:.1f} s, BLAS on 1 thread; "
        f"{args.requests} requests per row after a warm-up",
        "",
        "| request | wide-deep p50 ms | wide-deep p99 ms | attribute-ridge p50 ms "
        "| attribute-ridge p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, call, per in rows:
        requests = args.requests if per == 1 else max(args.requests // 10, 10)
        deep = percentiles(partial(call, model), requests, per)
        with threadpool_limits(limits=1, user_api="blas"):
            linear = percentiles(partial(call, ridge), requests, per)
        lines.append(
            f"| {name} | {deep[0]:.2f} | {deep[1]:.2f} | {linear[0]:.2f} | {linear[1]:.2f} |"
        )
    lines += [
        "",
        f"- load average after the runs: {os.getloadavg()[0]:.1f} (other work on the machine "
        "inflates the percentiles, the p99s most)",
    ]
    if args.no_report:
        print("\n".join(lines))
    else:
        title = f"wide-deep scoring cost at {args.items:,} items (in process)"
        publish(title, "bench.wide_deep_scoring", argv, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
