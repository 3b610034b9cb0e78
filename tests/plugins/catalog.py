"""A seeded synthetic catalog in a real DuckDB file, for training tests."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from plugins.training import TrainingData
from storage import catalog
from storage.database import Database, WriteContext
from storage.interactions import InteractionKind, apply_interaction_writes, parse_interaction
from storage.schema import Entity

KINDS = [
    InteractionKind.DETAIL_VIEW,
    InteractionKind.DETAIL_VIEW,
    InteractionKind.DETAIL_VIEW,
    InteractionKind.PURCHASE,
    InteractionKind.CART_ADDITION,
    InteractionKind.BOOKMARK,
    InteractionKind.RATING,
]


def build_catalog(
    path: Path, *, users: int = 40, items: int = 30, interactions: int = 600, seed: int = 7
) -> Database:
    """Users u0.., items i0.. (with a `genre`), and random interactions in which users prefer
    items of one genre, so that there is something to learn."""
    rng = random.Random(seed)
    database = Database("catalog", path)

    def fill(ctx: WriteContext) -> None:
        catalog.add_property(ctx, Entity.ITEM, "genre", "string")
        for i in range(items):
            catalog.set_values(
                ctx, Entity.ITEM, f"i{i}", {"genre": f"g{i % 3}"}, cascade_create=True
            )
        writes = []
        for n in range(interactions):
            user = rng.randrange(users)
            genre = user % 3
            item = rng.choice([i for i in range(items) if i % 3 == genre or rng.random() < 0.2])
            kind = rng.choice(KINDS)
            params: dict[str, Any] = {
                "userId": f"u{user}",
                "itemId": f"i{item}",
                "timestamp": 1_700_000_000 + n * 60,
                "cascadeCreate": True,
            }
            if kind is InteractionKind.RATING:
                params["rating"] = rng.choice([-1.0, 0.0, 0.5, 1.0])
            writes.append(parse_interaction(kind, params))
        apply_interaction_writes(ctx, writes)

    database.write_sync(fill)
    return database


def with_item_vectors(database: Database) -> TrainingData:
    """A snapshot's training data with the host's item-vector provider (over the built-in and
    installed plugins), as the server trains a model."""
    from dataclasses import replace

    from plugins.manager import collect, get_plugin_manager
    from server.training.item_vectors import provider_for
    from storage.snapshot import take_snapshot

    data = TrainingData.from_snapshot(database.read_sync(take_snapshot))
    registry = collect(get_plugin_manager())
    provider = provider_for(database, registry, data.item_properties, data.n_items)
    return replace(data, item_vectors=provider)
