"""The function registry: built-ins are entries like any other, and more can be added."""

from __future__ import annotations

import duckdb
import pytest

import reql
from reql import types as t
from reql.functions import NUMBER, STRING_ARG, DuplicateFunction, Function, simple

CATALOG = reql.Catalog(
    items=reql.EntityTable(
        "item",
        "items",
        "$id",
        "$idx",
        "itemId",
        (reql.Column("price", t.DOUBLE), reql.Column("title", t.STRING)),
    ),
    users=reql.EntityTable("user", "users", "$id", "$idx", "userId"),
)


def run(compiled: reql.CompiledExpression) -> list[str]:
    conn = duckdb.connect()
    conn.execute('CREATE TABLE items ("$idx" BIGINT, "$id" VARCHAR, price DOUBLE, title VARCHAR)')
    conn.execute("INSERT INTO items VALUES (0, 'a', 10, 'Red'), (1, 'b', 30, 'Blue')")
    rows = conn.execute(
        f'SELECT c."$id" FROM items AS c WHERE {compiled.sql} ORDER BY 1', compiled.bind()
    ).fetchall()
    return [row[0] for row in rows]


def test_a_plugin_function_compiles_and_runs() -> None:
    doubled = simple("double_it", [NUMBER], t.DOUBLE, "({0} * 2)", description="twice x")
    registry = reql.BUILTIN_FUNCTIONS.with_functions([doubled])
    compiled = reql.compile_expression(
        "double_it('price') > 40", reql.Purpose.FILTER, catalog=CATALOG, functions=registry
    )
    assert run(compiled) == ["b"]
    with pytest.raises(reql.ReqlNameError, match="unknown function 'double_it'"):
        reql.compile_expression("double_it('price') > 40", reql.Purpose.FILTER, catalog=CATALOG)
    with pytest.raises(reql.ReqlTypeError, match="argument 1 of double_it\\(\\) needs a number"):
        reql.compile_expression(
            "double_it('title') > 1", reql.Purpose.FILTER, catalog=CATALOG, functions=registry
        )


def test_a_function_with_its_own_check_and_rendering() -> None:
    def check(arguments: object) -> t.Type:
        return t.BOOLEAN

    shouting = Function(
        "is_shouting",
        1,
        1,
        check,
        lambda call: f"(upper({call.arguments[0]}) = {call.arguments[0]})",
        "whether the text is all capitals",
    )
    registry = reql.BUILTIN_FUNCTIONS.with_functions([shouting])
    compiled = reql.compile_expression(
        "not is_shouting('title')", reql.Purpose.FILTER, catalog=CATALOG, functions=registry
    )
    assert run(compiled) == ["a", "b"]


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(DuplicateFunction, match="'UPPER' is registered twice"):
        reql.BUILTIN_FUNCTIONS.with_functions([simple("UPPER", [STRING_ARG], t.STRING, "{0}")])


def test_every_builtin_is_described() -> None:
    for name, function in reql.BUILTIN_FUNCTIONS.items():
        assert function.name == name
        assert function.description, name
