"""How a scenario's cold start weighs its model against the cold-start model, per user and per
item, and the interaction counts a trained model version keeps for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plugins.algorithm import UserHistory
from plugins.manager import collect, get_plugin_manager
from server.serving.cold_start import blend, item_weights, user_weight
from server.serving.scenarios import ModelConfig
from server.training.artifacts import current_version, item_interactions, train_model
from tests.plugins.catalog import build_catalog


def test_an_item_is_new_until_it_has_enough_interactions() -> None:
    counts = np.array([0, 1, 4, 5, 12])
    # Items 5 and 6 were added after the model was trained: new, whatever they have now.
    np.testing.assert_allclose(item_weights(counts, 5, 7, 4), [0, 0.25, 1, 1, 1, 0, 0])
    # Without counts, the items the model was trained with are known.
    np.testing.assert_allclose(item_weights(None, 5, 7, 4), [1, 1, 1, 1, 1, 0, 0])
    # A catalog smaller than the model's (items deleted since): cut to the catalog.
    assert item_weights(counts, 5, 3, 4).shape == (3,)


def test_a_user_and_an_item_blend_by_their_own_weights() -> None:
    mask = np.array([True, True, True, False])
    # Scores as the models give them: -inf outside the candidates.
    main = np.array([4.0, 2.0, 0.0, -np.inf], dtype=np.float32)
    cold = np.array([0.0, 1.0, 2.0, -np.inf], dtype=np.float32)
    # All known: the main model's scores, untouched.
    np.testing.assert_array_equal(blend(main, cold, np.ones(4), mask), main)
    # Item 2 is new: its score is the cold-start model's normalised one (1: its best).
    mixed = blend(main, cold, np.array([1.0, 1.0, 0.0, 1.0]), mask)
    np.testing.assert_allclose(mixed[:3], [1.0, 0.5, 1.0])
    assert mixed[3] == -np.inf
    # A main score of -inf for an item the model never saw does not poison the blend.
    unseen = np.array([4.0, 2.0, -np.inf, -np.inf], dtype=np.float32)
    assert blend(unseen, cold, np.array([1.0, 1.0, 0.0, 1.0]), mask)[2] == 1.0
    # A user halfway (and every item known): half of each.
    half = user_weight(UserHistory.of_items([1, 2]), 4)
    np.testing.assert_allclose(blend(main, cold, half, mask)[:3], [0.5, 0.5, 0.5])


def test_a_trained_version_keeps_each_items_interaction_count(tmp_path: Path) -> None:
    database = build_catalog(tmp_path / "catalog.duckdb", items=12, interactions=200)
    registry = collect(get_plugin_manager())
    try:
        model = ModelConfig(name="pop", algorithm="popularity")
        home = train_model(database, model, registry, tmp_path / "models")
        counts = item_interactions(home)
        assert counts is not None
        users_per_item = database.read_sync(
            lambda ctx: ctx.conn.sql(
                'SELECT i."$idx", count(DISTINCT x.user_id) FROM interactions x '
                'JOIN items i ON i."$id" = x.item_id GROUP BY 1 ORDER BY 1'
            ).fetchall()
        )
    finally:
        database.close()
    assert current_version(tmp_path / "models", "pop") == home.name
    expected = np.zeros(len(counts), dtype=np.int64)
    for index, users in users_per_item:
        expected[index] = users
    np.testing.assert_array_equal(counts, expected)
    # A version without the file (or with a broken one) serves without counts.
    (home / "item_interactions.npy").write_bytes(b"not numpy")
    assert item_interactions(home) is None
