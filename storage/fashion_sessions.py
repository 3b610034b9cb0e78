"""SYNTHETIC browsing sessions over the Fashion-MNIST catalog, for sequence models fed with
image embeddings (seeded; no real user behaviour is in them).

Fashion-MNIST has pictures and categories but no users. To compare a GRU fed with image
embeddings against one that knows only item ids, this module simulates shoppers who browse the
way the design brief describes: a session starts at an item drawn by popularity (Zipf-like, so
that most items are rare), then mostly moves to an item that looks like the current one (one of
its `neighbours` nearest pictures by pixel cosine), sometimes to another item of the same
category, and now and then drifts to another category. Users have a few sessions, days apart;
views within a session are a minute or two apart.

`simulate` returns the interactions as dense (user, item, time) arrays; `load` puts the catalog
(fashion_mnist.load) and the sessions (detail views of users `shopper-00000`, ...) into a database.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage import fashion_mnist
from storage.bulk import import_file
from storage.database import Database

START_TIME = 1_767_225_600.0
"""2026-01-01T00:00:00Z: when the simulated shopping begins."""


@dataclass(frozen=True)
class Simulation:
    """How the shoppers behave (every figure a probability, a count or a mean)."""

    users: int = 3000
    sessions_per_user: tuple[int, int] = (1, 4)
    """Each user's number of sessions, uniform in [low, high)."""
    mean_length: float = 7.0
    """Mean session length (at least 2 views), geometric."""
    neighbours: int = 20
    """How many nearest pictures count as "looking like" an item."""
    look_alike: float = 0.75
    """Chance that the next view is a look-alike of the current item."""
    same_category: float = 0.2
    """Chance that it is another item of the same category (else: any category)."""
    zipf: float = 1.0
    """Item popularity falls as rank ** -zipf."""
    seed: int = 0


@dataclass(frozen=True)
class Sessions:
    """Simulated interactions, ordered by user then time: dense user and item indexes."""

    users: np.ndarray[Any, np.dtype[np.int64]]
    items: np.ndarray[Any, np.dtype[np.int64]]
    timestamps: np.ndarray[Any, np.dtype[np.float64]]
    n_users: int
    n_items: int


def look_alikes(pixels: np.ndarray[Any, Any], k: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Each item's k nearest other items by the cosine of their pixels: (n, k), k at most
    n - 1."""
    k = min(k, len(pixels) - 1)
    if k < 1:
        raise ValueError(f"look-alikes need at least two pictures, not {len(pixels)}")
    flat = np.asarray(pixels, dtype=np.float32).reshape(len(pixels), -1)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    unit = np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 0)
    out = np.empty((len(unit), k), dtype=np.int64)
    for start in range(0, len(unit), 1024):
        block = unit[start : start + 1024] @ unit.T
        rows = np.arange(len(block))
        block[rows, rows + start] = -np.inf  # not itself
        nearest = np.argpartition(-block, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(block, nearest, axis=1), axis=1)
        out[start : start + len(block)] = np.take_along_axis(nearest, order, axis=1)
    return out


def simulate(
    pixels: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], settings: Simulation
) -> Sessions:
    """Sessions over items with these pictures (n x h x w) and category labels (n)."""
    rng = np.random.default_rng(settings.seed)
    n_items = len(labels)
    labels = np.asarray(labels)
    popularity = np.empty(n_items, dtype=np.float64)
    popularity[rng.permutation(n_items)] = np.arange(1, n_items + 1, dtype=np.float64) ** (
        -settings.zipf
    )
    start_p = popularity / popularity.sum()
    neighbours = look_alikes(pixels, settings.neighbours)
    by_category = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
    category_p = {
        c: popularity[members] / popularity[members].sum() for c, members in by_category.items()
    }
    users: list[int] = []
    items: list[int] = []
    times: list[float] = []
    low, high = settings.sessions_per_user
    for user in range(settings.users):
        clock = START_TIME + rng.uniform(0, 30 * 86_400)
        for _ in range(int(rng.integers(low, high))):
            length = 2 + int(rng.geometric(1.0 / max(1.0, settings.mean_length - 1.0))) - 1
            item = int(rng.choice(n_items, p=start_p))
            for _ in range(length):
                users.append(user)
                items.append(item)
                times.append(clock)
                clock += float(rng.uniform(30, 150))
                item = _next(item, rng, settings, neighbours, labels, by_category, category_p)
                item = item if item >= 0 else int(rng.choice(n_items, p=start_p))
            clock += float(rng.uniform(1, 7)) * 86_400
    return Sessions(
        np.asarray(users, dtype=np.int64),
        np.asarray(items, dtype=np.int64),
        np.asarray(times, dtype=np.float64),
        settings.users,
        n_items,
    )


def _next(
    item: int,
    rng: np.random.Generator,
    settings: Simulation,
    neighbours: np.ndarray[Any, np.dtype[np.int64]],
    labels: np.ndarray[Any, Any],
    by_category: dict[int, np.ndarray[Any, np.dtype[np.int64]]],
    category_p: dict[int, np.ndarray[Any, np.dtype[np.float64]]],
) -> int:
    """The next view after `item`, or -1 for a jump to any item by popularity."""
    roll = rng.random()
    if roll < settings.look_alike:
        return int(neighbours[item, rng.integers(neighbours.shape[1])])
    if roll < settings.look_alike + settings.same_category * (1 - settings.look_alike):
        category = int(labels[item])
        return int(rng.choice(by_category[category], p=category_p[category]))
    return -1


def load(
    database: Database,
    settings: Simulation = Simulation(),
    *,
    limit: int = 2000,
    path: Path | None = None,
    replace: bool = False,
    progress: bool = False,
) -> str:
    """Load the first `limit` pictures of each Fashion-MNIST split as the catalog, then the
    simulated sessions as detail views; return a report. A database that holds items already is
    refused unless `replace` (see fashion_mnist.load)."""
    report = fashion_mnist.load(database, path, replace=replace, progress=progress, limit=limit)
    splits = fashion_mnist.read(fashion_mnist.find_directory(path), limit=limit)
    pixels = np.concatenate([split.images for split in splits])
    labels = np.concatenate([split.labels for split in splits])
    ids = [split.item_id(index) for split in splits for index in range(len(split.labels))]
    sessions = simulate(pixels, labels, settings)
    table = pa.table(
        {
            "userId": [f"shopper-{user:05d}" for user in sessions.users.tolist()],
            "itemId": [ids[item] for item in sessions.items.tolist()],
            "timestamp": pa.array(sessions.timestamps, pa.float64()),
        }
    )
    with _staged(table) as staged:
        views = import_file(
            database, "interactions", staged, kind="detail_views", progress=progress
        )
    return f"{report}\nSYNTHETIC sessions (seed {settings.seed}): " + views.replace(
        f" from {staged}", ""
    )


@contextlib.contextmanager
def _staged(table: pa.Table) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="reqo-fashion-sessions-") as directory:
        path = Path(directory) / "views.parquet"
        pq.write_table(table, path)
        yield path
