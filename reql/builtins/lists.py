"""Functions over sets and arrays with a lambda: map, select, exists."""

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
    mapped = f"list_transform({_over(call)}, {call.arguments[0]})"
    if call.types[0].is_collection:
        # The values are sets themselves: compare them as sets, so that equal ones collapse.
        each = '"$s"'
        mapped = f"list_transform({mapped}, lambda {each}: list_sort(list_distinct({each})))"
    return f"list_distinct({mapped})"


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
        lambda c: f"list_filter({_over(c)}, {c.arguments[0]})",
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
        lambda c: f"(len(list_filter({_over(c)}, {c.arguments[0]})) > 0)",
        "whether the lambda is true for some element",
        lambda_argument=0,
        lambda_variables=_lambda_variables,
        nullable=never_null,
    ),
]
