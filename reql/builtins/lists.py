"""Functions over sets and arrays with a lambda: map, select, exists.

They compile to DuckDB list lambdas; a lambda whose body reads another table (a subquery, which
DuckDB cannot run in a list lambda) compiles to a correlated subquery over the unnested list.
"""

from __future__ import annotations

from collections.abc import Sequence

from reql import types as t
from reql.builtins.common import never_null
from reql.functions import (
    Argument,
    CallSql,
    Function,
    SignatureError,
)
from reql.types import Kind, Type

# -- lambdas ------------------------------------------------------------------------------------


def _lambda_variables(arguments: Sequence[Argument]) -> tuple[Type, ...]:
    collection = arguments[0].type
    if collection.is_null:
        return (t.NULL, t.INT)
    if not collection.is_collection or collection.is_mixed:
        raise SignatureError(f"needs a set or array to go over, not {collection}", 0)
    return (collection.element or t.NULL, t.INT)


def _map_render(call: CallSql) -> str:
    # Values that are sets themselves are compared as sets, so that equal ones collapse.
    values_are_sets = call.types[0].is_collection
    parts = call.lambdas[0]
    if parts.reads_tables:
        value = parts.body
        if values_are_sets:
            value = f"list_sort(list_distinct({value}))"
        return (
            f'(SELECT coalesce(list_distinct(list("$b")), CAST([] AS {call.result.sql()})) '
            f"FROM {_evaluated(call, value)})"
        )
    mapped = f"list_transform({_over(call)}, {call.arguments[0]})"
    if values_are_sets:
        each = '"$s"'
        mapped = f"list_transform({mapped}, lambda {each}: list_sort(list_distinct({each})))"
    return f"list_distinct({mapped})"


def _select_render(call: CallSql) -> str:
    parts = call.lambdas[0]
    if not parts.reads_tables:
        return f"list_filter({_over(call)}, {call.arguments[0]})"
    return (
        f"(SELECT coalesce(list({parts.element} ORDER BY {parts.position}), "
        f'CAST([] AS {call.result.sql()})) FROM {_evaluated(call, parts.body)} WHERE "$b")'
    )


def _exists_render(call: CallSql) -> str:
    parts = call.lambdas[0]
    if not parts.reads_tables:
        return f"(len(list_filter({_over(call)}, {call.arguments[0]})) > 0)"
    return f'(SELECT coalesce(bool_or("$b"), false) FROM {_evaluated(call, parts.body)})'


def _evaluated(call: CallSql, value: str) -> str:
    """The unnested rows with the lambda's value as column "$b". (The value is computed in its own
    projection: DuckDB cannot bind a correlated subquery inside an aggregate's argument.)"""
    return f'(SELECT *, {value} AS "$b" FROM {_unnested(call)})'


def _unnested(call: CallSql) -> str:
    """The list as rows of (element, 1-based position), named as the lambda's variables."""
    parts = call.lambdas[0]
    collection = _over(call)
    return (
        f"(SELECT unnest({collection}) AS {parts.element}, "
        f"unnest(range(1, len({collection}) + 1)) AS {parts.position})"
    )


def _map_check(arguments: Sequence[Argument]) -> Type:
    return t.set_of(arguments[0].type)


def _select_check(arguments: Sequence[Argument]) -> Type:
    if arguments[0].type.kind not in (Kind.BOOLEAN, Kind.NULL):
        raise SignatureError(f"needs a lambda that returns a boolean, not {arguments[0].type}", 0)
    collection = arguments[1].type
    return collection if not collection.is_null else t.set_of(t.NULL)


def _exists_check(arguments: Sequence[Argument]) -> Type:
    _select_check(arguments)
    return t.BOOLEAN


def _over(call: CallSql) -> str:
    collection = call.arguments[1]
    return "CAST([] AS VARCHAR[])" if call.types[1].is_null else collection


FUNCTIONS: list[Function] = [
    Function(
        "map",
        2,
        2,
        _map_check,
        _map_render,
        "the set of the lambda's values over a set",
        lambda_argument=0,
        lambda_variables=_lambda_variables,
        nullable=never_null,
    ),
    Function(
        "select",
        2,
        2,
        _select_check,
        _select_render,
        "the elements for which the lambda is true",
        lambda_argument=0,
        lambda_variables=_lambda_variables,
        nullable=never_null,
    ),
    Function(
        "exists",
        2,
        2,
        _exists_check,
        _exists_render,
        "whether the lambda is true for some element",
        lambda_argument=0,
        lambda_variables=_lambda_variables,
        nullable=never_null,
    ),
]
