"""Replay simulator: online optimisation of an ensemble's member weights on MovieLens-100K, against
weights optimised offline, the best fixed member alone and equal weights.

    .venv/bin/python -m bench.online_weights [--seed 1] [--runs 5] [--population 4]
                                             [--per-candidate 150] [--min-share 0.05]
                                             [--sigma 1.0] [--budget 60] [--directory DIR]
                                             [--out evaluation] [--no-report]

Each user's last 20 % of ratings (by time) are held out, as in bench.bandit_replay; the members
(EASE, item-kNN, popularity; default parameters) are fitted once on the rest, and each member's
scores of every user are normalised as the ensemble normalises them at a request (z-scores over
the candidates, the user's train items left out). The held-out ratings are then replayed in
time order: for each, the policy picks a weighting, the blend of the normalised scores
(plugins.builtin.ensemble.combine) shows the user its top 10, and the event is a click when the
held-out item is in it.

Policies:
1. online: `server.experiments.evolution.WeightEvolution` (CMA-ES, Gaussian-process surrogate)
   from equal weights, each generation's weightings and the incumbent sharing the traffic by
   Thompson sampling (`server.experiments.bandits.Bandit`), as the server runs them; a
   generation ends when each candidate has served `--per-candidate` recommendations. Seeded
   per run (`--seed` .. `--seed + runs - 1`).
2. offline: fixed weights that `plugins.evaluation.search` finds (CMA-ES with its surrogate,
   `--budget` evaluations, from equal weights) for the best recall@10 on the validation users of
   a random 80/10/10 split of the train part; one search per run seed.
3. the best member alone (the highest replay CTR, in hindsight).
4. equal weights (where the online search starts).

Figures: cumulative CTR over the replay, and the online incumbent's weights by generation, to
`--out` (gitignored `evaluation/` by default).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench._replay_plots import percent_spread, plot_cumulative_ctr
from bench._report import publish
from bench.bandit_replay import HELD_OUT, TOP, cumulative_ctr, per_user_temporal
from bench.evaluate import open_dataset
from plugins.builtin.ensemble import combine, normalise
from plugins.evaluation.harness import (
    ModelSpec,
    PreparedSplit,
    Protocol,
    fit_one,
    histories,
    make_holdouts,
)
from plugins.evaluation.metrics import top_k
from plugins.evaluation.search import Objective, search
from plugins.evaluation.splits import TEST
from plugins.manager import Registry, collect, get_plugin_manager
from server.experiments.bandits import Bandit
from server.experiments.evolution import WeightEvolution
from server.experiments.variants import EvolutionSettings
from storage.snapshot import Snapshot

Array = np.ndarray[Any, Any]
MEMBERS = ("ease", "item-knn", "popularity")
NORMALISATION = "zscore"
METRIC = "recall@10"
"""The offline search's objective: the share of each validation user's items in the top 10, the
closest of the harness's metrics to the replay's CTR."""


@dataclass
class Replay:
    """The held-out events in time order and every member's normalised scores of every user."""

    users: Array
    items: Array
    scores: dict[str, Array]
    """users x items, float32, -inf for the user's train items and deleted items."""
    train: Snapshot
    """The train part, for the offline search."""
    fit_seconds: dict[str, float]
    _hits: dict[tuple[tuple[str, float], ...], Array]

    @property
    def events(self) -> int:
        return len(self.users)

    def hits(self, weights: Mapping[str, float]) -> Array:
        """Whether each event's item is in its user's top 10 under a weighting (cached)."""
        key = tuple(sorted((m, round(float(w), 6)) for m, w in weights.items()))
        found = self._hits.get(key)
        if found is None:
            parts = [(self.scores[m], float(w)) for m, w in weights.items() if w > 0]
            shape = next(iter(self.scores.values())).shape
            top = top_k(combine(parts, NORMALISATION, shape), TOP)
            found = (top[self.users] == self.items[:, None]).any(axis=1)
            self._hits[key] = found
        return found


def prepare(snapshot: Snapshot, registry: Registry, seed: int) -> Replay:
    """Fit the members on the train part and normalise their scores of every user."""
    parts = per_user_temporal(snapshot, HELD_OUT)
    split = PreparedSplit(parts, make_holdouts(snapshot, parts), None)
    protocol = Protocol(name="random", split=(0.8, 0.0, 0.2), ks=(TOP,), seeds=(seed,))
    test = parts == TEST
    # Held-out events whose item the user has in train can never be recommended: left out.
    train_pairs = snapshot.users[~test] * snapshot.n_items + snapshot.items[~test]
    keep = test & ~np.isin(snapshot.users * snapshot.n_items + snapshot.items, train_pairs)
    order = np.flatnonzero(keep)[np.argsort(snapshot.timestamps[keep], kind="stable")]
    candidates = np.array([item is not None for item in snapshot.item_ids])
    everyone = list(range(snapshot.n_users))
    seen = split.holdouts.seen_before_test
    scores, seconds = {}, {}
    for name in MEMBERS:
        spec = ModelSpec(name, registry.algorithms[name])
        model, data, seconds[name] = fit_one(snapshot, spec, protocol, seed, split)
        raw = model.score_users(histories(data, everyone), data.n_items, candidates)
        for user in everyone:
            raw[user, seen.of_user(user)] = -np.inf
        scores[name] = normalise(raw, NORMALISATION)
    train = replace(
        snapshot,
        users=snapshot.users[~test],
        items=snapshot.items[~test],
        kinds=snapshot.kinds[~test],
        timestamps=snapshot.timestamps[~test],
        ratings=snapshot.ratings[~test],
        portions=snapshot.portions[~test],
    )
    return Replay(snapshot.users[order], snapshot.items[order], scores, train, seconds, {})


@dataclass
class OnlineRun:
    clicks: Array
    generations: list[tuple[int, tuple[float, ...]]]
    """(event at which it opened, the incumbent's normalised weights) per generation."""
    final: dict[str, float]
    """The last incumbent's served weights."""


def run_online(replay: Replay, settings: EvolutionSettings) -> OnlineRun:
    """Replay the events under the online evolution (the server's classes)."""
    evolution = WeightEvolution(settings)
    stats: dict[str, Any] = {}
    bandit = Bandit(evolution.experiment, np.random.default_rng(settings.seed), stats)
    clicks = np.zeros(replay.events, dtype=bool)
    generations = [(0, evolution.current.incumbent.weights)]
    for event in range(replay.events):
        variant = bandit.choose()
        clicked = bool(replay.hits(variant.ensemble_weights or {})[event])
        clicks[event] = clicked
        bandit.served(variant.name)
        bandit.rewarded(variant.name, clicked=clicked)
        if evolution.ready({name: arm.served for name, arm in stats.items()}):
            evolution.advance(bandit.evidence())
            bandit = Bandit(evolution.experiment, bandit.rng, stats)
            generations.append((event + 1, evolution.current.incumbent.weights))
    final = evolution.served_weights(evolution.current.incumbent.weights)
    return OnlineRun(clicks, generations, final)


def incumbent_shares(run: OnlineRun, events: int) -> Array:
    """The incumbent's weight shares at every event of the replay (events x members)."""
    shares = np.empty((events, len(MEMBERS)))
    bounds = [opened for opened, _ in run.generations] + [events]
    for (opened, weights), end in zip(run.generations, bounds[1:], strict=True):
        shares[opened:end] = weights
    return shares


def optimise_offline(replay: Replay, registry: Registry, seed: int, budget: int) -> dict[str, Any]:
    """Fixed weights from the offline search on the train part (validation recall@10)."""
    specs = [ModelSpec(name, registry.algorithm(name)) for name in MEMBERS]
    protocol = Protocol(name="random", split=(0.8, 0.1, 0.1), ks=(TOP,), seeds=(seed,))
    objective = Objective(replay.train, specs, protocol, NORMALISATION, METRIC)
    result = search(objective, dict.fromkeys(MEMBERS, 1.0), budget=budget, seed=seed)
    return {"weights": result.best_weights, "validation": result.best.value}


def plot(
    path: Path,
    curves: dict[str, list[Array]],
    online: list[OnlineRun],
    events: int,
) -> tuple[Path, Path]:
    """Two PNGs: cumulative CTR of every policy, and the online incumbent's weights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.mkdir(parents=True, exist_ok=True)
    ctr_png, weights_png = path / "online_weights_ctr.png", path / "online_weights_weights.png"
    title = f"ML-100K replay: ensemble weights ({len(online)} seeded runs, min-max band)"
    plot_cumulative_ctr(ctr_png, curves, title)

    figure, axes = plt.subplots(figsize=(9, 4.5))
    shares = np.array([incumbent_shares(run, events) for run in online])  # runs x events x members
    x = np.arange(events)
    for index, member in enumerate(MEMBERS):
        color = f"C{index}"
        for run in shares:
            axes.plot(x, 100 * run[:, index], color=color, alpha=0.15, linewidth=0.8)
        axes.plot(x, 100 * shares[:, :, index].mean(axis=0), color=color, linewidth=2, label=member)
    axes.set_ylim(0, 100)
    axes.set_xlabel("held-out events replayed (time order)")
    axes.set_ylabel("incumbent's weight share (%)")
    axes.set_title("Online evolution: the incumbent's weights (mean over the runs; each run faint)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(weights_png, dpi=110)
    plt.close(figure)
    return ctr_png, weights_png


def _shares(weights: Mapping[str, float]) -> str:
    total = sum(weights.values()) or 1.0
    return ", ".join(f"{m} {weights.get(m, 0.0) / total:.2f}" for m in MEMBERS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.online_weights", description=__doc__)
    parser.add_argument("--seed", type=int, default=1, help="the fit's and the first run's seed")
    parser.add_argument("--runs", type=int, default=5, help="seeded runs per policy (5)")
    parser.add_argument("--population", type=int, default=4, help="weightings per generation (4)")
    parser.add_argument(
        "--per-candidate", type=int, default=150, help="recommendations before a verdict (150)"
    )
    parser.add_argument("--min-share", type=float, default=0.05, help="Thompson's (0.05)")
    parser.add_argument("--sigma", type=float, default=1.0, help="CMA-ES's first step (1.0)")
    parser.add_argument("--budget", type=int, default=60, help="offline evaluations (60)")
    parser.add_argument(
        "--directory",
        type=Path,
        default=Path(tempfile.gettempdir()) / "reqo-bench-evaluate",
        help="where the ML-100K DuckDB file is (kept for later runs)",
    )
    parser.add_argument("--out", type=Path, default=Path("evaluation"), help="for the PNGs")
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.population < 3 or args.per_candidate < 1 or args.budget < 1:
        parser.error("--runs >= 1, --population >= 3, --per-candidate >= 1, --budget >= 1")
    if not 0 < args.min_share <= 1 / (args.population + 1):
        parser.error(f"--min-share above 0 and at most 1/{args.population + 1}")

    registry = collect(get_plugin_manager())
    snapshot = open_dataset(args.directory)
    started = time.perf_counter()
    replay = prepare(snapshot, registry, args.seed)
    events = replay.events
    seeds = range(args.seed, args.seed + args.runs)
    members = {name: replay.hits({name: 1.0}) for name in MEMBERS}
    best = max(MEMBERS, key=lambda name: float(members[name].mean()))
    equal = replay.hits(dict.fromkeys(MEMBERS, 1.0))
    prepared = time.perf_counter() - started

    started = time.perf_counter()
    offline = [optimise_offline(replay, registry, seed, args.budget) for seed in seeds]
    offline_hits = [replay.hits(found["weights"]) for found in offline]
    offline_seconds = time.perf_counter() - started

    started = time.perf_counter()
    online = []
    for seed in seeds:
        settings = EvolutionSettings(
            model="blend",
            members=MEMBERS,
            start=(1.0,) * len(MEMBERS),
            population=args.population,
            recommendations_per_candidate=args.per_candidate,
            min_share=args.min_share,
            sigma=args.sigma,
            seed=seed,
            sticky_seconds=0.0,
        )
        online.append(run_online(replay, settings))
    online_seconds = time.perf_counter() - started

    ctr = {
        "online": [float(run.clicks.mean()) for run in online],
        "offline": [float(hits.mean()) for hits in offline_hits],
        "best": [float(members[best].mean())],
        "equal": [float(equal.mean())],
    }
    tail = events - events // 5
    late = {
        "online": [float(run.clicks[tail:].mean()) for run in online],
        "offline": [float(hits[tail:].mean()) for hits in offline_hits],
        "best": [float(members[best][tail:].mean())],
        "equal": [float(equal[tail:].mean())],
    }
    ctr_png, weights_png = plot(
        args.out,
        {
            "online evolution (from equal weights)": [cumulative_ctr(r.clicks) for r in online],
            "offline-optimised weights": [cumulative_ctr(h) for h in offline_hits],
            f"{best} alone (best member)": [cumulative_ctr(members[best])],
            "equal weights": [cumulative_ctr(equal)],
        },
        online,
        events,
    )

    reference = statistics.fmean(ctr["best"])
    generations = [len(run.generations) - 1 for run in online]
    lines = [
        f"- MovieLens-100K, {snapshot.n_users:,} users, {snapshot.n_items:,} items: each user's "
        f"last {HELD_OUT:.0%} of ratings (by time) held out, {len(replay.train.users):,} "
        f"ratings to fit on; {events:,} held-out events (items not in the user's train part) "
        "replayed in time order; each shows the user the blend's top "
        f"{TOP} ({NORMALISATION} per member, `plugins.builtin.ensemble.combine`), a click when "
        "the held-out item is in it",
        f"- members: {', '.join(MEMBERS)} (default parameters, fitted once with seed "
        f"{args.seed} in {', '.join(f'{replay.fit_seconds[m]:.1f} s' for m in MEMBERS)})",
        f"- online: `server.experiments.evolution.WeightEvolution` from equal weights, population "
        f"{args.population} + the incumbent by Thompson sampling (min_share {args.min_share}), "
        f"{args.per_candidate} recommendations per candidate, sigma {args.sigma}; "
        f"{statistics.fmean(generations):.1f} generations per run ({min(generations)}.."
        f"{max(generations)}); {online_seconds:.0f} s for {args.runs} runs",
        f"- offline: `plugins.evaluation.search` on the train part (random 80/10/10, validation "
        f"{METRIC}, budget {args.budget}), one search per seed; {offline_seconds:.0f} s",
        f"- {args.runs} seeded runs (seeds {seeds.start}..{seeds.stop - 1}), mean ± sample std; "
        f"the fixed policies are deterministic; preparation {prepared:.0f} s",
        "",
        "| policy | cumulative CTR | vs best member | last 20 % of events |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (
        ("online", "online evolution (from equal weights)"),
        ("offline", "offline-optimised weights"),
        ("best", f"{best} alone (best member)"),
        ("equal", "equal weights"),
    ):
        lines.append(
            f"| {label} | {percent_spread(ctr[key])} | "
            f"{statistics.fmean(ctr[key]) / reference:.1%} | {percent_spread(late[key])} |"
        )
    final = {m: statistics.fmean(_share(r.final, m) for r in online) for m in MEMBERS}
    found = {m: statistics.fmean(_share(o["weights"], m) for o in offline) for m in MEMBERS}
    lines += [
        "",
        "- other members alone: "
        + ", ".join(
            f"{name} {100 * float(members[name].mean()):.2f} %" for name in MEMBERS if name != best
        ),
        f"- weight shares, mean over the runs: online's last incumbent {_shares(final)}; "
        f"offline's {_shares(found)} (validation {METRIC} "
        f"{statistics.fmean(o['validation'] for o in offline):.4f})",
        f"- figures: `{ctr_png}` (cumulative CTR), `{weights_png}` (the online incumbent's "
        "weight shares by generation); not committed (`evaluation/` is ignored): rerun to draw "
        "them",
    ]
    if args.no_report:
        print("\n".join(lines))
    else:
        publish(
            "Online ensemble weights: replay on MovieLens-100K", "bench.online_weights", argv, lines
        )
    return 0


def _share(weights: Mapping[str, float], member: str) -> float:
    total = sum(weights.values()) or 1.0
    return weights.get(member, 0.0) / total


if __name__ == "__main__":
    sys.exit(main())
