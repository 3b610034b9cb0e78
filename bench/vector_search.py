"""Nearest-neighbour query latency at 70,000 items: exact search against the Annoy index.

    .venv/bin/python -m bench.vector_search [--queries N] [--no-report]

Two sets of 70,000 unit vectors: Fashion-MNIST's images as raw pixels (784-d, real clustered
data: 60,000 training and 10,000 test images), and random 1,280-d vectors (EfficientNet-Lite0's
width; random vectors are Annoy's worst case). For each: the Annoy build time, the query time of
exact search (numpy), of Annoy, and of Annoy behind a ReQL-like filter that passes 30 % of the
items, and Annoy's recall@10 against exact search.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench._report import publish
from plugins.ann import EXACT_BELOW, VectorIndex
from storage.fashion_mnist import find_directory, read

K = 10
TREES = 50


def _unit(vectors: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray[Any, Any] = vectors / np.where(norms > 0, norms, 1.0)
    return unit


def fashion_pixels() -> np.ndarray[Any, Any]:
    images = np.concatenate([split.images for split in read(find_directory(None))])
    return _unit(images.reshape(len(images), -1).astype(np.float32) / 255.0)


def random_vectors(n: int = 70_000, dimensions: int = 1280) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(0)
    return _unit(rng.standard_normal((n, dimensions), dtype=np.float32))


def _milliseconds(search: Callable[[np.ndarray[Any, Any]], object], queries: Any) -> float:
    search(queries[0])
    started = time.perf_counter()
    for query in queries:
        search(query)
    return (time.perf_counter() - started) / len(queries) * 1000


def measure(name: str, vectors: np.ndarray[Any, Any], queries: int) -> dict[str, Any]:
    n = len(vectors)
    present = np.ones(n, dtype=bool)
    started = time.perf_counter()
    index = VectorIndex.build(vectors, present, trees=TREES, exact_below=0)
    build = time.perf_counter() - started
    exact = VectorIndex.build(vectors, present, exact_below=n + 1)
    rng = np.random.default_rng(1)
    chosen = vectors[rng.choice(n, size=queries, replace=False)]
    allowed = rng.random(n) < 0.3
    recall = np.mean(
        [
            len(set(index.nearest(q, K)[0].tolist()) & set(exact.nearest(q, K)[0].tolist())) / K
            for q in chosen
        ]
    )
    return {
        "name": name,
        "n": n,
        "dimensions": vectors.shape[1],
        "build_s": build,
        "exact_ms": _milliseconds(lambda q: exact.nearest(q, K), chosen),
        "annoy_ms": _milliseconds(lambda q: index.nearest(q, K), chosen),
        "filtered_ms": _milliseconds(lambda q: index.nearest(q, K, allowed), chosen),
        "recall": float(recall),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--queries", type=int, default=200, help="queries per set")
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    rows = [
        measure("Fashion-MNIST raw pixels", fashion_pixels(), args.queries),
        measure("random (EfficientNet-Lite0's width)", random_vectors(), args.queries),
    ]
    lines = [
        f"- {args.queries} queries per set (items of the set), top {K}; Annoy angular with "
        f"{TREES} trees; `exact_below` (below it, `visual-similarity` searches exactly): "
        f"{EXACT_BELOW:,}",
        "",
        "| vectors | items | dimensions | Annoy build s | exact ms | Annoy ms | "
        "Annoy, 30 % filter ms | Annoy recall@10 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['n']:,} | {row['dimensions']} | {row['build_s']:.1f} | "
            f"{row['exact_ms']:.2f} | {row['annoy_ms']:.2f} | {row['filtered_ms']:.2f} | "
            f"{row['recall']:.3f} |"
        )
    print("\n".join(lines))
    if not args.no_report:
        title = "Vector search at 70,000 items (exact vs Annoy)"
        publish(title, "bench.vector_search", argv, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
