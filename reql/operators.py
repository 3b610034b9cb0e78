"""ReQL's operators: their typing rules, and their SQL with ReQL's semantics where DuckDB's differ
(null equality, NaN on division by zero, sets compared by inclusion, membership in mixed set
literals)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reql import ast
from reql import types as t
from reql.types import Kind, Type, unify

if TYPE_CHECKING:
    from reql.compiler import SqlCompiler

NAN = "CAST('NaN' AS DOUBLE)"


# -- types ---------------------------------------------------------------------------------------


def binary_result(operator: str, left: Type, right: Type) -> Type | None:
    """The type of `left operator right`, or None when the operator does not apply."""
    if left.is_mixed or right.is_mixed:
        return None
    if left.is_null and right.is_null:
        return t.NULL
    if left.is_null or right.is_null:
        other = right if left.is_null else left
        if other.is_collection:
            return other if operator in ("+", "-", "&") else None
        if other.kind is Kind.TIMESTAMP and operator in ("+", "-"):
            # null - timestamp can only be a difference of timestamps (a number of seconds).
            return t.DOUBLE if operator == "-" and right is other else t.TIMESTAMP
        # Whatever the null stands for, the result is null: type it as the other operand would be.
        partner = t.INT if other.kind in (Kind.INT, Kind.TIMESTAMP) else other
        return binary_result(
            operator, other if other.kind is not Kind.TIMESTAMP else t.DOUBLE, partner
        )
    numbers = left.is_number and right.is_number
    if operator in ("/", "%"):
        return t.DOUBLE if numbers else None
    if operator in ("+", "-", "*") and numbers:
        return t.INT if left == right == t.INT else t.DOUBLE
    if operator == "*":
        return None
    if operator == "&":
        return _set_result(left, right, left.kind is right.kind is Kind.ARRAY)
    if operator == "+":
        if (left.kind is Kind.TIMESTAMP and right.is_number) or (
            left.is_number and right.kind is Kind.TIMESTAMP
        ):
            return t.TIMESTAMP
        if left.kind is right.kind is Kind.STRING:
            return t.STRING
        return _set_result(left, right, left.kind is right.kind is Kind.ARRAY)
    # "-"
    if left.kind is Kind.TIMESTAMP and right.is_number:
        return t.TIMESTAMP
    if left.kind is right.kind is Kind.TIMESTAMP:
        return t.DOUBLE
    return _set_result(left, right, left.kind is Kind.ARRAY)


def _set_result(left: Type, right: Type, array: bool) -> Type | None:
    if not (left.is_collection and right.is_collection):
        return None
    element = t.unify(left.element or t.NULL, right.element or t.NULL)
    if element is None:
        return None
    return Type(Kind.ARRAY if array else Kind.SET, element)


def comparison_problem(operator: str, left: Type, right: Type) -> str | None:
    """Why `left operator right` is not allowed, or None."""
    if operator in ("==", "!="):
        return None
    if operator in ("in", "not in"):
        if right.is_null or right.is_collection:
            return None
        if right.kind is Kind.STRING and left.kind in (Kind.STRING, Kind.NULL):
            return None
        return f"'{operator}' needs a set, an array or a string on its right, not {right}"
    if left.is_null or right.is_null:
        return None
    if left.is_mixed or right.is_mixed:
        return f"'{operator}' cannot compare a set that mixes kinds of values"
    if left.family == right.family and left.family in ("numeric", "string"):
        return None
    if left.family == right.family == "collection" and unify(left, right) is not None:
        return None
    return f"'{operator}' cannot compare {left} and {right}"


# -- SQL -----------------------------------------------------------------------------------------


def binary_sql(compiler: SqlCompiler, node: ast.Binary) -> str:
    result = compiler.info(node).type
    left_type, right_type = compiler.info(node.left).type, compiler.info(node.right).type
    if left_type.is_null or right_type.is_null:
        return f"CAST(NULL AS {result.sql()})"
    op = node.operator
    if result.is_collection:
        left, right = compiler.coerce(node.left, result), compiler.coerce(node.right, result)
        if op == "&":
            return f"list_intersect({left}, {right})"
        if op == "-":
            element = '"$e"'
            if compiler.reads_tables(node.right):
                # DuckDB runs no subquery inside a list lambda: filter the unnested rows instead.
                position = f'unnest(range(1, len({left}) + 1)) AS "$i"'
                rows = f"(SELECT unnest({left}) AS {element}, {position})"
                kept = (
                    f'(SELECT coalesce(list({element} ORDER BY "$i"), CAST([] AS {result.sql()})) '
                    f"FROM {rows} WHERE NOT list_contains({right}, {element}))"
                )
            else:
                kept = (
                    f"list_filter({left}, lambda {element}: NOT list_contains({right}, {element}))"
                )
            return kept if result.kind is Kind.ARRAY else f"list_distinct({kept})"
        joined = f"list_concat({left}, {right})"
        return joined if result.kind is Kind.ARRAY else f"list_distinct({joined})"
    left, right = compiler.sql(node.left), compiler.sql(node.right)
    if op == "+" and result.kind is Kind.STRING:
        return f"({left} || {right})"
    if op == "/":
        return f"(CASE WHEN {right} = 0 THEN {NAN} ELSE CAST({left} AS DOUBLE) / {right} END)"
    if op == "%":
        return (
            f"(CASE WHEN {right} = 0 THEN {NAN} "
            f"ELSE fmod(CAST({left} AS DOUBLE), CAST({right} AS DOUBLE)) END)"
        )
    return f"({left} {op} {right})"


def comparison_sql(compiler: SqlCompiler, operator: str, left: ast.Node, right: ast.Node) -> str:
    if operator in ("in", "not in"):
        inside = _membership(compiler, left, right)
        return f"(NOT {inside})" if operator == "not in" else inside
    if operator in ("==", "!="):
        return _equality(compiler, left, right, operator == "==")
    left_type, right_type = compiler.info(left).type, compiler.info(right).type
    if left_type.is_null or right_type.is_null:
        return "CAST(NULL AS BOOLEAN)"
    a, b = compiler.sql(left), compiler.sql(right)
    if left_type.is_collection:
        common = _common(left_type, right_type)
        a, b = compiler.coerce(left, common), compiler.coerce(right, common)
        if operator in (">", ">="):
            a, b = b, a
        if operator in ("<=", ">="):
            return f"list_has_all({b}, {a})"
        return f"(list_has_all({b}, {a}) AND NOT list_has_all({a}, {b}))"
    return f"({a} {operator} {b})"


def _common(a: Type, b: Type) -> Type:
    common = unify(a, b)
    assert common is not None
    return common


def _equality(compiler: SqlCompiler, left: ast.Node, right: ast.Node, equal: bool) -> str:
    a_info, b_info = compiler.info(left), compiler.info(right)
    a_type, b_type = a_info.type, b_info.type
    if a_type.is_null and b_type.is_null:
        return "TRUE" if equal else "FALSE"
    if a_type.is_null or b_type.is_null:
        other = right if a_type.is_null else left
        test = "IS NULL" if equal else "IS NOT NULL"
        return f"({compiler.sql(other)} {test})"
    if a_type.family != b_type.family or (
        a_type.kind is Kind.DICT and a_type.fields != b_type.fields
    ):
        return "FALSE" if equal else "TRUE"
    if a_type.is_collection:
        common = unify(a_type, b_type)
        if common is None:  # sets of different kinds of values: never equal
            return "FALSE" if equal else "TRUE"
        a, b = compiler.coerce(left, common), compiler.coerce(right, common)
        if not (a_type.kind is b_type.kind is Kind.ARRAY):
            a, b = f"list_sort(list_distinct({a}))", f"list_sort(list_distinct({b}))"
        return f"({a} {'=' if equal else '<>'} {b})"
    a, b = compiler.sql(left), compiler.sql(right)
    if not (a_info.nullable or b_info.nullable):
        return f"({a} {'=' if equal else '<>'} {b})"
    return f"({a} {'IS NOT DISTINCT FROM' if equal else 'IS DISTINCT FROM'} {b})"


def _membership(compiler: SqlCompiler, left: ast.Node, right: ast.Node) -> str:
    left_info, right_info = compiler.info(left), compiler.info(right)
    left_type, right_type = left_info.type, right_info.type
    if right_type.is_null or left_type.is_null:
        return "CAST(NULL AS BOOLEAN)"
    if right_type.kind is Kind.STRING:
        return f"contains({compiler.sql(right)}, {compiler.sql(left)})"
    if isinstance(right, ast.SetLiteral | ast.ArrayLiteral):
        # A literal: `x IN (a, b)` plans better than a list function, and a literal that mixes
        # kinds of values only holds candidates of x's own family.
        if right_type.is_mixed:
            elements = compiler.partitions(right).get(left_type.family, [])
        elif right_type.element is not None and right_type.element.family == left_type.family:
            elements = [compiler.sql(e) for e in right.elements]
        else:
            elements = []
        if not elements:
            return "FALSE"
        if not left_type.is_collection:
            return f"({compiler.sql(left)} IN ({', '.join(elements)}))"
        inner = right_type.element or t.NULL
        if right_type.is_mixed or Kind.SET not in (left_type.kind, inner.kind):
            return f"list_contains([{', '.join(elements)}], {compiler.sql(left)})"
        common = unify(left_type, inner) or inner
        sets = [normalized_set(compiler.coerce(e, common)) for e in right.elements]
        return (
            f"list_contains([{', '.join(sets)}], {normalized_set(compiler.coerce(left, common))})"
        )
    element = right_type.element
    if element is None or element.is_null:
        return "FALSE"
    if element.family != left_type.family:
        return "FALSE"
    if left_type.is_collection and Kind.SET in (left_type.kind, element.kind):
        # Membership of a set compares as sets, whatever order the elements were given in.
        each = '"$s"'
        normalized = f"list_transform({compiler.sql(right)}, lambda {each}: {normalized_set(each)})"
        return f"list_contains({normalized}, {normalized_set(compiler.sql(left))})"
    return f"list_contains({compiler.sql(right)}, {compiler.sql(left)})"


def normalized_set(sql: str) -> str:
    """A set's SQL in its one canonical form (sorted, without duplicates), for comparisons."""
    return f"list_sort(list_distinct({sql}))"
