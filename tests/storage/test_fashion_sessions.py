"""The synthetic Fashion-MNIST sessions: seeded, shaped as the docstring says, and loaded as
detail views into a real DuckDB file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storage import fashion_mnist
from storage.database import Database
from storage.fashion_sessions import Simulation, load, look_alikes, simulate
from storage.snapshot import KIND_NAMES, take_snapshot


@pytest.fixture(scope="module")
def catalog() -> tuple[np.ndarray, np.ndarray]:
    splits = fashion_mnist.read(fashion_mnist.find_directory(), limit=300)
    pixels = np.concatenate([split.images for split in splits])
    labels = np.concatenate([split.labels for split in splits])
    return pixels, labels


def test_look_alikes_are_the_nearest_pictures(catalog: tuple[np.ndarray, np.ndarray]) -> None:
    pixels, _ = catalog
    nearest = look_alikes(pixels, 5)
    flat = pixels.reshape(len(pixels), -1).astype(np.float64)
    unit = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    for item in (0, 99, 512):
        cosines = unit @ unit[item]
        cosines[item] = -np.inf
        assert nearest[item].tolist() == np.argsort(-cosines, kind="stable")[:5].tolist()


def test_sessions_are_seeded_and_browse_look_alikes(
    catalog: tuple[np.ndarray, np.ndarray],
) -> None:
    pixels, labels = catalog
    settings = Simulation(users=200, seed=4, neighbours=10)
    sessions = simulate(pixels, labels, settings)
    again = simulate(pixels, labels, settings)
    np.testing.assert_array_equal(sessions.items, again.items)
    other = simulate(pixels, labels, Simulation(users=200, seed=5, neighbours=10))
    assert not np.array_equal(sessions.items[:50], other.items[:50])
    # Ordered by user, then time.
    assert np.all(np.diff(sessions.users) >= 0)
    same_user = sessions.users[1:] == sessions.users[:-1]
    assert np.all(np.diff(sessions.timestamps)[same_user] > 0)
    # Within a session (a gap under an hour), about look_alike of the steps go to one of the
    # current item's look-alikes.
    in_session = same_user & (np.diff(sessions.timestamps) < 3600)
    nearest = look_alikes(pixels, 10)
    steps = np.flatnonzero(in_session)
    alike = np.mean([sessions.items[i + 1] in nearest[sessions.items[i]] for i in steps.tolist()])
    assert 0.7 < alike < 0.85
    # Popularity is skewed: the most viewed tenth of the items takes a large share.
    counts = np.sort(np.bincount(sessions.items, minlength=len(labels)))[::-1]
    assert counts[: len(counts) // 10].sum() > 0.3 * counts.sum()


def test_load_puts_catalog_and_views_in_a_database(tmp_path: Path) -> None:
    database = Database("sessions", tmp_path / "sessions.duckdb")
    try:
        report = load(database, Simulation(users=50, seed=1), limit=100)
        snapshot = database.read_sync(take_snapshot)
    finally:
        database.close()
    assert "SYNTHETIC sessions (seed 1)" in report
    assert snapshot.n_items == 200
    assert sum(user is not None for user in snapshot.user_ids) == 50
    assert len(snapshot.users) > 100
    assert {KIND_NAMES[code] for code in snapshot.kinds.tolist()} == {"detail_views"}
    assert "image" in snapshot.item_properties.column_names
