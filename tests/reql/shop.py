"""A small shop in a real DuckDB file: the catalog that the ReQL tests evaluate against.

Timestamps are relative to the moment the shop is built (`now()` is real time), so that
expressions such as `'published' > now() - 24*3600` have fixed answers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from storage import catalog
from storage.database import Database, WriteContext
from storage.interactions import InteractionKind, apply_interaction_writes, parse_interaction
from storage.schema import Entity

HOUR = 3600
DAY = 24 * HOUR

ITEM_PROPERTIES = {
    "title": "string",
    "brand": "string",
    "category": "string",
    "price": "double",
    "year": "int",
    "in_stock": "boolean",
    "parental_advisory": "boolean",
    "published": "timestamp",
    "tags": "set",
    "labels": "set",
    "cities": "set",
    "lat": "double",
    "lon": "double",
    "image": "image",
    "gallery": "imageList",
}
USER_PROPERTIES = {
    "city": "string",
    "topics": "set",
    "avg_spend": "double",
    "age": "int",
    "lat": "double",
    "lon": "double",
    "vip": "boolean",
}


def item_rows(now: float) -> dict[str, dict[str, Any]]:
    """The items: ids sort as i1 < i2 < … < i8."""
    return {
        "i1": {
            "title": "Red Shoes",
            "brand": "acme",
            "category": "shoes",
            "price": 50.0,
            "year": 2019,
            "in_stock": True,
            "parental_advisory": False,
            "published": now - 2 * HOUR,
            "tags": ["red", "summer"],
            "labels": ["editors-pick"],
            "cities": ["Prague", "Brno"],
            "lat": 50.0755,
            "lon": 14.4378,
            "image": "file:///img/1.png",
            "gallery": ["a.png", "b.png"],
        },
        "i2": {
            "title": "Blue Shoes",
            "brand": "acme",
            "category": "shoes",
            "price": 120.0,
            "year": 2021,
            "in_stock": False,
            "parental_advisory": False,
            "published": now - 3 * DAY,
            "tags": ["blue"],
            "labels": [],
            "cities": ["Brno"],
            "lat": 49.1951,
            "lon": 16.6068,
        },
        "i3": {
            "title": "Green Hat",
            "brand": "hatco",
            "category": "hats",
            "price": 20.0,
            "year": 1999,
            "in_stock": True,
            "parental_advisory": True,
            "published": now - 30 * DAY,
            "tags": ["green", "summer"],
            "labels": ["sale"],
            "cities": ["Prague"],
            "lat": 50.08,
            "lon": 14.42,
        },
        "i4": {
            "title": "Black Coat",
            "brand": "coatly",
            "category": "coats",
            "price": 300.0,
            "year": 2023,
            "in_stock": True,
            "parental_advisory": False,
            "published": now - 10 * HOUR,
            "tags": ["black", "winter"],
            "labels": ["editors-pick", "sale"],
            "cities": [],
            "lat": 48.8566,
            "lon": 2.3522,
        },
        "i5": {
            "title": "Mystery Box",
            "brand": None,
            "category": None,
            "price": None,
            "year": None,
            "in_stock": None,
            "parental_advisory": None,
            "published": None,
        },
        "i6": {
            "title": "Cheap Hat",
            "brand": "hatco",
            "category": "hats",
            "price": 5.5,
            "year": 2005,
            "in_stock": True,
            "parental_advisory": False,
            "published": now - 400 * DAY,
            "tags": ["summer"],
            "labels": [],
            "cities": ["Prague", "Ostrava"],
            "lat": 49.8209,
            "lon": 18.2625,
        },
        "i7": {
            "title": "Gold Watch",
            "brand": "timeco",
            "category": "watches",
            "price": 999.99,
            "year": 2020,
            "in_stock": False,
            "parental_advisory": False,
            "published": now - 1 * HOUR,
            "tags": [],
            "labels": ["editors-pick"],
            "cities": ["Vienna"],
            "lat": 48.2082,
            "lon": 16.3738,
        },
        "i8": {
            "title": "Sale Shoes",
            "brand": "acme",
            "category": "shoes",
            "price": 0.0,
            "year": 2010,
            "in_stock": True,
            "parental_advisory": False,
            "published": now - 5 * DAY,
            "tags": ["red"],
            "labels": ["sale"],
            "cities": ["Prague"],
            "lat": 50.1,
            "lon": 14.5,
        },
    }


USER_ROWS: dict[str, dict[str, Any]] = {
    "u1": {
        "city": "Prague",
        "topics": ["summer", "red"],
        "avg_spend": 60.0,
        "age": 30,
        "lat": 50.0755,
        "lon": 14.4378,
        "vip": True,
    },
    "u2": {
        "city": "Brno",
        "topics": ["winter"],
        "avg_spend": 200.0,
        "age": 45,
        "lat": 49.1951,
        "lon": 16.6068,
        "vip": False,
    },
    "u3": {},
}

# (kind, user, item, seconds before now)
INTERACTIONS = [
    (InteractionKind.DETAIL_VIEW, "u1", "i1", 5 * DAY),
    (InteractionKind.DETAIL_VIEW, "u1", "i2", 4 * DAY),
    (InteractionKind.PURCHASE, "u1", "i1", 3 * DAY),
    (InteractionKind.DETAIL_VIEW, "u1", "i3", 2 * DAY),
    (InteractionKind.PURCHASE, "u1", "i3", 1 * DAY),
    (InteractionKind.CART_ADDITION, "u1", "i4", 12 * HOUR),
    (InteractionKind.BOOKMARK, "u1", "i7", 6 * HOUR),
    (InteractionKind.DETAIL_VIEW, "u2", "i1", 3 * DAY),
    (InteractionKind.PURCHASE, "u2", "i4", 2 * DAY),
    (InteractionKind.RATING, "u2", "i4", 1 * DAY),
    (InteractionKind.DETAIL_VIEW, "u2", "i6", 10 * HOUR),
]


def build_shop(path: Path) -> tuple[Database, float]:
    """Create the shop in a DuckDB file; returns the database and the time it was built at."""
    now = time.time()
    database = Database("shop", path)

    def load(ctx: WriteContext) -> None:
        for name, type_name in ITEM_PROPERTIES.items():
            catalog.add_property(ctx, Entity.ITEM, name, type_name)
        for name, type_name in USER_PROPERTIES.items():
            catalog.add_property(ctx, Entity.USER, name, type_name)

    database.write_sync(load)

    def fill(ctx: WriteContext) -> None:
        for item_id, values in item_rows(now).items():
            catalog.set_values(ctx, Entity.ITEM, item_id, values, cascade_create=True)
        for user_id, values in USER_ROWS.items():
            catalog.set_values(ctx, Entity.USER, user_id, values, cascade_create=True)
        writes = []
        for kind, user_id, item_id, ago in INTERACTIONS:
            params: dict[str, Any] = {"userId": user_id, "itemId": item_id, "timestamp": now - ago}
            if kind is InteractionKind.RATING:
                params["rating"] = 0.5
            writes.append(parse_interaction(kind, params))
        for outcome in apply_interaction_writes(ctx, writes):
            if isinstance(outcome, Exception):
                raise outcome

    database.write_sync(fill)
    return database, now
