"""SQL for ReQL's operators, with ReQL's semantics where DuckDB's differ (null equality, NaN on
division by zero, sets compared by inclusion, membership in mixed set literals)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reql import ast
from reql.types import Kind, Type, unify

if TYPE_CHECKING:
    from reql.compiler import SqlCompiler

NAN = "CAST('NaN' AS DOUBLE)"


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
            kept = f"list_filter({left}, lambda {element}: NOT list_contains({right}, {element}))"
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
        common = _common(a_type, b_type)
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
        return f"list_contains([{', '.join(elements)}], {compiler.sql(left)})"
    element = right_type.element
    if element is None or element.is_null:
        return "FALSE"
    if element.family != left_type.family:
        return "FALSE"
    return f"list_contains({compiler.sql(right)}, {compiler.sql(left)})"
