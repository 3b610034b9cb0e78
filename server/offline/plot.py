"""`reqo plot embeddings`: a 2-D t-SNE map of a model's item vectors, coloured by a property.

The vectors come from the model's current version, `<models_dir>/<model>/current` naming the
version directory that holds `vectors.npy` (one row per item, by the dense index `$idx`) and
`present.npy` (whether each row holds a vector: items without an image have none). The colours
come from an item property, read from the database file opened read-only, so that plotting
never changes a database.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

MAX_CATEGORIES = 20
"""Categorical colours: the most frequent values get their own colour, the rest "other"."""
UNPLOTTABLE_TYPES = frozenset({"image", "imageList", "set"})
"""Property types that do not make a colour (a URL per item, or several values)."""
MISSING = "(no value)"
OTHER = "(other)"


class PlotError(Exception):
    """A plot that cannot be made: the message says why (model, property, database)."""


@dataclass(frozen=True)
class ItemVectors:
    """A model version's item vectors: `vectors` (n, d) and `present` (n,), by `$idx`."""

    version: Path
    vectors: npt.NDArray[np.float32]
    present: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class PropertyValues:
    """One item property's values by `$idx` (None where unset) and its type."""

    name: str
    type: str
    values: list[Any]


def load_vectors(models_dir: Path, model: str) -> ItemVectors:
    """The current version's vectors of `model` under `models_dir`; PlotError says what is
    missing (an untrained model, a version without vectors)."""
    home = models_dir / model
    try:
        version_name = (home / "current").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise PlotError(
            f"model '{model}' has no trained version (no {home / 'current'}); train it with "
            "`reqo train --model NAME`"
        ) from None
    version = home / version_name
    vectors_path, present_path = version / "vectors.npy", version / "present.npy"
    if not version_name or not vectors_path.is_file():
        raise PlotError(
            f"model '{model}': version '{version_name}' holds no vectors.npy ({vectors_path}); "
            "only models that embed items (such as reqo:visually-similar) can be plotted"
        )
    vectors = np.load(vectors_path, allow_pickle=False)
    if vectors.ndim != 2:
        raise PlotError(f"{vectors_path}: expected an items x dimensions array, {vectors.shape}")
    if present_path.is_file():
        present = np.load(present_path, allow_pickle=False).astype(bool)
        if present.shape != (len(vectors),):
            raise PlotError(
                f"{present_path}: shape {present.shape} does not match {len(vectors)} vectors"
            )
    else:  # A version without the mask holds a vector for every item.
        present = np.ones(len(vectors), dtype=bool)
    return ItemVectors(version, vectors.astype(np.float32, copy=False), present)


def read_property(database_path: Path, name: str) -> PropertyValues:
    """An item property's values by `$idx`, from the database file opened read-only."""
    import duckdb

    from server.offline.source import connect_for_reading

    if not database_path.is_file():
        raise PlotError(f"database file {database_path} does not exist")
    try:
        conn = connect_for_reading(database_path)
    except duckdb.IOException as error:
        raise PlotError(
            f"cannot open {database_path} for reading ({error}); a running server holds it: "
            "stop the server, or plot from a copy of the file"
        ) from None
    try:
        known = dict(conn.execute("SELECT name, type FROM item_properties").fetchall())
        if name not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise PlotError(f"no item property '{name}' (the items have: {listed})")
        if known[name] in UNPLOTTABLE_TYPES:
            raise PlotError(
                f"item property '{name}' is of type {known[name]}, which cannot colour a plot; "
                "use a string, int, double, boolean or timestamp property"
            )
        column = name.replace('"', '""')
        rows = conn.execute(f'SELECT "$idx", "{column}" FROM items ORDER BY "$idx"').fetchall()
    finally:
        conn.close()
    size = int(rows[-1][0]) + 1 if rows else 0
    values: list[Any] = [None] * size
    for index, value in rows:
        values[int(index)] = value
    return PropertyValues(name, str(known[name]), values)


def tsne(vectors: npt.NDArray[np.float32], seed: int) -> npt.NDArray[np.float32]:
    """A 2-D t-SNE of the rows (cosine distances, as the index searches by angle)."""
    from sklearn.manifold import TSNE

    # t-SNE needs perplexity < n; 30 is the usual choice for thousands of points.
    perplexity = float(min(30.0, (len(vectors) - 1) / 3))
    embedded = TSNE(
        n_components=2,
        perplexity=perplexity,
        metric="cosine",
        init="pca",
        random_state=seed,
    ).fit_transform(vectors.astype(np.float32))
    return np.asarray(embedded, dtype=np.float32)


def plot_embeddings(
    models_dir: Path,
    database_path: Path,
    database: str,
    model: str,
    color_by: str,
    output: Path,
    *,
    sample: int = 5000,
    seed: int = 0,
) -> str:
    """Write the t-SNE map of `model`'s item vectors as a PNG; return a one-line report."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the map is a file
    import matplotlib.pyplot as plt

    if sample < 5:
        raise PlotError(f"--sample {sample}: t-SNE needs at least 5 items")
    vectors = load_vectors(models_dir, model)
    prop = read_property(database_path, color_by)
    candidates = np.flatnonzero(vectors.present)
    if len(candidates) < 5:
        raise PlotError(f"model '{model}' holds vectors for {len(candidates)} items; t-SNE needs 5")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(candidates, size=min(sample, len(candidates)), replace=False))
    points = tsne(vectors.vectors[chosen], seed)
    labels = [prop.values[i] if i < len(prop.values) else None for i in chosen]

    figure, axes = plt.subplots(figsize=(11, 8), dpi=120)
    numeric = prop.type in ("double", "int", "timestamp") and len(set(labels)) > MAX_CATEGORIES
    if numeric:
        _scatter_numeric(figure, axes, points, labels, color_by)
    else:
        _scatter_categories(axes, points, labels, color_by)
    axes.set_title(
        f"{database}/{model}: t-SNE of {len(chosen):,} of {len(candidates):,} item vectors "
        f"({vectors.vectors.shape[1]}-d), coloured by {color_by}"
    )
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, format="png")
    plt.close(figure)
    return (
        f"wrote {output}: {len(chosen):,} items of {database}/{model} "
        f"(version {vectors.version.name}) coloured by {color_by}"
    )


def _scatter_categories(
    axes: Any, points: npt.NDArray[np.float32], labels: list[Any], name: str
) -> None:
    """One colour per value (the most frequent MAX_CATEGORIES of them), a legend outside."""
    import matplotlib.pyplot as plt

    names = [MISSING if label is None else str(label) for label in labels]
    counts = Counter(names)
    kept = [value for value, _ in counts.most_common(MAX_CATEGORIES) if value != MISSING]
    shown = [value if value in kept or value == MISSING else OTHER for value in names]
    palette = plt.get_cmap("tab10" if len(kept) <= 10 else "tab20")
    order = sorted(kept, key=str)
    groups = [(value, palette(i % palette.N)) for i, value in enumerate(order)]
    groups += [(OTHER, (0.45, 0.45, 0.45, 1.0)), (MISSING, (0.8, 0.8, 0.8, 1.0))]
    array = np.asarray(shown, dtype=object)
    for value, colour in groups:
        mask = array == value
        if mask.any():
            axes.scatter(
                points[mask, 0],
                points[mask, 1],
                s=6,
                color=colour,
                alpha=0.8,
                linewidths=0,
                label=f"{value} ({int(mask.sum()):,})",
            )
    axes.legend(
        title=name,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        markerscale=3,
        frameon=False,
        fontsize="small",
    )


def _scatter_numeric(
    figure: Any, axes: Any, points: npt.NDArray[np.float32], labels: list[Any], name: str
) -> None:
    """A continuous colour scale with a colour bar; items without a value in grey."""
    known = np.array([label is not None for label in labels])
    if (~known).any():
        axes.scatter(*points[~known].T, s=6, color=(0.8, 0.8, 0.8), linewidths=0, label=MISSING)
        axes.legend(loc="upper left", bbox_to_anchor=(1.15, 1.0), frameon=False)
    values = np.array([_number(label) for label, ok in zip(labels, known, strict=True) if ok])
    scatter = axes.scatter(*points[known].T, c=values, s=6, cmap="viridis", linewidths=0)
    figure.colorbar(scatter, ax=axes, label=name)


def _number(value: Any) -> float:
    """A property value as a number (timestamps as epoch seconds)."""
    timestamp = getattr(value, "timestamp", None)
    return float(timestamp()) if callable(timestamp) else float(value)
