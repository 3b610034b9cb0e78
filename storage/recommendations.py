"""The recommendation log: each response's recommId with what it returned, so that "next items"
can page on and interactions that carry a recommId can be attributed to it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storage.database import ReadContext, WriteContext
from storage.interactions import InteractionKind

KIND_NAMES = {kind.code: kind.reql_name for kind in InteractionKind}


@dataclass(frozen=True)
class Recommendation:
    """One logged response."""

    recomm_id: str
    timestamp: float  # epoch seconds
    endpoint: str
    user_id: str | None
    item_id: str | None
    scenario: str | None
    params: dict[str, Any]
    returned: tuple[str, ...]
    next_calls: int
    variant: str | None = None
    """The variant of the scenario's experiment that served it (server/bandits.py)."""


def log_recommendation(ctx: WriteContext, record: Recommendation) -> None:
    ctx.conn.execute(
        "INSERT INTO recommendations VALUES "
        "(?, make_timestamp(CAST(? * 1000000 AS BIGINT)), ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            record.recomm_id,
            record.timestamp,
            record.endpoint,
            record.user_id,
            record.item_id,
            record.scenario,
            json.dumps(record.params, sort_keys=True),
            list(record.returned),
            record.next_calls,
            record.variant,
        ],
    )


def get_recommendation(ctx: ReadContext, recomm_id: str) -> Recommendation | None:
    row = ctx.conn.execute(
        "SELECT recomm_id, epoch_us(ts) / 1e6, endpoint, user_id, item_id, scenario, params, "
        "returned, next_calls, variant FROM recommendations WHERE recomm_id = ?",
        [recomm_id],
    ).fetchone()
    if row is None:
        return None
    return Recommendation(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        json.loads(row[6]),
        tuple(row[7]),
        row[8],
        row[9],
    )


def extend_recommendation(ctx: WriteContext, recomm_id: str, more: Sequence[str]) -> None:
    """Record a "next items" page: its items join the returned ones, and the call is counted."""
    ctx.conn.execute(
        "UPDATE recommendations SET returned = list_concat(returned, ?::VARCHAR[]), "
        "next_calls = next_calls + 1 WHERE recomm_id = ?",
        [list(more), recomm_id],
    )


def recently_recommended(ctx: ReadContext, user_id: str, since: float) -> dict[str, int]:
    """How often each item was recommended to the user since a time (epoch seconds)."""
    rows = ctx.conn.execute(
        "SELECT item, count(*) FROM (SELECT unnest(returned) AS item FROM recommendations "
        "WHERE user_id = ? AND ts >= make_timestamp(CAST(? * 1000000 AS BIGINT))) GROUP BY item",
        # A rotation time longer than the epoch's age means every record.
        [user_id, max(since, 0.0)],
    ).fetchall()
    return {item: int(count) for item, count in rows}


def attributed_interactions(ctx: ReadContext, recomm_id: str) -> list[dict[str, Any]]:
    """The interactions that carry a recommendation's recommId and are about one of the items it
    returned (clicks and purchases that the recommendation earned), oldest first."""
    rows = ctx.conn.execute(
        """SELECT x.kind, x.user_id, x.item_id, epoch_us(x.ts) / 1e6, x.price, x.profit
           FROM interactions AS x JOIN recommendations AS r ON r.recomm_id = x.recomm_id
           WHERE x.recomm_id = ? AND list_contains(r.returned, x.item_id)
           ORDER BY x.ts""",
        [recomm_id],
    ).fetchall()
    return [
        {
            "type": KIND_NAMES[kind],
            "userId": user,
            "itemId": item,
            "timestamp": ts,
            "price": price,
            "profit": profit,
        }
        for kind, user, item, ts, price, profit in rows
    ]


def log_recommendations(ctx: WriteContext, records: Sequence[Recommendation]) -> list[None]:
    """Log many responses with one statement (the writer coalesces concurrent requests' logs).

    A statement costs DuckDB most of a millisecond whatever it holds; for a single record the
    one-row INSERT is the cheaper form (binding the lists of the many-row form costs more)."""
    if len(records) == 1:
        log_recommendation(ctx, records[0])
    elif records:
        ctx.conn.execute(
            "INSERT INTO recommendations SELECT * FROM (SELECT unnest($ids::VARCHAR[]), "
            "make_timestamp(CAST(unnest($timestamps::DOUBLE[]) * 1000000 AS BIGINT)), "
            "unnest($endpoints::VARCHAR[]), unnest($users::VARCHAR[]), "
            "unnest($items::VARCHAR[]), unnest($scenarios::VARCHAR[]), "
            "unnest($params::VARCHAR[]), unnest($returned::VARCHAR[][]), "
            "unnest($next_calls::INTEGER[]), unnest($variants::VARCHAR[]))",
            {
                "ids": [r.recomm_id for r in records],
                "timestamps": [r.timestamp for r in records],
                "endpoints": [r.endpoint for r in records],
                "users": [r.user_id for r in records],
                "items": [r.item_id for r in records],
                "scenarios": [r.scenario for r in records],
                "params": [json.dumps(r.params, sort_keys=True) for r in records],
                "returned": [list(r.returned) for r in records],
                "next_calls": [r.next_calls for r in records],
                "variants": [r.variant for r in records],
            },
        )
    return [None] * len(records)


def record_to_json(record: Recommendation) -> dict[str, Any]:
    return {
        "recommId": record.recomm_id,
        "timestamp": record.timestamp,
        "endpoint": record.endpoint,
        "userId": record.user_id,
        "itemId": record.item_id,
        "scenario": record.scenario,
        "params": record.params,
        "returned": list(record.returned),
        "nextCalls": record.next_calls,
        "variant": record.variant,
    }


def record_from_json(data: Mapping[str, Any]) -> Recommendation:
    return Recommendation(
        recomm_id=data["recommId"],
        timestamp=float(data["timestamp"]),
        endpoint=data["endpoint"],
        user_id=data["userId"],
        item_id=data["itemId"],
        scenario=data["scenario"],
        params=dict(data["params"]),
        returned=tuple(data["returned"]),
        next_calls=int(data["nextCalls"]),
        variant=data["variant"],
    )
