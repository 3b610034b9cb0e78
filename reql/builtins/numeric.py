"""Math and geography."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reql import types as t
from reql.builtins.common import cast
from reql.functions import (
    COLLECTION,
    NUMBER,
    NUMERIC,
    Argument,
    CallSql,
    Function,
    SignatureError,
    expect,
    returning,
    simple,
)
from reql.types import Kind, Type

EARTH_RADIUS_M = 6_371_008.8


# -- math ---------------------------------------------------------------------------------------


def _extremum(name: str, sql_many: str, sql_list: str) -> Function:
    def check(arguments: Sequence[Argument]) -> Type:
        if len(arguments) == 1 and arguments[0].type.is_collection:
            expect(arguments, COLLECTION)
            element = arguments[0].type.element or t.NULL
            if not (element.is_numeric or element.kind is Kind.STRING or element.is_null):
                raise SignatureError(f"needs numbers or strings, not {arguments[0].type}", 0)
            return element
        result = t.unify_all([a.type for a in arguments])
        if result is None or not (result.is_numeric or result.kind in (Kind.STRING, Kind.NULL)):
            raise SignatureError("needs numbers (or strings), or one set or array of them")
        return result

    def render(call: CallSql) -> str:
        if len(call.arguments) == 1 and call.types[0].is_collection:
            return f"{sql_list}({call.arguments[0]})"
        parts = [cast(s, ty, call.result) for s, ty in zip(call.arguments, call.types, strict=True)]
        return f"{sql_many}({', '.join(parts)})"

    def nullable(arguments: Sequence[Argument]) -> bool:
        return any(a.nullable for a in arguments) or (
            len(arguments) == 1 and arguments[0].type.is_collection
        )

    return Function(
        name,
        1,
        None,
        check,
        render,
        null_in_null_out=True,
        nullable=nullable,
        description=f"the {name}imum of the arguments, or of one set or array",
    )


def _avg_check(arguments: Sequence[Argument]) -> Type:
    if len(arguments) == 1 and arguments[0].type.is_collection:
        element = arguments[0].type.element or t.NULL
        if not (element.is_number or element.is_null):
            raise SignatureError(f"needs numbers, not {arguments[0].type}", 0)
        return t.DOUBLE
    expect(arguments, NUMBER)
    return t.DOUBLE


def _avg_render(call: CallSql) -> str:
    if len(call.arguments) == 1 and call.types[0].is_collection:
        return f"list_avg(CAST({call.arguments[0]} AS DOUBLE[]))"
    total = " + ".join(f"CAST({s} AS DOUBLE)" for s in call.arguments)
    return f"(({total}) / {len(call.arguments)})"


def _same_number(arguments: Sequence[Argument]) -> Type:
    expect(arguments[:1], NUMBER)
    return t.INT if arguments[0].type.kind is Kind.INT else t.DOUBLE


def _round_check(arguments: Sequence[Argument]) -> Type:
    if len(arguments) == 2 and not (
        arguments[1].type.kind is Kind.INT or arguments[1].type.is_null
    ):
        raise SignatureError(f"needs an int number of digits, not {arguments[1].type}", 1)
    return _same_number(arguments)


def _round_render(call: CallSql) -> str:
    value = call.arguments[0]
    # DuckDB's round() takes its digits as an INTEGER, not a BIGINT.
    digits = f"CAST({call.arguments[1]} AS INTEGER)" if len(call.arguments) == 2 else None
    if call.result.kind is Kind.INT:
        if digits is None:
            return value
        return f"CAST(round(CAST({value} AS DOUBLE), {digits}) AS BIGINT)"
    return f"round({value}, {digits})" if digits else f"round({value})"


def _int_or(sql_name: str) -> Callable[[CallSql], str]:
    def render(call: CallSql) -> str:
        if call.result.kind is Kind.INT:
            return call.arguments[0]
        return f"{sql_name}({call.arguments[0]})"

    return render


def _log_render(call: CallSql) -> str:
    value = f"CAST({call.arguments[0]} AS DOUBLE)"
    if len(call.arguments) == 1:
        return f"log10({value})"
    return f"(ln({value}) / ln(CAST({call.arguments[1]} AS DOUBLE)))"


def _earth_distance(call: CallSql) -> str:
    lat1, lon1, lat2, lon2 = (f"radians(CAST({a} AS DOUBLE))" for a in call.arguments)
    haversine = (
        f"pow(sin(({lat2} - {lat1}) / 2), 2) + "
        f"cos({lat1}) * cos({lat2}) * pow(sin(({lon2} - {lon1}) / 2), 2)"
    )
    return f"(2 * {EARTH_RADIUS_M} * asin(least(1.0, sqrt({haversine}))))"


def _numeric(name: str, sql: str, words: str) -> Function:
    def render(call: CallSql) -> str:
        return sql.format(f"CAST({call.arguments[0]} AS DOUBLE)")

    def check(arguments: Sequence[Argument]) -> Type:
        expect(arguments, NUMBER)
        return t.DOUBLE

    return Function(name, 1, 1, check, render, words)


FUNCTIONS: list[Function] = [
    _extremum("max", "greatest", "list_max"),
    _extremum("min", "least", "list_min"),
    Function(
        "avg",
        1,
        None,
        _avg_check,
        _avg_render,
        "the mean of the arguments, or of one set or array",
        nullable=lambda a: any(x.nullable for x in a) or a[0].type.is_collection,
    ),
    Function("round", 1, 2, _round_check, _round_render, "rounds half away from zero"),
    Function("floor", 1, 1, _same_number, _int_or("floor"), "rounds down"),
    Function("ceil", 1, 1, _same_number, _int_or("ceil"), "rounds up"),
    Function("abs", 1, 1, _same_number, lambda c: f"abs({c.arguments[0]})", "the absolute value"),
    _numeric("sqrt", "sqrt({0})", "the square root (NaN for negative numbers)"),
    _numeric("exp", "exp({0})", "e to the power of x"),
    _numeric("ln", "ln({0})", "the natural logarithm"),
    simple(
        "pow",
        [NUMBER, NUMBER],
        t.DOUBLE,
        "pow(CAST({0} AS DOUBLE), CAST({1} AS DOUBLE))",
        description="x to the power of y",
    ),
    Function(
        "log",
        1,
        2,
        returning(t.DOUBLE, NUMBER),
        _log_render,
        "the logarithm, base 10 unless given",
    ),
    Function(
        "earth_distance",
        4,
        4,
        returning(t.DOUBLE, NUMERIC),
        _earth_distance,
        "the great-circle distance in metres",
        null_in_null_out=True,  # least() would turn a null distance into the antipode's
    ),
]
