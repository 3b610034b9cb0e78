"""A consistent read of everything that training needs: interactions by dense index, the id maps
and the item and user property tables, as numpy arrays and Arrow tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from storage.database import ReadContext
from storage.interactions import InteractionKind

KIND_NAMES: dict[int, str] = {kind.code: kind.reql_name for kind in InteractionKind}
"""Interaction kind codes (as stored) -> ReQL names ("detail_views", "purchases", …)."""


@dataclass(frozen=True)
class Snapshot:
    """Interactions and catalog at one moment. Indexes are the dense `$idx` of users and items;
    `item_ids[i]` is the id of item index i (None for a deleted item), likewise `user_ids`;
    `item_properties` / `user_properties`: the item and user tables ("$idx", "$id" and the
    properties), ordered by index."""

    item_ids: list[str | None]
    user_ids: list[str | None]
    users: np.ndarray[Any, np.dtype[np.int64]]
    items: np.ndarray[Any, np.dtype[np.int64]]
    kinds: np.ndarray[Any, np.dtype[np.uint8]]
    timestamps: np.ndarray[Any, np.dtype[np.float64]]
    ratings: np.ndarray[Any, np.dtype[np.float64]]
    portions: np.ndarray[Any, np.dtype[np.float64]]
    item_properties: pa.Table
    user_properties: pa.Table

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)


def take_snapshot(ctx: ReadContext) -> Snapshot:
    """Read a snapshot: one read transaction, so that every statement sees the same commits (a
    write between two of them would otherwise give interactions of items beyond the id map);
    interactions are ordered by user, then time."""
    ctx.conn.execute("BEGIN TRANSACTION")
    try:
        return _read_snapshot(ctx)
    finally:
        ctx.conn.execute("ROLLBACK")  # it wrote nothing


def _read_snapshot(ctx: ReadContext) -> Snapshot:
    conn = ctx.conn
    item_ids = _id_map(ctx, "items")
    user_ids = _id_map(ctx, "users")
    columns = conn.execute(
        """SELECT u."$idx" AS u, i."$idx" AS i, x.kind AS k, epoch_us(x.ts) / 1e6 AS t,
                  coalesce(x.rating, 'NaN'::DOUBLE) AS r, coalesce(x.portion, 'NaN'::DOUBLE) AS p
           FROM interactions AS x
           JOIN users AS u ON u."$id" = x.user_id
           JOIN items AS i ON i."$id" = x.item_id
           ORDER BY u."$idx", x.ts, i."$idx" """
    ).fetchnumpy()
    properties = conn.sql('SELECT * FROM items ORDER BY "$idx"').to_arrow_table()
    user_properties = conn.sql('SELECT * FROM users ORDER BY "$idx"').to_arrow_table()
    return Snapshot(
        item_ids=item_ids,
        user_ids=user_ids,
        users=np.asarray(columns["u"], dtype=np.int64),
        items=np.asarray(columns["i"], dtype=np.int64),
        kinds=np.asarray(columns["k"], dtype=np.uint8),
        timestamps=np.asarray(columns["t"], dtype=np.float64),
        ratings=np.asarray(columns["r"], dtype=np.float64),
        portions=np.asarray(columns["p"], dtype=np.float64),
        item_properties=properties,
        user_properties=user_properties,
    )


def _id_map(ctx: ReadContext, table: str) -> list[str | None]:
    rows = ctx.conn.execute(f'SELECT "$idx", "$id" FROM {table}').fetchall()
    size = max((index for index, _ in rows), default=-1) + 1
    ids: list[str | None] = [None] * size
    for index, entity_id in rows:
        ids[index] = entity_id
    return ids
