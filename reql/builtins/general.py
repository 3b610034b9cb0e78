"""General functions: now, random, size, item_values, reduce, coalesce, and the conversions."""

from __future__ import annotations

from collections.abc import Sequence

from reql import ast
from reql import types as t
from reql.builtins.common import always_nullable, cast, never_null
from reql.catalog import Catalog, Storage
from reql.functions import (
    ANY,
    COLLECTION,
    STRING_ARG,
    Argument,
    CallSql,
    Function,
    SignatureError,
    expect,
    returning,
)
from reql.types import Kind, Type, quote_identifier

# -- misc ---------------------------------------------------------------------------------------


def _size_check(arguments: Sequence[Argument]) -> Type:
    arg = arguments[0].type
    if not (arg.is_null or arg.is_collection or arg.kind is Kind.STRING):
        raise SignatureError(f"needs a set, an array or a string, not {arg}", 0)
    return t.INT


def _size_render(call: CallSql) -> str:
    arg, sql = call.types[0], call.arguments[0]
    if arg.is_null:
        return "CAST(0 AS BIGINT)"
    if arg.is_mixed:
        groups = call.services.partitions(call.nodes[0])
        counts = [f"len(list_distinct([{', '.join(sqls)}]))" for sqls in groups.values()]
        return "(" + " + ".join(counts or ["0"]) + ")"
    if arg.kind is Kind.STRING:
        return f"coalesce(length({sql}), 0)"
    return f"coalesce(len({sql}), 0)"


def _item_values_check(arguments: Sequence[Argument]) -> Type:
    expect(arguments, STRING_ARG)
    return t.dict_of(())  # the checker replaces it with the catalog's item fields


def item_fields(catalog: Catalog) -> Type:
    """The dictionary type of item_values(): the id and every item property."""
    items = catalog.items
    return t.dict_of(((items.id_name, t.STRING), *((c.name, c.type) for c in items.columns)))


def _item_values_render(call: CallSql) -> str:
    items = call.services.catalog.items
    alias = call.services.alias()
    q = quote_identifier
    fields = [f"{q(items.id_name)} := {alias}.{q(items.id_column)}"]
    for column in items.columns:
        value = f"{alias}.{q(column.name)}"
        if column.storage is Storage.TIMESTAMP:
            value = f"epoch_us({value}) / 1000000.0"
        fields.append(f"{q(column.name)} := {value}")
    return (
        f"(SELECT struct_pack({', '.join(fields)}) FROM {q(items.table)} AS {alias} "
        f"WHERE {alias}.{q(items.id_column)} = {call.arguments[0]})"
    )


def _reduce_check(arguments: Sequence[Argument]) -> Type:
    op_node = arguments[0].node
    if not (isinstance(op_node, ast.Literal) and op_node.value in _REDUCERS):
        raise SignatureError('needs the operator as a string: "+", "*", "&", "and" or "or"', 0)
    if not COLLECTION(arguments[1].type):
        raise SignatureError(f"needs a set or array, not {arguments[1].type}", 1)
    element = arguments[1].type.element or t.NULL
    op = str(op_node.value)
    allowed = {
        "+": element.is_number or element.kind is Kind.STRING or element.is_collection,
        "*": element.is_number,
        "&": element.is_collection,
        "and": element.kind is Kind.BOOLEAN,
        "or": element.kind is Kind.BOOLEAN,
    }[op]
    if not (allowed or element.is_null):
        raise SignatureError(f'cannot apply "{op}" to elements of type {element}', 1)
    result = element
    if element.is_collection:
        result = Type(Kind.SET, element.element)
    if len(arguments) == 3:
        merged = t.unify(result, arguments[2].type)
        if merged is None:
            raise SignatureError(f"has an initial value of type {arguments[2].type}", 2)
        result = merged
    return result


_REDUCERS = {
    "+": "{a} + {b}",
    "*": "{a} * {b}",
    "&": "list_intersect({a}, {b})",
    "and": "{a} AND {b}",
    "or": "{a} OR {b}",
}


def _reduce_render(call: CallSql) -> str:
    op = str(call.nodes[0].value) if isinstance(call.nodes[0], ast.Literal) else "+"
    result = call.result
    a, b = '"$a"', '"$b"'
    body = _REDUCERS[op].format(a=a, b=b)
    if op == "+" and result.kind is Kind.STRING:
        body = f"{a} || {b}"
    elif op == "+" and result.is_collection:
        body = f"list_distinct(list_concat({a}, {b}))"
    collection = cast(call.arguments[1], call.types[1], Type(Kind.ARRAY, result))
    if result.is_collection:
        collection = f"CAST({call.arguments[1]} AS {Type(Kind.ARRAY, result).sql()})"
    function = f"lambda {a}, {b}: {body}"
    if len(call.arguments) == 3:
        initial = cast(call.arguments[2], call.types[2], result)
        return f"list_reduce({collection}, {function}, {initial})"
    return (
        f"(CASE WHEN coalesce(len({collection}), 0) = 0 THEN NULL "
        f"ELSE list_reduce({collection}, {function}) END)"
    )


def _coalesce_check(arguments: Sequence[Argument]) -> Type:
    expect(arguments, ANY)
    result = t.unify_all([a.type for a in arguments])
    if result is None:
        raise SignatureError("needs arguments of one type")
    return result


def _coalesce_render(call: CallSql) -> str:
    parts = [cast(s, ty, call.result) for s, ty in zip(call.arguments, call.types, strict=True)]
    return f"coalesce({', '.join(parts)})"


# -- conversion ---------------------------------------------------------------------------------


def _boolean_render(call: CallSql) -> str:
    arg, sql = call.types[0], call.arguments[0]
    if arg.kind is Kind.BOOLEAN or arg.is_null:
        return sql
    if arg.is_numeric:
        return f"({sql} <> 0)"
    if arg.kind is Kind.STRING:
        return f"(lower({sql}) NOT IN ('', 'false', '0'))"
    return f"(len({sql}) > 0)"


def _number_check(arguments: Sequence[Argument]) -> Type:
    arg = arguments[0].type
    if arg.kind in (Kind.INT, Kind.BOOLEAN):
        return t.INT
    if arg.is_numeric or arg.kind is Kind.STRING or arg.is_null:
        return t.DOUBLE
    raise SignatureError(f"cannot convert {arg} to a number", 0)


def _number_render(call: CallSql) -> str:
    arg, sql = call.types[0], call.arguments[0]
    if arg.kind is Kind.BOOLEAN:
        return f"CAST({sql} AS BIGINT)"
    if arg.kind is Kind.STRING:
        return f"TRY_CAST(trim({sql}) AS DOUBLE)"
    return cast(sql, arg, call.result)


def _string_render(call: CallSql) -> str:
    arg, sql = call.types[0], call.arguments[0]
    if arg.kind is Kind.STRING:
        return sql
    if arg.kind is Kind.TIMESTAMP:
        micros = f"CAST(round({sql} * 1000000) AS BIGINT)"
        return f"strftime(make_timestamp({micros}), '%Y-%m-%dT%H:%M:%SZ')"
    return f"CAST({sql} AS VARCHAR)"


def _timestamp_check(arguments: Sequence[Argument]) -> Type:
    arg = arguments[0].type
    if not (arg.is_numeric or arg.kind is Kind.STRING or arg.is_null):
        raise SignatureError(f"needs ISO-8601 text or epoch seconds, not {arg}", 0)
    return t.TIMESTAMP


def _timestamp_render(call: CallSql) -> str:
    arg, sql = call.types[0], call.arguments[0]
    if arg.kind is Kind.STRING:
        return f"(epoch_us(TRY_CAST({sql} AS TIMESTAMPTZ)) / 1000000.0)"
    return f"CAST({sql} AS DOUBLE)"


def _text_arg_nullable(arguments: Sequence[Argument]) -> bool:
    return arguments[0].nullable or arguments[0].type.kind is Kind.STRING


def _boolean_check(arguments: Sequence[Argument]) -> Type:
    expect(arguments, ANY)
    if arguments[0].type.kind is Kind.DICT:
        raise SignatureError("cannot convert a dictionary to a boolean", 0)
    return t.BOOLEAN


FUNCTIONS: list[Function] = [
    Function(
        "now",
        0,
        0,
        lambda a: t.TIMESTAMP,
        lambda c: c.services.now(),
        "the current time",
        nullable=never_null,
    ),
    Function(
        "random",
        0,
        0,
        lambda a: t.DOUBLE,
        lambda c: "random()",
        "a random number in [0, 1), drawn per candidate",
        nullable=never_null,
        volatile=True,
    ),
    Function(
        "size",
        1,
        1,
        _size_check,
        _size_render,
        "the number of elements of a set or array, or of characters of a string (0 for null)",
        nullable=never_null,
    ),
    Function(
        "item_values",
        1,
        1,
        _item_values_check,
        _item_values_render,
        "a dictionary of an item's properties",
        nullable=always_nullable,
        result_from_catalog=item_fields,
        reads_tables=True,
    ),
    Function(
        "reduce",
        2,
        3,
        _reduce_check,
        _reduce_render,
        'folds a set with "+", "*", "&", "and" or "or"',
        nullable=always_nullable,
    ),
    Function(
        "coalesce",
        1,
        None,
        _coalesce_check,
        _coalesce_render,
        "the first argument that is not null",
        nullable=lambda args: all(a.nullable for a in args),
    ),
    Function("boolean", 1, 1, _boolean_check, _boolean_render, "a value as a boolean"),
    Function(
        "number",
        1,
        1,
        _number_check,
        _number_render,
        "a value as a number (null for text that is not one)",
        nullable=_text_arg_nullable,
    ),
    Function(
        "string",
        1,
        1,
        returning(t.STRING, ANY),
        _string_render,
        "a value as text",
    ),
    Function(
        "timestamp",
        1,
        1,
        _timestamp_check,
        _timestamp_render,
        "a timestamp from ISO-8601 text or epoch seconds",
        nullable=_text_arg_nullable,
    ),
]
