"""The stacker (a LambdaRank model over its members' top lists) beside each member and the linear
ensemble of the same members, on MovieLens-100K and on the synthetic fashion sessions; and its
scoring cost per request at 100,000 items.

    .venv/bin/python -m bench.stacker [--seeds 1,2,3] [--parts movielens,fashion,latency]
                                      [--members ease,slim,ials,rp3beta,item-knn,popularity]
                                      [--budget 40] [--items 100000] [--requests 200]
                                      [--directory DIR] [--no-report]

Quality (parts `movielens` and `fashion`), protocol (a) of bench.evaluate: each user's
interactions shuffled and split 80/10/10 (RecBole's random split), every interaction a positive
of weight 1, full ranking of the items the user has not had in train or validation; one split
and one fit of every model per seed, default parameters throughout:

- each member alone, through the harness of `reqo evaluate`;
- the linear ensemble of the members, its weights optimised on the validation part as
  `reqo optimize` does (CMA-ES with a surrogate, `--budget` weightings, z-score blend);
- the stacker over the members, through the same harness, with its defaults: it learns from
  the validation part (as the linear ensemble's weights are optimised on it) and from its own
  held-out parts of the train part (`rounds`); and `stacker (own parts only)`
  (`holdout: own`), which learns as a served stacker does, from its own held-out parts alone.
  Their training seconds include their members' fits (`rounds` + 1 of each).

`movielens`: ML-100K (bench.evaluate's copy). `fashion`: SYNTHETIC browsing sessions over 4,000
Fashion-MNIST products (storage/fashion_sessions.py, seed 0; as bench.sequence part `images`),
the stacker with the items' properties (`item_properties: true`: the category).

Latency (part `latency`): a synthetic catalog of `--items` items (bench.wide_deep_scoring's
generator), members that scale there (item-knn, rp3beta, ials, popularity: EASE and SLIM's dense
or per-item fits do not at this size by default), a stacker over them (100 trees, fitted on a
sample of users), the linear blend of the same members; Items to User as the host calls a model
(`score_users` for one user, 90 % of the items candidates), p50 and p99 per request after a
warm-up, every model on the same requests, BLAS on one thread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from bench._report import publish
from bench.evaluate import open_dataset
from plugins.algorithm import Algorithm, UserHistory
from plugins.builtin.ensemble import Ensemble
from plugins.builtin.members import ModelFactory
from plugins.builtin.stacker import Stacker
from plugins.evaluation.harness import ModelSpec, Protocol, evaluate
from plugins.evaluation.report import format_figure, summarise
from plugins.evaluation.search import Objective, search
from plugins.manager import Registry, collect, get_plugin_manager
from storage import fashion_sessions
from storage.database import Database
from storage.snapshot import Snapshot, take_snapshot

MEMBERS = ("ease", "slim", "ials", "rp3beta", "item-knn", "popularity")
SCALING = ("item-knn", "rp3beta", "ials", "popularity")
"""Members that fit and score at 100,000 items with their defaults."""
AS_SERVED = "stacker (own parts only)"
"""The stacker learning from its own held-out parts alone, as a served stacker does."""
TARGET = 0.346
"""Issue 21's goal: the stacker's mean test NDCG@10 on ML-100K protocol (a)."""
FIGURES = ("ndcg@10", "recall@10", "mrr@10", "hit@10", "coverage@10")


def factory(registry: Registry) -> ModelFactory:
    """Members by algorithm name, with their defaults (the members here are named so)."""
    return lambda name: registry.algorithm(name)()


def quality(
    snapshot: Snapshot,
    registry: Registry,
    members: Sequence[str],
    seeds: tuple[int, ...],
    budget: int,
    stacker_params: dict[str, Any],
) -> tuple[list[str], dict[str, float]]:
    """The table of one dataset, and the mean test NDCG@10 by model."""
    protocol = Protocol(name="random", split=(0.8, 0.1, 0.1), ks=(10,), seeds=seeds)
    specs = [ModelSpec(name, registry.algorithm(name)) for name in members]
    stacker = Stacker.with_factory(factory(registry))
    params = {"members": list(members), **stacker_params}
    stackers = [
        ModelSpec("stacker", stacker, params),
        ModelSpec(AS_SERVED, stacker, {**params, "holdout": "own"}),
    ]
    evaluation = evaluate(snapshot, [*specs, *stackers], protocol, progress=True)
    summary = summarise(evaluation)
    started = time.perf_counter()
    objective = Objective(
        snapshot, specs, protocol, "zscore", "ndcg@10", progress=lambda t: print(t, flush=True)
    )
    result = search(objective, dict.fromkeys(members, 1.0), budget=budget)
    search_seconds = (time.perf_counter() - started) / len(seeds)
    linear = [figures["ensemble"] for figures in result.test.values()]
    header = "| model | NDCG@10 | Recall@10 | MRR@10 | Hit@10 | Coverage@10 | train s |"
    lines = [header, "|---|" + "---:|" * 6]
    means = {}
    for name, values in summary.items():
        cells = [format_figure(*values[figure]) for figure in FIGURES]
        cells.append(format_figure(*values["train_seconds"], digits=1))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        means[name] = values["ndcg@10"][0]
    spread = statistics.stdev(linear) if len(linear) > 1 else None
    means["linear ensemble"] = statistics.fmean(linear)
    lines.append(
        f"| linear ensemble (optimised) | {format_figure(means['linear ensemble'], spread)} "
        f"| - | - | - | - | {search_seconds:.1f} |"
    )
    weights = ", ".join(f"{m} {w:g}" for m, w in result.best_weights.items())
    best = max(members, key=lambda m: means[m])
    per_seed = [
        f"{run.seed}: {run.figures['ndcg@10']:.4f} vs {result.test[run.seed]['ensemble']:.4f}"
        for run in evaluation.runs
        if run.model == "stacker"
    ]
    lines += [
        "",
        f"- linear ensemble: weights {weights} (best of {len(result.history)} on validation "
        f"NDCG@10 {result.best.value:.4f}); its train s: the search with its members' fits, "
        "per seed",
        f"- stacker {means['stacker']:.4f} vs linear ensemble {means['linear ensemble']:.4f} "
        f"({means['stacker'] - means['linear ensemble']:+.4f}) vs best member {best} "
        f"{means[best]:.4f} ({means['stacker'] - means[best]:+.4f}); per seed, stacker vs "
        f"linear: {'; '.join(per_seed)}",
        f"- {AS_SERVED}: {means[AS_SERVED]:.4f} ({means[AS_SERVED] - means[best]:+.4f} over "
        f"{best}, {means[AS_SERVED] - means['linear ensemble']:+.4f} over the linear ensemble)",
    ]
    return lines, means


def fashion_snapshot(directory: Path) -> Snapshot:
    """The synthetic sessions, loaded into `directory` once."""
    database = Database("fashion-sessions", directory / "fashion-sessions.duckdb")
    try:
        if not database.read_sync(take_snapshot).n_items:
            print(fashion_sessions.load(database, fashion_sessions.Simulation(seed=0)))
        return database.read_sync(take_snapshot)
    finally:
        database.close()


def percentiles(call: Callable[[], Any], requests: int) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    for _ in range(min(20, requests)):
        call()
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def latency(
    registry: Registry, n_items: int, n_users: int, interactions: int, requests: int
) -> list[str]:
    """Scoring cost per request at `n_items` items."""
    from bench.wide_deep_scoring import catalog

    started = time.perf_counter()
    data = catalog(n_items, n_users, interactions, 0)
    built = time.perf_counter() - started
    members: dict[str, Algorithm] = {}
    fits = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for name in SCALING:
            started = time.perf_counter()
            members[name] = registry.algorithm(name)()
            members[name].fit(data)
            fits[name] = time.perf_counter() - started
        stacker = Stacker(
            members=list(SCALING),
            max_users=2000,
            n_estimators=100,
            early_stopping=0,
            item_properties=True,
        )
        stacker.bind_factory(factory(registry), hosted=True)
        started = time.perf_counter()
        stacker.fit(data)
        fits["stacker"] = time.perf_counter() - started
    stacker.bind(members.__getitem__)
    blend = Ensemble(members=list(SCALING))
    blend.fit(data)
    blend.bind(members.__getitem__)
    models: dict[str, Algorithm] = {**members, "linear ensemble": blend, "stacker": stacker}
    rng = np.random.default_rng(1)
    active = np.flatnonzero(np.diff(data.indptr) > 0)
    candidates = rng.random(data.n_items) < 0.9
    users = rng.choice(active, size=requests + 20)
    lines = [
        f"- {n_items:,} items, {n_users:,} users, {interactions:,} interactions (synthetic, "
        f"bench.wide_deep_scoring's generator; built in {built:.1f} s); members "
        f"{', '.join(SCALING)} with defaults, fitted in "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in fits.items() if name in SCALING)
        + f"; the stacker over them (item properties, 100 trees, 2,000 users' held-out items, "
        f"rounds 2; its fit {fits['stacker']:.1f} s with its members' copies); "
        f"the linear ensemble: equal weights",
        f"- Items to User as the host calls a model (`score_users`, one user, 90 % of the items "
        f"candidates), {requests} requests after 20 of warm-up; BLAS on one thread",
        "",
        "| model | p50 ms | p99 ms |",
        "|---|---:|---:|",
    ]
    with threadpool_limits(limits=1, user_api="blas"):
        for name, model in models.items():
            turn = iter(users.tolist())

            def call(model: Algorithm = model, turn: Any = turn) -> Any:
                user = next(turn)
                return model.score_users(
                    [UserHistory(data.sequence(user))], data.n_items, candidates
                )

            p50, p99 = percentiles(call, requests)
            lines.append(f"| {name} | {p50:.2f} | {p99:.2f} |")
    lines += [
        "",
        f"- load average after the runs: {os.getloadavg()[0]:.1f} (other work on the machine "
        "inflates the percentiles, the p99s most)",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument("--parts", default="movielens,fashion,latency")
    parser.add_argument("--members", default=",".join(MEMBERS), help="the stacker's members")
    parser.add_argument("--budget", type=int, default=40, help="linear weightings evaluated")
    parser.add_argument("--items", type=int, default=100_000, help="latency: catalog size")
    parser.add_argument("--users", type=int, default=20_000, help="latency: users")
    parser.add_argument("--interactions", type=int, default=300_000, help="latency")
    parser.add_argument("--requests", type=int, default=200, help="latency: timed requests")
    parser.add_argument(
        "--directory",
        type=Path,
        default=Path(tempfile.gettempdir()) / "reqo-bench-stacker",
        help="where the DuckDB files go (kept for later runs)",
    )
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    try:
        seeds = tuple(int(seed) for seed in args.seeds.split(",") if seed.strip())
    except ValueError:
        parser.error(f"--seeds: {args.seeds!r} is not a list of integers")
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"movielens", "fashion", "latency"}
    if unknown:
        parser.error(f"--parts: unknown {', '.join(sorted(unknown))}")
    members = [m.strip() for m in args.members.split(",") if m.strip()]
    registry = collect(get_plugin_manager())
    for member in members:
        if member not in registry.algorithms:
            parser.error(f"--members: no algorithm '{member}' is registered")
    args.directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f"- protocol (a) (random 80/10/10 per user, every interaction a positive, full ranking; "
        f"as bench.evaluate), seeds {', '.join(map(str, seeds))}; members "
        f"{', '.join(members)} with default parameters; the stacker with its defaults "
        "(mean ± sample std over seeds)"
    ]
    if "movielens" in parts:
        table, means = quality(
            open_dataset(args.directory), registry, members, seeds, args.budget, {}
        )
        met = means["stacker"] >= TARGET
        lines += [
            "",
            "MovieLens-100K:",
            "",
            *table,
            f"- target (issue 21): the stacker's mean NDCG@10 >= {TARGET}: "
            f"{'met' if met else '**missed**'} ({means['stacker']:.4f})",
        ]
    if "fashion" in parts:
        table, means = quality(
            fashion_snapshot(args.directory),
            registry,
            members,
            seeds,
            args.budget,
            {"item_properties": True},
        )
        lines += [
            "",
            "SYNTHETIC fashion sessions (storage/fashion_sessions.py, seed 0: 4,000 Fashion-MNIST "
            "products, simulated shoppers; the stacker with `item_properties: true`):",
            "",
            *table,
        ]
    if "latency" in parts:
        lines += [
            "",
            f"Scoring cost at {args.items:,} items:",
            "",
            *latency(registry, args.items, args.users, args.interactions, args.requests),
        ]
    if args.no_report:
        print("\n".join(lines))
    else:
        publish("Stacker: LambdaRank over members (issue 21)", "bench.stacker", argv, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
