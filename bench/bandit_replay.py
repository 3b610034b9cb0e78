"""Replay simulator: Thompson sampling among a scenario's variants on MovieLens-100K, against a
uniform split and each variant alone.

    .venv/bin/python -m bench.bandit_replay [--seed 1] [--runs 5] [--min-share 0.05]
                                            [--directory DIR] [--out evaluation] [--no-report]

Each user's last 20 % of ratings (by time) are held out; three variants of clearly different
quality (EASE, item-kNN, popularity; default parameters) are fitted once on the rest. The
held-out ratings are then replayed in time order: for each, the policy picks a variant
(`server.experiments.bandits.Bandit`, the class the server allocates with), that variant
recommends the user's top 10 from their train history (train items left out), and the event
is a click when the held-out item is in the list; the outcome updates the posterior at once.
Seeded: the fit (`--seed`) and each policy run (`--seed` .. `--seed + runs - 1`).

Targets: Thompson's cumulative CTR above the uniform split's, and at least 90 % of the best
fixed variant's. Figures: cumulative CTR over the replay; the best variant's share of traffic
(a rolling window). PNGs go to `--out` (gitignored `evaluation/` by default).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench._replay_plots import percent_spread, plot_cumulative_ctr
from bench._report import publish
from bench.evaluate import open_dataset
from plugins.evaluation.harness import (
    ModelSpec,
    PreparedSplit,
    Protocol,
    fit_one,
    make_holdouts,
    rank,
)
from plugins.evaluation.splits import TEST, TRAIN
from plugins.manager import collect, get_plugin_manager
from server.experiments.bandits import Bandit
from server.experiments.variants import Experiment, Variant
from storage.snapshot import Snapshot

VARIANTS = ("ease", "item-knn", "popularity")
HELD_OUT = 0.2
TOP = 10
WINDOW = 1000
"""Events per point of the rolling share of the best variant."""
TARGET_SHARE_OF_BEST = 0.9


@dataclass(frozen=True)
class Replay:
    """The held-out events in time order, and whether each variant's list holds each one's
    item (variants x events)."""

    users: np.ndarray[Any, np.dtype[np.int64]]
    hits: np.ndarray[Any, np.dtype[np.bool_]]
    train_size: int


def per_user_temporal(snapshot: Snapshot, share: float) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """TEST for each user's last `share` of interactions (the snapshot is ordered by user, then
    time), TRAIN for the rest."""
    users = snapshot.users
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    position = np.arange(len(users)) - np.repeat(starts, counts)
    held = np.repeat(np.floor(counts * share).astype(np.int64), counts)
    parts = np.full(len(users), TRAIN, dtype=np.uint8)
    parts[position >= np.repeat(counts, counts) - held] = TEST
    return parts


def prepare(snapshot: Snapshot, seed: int) -> tuple[Replay, dict[str, float]]:
    """Fit the variants on the train part and look up every held-out event in each one's list;
    also each fit's seconds."""
    registry = collect(get_plugin_manager())
    parts = per_user_temporal(snapshot, HELD_OUT)
    split = PreparedSplit(parts, make_holdouts(snapshot, parts), None)
    protocol = Protocol(name="random", split=(0.8, 0.0, 0.2), ks=(TOP,), seeds=(seed,))
    test = parts == TEST
    # Held-out events whose item the user has in train can never be recommended: left out.
    train_pairs = snapshot.users[~test] * snapshot.n_items + snapshot.items[~test]
    keep = test & ~np.isin(snapshot.users * snapshot.n_items + snapshot.items, train_pairs)
    order = np.flatnonzero(keep)[np.argsort(snapshot.timestamps[keep], kind="stable")]
    users, items = snapshot.users[order], snapshot.items[order]
    candidates = np.array([item is not None for item in snapshot.item_ids])
    everyone = np.arange(snapshot.n_users, dtype=np.int64)
    hits, seconds = [], {}
    for name in VARIANTS:
        spec = ModelSpec(name, registry.algorithms[name])
        model, data, seconds[name] = fit_one(snapshot, spec, protocol, seed, split)
        top = rank(model, data, everyone, split.holdouts.seen_before_test, TOP, candidates)
        hits.append((top[users] == items[:, None]).any(axis=1))
    return Replay(users, np.array(hits), int((~test).sum())), seconds


def run_policy(replay: Replay, experiment: Experiment, seed: int) -> np.ndarray[Any, Any]:
    """Replay the events under a policy: the variant index chosen for each event."""
    bandit = Bandit(experiment, np.random.default_rng(seed))
    index = {name: i for i, name in enumerate(experiment.names)}
    chosen = np.empty(replay.hits.shape[1], dtype=np.int64)
    for event in range(len(chosen)):
        name = bandit.choose().name
        arm = index[name]
        chosen[event] = arm
        bandit.served(name)
        bandit.rewarded(name, clicked=bool(replay.hits[arm, event]))
    return chosen


def clicks_of(replay: Replay, chosen: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    clicks: np.ndarray[Any, Any] = replay.hits[chosen, np.arange(len(chosen))]
    return clicks


def cumulative_ctr(clicks: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.cumsum(clicks) / np.arange(1, len(clicks) + 1)


def rolling_share(chosen: np.ndarray[Any, Any], arm: int) -> np.ndarray[Any, Any]:
    """The share of each window of WINDOW events that went to `arm`, at every event from the
    first full window on."""
    picked: np.ndarray[Any, Any] = np.cumsum(np.r_[0, chosen == arm])
    shares: np.ndarray[Any, Any] = (picked[WINDOW:] - picked[:-WINDOW]) / WINDOW
    return shares


def plot(
    path: Path,
    fixed: dict[str, np.ndarray[Any, Any]],
    thompson: list[np.ndarray[Any, Any]],
    uniform: list[np.ndarray[Any, Any]],
    shares: list[np.ndarray[Any, Any]],
    best: str,
    min_share: float,
) -> tuple[Path, Path]:
    """Two PNGs: cumulative CTR of every policy, and the best variant's share of traffic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.mkdir(parents=True, exist_ok=True)
    ctr_png, share_png = path / "bandit_replay_ctr.png", path / "bandit_replay_share.png"
    curves = {
        **{f"{name} alone": [curve] for name, curve in fixed.items()},
        "uniform split": uniform,
        "Thompson sampling": thompson,
    }
    title = f"ML-100K replay: cumulative CTR ({len(thompson)} seeded runs, min-max band)"
    plot_cumulative_ctr(ctr_png, curves, title)

    figure, axes = plt.subplots(figsize=(9, 4.5))
    x = np.arange(WINDOW, WINDOW + len(shares[0]))
    for run in shares:
        axes.plot(x, 100 * run, color="tab:blue", alpha=0.25, linewidth=0.8)
    axes.plot(x, 100 * np.mean(shares, axis=0), color="tab:blue", linewidth=2, label="mean")
    axes.axhline(100 * (1 - 2 * min_share), color="grey", linestyle=":", label="1 - 2 x min_share")
    axes.set_ylim(0, 100)
    axes.set_xlabel("held-out events replayed (time order)")
    axes.set_ylabel(f"share of {best} (%), last {WINDOW} events")
    axes.set_title(f"Thompson sampling: traffic to the best variant ({best})")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(share_png, dpi=110)
    plt.close(figure)
    return ctr_png, share_png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bandit_replay", description=__doc__)
    parser.add_argument("--seed", type=int, default=1, help="the fit's and the first run's seed")
    parser.add_argument("--runs", type=int, default=5, help="seeded replays per policy (5)")
    parser.add_argument("--min-share", type=float, default=0.05, help="Thompson's (0.05)")
    parser.add_argument(
        "--directory",
        type=Path,
        default=Path(tempfile.gettempdir()) / "reqo-bench-evaluate",
        help="where the ML-100K DuckDB file is (kept for later runs)",
    )
    parser.add_argument("--out", type=Path, default=Path("evaluation"), help="for the PNGs")
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.runs < 1 or not 0 <= args.min_share <= 1 / len(VARIANTS):
        parser.error(f"--runs >= 1 and --min-share from 0 to 1/{len(VARIANTS)}")

    snapshot = open_dataset(args.directory)
    started = time.perf_counter()
    replay, fit_seconds = prepare(snapshot, args.seed)
    events = replay.hits.shape[1]
    fixed_ctr = {name: float(replay.hits[i].mean()) for i, name in enumerate(VARIANTS)}
    best = max(fixed_ctr, key=lambda name: fixed_ctr[name])
    variants = tuple(Variant(name, name) for name in VARIANTS)
    thompson = Experiment(variants, method="thompson", min_share=args.min_share)
    uniform = Experiment(variants, method="split", split=(1 / 3, 1 / 3, 1 / 3))
    seeds = range(args.seed, args.seed + args.runs)
    runs = {
        label: [run_policy(replay, experiment, seed) for seed in seeds]
        for label, experiment in (("thompson", thompson), ("uniform", uniform))
    }
    replay_seconds = time.perf_counter() - started
    ctr = {
        label: [float(clicks_of(replay, c).mean()) for c in chosen]
        for label, chosen in runs.items()
    }
    best_arm = VARIANTS.index(best)
    tail = events - events // 5
    late_share = [float((c[tail:] == best_arm).mean()) for c in runs["thompson"]]
    share_all = [float((c == best_arm).mean()) for c in runs["thompson"]]
    ctr_png, share_png = plot(
        args.out,
        {name: cumulative_ctr(replay.hits[i]) for i, name in enumerate(VARIANTS)},
        [cumulative_ctr(clicks_of(replay, c)) for c in runs["thompson"]],
        [cumulative_ctr(clicks_of(replay, c)) for c in runs["uniform"]],
        [rolling_share(c, best_arm) for c in runs["thompson"]],
        best,
        args.min_share,
    )

    ratio = [t / fixed_ctr[best] for t in ctr["thompson"]]
    # The targets are on the mean over the seeded runs; every run's figure is shown beside.
    beats_uniform = statistics.fmean(ctr["thompson"]) > statistics.fmean(ctr["uniform"])
    every_run_beats = all(t > u for t, u in zip(ctr["thompson"], ctr["uniform"], strict=True))
    reaches = statistics.fmean(ratio) >= TARGET_SHARE_OF_BEST
    lines = [
        f"- MovieLens-100K, {snapshot.n_users:,} users, {snapshot.n_items:,} items: each user's "
        f"last {HELD_OUT:.0%} of ratings (by time) held out, {replay.train_size:,} ratings to fit "
        f"on; {events:,} held-out events (items not in the user's train part) replayed in time "
        "order",
        f"- variants: {', '.join(VARIANTS)} (default parameters, fitted once with seed "
        f"{args.seed} in {', '.join(f'{fit_seconds[n]:.1f} s' for n in VARIANTS)}); each event "
        f"asks the chosen variant for the user's top {TOP}, a click when the held-out item is in "
        "it; the posterior is updated at once",
        f"- policies through `server.experiments.bandits.Bandit`: Thompson sampling "
        f"(Beta posterior on CTR, min_share {args.min_share}), a uniform split; "
        f"{args.runs} seeded runs each (seeds "
        f"{seeds.start}..{seeds.stop - 1}), mean ± sample std; {replay_seconds:.1f} s in all",
        "",
        "| policy | cumulative CTR | vs best fixed | traffic to best: all / last 20 % |",
        "|---|---:|---:|---:|",
    ]
    for name in VARIANTS:
        share = "100 %" if name == best else "0 %"
        lines.append(
            f"| {name} alone | {100 * fixed_ctr[name]:.2f} % | "
            f"{fixed_ctr[name] / fixed_ctr[best]:.1%} | {share} / {share} |"
        )
    lines.append(
        f"| uniform split | {percent_spread(ctr['uniform'])} | "
        f"{statistics.fmean(ctr['uniform']) / fixed_ctr[best]:.1%} | 33 % / 33 % |"
    )
    lines.append(
        f"| Thompson sampling | {percent_spread(ctr['thompson'])} | "
        f"{statistics.fmean(ratio):.1%} (min {min(ratio):.1%}) | "
        f"{statistics.fmean(share_all):.1%} / {statistics.fmean(late_share):.1%} |"
    )
    lines += [
        "",
        f"- target: Thompson's mean CTR above the uniform split's: "
        f"{'met' if beats_uniform else '**missed**'} (in every run: "
        f"{'yes' if every_run_beats else 'no'})",
        f"- target: Thompson's mean CTR at least {TARGET_SHARE_OF_BEST:.0%} of the best fixed "
        f"variant's ({best}): {'met' if reaches else '**missed**'} "
        f"({statistics.fmean(ratio):.1%}; runs from {min(ratio):.1%} to {max(ratio):.1%})",
        f"- convergence: the best variant ({best}) gets {statistics.fmean(late_share):.1%} of "
        f"the last 20 % of the traffic (the ceiling with min_share {args.min_share} is "
        f"{1 - (len(VARIANTS) - 1) * args.min_share:.0%})",
        f"- figures: `{ctr_png}` (cumulative CTR), `{share_png}` (share of {best}, rolling "
        f"{WINDOW} events); not committed (`evaluation/` is ignored): rerun to draw them",
    ]
    if args.no_report:
        print("\n".join(lines))
    else:
        publish(
            "Bandit replay: Thompson sampling on MovieLens-100K", "bench.bandit_replay", argv, lines
        )
    return 0 if beats_uniform and reaches else 1


if __name__ == "__main__":
    sys.exit(main())
