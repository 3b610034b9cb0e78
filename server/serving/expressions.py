"""ReQL in the server: filters as storage conditions (list endpoints, Delete/Update More Items)
and the context of an evaluation.

The catalogue that reql compiles against, ReQL errors as HTTP 400s and the time limit on an
expression's query live in storage/reql_queries.py (storage evaluates stored expressions too);
they are re-exported here for the host's modules. The evaluation over the dense item index, for
recommendations, is in server/serving/reql_engine.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import reql
from storage.catalog import Condition
from storage.database import ReadContext
from storage.reql_queries import (
    LIMITS,
    BadExpression,
    QueryLimits,
    catalog_for,
    compile_for,
    current_time,
    run_guarded,
)
from storage.schema import Entity

__all__ = [
    "LIMITS",
    "NO_CONTEXT",
    "BadExpression",
    "Context",
    "QueryLimits",
    "catalog_for",
    "compile_for",
    "condition",
    "current_time",
    "run_guarded",
]


def condition(
    ctx: ReadContext,
    text: str,
    *,
    parameter: str = "filter",
    candidate: Entity = Entity.ITEM,
) -> Condition:
    """A filter without context (list endpoints, bulk updates) as a storage condition."""
    compiled = compile_for(
        ctx.schema, text, reql.Purpose.FILTER, parameter=parameter, candidate=candidate
    )
    return Condition(compiled.sql, compiled.bind(now=current_time()), compiled.candidate_alias)


@dataclass(frozen=True)
class Context:
    """The context of one evaluation: the ids of the request's item and user, if it has them."""

    item_id: str | None = None
    user_id: str | None = None


NO_CONTEXT = Context()
