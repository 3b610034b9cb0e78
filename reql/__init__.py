"""ReQL, Recombee's expression language: text -> AST -> typed AST -> DuckDB SQL + parameters.

A pure library: it imports nothing of the rest of reqo and does no I/O. The host describes its
tables with a `Catalog` and runs the SQL.
"""

from __future__ import annotations

from functools import lru_cache

from reql.builtins import BUILTIN_FUNCTIONS
from reql.catalog import Catalog, Column, EntityTable, InteractionsTable, Storage
from reql.checker import Environment, Purpose, check
from reql.compiler import CompiledExpression, ContextBinding, compile_checked
from reql.cost import MAX_COST, MAX_LAMBDA_DEPTH, check_cost
from reql.errors import (
    ReqlError,
    ReqlEvaluationError,
    ReqlLimitError,
    ReqlNameError,
    ReqlSyntaxError,
    ReqlTypeError,
    ReqlUnknownProperty,
)
from reql.functions import Function, FunctionRegistry
from reql.parser import parse

__all__ = [
    "BUILTIN_FUNCTIONS",
    "MAX_COST",
    "MAX_LAMBDA_DEPTH",
    "Catalog",
    "Column",
    "CompiledExpression",
    "ContextBinding",
    "EntityTable",
    "Environment",
    "Function",
    "FunctionRegistry",
    "InteractionsTable",
    "Purpose",
    "ReqlError",
    "ReqlEvaluationError",
    "ReqlLimitError",
    "ReqlNameError",
    "ReqlSyntaxError",
    "ReqlTypeError",
    "ReqlUnknownProperty",
    "Storage",
    "compile_expression",
    "parse",
]


def compile_expression(
    text: str,
    purpose: Purpose,
    *,
    catalog: Catalog,
    candidate: str = "item",
    context_item: bool = False,
    context_user: bool = False,
    functions: FunctionRegistry = BUILTIN_FUNCTIONS,
    max_cost: int = MAX_COST,
) -> CompiledExpression:
    """Parse, check and compile an expression (cached: the same inputs compile once).

    `candidate` is what the expression is evaluated over ("item" or "user"); `context_item` and
    `context_user` say whether the request has them. `max_cost` bounds the estimated element
    evaluations per candidate (see reql.cost); an expression above it, or with lambda functions
    nested deeper than MAX_LAMBDA_DEPTH, is a ReqlLimitError. Raises a ReqlError subclass.
    """
    environment = Environment(catalog, functions, candidate, context_item, context_user)
    return _compile(text, purpose, environment, max_cost)


@lru_cache(maxsize=2048)
def _compile(
    text: str, purpose: Purpose, environment: Environment, max_cost: int
) -> CompiledExpression:
    tree = parse(text)
    checked = check(text, tree, environment, purpose)
    # Before any SQL is written: the estimate needs only the checked tree.
    check_cost(checked, max_cost=max_cost)
    return compile_checked(checked, purpose)
