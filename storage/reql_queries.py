"""ReQL over a database: the catalogue that reql compiles against (a database's schema), a
request's expression compiled or refused as a 400, and the SQL of an expression run under the
process's query time limit.

Here rather than in the host because storage evaluates stored expressions too (segmentations,
storage/segmentations.py); the host's ReQL (server/serving/expressions.py) builds on this.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import duckdb

import reql
from reql import types as rt
from storage.contexts import ReadContext
from storage.deadline import WATCHDOG, TimeLimitExceeded
from storage.errors import InvalidInput
from storage.interactions import InteractionKind
from storage.schema import (
    ID_COLUMN,
    INDEX_COLUMN,
    Entity,
    EntitySchema,
    PropertyType,
    Schema,
)

T = TypeVar("T")

_TYPES: dict[PropertyType, rt.Type] = {
    PropertyType.INT: rt.INT,
    PropertyType.DOUBLE: rt.DOUBLE,
    PropertyType.STRING: rt.STRING,
    PropertyType.BOOLEAN: rt.BOOLEAN,
    PropertyType.TIMESTAMP: rt.TIMESTAMP,
    PropertyType.SET: rt.set_of(rt.STRING),
    PropertyType.IMAGE: rt.STRING,
    PropertyType.IMAGE_LIST: rt.array_of(rt.STRING),
}
# Errors that a valid expression can meet at run time (an overflow, a bad regular expression);
# anything else from DuckDB would be a bug in the compiler and is left to surface as one.
_RUNTIME_ERRORS = (
    duckdb.OutOfRangeException,
    duckdb.InvalidInputException,
    duckdb.ConversionException,
)


class BadExpression(InvalidInput):
    """A ReQL expression that cannot be used (400), with ReQL's report as the message."""

    def __init__(self, error: reql.ReqlError, parameter: str) -> None:
        super().__init__(str(error))
        self.parameter = parameter
        self.reql_error = error


@lru_cache(maxsize=64)
def catalog_for(schema: Schema) -> reql.Catalog:
    """The reql view of a database's schema."""

    def table(entity_schema: EntitySchema) -> reql.EntityTable:
        entity = entity_schema.entity
        columns = tuple(
            reql.Column(
                p.name,
                _TYPES[p.type],
                reql.Storage.TIMESTAMP if p.type is PropertyType.TIMESTAMP else reql.Storage.PLAIN,
            )
            for p in entity_schema.properties
        )
        return reql.EntityTable(
            entity.value, entity.table, ID_COLUMN, INDEX_COLUMN, entity.id_field, columns
        )

    interactions = reql.InteractionsTable(
        "interactions",
        "user_id",
        "item_id",
        "ts",
        "kind",
        tuple((kind.reql_name, kind.code) for kind in InteractionKind),
    )
    return reql.Catalog(table(schema.items), table(schema.users), interactions)


def compile_for(
    schema: Schema,
    text: str,
    purpose: reql.Purpose,
    *,
    parameter: str,
    candidate: Entity = Entity.ITEM,
    context_item: bool = False,
    context_user: bool = False,
    functions: reql.FunctionRegistry = reql.BUILTIN_FUNCTIONS,
) -> reql.CompiledExpression:
    """Compile an expression given as request parameter `parameter`; BadExpression if invalid."""
    if not isinstance(text, str):
        raise InvalidInput(f"parameter '{parameter}': a ReQL expression must be a string")
    try:
        return reql.compile_expression(
            text,
            purpose,
            catalog=catalog_for(schema),
            candidate=candidate.value,
            context_item=context_item,
            context_user=context_user,
            functions=functions,
        )
    except reql.ReqlError as error:
        raise BadExpression(error, parameter) from None


@dataclass
class QueryLimits:
    """Limits on evaluating expressions, set once by the host from its configuration."""

    timeout: float = 2.0
    """Seconds one expression-evaluating query may run before it is interrupted."""


LIMITS = QueryLimits()
"""The process's limits (one server configuration per process)."""


def run_guarded(source: str, parameter: str, run: Callable[[], T], ctx: ReadContext) -> T:
    """Run the SQL of an expression on `ctx`'s connection under the time limit; errors that its
    values cause, and running out of time, become BadExpression."""
    limit = LIMITS.timeout
    try:
        if ctx.memory_only:
            return run()  # no SQL runs: the context raises NeedsDatabase first
        with WATCHDOG.limited(ctx.conn, limit):
            return run()
    except _RUNTIME_ERRORS as error:
        message = str(error).split("\n")[0]
        failure = reql.ReqlEvaluationError(f"cannot evaluate: {message}", source)
        raise BadExpression(failure, parameter) from None
    except TimeLimitExceeded:
        failure = reql.ReqlEvaluationError(
            f"evaluating the expression took longer than the limit of {limit:g} s "
            "(limits.query_timeout); simplify it or narrow it with a cheaper condition first",
            source,
        )
        raise BadExpression(failure, parameter) from None


def current_time() -> float:
    """now() for one evaluation, to the second, so that results stay cacheable for a second."""
    return float(int(time.time()))
