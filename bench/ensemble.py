"""An optimised ensemble on MovieLens-100K: its test NDCG@10 beside its best member's, and the
latency of an ensemble of three members beside its slowest member's.

    .venv/bin/python -m bench.ensemble [--seeds 1,2,3] [--members ease,mult-vae,item-knn]
                                       [--normalisation zscore] [--budget 60] [--requests 300]
                                       [--directory DIR] [--no-report]

1. Optimisation, as `reqo optimize` runs it: protocol (a) of bench.evaluate (RecBole's random
   80/10/10 split per user, every rating a positive), each member fitted once per seed with its
   default parameters, CMA-ES with a Gaussian-process surrogate over the weights for the best
   validation NDCG@10 (mean over the seeds), from equal weights. Target: the optimised
   ensemble's test NDCG@10, mean over the seeds, above the best single member's.
2. Latency: the members and the ensemble (with the optimised weights) trained on all of
   ML-100K as `reqo train` trains them; Items to User for random users in process
   (`parse_request` + `respond`, as the server's reader path, bench.recommend's way), the
   models interleaved request by request, after a warm-up. Target: the ensemble's median at
   most 2x the slowest member's.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench._report import publish
from bench.evaluate import DATABASE, open_dataset
from plugins.evaluation.harness import ModelSpec, Protocol
from plugins.evaluation.search import Objective, SearchResult, search
from plugins.manager import Registry, collect, get_plugin_manager
from server.api.operations import Params
from server.api.recommendations import parse_request, respond
from server.serving.live_models import LiveModels
from server.serving.pipeline import Pipeline
from server.serving.reql_engine import ExpressionEngine
from server.serving.scenarios import ScenarioConfig, parse_models
from storage.database import Database, NeedsDatabase
from storage.snapshot import Snapshot

MEMBERS = ("ease", "mult-vae", "item-knn")
ENSEMBLE = "blend"
LATENCY_RATIO = 2.0
COUNT = 10


def optimise(
    snapshot: Snapshot,
    registry: Registry,
    members: list[str],
    seeds: tuple[int, ...],
    normalisation: str,
    budget: int,
) -> tuple[SearchResult, float]:
    """The search of bench part 1, and its seconds (fitting included)."""
    specs = [ModelSpec(name, registry.algorithm(name)) for name in members]
    started = time.perf_counter()
    objective = Objective(
        snapshot,
        specs,
        Protocol(name="random", split=(0.8, 0.1, 0.1), ks=(10,), seeds=seeds),
        normalisation,
        "ndcg@10",
        progress=lambda text: print(text, flush=True),
    )
    result = search(objective, dict.fromkeys(members, 1.0), budget=budget)
    return result, time.perf_counter() - started


def measure_latency(
    path: Path,
    registry: Registry,
    snapshot: Snapshot,
    members: list[str],
    weights: dict[str, float],
    normalisation: str,
    requests: int,
) -> dict[str, list[float]]:
    """Seconds per Items to User request, by model (the members and the ensemble)."""
    configs = parse_models(
        {
            **{name: {"algorithm": name} for name in members},
            ENSEMBLE: {
                "algorithm": "ensemble",
                "params": {
                    "members": members,
                    "weights": weights,
                    "normalisation": normalisation,
                },
            },
        }
    )
    directory = path.parent / "ensemble-models"
    shutil.rmtree(directory, ignore_errors=True)  # trained afresh on the current data
    database = Database(DATABASE, path)
    try:
        models = LiveModels(database, dict(configs), registry, directory)
        engine = ExpressionEngine(database, functions=registry.functions)
        pipeline = Pipeline(engine, models)
        names = [*members, ENSEMBLE]
        scenarios = {name: ScenarioConfig(name, "items-to-user", model=name) for name in names}
        users = [user for user in snapshot.user_ids if user is not None]
        rng = random.Random(7)

        def recommend(user: str, scenario: str) -> float:
            started = time.perf_counter()
            request = parse_request(
                "items-to-user",
                {"userId": user},
                Params(body={"count": COUNT, "scenario": scenario}),
                scenarios,
                configs,
            )
            try:
                response, _ = database.read_in_memory(lambda ctx: respond(ctx, pipeline, request))
            except NeedsDatabase:
                response, _ = database.read_sync(lambda ctx: respond(ctx, pipeline, request))
            elapsed = time.perf_counter() - started
            if len(response["recomms"]) != COUNT:
                raise RuntimeError(f"{scenario}: {len(response['recomms'])} recommendations")
            return elapsed

        for name in names:
            started = time.perf_counter()
            models.get(name)  # trains on first use (the ensemble's members first)
            print(f"loaded {name} in {time.perf_counter() - started:.1f} s", flush=True)
        pipeline.histories.load()
        for _ in range(50):
            user = rng.choice(users)
            for name in names:
                recommend(user, name)
        seconds: dict[str, list[float]] = {name: [] for name in names}
        for turn in range(requests):
            user = rng.choice(users)
            # Rotated, so that no model always runs first (or last) for a user.
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                seconds[name].append(recommend(user, name))
        return seconds
    finally:
        database.close()


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def quality_lines(result: SearchResult, seconds: float) -> tuple[list[str], bool]:
    """The per-seed table of test NDCG@10 and the verdict."""
    members = list(result.members)
    header = ["seed", "ensemble (optimised)", "ensemble (equal weights)", *members]
    header += ["best member", "ensemble - best"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 2) + "---:|"]
    above = 0
    for seed, figures in result.test.items():
        best = max(members, key=lambda m: figures[m])
        gap = figures["ensemble"] - figures[best]
        above += gap > 0
        cells = [f"{figures[n]:.4f}" for n in ("ensemble", "configured", *members)]
        lines.append(f"| {seed} | " + " | ".join(cells) + f" | {best} | {gap:+.4f} |")
    means = {
        n: statistics.fmean(f[n] for f in result.test.values())
        for n in ("ensemble", "configured", *members)
    }
    best_mean = max(members, key=lambda m: means[m])
    gap = means["ensemble"] - means[best_mean]
    cells = [f"{means[n]:.4f}" for n in ("ensemble", "configured", *members)]
    lines.append("| mean | " + " | ".join(cells) + f" | {best_mean} | {gap:+.4f} |")
    met = gap > 0
    weights = ", ".join(f"{m} {w:g}" for m, w in result.best_weights.items())
    lines += [
        "",
        f"- search: {len(result.history)} weightings evaluated ({result.screened} screened by "
        f"the surrogate), validation NDCG@10 {result.start.value:.4f} (equal weights) -> "
        f"{result.best.value:.4f}; weights {weights}; {seconds:.0f} s with the members' fits",
        f"- target: mean test NDCG@10 of the optimised ensemble above the best member's "
        f"({best_mean}): {_verdict(met)} ({gap:+.4f}; above on {above} of "
        f"{len(result.test)} seeds)",
    ]
    return lines, met


def latency_lines(seconds: dict[str, list[float]], members: list[str]) -> tuple[list[str], bool]:
    lines = ["| model | p50 ms | p90 ms | mean ms |", "|---|---:|---:|---:|"]
    p50 = {}
    for name, samples in seconds.items():
        ordered = sorted(samples)
        p50[name] = statistics.median(ordered) * 1000
        p90 = ordered[int(0.9 * (len(ordered) - 1))] * 1000
        lines.append(
            f"| {name} | {p50[name]:.2f} | {p90:.2f} | {statistics.fmean(ordered) * 1000:.2f} |"
        )
    slowest = max(members, key=lambda m: p50[m])
    ratio = p50[ENSEMBLE] / p50[slowest]
    met = ratio <= LATENCY_RATIO
    lines += [
        "",
        f"- target: the ensemble's median latency at most {LATENCY_RATIO:g}x its slowest "
        f"member's ({slowest}): {ratio:.2f}x, {_verdict(met)}",
    ]
    return lines, met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument("--members", default=",".join(MEMBERS), help="the ensemble's members")
    parser.add_argument("--normalisation", choices=["zscore", "rank"], default="zscore")
    parser.add_argument("--budget", type=int, default=60, help="weightings evaluated (60)")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per model")
    parser.add_argument(
        "--directory",
        type=Path,
        default=Path(tempfile.gettempdir()) / "reqo-bench-ensemble",
        help="where the DuckDB file (kept for later runs) and the trained models go",
    )
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    try:
        seeds = tuple(int(seed) for seed in args.seeds.split(",") if seed.strip())
    except ValueError:
        parser.error(f"--seeds: {args.seeds!r} is not a list of integers")
    members = [m.strip() for m in args.members.split(",") if m.strip()]
    registry = collect(get_plugin_manager())
    for member in members:
        if member not in registry.algorithms:
            parser.error(f"--members: no algorithm '{member}' is registered")

    args.directory.mkdir(parents=True, exist_ok=True)
    snapshot = open_dataset(args.directory)
    result, search_seconds = optimise(
        snapshot, registry, members, seeds, args.normalisation, args.budget
    )
    quality, _ = quality_lines(result, search_seconds)
    print("\n".join(quality), flush=True)
    seconds = measure_latency(
        args.directory / f"{DATABASE}.duckdb",
        registry,
        snapshot,
        members,
        result.best_weights,
        args.normalisation,
        args.requests,
    )
    latency, _ = latency_lines(seconds, members)
    lines: list[str] = [
        f"- MovieLens-100K, protocol (a) (random 80/10/10 per user, as bench.evaluate); "
        f"members {', '.join(members)} with default parameters; normalisation "
        f"{args.normalisation}; seeds {', '.join(map(str, seeds))}; budget {args.budget}",
        "",
        "Test NDCG@10:",
        "",
        *quality,
        "",
        f"Items to User latency in process, {args.requests} requests per model "
        "(interleaved), count 10, the ensemble with the optimised weights:",
        "",
        *latency,
    ]
    if args.no_report:
        print("\n".join(lines))
    else:
        publish("Ensemble: optimised weights and latency (ML-100K)", "bench.ensemble", argv, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
