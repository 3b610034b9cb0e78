"""Sequence models: GRU4Rec, SASRec and the feed-forward baseline against item-kNN and popularity,
and GRU4Rec fed with image embeddings against GRU4Rec on item ids alone.

    .venv/bin/python -m bench.sequence [--seeds 1,2,3] [--parts movielens,images]
                                       [--directory DIR] [--no-report]

Part `movielens`: MovieLens-100K, protocol (b): each user's last rating (by time) is the test,
the one before it the validation (early stopping); full ranking of every item. Recall, NDCG and
MRR at 10 and 20; then, from one more fit of GRU4Rec (both settings) and SASRec on the first
seed's split, each one's seconds per training epoch, the epochs it ran, and its NDCG@10 with the
user's earlier items left out of the ranking too (reqo's harness convention, as the validation
of early stopping ranks). RecBole 1.2.1's GRU4Rec and SASRec on the same protocol, with their
defaults, come from the JSON that `python -m bench.recbole_gru4rec [--model SASRec]` writes (run
it first; the section says when it is missing). RecBole ranks the user's earlier items too, so
the comparison is made that way (`exclude_seen` off).

Part `images`: a SYNTHETIC dataset (storage/fashion_sessions.py, seeded): 4,000 Fashion-MNIST
products and simulated shoppers whose sessions move mostly between look-alike pictures. Leave
the last view out; NDCG@10 of GRU4Rec on ids, on image embeddings (`item_features: vectors`) and
on both, over all test users and over those whose test item is rare in training. The
image-fed variants run with GRU4Rec's default `shrinkage` (a content bias, and serving weighs
each item's free output embedding and bias by n / (n + 5)); `shrinkage: 0` is the model before
it (the figures of earlier runs in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench._report import publish
from bench.evaluate import open_dataset
from bench.recbole_common import json_path, recbole_reference
from plugins.builtin.gru4rec import SHRINKAGE
from plugins.evaluation.harness import (
    ModelSpec,
    Protocol,
    evaluate,
    fit_one,
    prepare_split,
    rank,
    test_histories,
)
from plugins.evaluation.metrics import ndcg_at
from plugins.evaluation.report import format_figure, summarise, versions
from plugins.manager import collect, get_plugin_manager
from plugins.training import Holdout
from server.training.item_vectors import provider_for
from storage import fashion_sessions
from storage.database import Database
from storage.snapshot import Snapshot, take_snapshot

REGISTRY = collect(get_plugin_manager())
WHOLE_HISTORY = {"session_gap": 0, "dropout_hidden": 0.3, "dropout_embedding": 0.2, "epochs": 20}
"""GRU4Rec's settings for rating data such as MovieLens (README): the whole history a session."""
SEQUENCE_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "gru4rec": ("gru4rec", {}),
    "gru4rec (whole history)": ("gru4rec", WHOLE_HISTORY),
    "sasrec": ("sasrec", {}),
    "next-item-ffn": ("next-item-ffn", {}),
    "item-knn": ("item-knn", {}),
    "popularity": ("popularity", {}),
}
FIGURES = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@10", "mrr@20")
RARE = 5
"""A test item is rare when it has at most this many training interactions."""
PIXELS = {"embedder": "pixels"}
SMALL_CNN = {"embedder": "small-cnn", "embedder_settings": {"epochs": 5, "device": "cpu"}}
ID_ONLY = "GRU4Rec, item ids"
IMAGE_FED = "GRU4Rec, pixel embeddings"
IMAGE_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    ID_ONLY: ("gru4rec", {"item_features": "id"}),
    IMAGE_FED: ("gru4rec", {"item_features": "vectors", **PIXELS}),
    "GRU4Rec, ids + pixel embeddings": ("gru4rec", {"item_features": "both", **PIXELS}),
    "GRU4Rec, small-CNN embeddings": ("gru4rec", {"item_features": "vectors", **SMALL_CNN}),
    "visual-similarity, last item (pixels)": ("visual-similarity", {**PIXELS, "recent": 1}),
}


def specs(names: Sequence[str]) -> list[ModelSpec]:
    out = []
    for name in names:
        algorithm, params = SEQUENCE_MODELS[name]
        out.append(ModelSpec(name, REGISTRY.algorithm(algorithm), params))
    return out


def movielens(seeds: tuple[int, ...], directory: Path) -> list[str]:
    snapshot = open_dataset(directory)
    models = specs(list(SEQUENCE_MODELS))
    lines = [
        "- MovieLens-100K, protocol (b): leave the last rating out by time (validation: the one "
        "before, for early stopping; the test user's history includes it); full ranking of every "
        "item, the user's earlier items included (as RecBole ranks for sequential models); every "
        f"rating a positive; seeds {', '.join(map(str, seeds))} (mean ± sample std)",
        f"- gru4rec: the defaults (sessions cut at 30-minute pauses); gru4rec (whole history): "
        f"{WHOLE_HISTORY}; sasrec: the defaults (full softmax cross-entropy)",
        "",
    ]
    # RecBole's sequential protocol ranks the user's earlier items too (its full-sort evaluation
    # masks no history for sequential models), so this comparison does as well.
    protocol = Protocol(name="loo", ks=(10, 20), seeds=seeds, exclude_seen=False)
    evaluation = evaluate(snapshot, models, protocol, progress=True)
    summary = summarise(evaluation)
    # Read after the evaluation: bench.recbole_gru4rec may still be writing it when this starts.
    lines += [
        _table(summary),
        *_gru4rec_lines(summary),
        *_recbole_lines(summary, "GRU4Rec", ("gru4rec", "gru4rec (whole history)")),
        _sasrec_line(summary),
        *_recbole_lines(summary, "SASRec", ("sasrec",)),
    ]
    timed, figures = _epoch_lines(snapshot, seeds[0])
    return [*lines, "", *timed, _sasrec_target(figures["sasrec"], seeds[0])]


def _table(summary: dict[str, dict[str, tuple[float, float | None]]]) -> str:
    header = "| model | " + " | ".join(f.replace("@", "@") for f in FIGURES) + " | train s |"
    rows = [header, "|---|" + "---:|" * (len(FIGURES) + 1)]
    for model, values in summary.items():
        cells = [format_figure(*values[figure]) for figure in FIGURES]
        cells.append(format_figure(*values["train_seconds"], digits=1))
        rows.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _gru4rec_lines(summary: dict[str, dict[str, tuple[float, float | None]]]) -> list[str]:
    ours = max(summary["gru4rec"]["ndcg@10"][0], summary["gru4rec (whole history)"]["ndcg@10"][0])
    knn = summary["item-knn"]["ndcg@10"][0]
    pop = summary["popularity"]["ndcg@10"][0]
    verdict = "met" if ours > knn and ours > pop else "**missed**"
    return [
        "",
        f"- GRU4Rec's best NDCG@10 {ours:.4f} vs item-kNN {knn:.4f} and popularity {pop:.4f}: "
        f"beats both: {verdict}",
    ]


def _recbole_lines(
    summary: dict[str, dict[str, tuple[float, float | None]]], model: str, ours: Sequence[str]
) -> list[str]:
    """RecBole's `model` with its defaults beside our best of `ours`, from the JSON its
    reference run wrote (bench.recbole_gru4rec --model MODEL); read after the evaluation, as
    that run may still be writing it when this one starts."""
    path = f"evaluation/{json_path(model).name}"
    reference = recbole_reference(model)
    if reference is None:
        return [
            f"- RecBole 1.2.1 {model}: no figure ({path} missing; run "
            f"`python -m bench.recbole_gru4rec --model {model}` first)"
        ]
    best = max(summary[name]["ndcg@10"][0] for name in ours)
    means = {name: float(v["mean"]) for name, v in reference["test_mean_std"].items()}
    theirs = means["ndcg@10"]
    verdict = "met" if best >= theirs else "**missed**"
    figures = ", ".join(f"{name} {means[name]:.4f}" for name in FIGURES if name in means)
    seeds = ", ".join(str(run["seed"]) for run in reference["seeds"])
    spent = any(run.get("budget_spent") for run in reference["seeds"])
    cut = " (training cut short by its time budget: not its converged figures)" if spent else ""
    return [
        f"- RecBole 1.2.1 {model} with its defaults, same protocol (seed {seeds}; {path}"
        f"){cut}: {figures}; ours {best:.4f} >= {theirs:.4f}: {verdict}"
    ]


def _sasrec_line(summary: dict[str, dict[str, tuple[float, float | None]]]) -> str:
    sasrec = summary["sasrec"]["ndcg@10"][0]
    gru = max(summary["gru4rec"]["ndcg@10"][0], summary["gru4rec (whole history)"]["ndcg@10"][0])
    verdict = "met" if sasrec > gru else "**missed**"
    return (
        f"- SASRec's NDCG@10 {sasrec:.4f} vs GRU4Rec's best {gru:.4f}, the user's earlier items "
        f"ranked too: beats it: {verdict}"
    )


SASREC_TARGET = (0.11, 5.0)
"""SASRec's target: NDCG@10 with the user's earlier items left out, and seconds per epoch."""


def _sasrec_target(figures: tuple[float, float], seed: int) -> str:
    (ndcg, seconds), (goal, most) = figures, SASREC_TARGET
    verdict = "met" if ndcg >= goal and seconds <= most else "**missed**"
    return (
        f"- target: SASRec's NDCG@10 with the user's earlier items left out >= {goal} at <= "
        f"{most:g} s per epoch (seed {seed}): {ndcg:.4f} at {seconds:.2f} s: {verdict}"
    )


EPOCH_MODELS = ("gru4rec", "gru4rec (whole history)", "sasrec")
"""The models whose training is timed per epoch."""


def _epoch_lines(snapshot: Snapshot, seed: int) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """Each of EPOCH_MODELS fitted once more on the protocol's training part: a line with its
    seconds per epoch (the fit's seconds, validation included, over its epochs), its epochs,
    and its test NDCG@10 with and without the user's earlier items in the ranking; and by
    model, the NDCG@10 without them and the seconds per epoch."""
    protocol = Protocol(name="loo", ks=(10,), seeds=(seed,))
    split = prepare_split(snapshot, protocol, seed)
    candidates = np.array([item is not None for item in snapshot.item_ids], dtype=bool)
    test = split.holdouts.test
    relevant = [test.of_user(int(u)) for u in test.users]
    nothing = np.zeros(0, dtype=np.int64)
    keep_seen = Holdout.of(nothing, nothing, snapshot.n_users)
    lines, figures = [], {}
    for spec in specs(EPOCH_MODELS):
        model, data, seconds = fit_one(snapshot, spec, protocol, seed, split)
        epochs = max(1, int(getattr(model, "epochs_trained", 1)))
        best = int(getattr(model, "best_epoch", epochs))
        device = getattr(model, "device_used", "cpu")
        history = test_histories(snapshot, spec, protocol, split, data)
        ndcg = {}
        for name, left_out in (("all", keep_seen), ("unseen", split.holdouts.seen_before_test)):
            ranked = rank(model, history, test.users, left_out, 10, candidates)
            ndcg[name] = float(ndcg_at(ranked, relevant, 10).mean())
        lines.append(
            f"- {spec.name} on ML-100K (protocol (b) train part, seed {seed}): "
            f"{seconds / epochs:.2f} s per epoch over {epochs} epochs (best {best}), on {device} "
            f"(this machine's CPU; no GPU was lent); test NDCG@10 {ndcg['all']:.4f}, "
            f"{ndcg['unseen']:.4f} with the user's earlier items left out"
        )
        figures[spec.name] = (ndcg["unseen"], seconds / epochs)
    return lines, figures


@dataclass(frozen=True)
class ImageFigures:
    ndcg_all: float
    ndcg_rare: float
    users: int
    rare_users: int


def images(seeds: tuple[int, ...], directory: Path) -> list[str]:
    path = directory / "fashion-sessions.duckdb"
    database = Database("fashion-sessions", path)
    try:
        if not database.read_sync(take_snapshot).n_items:
            print(fashion_sessions.load(database, fashion_sessions.Simulation(seed=0)))
        snapshot = database.read_sync(take_snapshot)
        provider = provider_for(database, REGISTRY, snapshot.item_properties, snapshot.n_items)
        results: dict[str, list[ImageFigures]] = {name: [] for name in IMAGE_VARIANTS}
        for seed in seeds:
            protocol = Protocol(name="loo", ks=(10,), seeds=(seed,))
            split = prepare_split(snapshot, protocol, seed)
            for name, (algorithm, params) in IMAGE_VARIANTS.items():
                spec = ModelSpec(name, REGISTRY.algorithm(algorithm), params)
                results[name].append(_image_run(snapshot, spec, protocol, seed, split, provider))
                print(name, seed, results[name][-1])
    finally:
        database.close()
    users = len(set(snapshot.users.tolist()))
    lines = [
        "- SYNTHETIC data (storage/fashion_sessions.py, seed 0; `reqo dataset load "
        f"fashion-sessions`): {snapshot.n_items:,} Fashion-MNIST products, {users:,} simulated "
        f"shoppers, {len(snapshot.users):,} detail views; sessions move to a look-alike picture "
        "75 % of the time. Leave the last view out; full ranking; NDCG@10, mean over seeds "
        f"{', '.join(map(str, seeds))}; rare: test items with at most {RARE} training views",
        "- image embeddings: `pixels` (the raw pictures; the simulation's look-alikes are "
        "nearest by pixel cosine, so these carry its structure most directly) and `small-cnn` "
        "(trained on the catalog's categories, the fashion demo's embedder)",
        "- for scale: `visual-similarity` on pixels from the last item alone (no sequence "
        "model) follows the simulation's own look-alike rule",
        f"- the GRU4Rec variants fed with vectors use its default `shrinkage` ({SHRINKAGE:g}): "
        "a bias part learned from the item's vector, and serving weighs each item's free output "
        f"embedding and bias by n / (n + {SHRINKAGE:g}), n its training views, so that a rarely "
        "seen item is scored by what it looks like (`shrinkage: 0` is the model of earlier runs)",
        "",
        "| model | NDCG@10, all test users | NDCG@10, rare test items | rare users |",
        "|---|---:|---:|---:|",
    ]
    for name, runs in results.items():
        all_ = [r.ndcg_all for r in runs]
        rare = [r.ndcg_rare for r in runs]
        lines.append(
            f"| {name} | {format_figure(float(np.mean(all_)), _std(all_))} | "
            f"{format_figure(float(np.mean(rare)), _std(rare))} | {runs[0].rare_users:,} |"
        )
    ids = np.mean([r.ndcg_all for r in results[ID_ONLY]])
    fed = np.mean([r.ndcg_all for r in results[IMAGE_FED]])
    ids_rare = np.mean([r.ndcg_rare for r in results[ID_ONLY]])
    fed_rare = np.mean([r.ndcg_rare for r in results[IMAGE_FED]])
    lines += [
        "",
        f"- image-fed (pixels) {fed:.4f} vs id-only {ids:.4f} NDCG@10: image-fed beats id-only: "
        f"{'met' if fed > ids else '**missed**'}",
        f"- on rare test items {fed_rare:.4f} vs {ids_rare:.4f}: "
        f"{'met' if fed_rare > ids_rare else '**missed**'}",
        f"- image-fed beats id-only on rare test items without losing overall (both above "
        f"id-only): {'met' if fed_rare > ids_rare and fed >= ids else '**missed**'}",
    ]
    return lines


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _image_run(
    snapshot: Snapshot,
    spec: ModelSpec,
    protocol: Protocol,
    seed: int,
    split: Any,
    provider: Any,
) -> ImageFigures:
    model, data, _ = fit_one(snapshot, spec, protocol, seed, split, provider)
    test = split.holdouts.test
    users = test.users
    candidates = np.array([item is not None for item in snapshot.item_ids], dtype=bool)
    ranked = rank(model, data, users, split.holdouts.seen_before_test, 10, candidates)
    relevant = [test.of_user(int(u)) for u in users]
    ndcg = ndcg_at(ranked, relevant, 10)
    counts = np.bincount(data.items, minlength=data.n_items)
    rare = np.array([bool(np.all(counts[items] <= RARE)) for items in relevant])
    return ImageFigures(
        float(ndcg.mean()),
        float(ndcg[rare].mean()) if rare.any() else 0.0,
        len(users),
        int(rare.sum()),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument("--parts", default="movielens,images", help="movielens and/or images")
    parser.add_argument(
        "--directory",
        type=Path,
        default=Path(tempfile.gettempdir()) / "reqo-bench-sequence",
        help="where the DuckDB files go (kept for later runs)",
    )
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    seeds = tuple(int(seed) for seed in args.seeds.split(",") if seed.strip())
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    unknown = parts - {"movielens", "images"}
    if unknown:
        parser.error(f"--parts: unknown {', '.join(sorted(unknown))}")
    args.directory.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    if "movielens" in parts:
        lines += movielens(seeds, args.directory)
    if "images" in parts:
        lines += ["", "**Image-fed GRU4Rec (SYNTHETIC sessions)**", ""]
        lines += images(seeds, args.directory)
    found = versions()
    lines += ["", "- " + ", ".join(f"{name} {v}" for name, v in found.items() if v)]
    if args.no_report:
        print("\n".join(lines))
    else:
        publish("Sequence models: GRU4Rec", "bench.sequence", argv, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
