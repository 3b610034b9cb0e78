"""What recommendations earned: the logged recommendations joined with the interactions that carry
their recommId, per scenario and variant (KPIs, the bandits' rewards), the sticky variant
assignments of users, and the states of experiments that keep one (the online weight evolution,
server/experiments/evolution.py).

An interaction is attributed to a recommendation when it carries the recommendation's recommId
and is about one of the items (or users) it returned. A detail view is a click; a recommendation
counts as clicked once however often it is clicked. A purchase is a conversion; its `price` is
the revenue and its `profit` the profit (Recombee's `price` and `profit` are totals over the
`amount`). Interactions with an unknown recommId are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import duckdb

from storage.database import ReadContext, WriteContext
from storage.interactions import InteractionKind

_CLICK = InteractionKind.DETAIL_VIEW.code
_PURCHASE = InteractionKind.PURCHASE.code


@dataclass
class Outcomes:
    """What a set of recommendations earned (mutable: the bandits add to it as they go)."""

    served: int = 0
    """Recommendations (responses with a recommId)."""
    clicks: int = 0
    """Recommendations clicked at least once (a detail view with their recommId)."""
    purchases: int = 0
    """Purchase interactions with their recommId."""
    converted: int = 0
    """Recommendations followed by at least one purchase."""
    revenue: float = 0.0
    revenue_sq: float = 0.0
    """The sum over recommendations of the square of each one's revenue (for its variance)."""
    profit: float = 0.0
    profit_sq: float = 0.0

    def add(self, other: Outcomes) -> None:
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def to_json(self) -> dict[str, float | int | None]:
        """The KPIs as the endpoint and `reqo kpi` show them."""
        return {
            "recommendations": self.served,
            "clicks": self.clicks,
            "purchases": self.purchases,
            "conversions": self.converted,
            "revenue": self.revenue,
            "profit": self.profit,
            "ctr": self.clicks / self.served if self.served else None,
            "conversion": self.converted / self.served if self.served else None,
        }


Key = tuple[str | None, str | None]
"""(scenario, variant); either may be None (no scenario, no experiment)."""


def has_variant_column(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether the recommendation log has its `variant` column (a file that a server of this
    version opened has; a read-only look at an older file may not)."""
    row = conn.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'recommendations' "
        "AND column_name = 'variant'"
    ).fetchone()
    return bool(row and row[0])


def _attributed(variant: str) -> str:
    """One row per logged recommendation (filtered by $scenario and $since) with its outcome."""
    return f"""
        WITH earned AS (
            SELECT x.recomm_id,
                   bool_or(x.kind = {_CLICK}) AS clicked,
                   count(*) FILTER (WHERE x.kind = {_PURCHASE}) AS purchases,
                   coalesce(sum(x.price) FILTER (WHERE x.kind = {_PURCHASE}), 0) AS revenue,
                   coalesce(sum(x.profit) FILTER (WHERE x.kind = {_PURCHASE}), 0) AS profit
            FROM interactions AS x JOIN recommendations AS r ON r.recomm_id = x.recomm_id
            WHERE x.recomm_id IS NOT NULL AND x.kind IN ({_CLICK}, {_PURCHASE})
              AND (list_contains(r.returned, x.item_id) OR list_contains(r.returned, x.user_id))
            GROUP BY x.recomm_id
        )
        SELECT r.scenario, {variant} AS variant, r.ts,
               coalesce(e.clicked, false) AS clicked, coalesce(e.purchases, 0) AS purchases,
               coalesce(e.revenue, 0) AS revenue, coalesce(e.profit, 0) AS profit
        FROM recommendations AS r LEFT JOIN earned AS e ON e.recomm_id = r.recomm_id
        WHERE (CAST($scenario AS VARCHAR) IS NULL OR r.scenario = $scenario)
          AND (CAST($since AS DOUBLE) IS NULL
               OR r.ts >= make_timestamp(CAST($since * 1000000 AS BIGINT)))
    """


def outcomes(
    ctx: ReadContext, scenario: str | None = None, since: float | None = None
) -> dict[Key, Outcomes]:
    """What the recommendations served since `since` (epoch seconds) earned, per scenario and
    variant; only `scenario`'s where given."""
    variant = "r.variant" if has_variant_column(ctx.conn) else "CAST(NULL AS VARCHAR)"
    rows = ctx.conn.execute(
        f"""SELECT scenario, variant, count(*), count_if(clicked), sum(purchases),
                   count_if(purchases > 0), sum(revenue), sum(revenue * revenue), sum(profit),
                   sum(profit * profit)
            FROM ({_attributed(variant)}) GROUP BY scenario, variant
            ORDER BY scenario NULLS FIRST, variant NULLS FIRST""",
        {"scenario": scenario, "since": since},
    ).fetchall()
    return {
        (row[0], row[1]): Outcomes(
            int(row[2]),
            int(row[3]),
            int(row[4]),
            int(row[5]),
            float(row[6]),
            float(row[7]),
            float(row[8]),
            float(row[9]),
        )
        for row in rows
    }


@dataclass(frozen=True)
class Bucket:
    """One time bucket of a variant's recommendations and what they earned."""

    scenario: str | None
    variant: str | None
    start: float  # epoch seconds
    served: int
    clicks: int
    converted: int = 0
    """Recommendations followed by at least one purchase."""
    revenue: float = 0.0


def series(
    ctx: ReadContext, bucket_seconds: float, scenario: str | None = None, since: float | None = None
) -> list[Bucket]:
    """Recommendations, clicks, conversions and revenue per time bucket (by when the
    recommendation was served)."""
    variant = "r.variant" if has_variant_column(ctx.conn) else "CAST(NULL AS VARCHAR)"
    rows = ctx.conn.execute(
        f"""SELECT scenario, variant, floor(epoch_us(ts) / 1e6 / $bucket) * $bucket AS start,
                   count(*), count_if(clicked), count_if(purchases > 0), sum(revenue)
            FROM ({_attributed(variant)}) GROUP BY ALL
            ORDER BY scenario NULLS FIRST, variant NULLS FIRST, start""",
        {"scenario": scenario, "since": since, "bucket": bucket_seconds},
    ).fetchall()
    return [
        Bucket(row[0], row[1], float(row[2]), int(row[3]), int(row[4]), int(row[5]), float(row[6]))
        for row in rows
    ]


@dataclass(frozen=True)
class Assignment:
    """A user held to a variant of a scenario's experiment since a time; or, where `user_id`
    has the STATE_PREFIX, an experiment's state (`state_assignment`)."""

    scenario: str
    user_id: str
    variant: str
    assigned: float  # epoch seconds


STATE_PREFIX = "$state:"
"""The user id prefix of an experiment's state rows, which no user id can have (ids match
^[a-zA-Z0-9_\\-:@.]+$). A state row is `$state:<generation, 10 digits>` with the state's JSON as
its variant: it travels with the assignments (the writer's `assign` command, the change feed,
snapshots), and the first row of a generation wins, on the writer as on every copy, so that
servers that advance the same generation at once agree on one."""


def state_assignment(scenario: str, generation: int, state: str, at: float) -> Assignment:
    """The row that stores a scenario's experiment state of a generation (JSON text)."""
    return Assignment(scenario, f"{STATE_PREFIX}{generation:010d}", state, at)


def state_generation(assignment: Assignment) -> int | None:
    """The generation of a state row (None: a user's assignment)."""
    if not assignment.user_id.startswith(STATE_PREFIX):
        return None
    return int(assignment.user_id[len(STATE_PREFIX) :])


def load_states(ctx: ReadContext) -> dict[str, tuple[int, str]]:
    """Each scenario's latest experiment state: its generation and JSON text."""
    rows = ctx.conn.execute(
        "SELECT scenario, user_id, variant FROM variant_assignments "
        "WHERE starts_with(user_id, $prefix) ORDER BY scenario, user_id",
        {"prefix": STATE_PREFIX},
    ).fetchall()
    latest: dict[str, tuple[int, str]] = {}
    for scenario, user_id, state in rows:
        latest[scenario] = (int(user_id[len(STATE_PREFIX) :]), state)  # ordered: the last wins
    return latest


def load_assignments(ctx: ReadContext, since: float) -> list[Assignment]:
    """The assignments made since a time (epoch seconds); older ones have expired."""
    rows = ctx.conn.execute(
        "SELECT scenario, user_id, variant, epoch_us(assigned) / 1e6 FROM variant_assignments "
        "WHERE assigned >= make_timestamp(CAST(? * 1000000 AS BIGINT)) "
        "AND NOT starts_with(user_id, ?)",
        [since, STATE_PREFIX],
    ).fetchall()
    return [Assignment(row[0], row[1], row[2], float(row[3])) for row in rows]


def save_assignments(ctx: WriteContext, assignments: Sequence[Assignment]) -> None:
    """Store assignments, each replacing the user's earlier one in its scenario; and state
    rows, each kept unless its generation has one already (then dropping the states two or more
    generations older)."""
    for state in assignments:
        generation = state_generation(state)
        if generation is None:
            continue
        ctx.conn.execute(
            "INSERT OR IGNORE INTO variant_assignments "
            "VALUES (?, ?, ?, make_timestamp(CAST(? * 1000000 AS BIGINT)))",
            [state.scenario, state.user_id, state.variant, state.assigned],
        )
        kept = state_assignment(state.scenario, generation - 1, "", 0).user_id
        ctx.conn.execute(
            "DELETE FROM variant_assignments "
            "WHERE scenario = ? AND starts_with(user_id, ?) AND user_id < ?",
            [state.scenario, STATE_PREFIX, kept],
        )
    assignments = [a for a in assignments if state_generation(a) is None]
    if not assignments:
        return
    # The last assignment of a (scenario, user) wins; one statement may not upsert a key twice.
    latest = {(a.scenario, a.user_id): a for a in assignments}
    ctx.conn.execute(
        "INSERT OR REPLACE INTO variant_assignments SELECT unnest($scenarios::VARCHAR[]), "
        "unnest($users::VARCHAR[]), unnest($variants::VARCHAR[]), "
        "make_timestamp(CAST(unnest($times::DOUBLE[]) * 1000000 AS BIGINT))",
        {
            "scenarios": [a.scenario for a in latest.values()],
            "users": [a.user_id for a in latest.values()],
            "variants": [a.variant for a in latest.values()],
            "times": [a.assigned for a in latest.values()],
        },
    )
