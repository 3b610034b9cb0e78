"""The functions of REQL.md, as registry entries."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reql import ast
from reql import types as t
from reql.catalog import Catalog, Storage
from reql.functions import (
    ANY,
    COLLECTION,
    NUMBER,
    NUMERIC,
    STRING_ARG,
    Argument,
    CallSql,
    Function,
    FunctionRegistry,
    SignatureError,
    expect,
    returning,
    simple,
)
from reql.types import Kind, Type, quote_identifier, quote_string

EARTH_RADIUS_M = 6_371_008.8


def _never_null(arguments: Sequence[Argument]) -> bool:
    return False


def _always_nullable(arguments: Sequence[Argument]) -> bool:
    return True


def _cast(sql: str, own: Type, target: Type) -> str:
    return sql if own.sql() == target.sql() else f"CAST({sql} AS {target.sql()})"


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
    expect(arguments[1:2], COLLECTION)
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
    collection = _cast(call.arguments[1], call.types[1], Type(Kind.ARRAY, result))
    if result.is_collection:
        collection = f"CAST({call.arguments[1]} AS {Type(Kind.ARRAY, result).sql()})"
    function = f"lambda {a}, {b}: {body}"
    if len(call.arguments) == 3:
        initial = _cast(call.arguments[2], call.types[2], result)
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
    parts = [_cast(s, ty, call.result) for s, ty in zip(call.arguments, call.types, strict=True)]
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
    return _cast(sql, arg, call.result)


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
        parts = [
            _cast(s, ty, call.result) for s, ty in zip(call.arguments, call.types, strict=True)
        ]
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
        return f"list_avg({call.arguments[0]})"
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
    digits = call.arguments[1] if len(call.arguments) == 2 else None
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


# -- lambdas ------------------------------------------------------------------------------------


def _lambda_variables(arguments: Sequence[Argument]) -> tuple[Type, ...]:
    collection = arguments[0].type
    if collection.is_null:
        return (t.NULL, t.INT)
    if not collection.is_collection or collection.is_mixed:
        raise SignatureError(f"needs a set or array to go over, not {collection}", 0)
    return (collection.element or t.NULL, t.INT)


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


# -- interactions -------------------------------------------------------------------------------

INTERACTION_TYPES = (
    "detail_views",
    "purchases",
    "ratings",
    "cart_additions",
    "bookmarks",
    "view_portions",
)
INTERACTION_TYPE = t.dict_of(
    (("userId", t.STRING), ("itemId", t.STRING), ("timestamp", t.TIMESTAMP), ("type", t.STRING))
)


def _user_interactions_check(arguments: Sequence[Argument]) -> Type:
    expect(arguments[:1], STRING_ARG)
    kinds = arguments[1]
    if not (
        kinds.type.is_collection and (kinds.type.element or t.NULL).kind in (Kind.STRING, Kind.NULL)
    ):
        raise SignatureError(f"needs a set of interaction types, not {kinds.type}", 1)
    if len(arguments) == 3 and not (
        arguments[2].type.kind is Kind.INT or arguments[2].type.is_null
    ):
        raise SignatureError(f"needs an int count, not {arguments[2].type}", 2)
    _validate_kinds(arguments)
    return t.array_of(INTERACTION_TYPE)


def _check_kind_names(call: CallSql) -> list[int] | None:
    """The codes of a literal set of interaction types (None when the set is not a literal)."""
    node = call.nodes[1]
    if not isinstance(node, ast.SetLiteral | ast.ArrayLiteral):
        return None
    if not all(isinstance(e, ast.Literal) for e in node.elements):
        return None
    interactions = call.services.catalog.interactions
    assert interactions is not None
    return [
        interactions.code(str(e.value)) or -1 for e in node.elements if isinstance(e, ast.Literal)
    ]


def _kind_name_sql(alias: str, call: CallSql) -> str:
    interactions = call.services.catalog.interactions
    assert interactions is not None
    column = f"{alias}.{quote_identifier(interactions.kind_column)}"
    cases = " ".join(
        f"WHEN {int(code)} THEN {quote_string(name)}" for name, code in interactions.kinds
    )
    return f"(CASE {column} {cases} END)"


def _user_interactions_render(call: CallSql) -> str:
    interactions = call.services.catalog.interactions
    assert interactions is not None
    inner, outer = call.services.alias(), call.services.alias()
    q = quote_identifier
    user, kind = q(interactions.user_column), q(interactions.kind_column)
    time = q(interactions.time_column)
    codes = _check_kind_names(call)
    if codes is not None:
        kept = ", ".join(str(c) for c in codes if c >= 0) or "NULL"
        kinds = f"{inner}.{kind} IN ({kept})"
    else:
        kinds = f"list_contains({call.arguments[1]}, {_kind_name_sql(inner, call)})"
    rank = ""
    limit = ""
    if len(call.arguments) == 3:
        rank = f', row_number() OVER (ORDER BY {inner}.{time} DESC) AS "$rank"'
        limit = f'WHERE ({call.arguments[2]} IS NULL OR {outer}."$rank" <= {call.arguments[2]})'
    fields = (
        f'"userId" := {outer}.{user}, "itemId" := {outer}.{q(interactions.item_column)}, '
        f'"timestamp" := epoch_us({outer}.{time}) / 1000000.0, '
        f'"type" := {_kind_name_sql(outer, call)}'
    )
    return (
        f"(SELECT coalesce(list(struct_pack({fields}) ORDER BY {outer}.{time}), "
        f"CAST([] AS {t.array_of(INTERACTION_TYPE).sql()})) FROM "
        f"(SELECT {inner}.*{rank} FROM {q(interactions.table)} AS {inner} "
        f"WHERE {inner}.{user} = {call.arguments[0]} AND {kinds}) AS {outer} {limit})"
    )


def _validate_kinds(arguments: Sequence[Argument]) -> None:
    node = arguments[1].node
    if isinstance(node, ast.SetLiteral | ast.ArrayLiteral):
        for element in node.elements:
            if isinstance(element, ast.Literal) and element.value not in INTERACTION_TYPES:
                raise SignatureError(
                    f"has an unknown interaction type {element.value!r} "
                    f"(known: {', '.join(INTERACTION_TYPES)})",
                    1,
                )


def _count_of(kind: str) -> Function:
    def render(call: CallSql) -> str:
        interactions = call.services.catalog.interactions
        assert interactions is not None
        alias = call.services.alias()
        q = quote_identifier
        code = interactions.code(kind)
        return (
            f"(SELECT count(*) FROM {q(interactions.table)} AS {alias} "
            f"WHERE {alias}.{q(interactions.item_column)} = {call.arguments[0]} "
            f"AND {alias}.{q(interactions.kind_column)} = {int(code if code is not None else -1)})"
        )

    def check(arguments: Sequence[Argument]) -> Type:
        expect(arguments, STRING_ARG)
        return t.INT

    return Function(
        f"num_item_{kind}",
        1,
        1,
        check,
        render,
        null_in_null_out=True,
        uses_interactions=True,
        description=f"how many {kind.replace('_', ' ')} the item has",
    )


def _string_function(name: str, sql: str, returns: Type, count: int, words: str) -> Function:
    return simple(name, [STRING_ARG] * count, returns, sql, description=words)


def _numeric(name: str, sql: str, words: str) -> Function:
    def render(call: CallSql) -> str:
        return sql.format(f"CAST({call.arguments[0]} AS DOUBLE)")

    def check(arguments: Sequence[Argument]) -> Type:
        expect(arguments, NUMBER)
        return t.DOUBLE

    return Function(name, 1, 1, check, render, words)


def _boolean_check(arguments: Sequence[Argument]) -> Type:
    expect(arguments, ANY)
    if arguments[0].type.kind is Kind.DICT:
        raise SignatureError("cannot convert a dictionary to a boolean", 0)
    return t.BOOLEAN


BUILTIN_FUNCTIONS = FunctionRegistry(
    [
        # misc
        Function(
            "now",
            0,
            0,
            lambda a: t.TIMESTAMP,
            lambda c: c.services.now(),
            "the current time",
            nullable=_never_null,
        ),
        Function(
            "random",
            0,
            0,
            lambda a: t.DOUBLE,
            lambda c: "random()",
            "a random number in [0, 1), drawn per candidate",
            nullable=_never_null,
            volatile=True,
        ),
        Function(
            "size",
            1,
            1,
            _size_check,
            _size_render,
            "the number of elements of a set or array, or of characters of a string (0 for null)",
            nullable=_never_null,
        ),
        Function(
            "item_values",
            1,
            1,
            _item_values_check,
            _item_values_render,
            "a dictionary of an item's properties",
            nullable=_always_nullable,
            result_from_catalog=item_fields,
        ),
        Function(
            "reduce",
            2,
            3,
            _reduce_check,
            _reduce_render,
            'folds a set with "+", "*", "&", "and" or "or"',
            nullable=_always_nullable,
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
        # conversion
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
        # math
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
        Function(
            "abs", 1, 1, _same_number, lambda c: f"abs({c.arguments[0]})", "the absolute value"
        ),
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
        # string
        _string_function("upper", "upper({0})", t.STRING, 1, "upper case"),
        _string_function("lower", "lower({0})", t.STRING, 1, "lower case"),
        _string_function(
            "split",
            "string_split({0}, {1})",
            t.array_of(t.STRING),
            2,
            "the parts of a string between separators",
        ),
        _string_function(
            "contains", "contains({0}, {1})", t.BOOLEAN, 2, "whether the string contains the other"
        ),
        _string_function(
            "starts_with",
            "starts_with({0}, {1})",
            t.BOOLEAN,
            2,
            "whether the string starts with the prefix",
        ),
        _string_function(
            "ends_with", "suffix({0}, {1})", t.BOOLEAN, 2, "whether the string ends with the suffix"
        ),
        _string_function(
            "matches",
            "regexp_matches({0}, {1})",
            t.BOOLEAN,
            2,
            "whether an RE2 regular expression matches part of the string",
        ),
        _string_function("length", "length({0})", t.INT, 1, "the number of characters"),
        # geo
        Function(
            "earth_distance",
            4,
            4,
            returning(t.DOUBLE, NUMERIC),
            _earth_distance,
            "the great-circle distance in metres",
        ),
        # lambdas
        Function(
            "map",
            2,
            2,
            _map_check,
            lambda c: f"list_distinct(list_transform({_over(c)}, {c.arguments[0]}))",
            "the set of the lambda's values over a set",
            lambda_argument=0,
            lambda_variables=_lambda_variables,
            nullable=_never_null,
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
            nullable=_never_null,
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
            nullable=_never_null,
        ),
        # interactions
        Function(
            "user_interactions",
            2,
            3,
            _user_interactions_check,
            _user_interactions_render,
            "the user's last n interactions of the given types, oldest first",
            uses_interactions=True,
            nullable=_never_null,
        ),
        *(_count_of(kind) for kind in INTERACTION_TYPES[:5]),
    ]
)
