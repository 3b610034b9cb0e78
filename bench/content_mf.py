"""content-mf on warm MovieLens-100K: EASE, the content models and their blends, overall and on
rare items.

    .venv/bin/python -m bench.content_mf [--seeds 1,2,3] [--directory DIR] [--no-report]

Protocol (a) of bench.evaluate (RecBole's random 80/10/10 split per user, every rating a positive
of weight 1, full ranking of the items the user has not rated in train or validation). Per seed:
EASE, content-mf and attribute-ridge (default parameters; their text vectors are MiniLM's of each
film's title and genres, embedded once by the host's text provider, as `reqo evaluate` passes
them; the genres and the release year as properties) fitted on the train part; each blend is an
`ensemble` of EASE and one content model (z-scores, EASE's weight 1), the content model's weight
chosen from a grid by the validation NDCG@10. Figures on the test part:

- overall: NDCG@10 and Recall@10 over every test user;
- rare: the test items with fewer than 5 training interactions, for the users who have one:
  NDCG@10 of those items ranked among all items (the user's other test items left out);
- tail: the same items ranked among the rare items only (what a model knows about which rare
  item suits a user, with popularity out of the way).

Targets (issue 20): the blend (content-mf's) loses at most 2 % of EASE's NDCG@10; a content
model or a blend beats EASE on the rare items.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench._report import publish
from bench.evaluate import DATABASE, open_dataset
from plugins.algorithm import Algorithm
from plugins.builtin.attribute_ridge import AttributeRidge
from plugins.builtin.content_mf import ContentMF
from plugins.builtin.ease import EASE
from plugins.builtin.ensemble import Ensemble
from plugins.evaluation.harness import (
    ModelSpec,
    PreparedSplit,
    Protocol,
    fit_one,
    histories,
    prepare_split,
)
from plugins.evaluation.metrics import ndcg_at, recall_at, top_k
from plugins.manager import collect, get_plugin_manager
from plugins.training import Holdout, ItemEmbeddings, ItemTextVectorProvider, TrainingData
from storage.snapshot import Snapshot

RARE = 5
"""A test item is rare when it has fewer than this many training interactions."""
BLEND_WEIGHTS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
"""content-mf's weights in the blend tried on the validation part (EASE's is 1)."""
MAX_LOSS = 0.02
K = 10
HYBRIDS: dict[str, type[ContentMF] | type[AttributeRidge]] = {
    "content-mf": ContentMF,
    "attribute-ridge": AttributeRidge,
}
"""The content models, each measured alone and blended with EASE."""
MODELS = ("ease", "content-mf", "blend", "attribute-ridge", "blend (attribute-ridge)")
Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Figures:
    """One model's test figures on one seed."""

    ndcg: float
    recall: float
    rare: float
    tail: float
    train_seconds: float


def memoised(provider: ItemTextVectorProvider) -> ItemTextVectorProvider:
    """The provider, asked once per embedder: every seed's fit gets the same vectors."""
    found: dict[str, ItemEmbeddings] = {}

    def provide(*, embedder: str) -> ItemEmbeddings:
        if embedder not in found:
            started = time.perf_counter()
            found[embedder] = provider(embedder=embedder)
            print(f"text vectors ({embedder}) in {time.perf_counter() - started:.0f} s")
        return found[embedder]

    return provide


def scores_of(model: Algorithm, data: TrainingData, candidates: Array) -> Array:
    """Every user's scores of every item, from their train history."""
    users = list(range(data.n_users))
    return model.score_users(histories(data, users), data.n_items, candidates)


def measure(scores: Array, holdout: Holdout, seen: Holdout, counts: Array) -> dict[str, float]:
    """NDCG@10 and Recall@10 overall, and NDCG@10 on the rare items (ranked among all items,
    and among the rare items)."""
    users = holdout.users
    excluded = [seen.of_user(int(u)) for u in users]
    relevant = [holdout.of_user(int(u)) for u in users]
    ranked = top_k(scores[users], K, excluded)
    common = np.flatnonzero(counts >= RARE)
    rare_users, among_all, among_rare, rare_items = [], [], [], []
    for user, seen_items, items in zip(users, excluded, relevant, strict=True):
        rare = items[counts[items] < RARE]
        if len(rare):
            rare_users.append(int(user))
            rare_items.append(rare)
            among_all.append(np.concatenate([seen_items, items[counts[items] >= RARE]]))
            among_rare.append(np.concatenate([seen_items, common]))
    rare_scores = scores[rare_users]
    return {
        "ndcg": float(ndcg_at(ranked, relevant, K).mean()),
        "recall": float(recall_at(ranked, relevant, K).mean()),
        "rare": float(ndcg_at(top_k(rare_scores, K, among_all), rare_items, K).mean()),
        "tail": float(ndcg_at(top_k(rare_scores, K, among_rare), rare_items, K).mean()),
        "rare_users": float(len(rare_users)),
    }


def blend(ease: Algorithm, hybrid: Algorithm, weight: float) -> Ensemble:
    """The ensemble of the two fitted models, as a configuration would declare it."""
    ensemble = Ensemble(members=["ease", hybrid.name], weights={"ease": 1.0, hybrid.name: weight})
    ensemble.n_items = ease.n_items
    members = {"ease": ease, hybrid.name: hybrid}
    ensemble.bind(members.__getitem__)
    return ensemble


def blend_name(hybrid: str) -> str:
    """The blend's row: "blend" for content-mf's (the issue's hybrid), else named."""
    return "blend" if hybrid == "content-mf" else f"blend ({hybrid})"


def run_seed(
    snapshot: Snapshot, seed: int, texts: ItemTextVectorProvider
) -> tuple[dict[str, Figures], dict[str, float], int]:
    """One seed: each model's test figures, each blend's weight and the rare users."""
    protocol = Protocol("random", split=(0.8, 0.1, 0.1), ks=(K,), seeds=(seed,))
    split: PreparedSplit = prepare_split(snapshot, protocol, seed)
    candidates = np.array([item is not None for item in snapshot.item_ids], dtype=bool)
    ease, data, ease_seconds = fit_one(snapshot, ModelSpec("ease", EASE), protocol, seed, split)
    counts = np.bincount(data.items, minlength=data.n_items)
    train_items = Holdout.of(
        np.repeat(np.arange(data.n_users), np.diff(data.indptr)), data.items, data.n_users
    )
    valid = split.holdouts.valid
    test, seen = split.holdouts.test, split.holdouts.seen_before_test
    scored: dict[str, tuple[Array, float]] = {
        "ease": (scores_of(ease, data, candidates), ease_seconds)
    }
    weights: dict[str, float] = {}
    for name, algorithm in HYBRIDS.items():
        hybrid, _, seconds = fit_one(
            snapshot, ModelSpec(name, algorithm), protocol, seed, split, item_text_vectors=texts
        )
        blends = {w: scores_of(blend(ease, hybrid, w), data, candidates) for w in BLEND_WEIGHTS}

        def on_valid(w: float, blends: dict[float, Array] = blends) -> float:
            return measure(blends[w], valid, train_items, counts)["ndcg"]

        weights[name] = max(BLEND_WEIGHTS, key=on_valid)
        scored[name] = (scores_of(hybrid, data, candidates), seconds)
        scored[blend_name(name)] = (blends[weights[name]], ease_seconds + seconds)
    figures = {}
    rare_users = 0
    for name, (scores, seconds) in scored.items():
        found = measure(scores, test, seen, counts)
        rare_users = int(found["rare_users"])
        figures[name] = Figures(
            found["ndcg"], found["recall"], found["rare"], found["tail"], seconds
        )
    line = ", ".join(f"{n} {f.ndcg:.4f} / rare {f.rare:.4f}" for n, f in figures.items())
    print(f"seed {seed} (blend weights {weights}): {line}", flush=True)
    return figures, weights, rare_users


def _mean(values: Sequence[float], digits: int = 4) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {spread:.{digits}f}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report_lines(
    runs: Sequence[dict[str, Figures]],
    weights: Sequence[Mapping[str, float]],
    rare_users: Sequence[int],
) -> list[str]:
    """The table and the verdicts."""

    def values(model: str, pick: Callable[[Figures], float]) -> list[float]:
        return [pick(run[model]) for run in runs]

    lines = [
        "| model | NDCG@10 | Recall@10 | NDCG@10 rare, among all items | "
        "NDCG@10 rare, among rare items | train s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for model in MODELS:
        cells = [
            _mean(values(model, lambda f: f.ndcg)),
            _mean(values(model, lambda f: f.recall)),
            _mean(values(model, lambda f: f.rare)),
            _mean(values(model, lambda f: f.tail)),
            _mean(values(model, lambda f: f.train_seconds), 2),
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")

    def mean(model: str, pick: Callable[[Figures], float]) -> float:
        return statistics.fmean(values(model, pick))

    ease_ndcg, blend_ndcg = mean("ease", lambda f: f.ndcg), mean("blend", lambda f: f.ndcg)
    loss = 1.0 - blend_ndcg / ease_ndcg
    contenders = [m for m in MODELS if m != "ease"]
    best_rare = max(contenders, key=lambda m: mean(m, lambda f: f.rare))
    best_tail = max(contenders, key=lambda m: mean(m, lambda f: f.tail))
    rare = mean(best_rare, lambda f: f.rare)
    tail = mean(best_tail, lambda f: f.tail)
    ease_rare, ease_tail = mean("ease", lambda f: f.rare), mean("ease", lambda f: f.tail)
    chosen = "; ".join(
        f"{hybrid}'s {', '.join(f'{run[hybrid]:g}' for run in weights)}" for hybrid in HYBRIDS
    )
    lines += [
        "",
        f"- blend weights chosen on validation by seed (EASE's 1): {chosen}; users with a rare "
        f"test item: {', '.join(f'{n:,}' for n in rare_users)}",
        f"- target: the blend loses at most {MAX_LOSS:.0%} of EASE's NDCG@10: "
        f"{_verdict(loss <= MAX_LOSS)} ({blend_ndcg:.4f} vs {ease_ndcg:.4f}, "
        f"{-loss:+.1%})",
        f"- target: better than EASE on rare test items (< {RARE} training interactions), "
        f"ranked among all items: {_verdict(rare > ease_rare)} ({best_rare} {rare:.4f} vs "
        f"{ease_rare:.4f}); among the rare items: {_verdict(tail > ease_tail)} "
        f"({best_tail} {tail:.4f} vs {ease_tail:.4f})",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument(
        "--directory",
        type=Path,
        default=Path(tempfile.gettempdir()) / "reqo-bench-evaluate",
        help="where the MovieLens-100K DuckDB file is (kept for later runs)",
    )
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    try:
        seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError:
        parser.error(f"--seeds: {args.seeds!r} is not a list of integers")
    from server.training.item_vectors import text_provider_for

    snapshot = open_dataset(args.directory)
    registry = collect(get_plugin_manager())
    texts = memoised(text_provider_for(registry, snapshot.item_properties, snapshot.n_items))
    # Embedded before the fits, so that content-mf's training time is the model's: a server
    # takes the vectors from the database's cache, filled as items are written.
    started = time.perf_counter()
    texts(embedder="minilm")
    embedding_seconds = time.perf_counter() - started
    runs, weights, rare_users = [], [], []
    for seed in seeds:
        figures, weight, users = run_seed(snapshot, seed, texts)
        runs.append(figures)
        weights.append(weight)
        rare_users.append(users)
    data_lines = (
        f"- MovieLens-100K ({DATABASE}), protocol (a): per user shuffled and split 80/10/10, "
        "every rating a positive of weight 1, full ranking of the items not rated in train or "
        f"validation; seeds {', '.join(map(str, seeds))} (mean ± sample std over seeds); EASE, "
        "content-mf and attribute-ridge with default parameters, the content models' text "
        "vectors MiniLM's (`minilm`) of each film's title and genres, their properties the "
        "genres and the release year; each blend an `ensemble` (z-scores) of EASE and one "
        "content model (`blend`: content-mf, the issue's hybrid); rare: test items "
        f"with fewer than {RARE} training interactions (the user's other test items left out)",
        f"- the {snapshot.n_items:,} films' text vectors embedded once before the fits "
        f"({embedding_seconds:.0f} s), not counted in the content models' training time",
    )
    lines = [*data_lines, "", *report_lines(runs, weights, rare_users)]
    if args.no_report:
        print("\n".join(lines))
    else:
        title = "content-mf: content and collaborative hybrid, warm ML-100K"
        publish(title, "bench.content_mf", argv, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
