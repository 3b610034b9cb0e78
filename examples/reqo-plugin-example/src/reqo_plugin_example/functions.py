"""clamp(x, lo, hi): a ReQL function, as a registry entry (name, check, SQL rendering)."""

from __future__ import annotations

from collections.abc import Sequence

from reql import types as t
from reql.functions import NUMBER, Argument, CallSql, Function, expect
from reql.types import Kind, Type


def _check(arguments: Sequence[Argument]) -> Type:
    """Three numbers; an int when all three are ints, a double otherwise."""
    expect(arguments, NUMBER, NUMBER, NUMBER)
    if all(a.type.kind in (Kind.INT, Kind.NULL) for a in arguments):
        return t.INT
    return t.DOUBLE


def _render(call: CallSql) -> str:
    sql_type = "BIGINT" if call.result.kind is Kind.INT else "DOUBLE"
    x, lo, hi = (f"CAST({argument} AS {sql_type})" for argument in call.arguments)
    return f"least(greatest({x}, {lo}), {hi})"


CLAMP = Function(
    "clamp",
    3,
    3,
    _check,
    _render,
    "x limited to [lo, hi]: lo if x < lo, hi if x > hi (hi if lo > hi)",
    # DuckDB's greatest() and least() skip nulls; ReQL's arithmetic gives null for a null.
    null_in_null_out=True,
)
