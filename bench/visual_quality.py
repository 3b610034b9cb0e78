"""Visual similarity quality on Fashion-MNIST: which embedder finds items of the same category.

    .venv/bin/python -m bench.visual_quality [--limit N] [--subset-224 N] [--epochs E]
                                             [--no-progress] [--no-report]

The 10,000 test images are queried against the 60,000 training images (the catalog) by cosine
similarity, exact search; precision@10 is the share of the ten nearest training images that
share the query's category (chance: 0.1). Embedders: raw pixels (the baseline), EfficientNet-Lite0
pretrained on ImageNet at 112 px (and, with `--subset-224`, at its native 224 px on a subset,
beside 112 px and pixels on the same subset), and the small CNN trained on the training images
with their categories. Throughput is images embedded per second, from PIL images to unit
vectors (decoding excluded), over train and test; the small CNN's training time is given apart.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from tqdm import tqdm

from bench._report import publish
from plugins.builtin.image_embedders import EfficientNetLite0, Pixels
from plugins.builtin.small_cnn import SmallCNN
from plugins.embedders import Embedder, Vectors
from storage.fashion_mnist import CATEGORIES, Split, find_directory, read

BATCH = 64
"""Images per embedding call: EfficientNet-Lite0 ran 1.7x faster per image at 64 than at 256 on
the 2-core CPU (cache-sized activations)."""


@dataclass(frozen=True)
class Result:
    """One embedder's figures on one query/catalog pair."""

    embedder: str
    data: str
    precision_at_10: float
    images_per_second: float
    train_seconds: float | None = None


def images_of(split: Split) -> list[Image.Image]:
    return [Image.fromarray(np.asarray(pixels, dtype=np.uint8)) for pixels in split.images]


def embed_all(
    embedder: Embedder, images: Sequence[Image.Image], progress: bool, what: str
) -> tuple[Vectors, float]:
    """The vectors of all images, in batches, and the seconds it took."""
    started = time.perf_counter()
    parts = [
        embedder.embed(images[start : start + BATCH])
        for start in tqdm(
            range(0, len(images), BATCH), desc=what, unit="batch", disable=not progress
        )
    ]
    return np.concatenate(parts), time.perf_counter() - started


def precision_at_10(
    queries: Vectors,
    query_labels: npt.NDArray[np.uint8],
    catalog: Vectors,
    catalog_labels: npt.NDArray[np.uint8],
) -> float:
    """Mean share of the ten most cosine-similar catalog items of each query (exact search)
    that share its label."""
    gallery = torch.from_numpy(catalog)
    labels = torch.from_numpy(catalog_labels.astype(np.int64))
    hits = 0
    for start in range(0, len(queries), 1024):
        block = torch.from_numpy(queries[start : start + 1024])
        nearest = torch.topk(block @ gallery.T, 10, dim=1).indices
        wanted = torch.from_numpy(query_labels[start : start + 1024].astype(np.int64))
        hits += int((labels[nearest] == wanted[:, None]).sum())
    return hits / (10 * len(queries))


def measure(
    name: str,
    make: Callable[[], Embedder],
    train: Split,
    test: Split,
    data: str,
    progress: bool,
    fit_epochs: int | None = None,
) -> Result:
    """Embed the catalog and the queries with a new embedder (fitted on the catalog first when
    `fit_epochs` is given) and score the queries."""
    embedder = make()
    catalog_images, query_images = images_of(train), images_of(test)
    train_seconds = None
    if isinstance(embedder, SmallCNN):
        started = time.perf_counter()
        labels = [CATEGORIES[int(label)] for label in train.labels]
        embedder.fit(catalog_images, labels, epochs=fit_epochs, seed=0, progress=progress)
        train_seconds = time.perf_counter() - started
    catalog, catalog_seconds = embed_all(embedder, catalog_images, progress, f"{name} catalog")
    queries, query_seconds = embed_all(embedder, query_images, progress, f"{name} queries")
    result = Result(
        name,
        data,
        precision_at_10(queries, test.labels, catalog, train.labels),
        (len(catalog) + len(queries)) / (catalog_seconds + query_seconds),
        train_seconds,
    )
    trained = "" if train_seconds is None else f", trained in {train_seconds:.1f} s"
    print(
        f"{name} on {data}: precision@10 {result.precision_at_10:.4f}, "
        f"{result.images_per_second:,.0f} images/s{trained}"
    )
    return result


def table(results: list[Result]) -> list[str]:
    lines = [
        "| embedder | queries -> catalog | precision@10 | images/s | training s |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        trained = "-" if r.train_seconds is None else f"{r.train_seconds:.1f}"
        lines.append(
            f"| {r.embedder} | {r.data} | {r.precision_at_10:.4f} | "
            f"{r.images_per_second:,.0f} | {trained} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--limit", type=int, help="the first N images of each split (default: all)")
    parser.add_argument(
        "--subset-224",
        type=int,
        default=0,
        help="also run EfficientNet-Lite0 at 224 px on the first N training images and N/6 "
        "test images, with pixels and 112 px on the same subset (default 0: skip)",
    )
    parser.add_argument(
        "--epochs", type=int, default=5, help="the small CNN's training epochs (default 5)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    progress = not args.no_progress

    train, test = read(find_directory(), limit=args.limit)
    data = f"{len(test.labels):,} test -> {len(train.labels):,} train"
    print(f"Fashion-MNIST: {data}; torch threads {torch.get_num_threads()}")
    results = [
        measure("pixels (28x28)", Pixels, train, test, data, progress),
        measure(
            "efficientnet-lite0 @112",
            lambda: EfficientNetLite0(image_size=112, device="cpu"),
            train,
            test,
            data,
            progress,
        ),
        measure(
            "small-cnn",
            lambda: SmallCNN(device="cpu"),
            train,
            test,
            data,
            progress,
            fit_epochs=args.epochs,
        ),
    ]
    if args.subset_224:
        small_train = Split(
            "train", train.images[: args.subset_224], train.labels[: args.subset_224]
        )
        count = max(1, args.subset_224 // 6)
        small_test = Split("test", test.images[:count], test.labels[:count])
        small = f"{count:,} test -> {len(small_train.labels):,} train"
        results += [
            measure("pixels (28x28)", Pixels, small_train, small_test, small, progress),
            measure(
                "efficientnet-lite0 @112",
                lambda: EfficientNetLite0(image_size=112, device="cpu"),
                small_train,
                small_test,
                small,
                progress,
            ),
            measure(
                "efficientnet-lite0 @224",
                lambda: EfficientNetLite0(image_size=224, device="cpu"),
                small_train,
                small_test,
                small,
                progress,
            ),
        ]

    scope = "the full splits" if args.limit is None else f"the first {args.limit:,} of each split"
    lines = [
        f"- Fashion-MNIST ({scope}): "
        "each test image queried against the training images, cosine similarity, exact "
        "search; precision@10 = share of the 10 nearest with the query's category (chance 0.1)",
        f"- small-cnn: trained on the training images and their categories, {args.epochs} "
        "epochs, seed 0, default settings; images/s: PIL image to unit vector, on the CPU "
        f"({torch.get_num_threads()} torch threads), batches of {BATCH}",
        "",
        *table(results),
    ]
    if args.no_report:
        print("\n".join(lines))
    else:
        publish(
            "Visual similarity: Fashion-MNIST precision@10", "bench.visual_quality", argv, lines
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
