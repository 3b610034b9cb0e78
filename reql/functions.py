"""The function registry: each ReQL function is an entry with its checks and its SQL rendering.

Plugins add functions through the `register_reql_functions` hook, as entries of this shape.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reql import ast
from reql.catalog import Catalog
from reql.types import Type


class SignatureError(Exception):
    """Raised by a function's check: the arguments do not fit (argument index, 0-based, or None)."""

    def __init__(self, message: str, argument: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.argument = argument


@dataclass(frozen=True)
class Argument:
    """What a function's check sees of one argument."""

    type: Type
    nullable: bool
    node: ast.Node


class SqlServices(Protocol):
    """What a function's rendering may ask of the compiler."""

    @property
    def catalog(self) -> Catalog: ...

    @property
    def candidate_alias(self) -> str: ...

    def bind(self, value: Any, type_: Type) -> str:
        """A new bound parameter holding `value`, cast to the SQL type of `type_`."""
        ...

    def alias(self) -> str:
        """A fresh table alias for a subquery."""
        ...

    def now(self) -> str:
        """The parameter that holds the evaluation's current time, in epoch seconds."""
        ...

    def partitions(self, node: ast.Node) -> dict[str, list[str]]:
        """The SQL of a mixed set literal's elements, by family."""
        ...


@dataclass(frozen=True)
class LambdaSql:
    """A lambda argument in parts: the SQL names of its element and (1-based) position variables,
    and its body. `reads_tables` says the body holds a subquery, which DuckDB cannot run in a list
    lambda: the function must then iterate in SQL (unnest) instead."""

    element: str
    position: str
    body: str
    reads_tables: bool


@dataclass(frozen=True)
class CallSql:
    """What a function's rendering gets: the SQL of each argument, with types and nodes.

    A lambda argument's SQL is a DuckDB list lambda; `lambdas` has it in parts, by position.
    """

    arguments: Sequence[str]
    types: Sequence[Type]
    nullable: Sequence[bool]
    nodes: Sequence[ast.Node]
    result: Type
    services: SqlServices
    lambdas: Mapping[int, LambdaSql] = field(default_factory=dict)


Check = Callable[[Sequence[Argument]], Type]
Render = Callable[[CallSql], str]
LambdaVariables = Callable[[Sequence[Argument]], tuple[Type, ...]]


@dataclass(frozen=True)
class Function:
    """One ReQL function.

    `check` validates the argument types (raising SignatureError) and returns the result type;
    `render` returns the SQL. By default the result may be null exactly when an argument may be
    (`nullable` overrides that); with `null_in_null_out` the compiler wraps the SQL in a null test,
    for functions whose SQL would not propagate null by itself.
    """

    name: str
    min_args: int
    max_args: int | None
    check: Check
    render: Render
    description: str = ""
    null_in_null_out: bool = False
    nullable: Callable[[Sequence[Argument]], bool] | None = None
    volatile: bool = False
    uses_interactions: bool = False
    reads_tables: bool = False
    """Its SQL is a subquery, which DuckDB cannot run inside a list lambda."""
    result_from_catalog: Callable[[Catalog], Type] | None = None
    lambda_argument: int | None = None
    lambda_variables: LambdaVariables | None = None

    @property
    def arity(self) -> str:
        """How many arguments it takes, in words (for error messages)."""
        if self.max_args is None:
            return f"at least {self.min_args}"
        if self.min_args == self.max_args:
            return str(self.min_args)
        return f"{self.min_args} to {self.max_args}"


class DuplicateFunction(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"the ReQL function '{name}' is registered twice")


class FunctionRegistry(Mapping[str, Function]):
    """Functions by lowercase name. Immutable; `with_functions` returns an extended registry."""

    def __init__(self, functions: Iterable[Function] = ()) -> None:
        self._functions: dict[str, Function] = {}
        for function in functions:
            key = function.name.lower()
            if key in self._functions:
                raise DuplicateFunction(function.name)
            self._functions[key] = function

    def __getitem__(self, name: str) -> Function:
        return self._functions[name.lower()]

    def __iter__(self) -> Any:
        return iter(self._functions)

    def __len__(self) -> int:
        return len(self._functions)

    def __hash__(self) -> int:
        return hash(tuple(self._functions))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FunctionRegistry) and self._functions == other._functions

    def with_functions(self, functions: Iterable[Function]) -> FunctionRegistry:
        return FunctionRegistry([*self._functions.values(), *functions])

    def suggest(self, name: str) -> str | None:
        close = difflib.get_close_matches(name.lower(), list(self._functions), n=1, cutoff=0.6)
        return close[0] if close else None


# -- helpers for writing functions -----------------------------------------------------------


@dataclass(frozen=True)
class Accepts:
    """A predicate over argument types, with the words for an error message."""

    words: str
    test: Callable[[Type], bool]

    def __call__(self, type_: Type) -> bool:
        return type_.is_null or self.test(type_)


NUMBER = Accepts("a number", lambda t: t.is_number)
NUMERIC = Accepts("a number or timestamp", lambda t: t.is_numeric)
STRING_ARG = Accepts("a string", lambda t: t.kind.value == "string")
COLLECTION = Accepts("a set or array", lambda t: t.is_collection and not t.is_mixed)
ANY = Accepts("any value", lambda t: not t.is_mixed)


def returning(result: Type, *accepted: Accepts) -> Check:
    """A check that accepts arguments positionally and always returns `result`."""

    def check(arguments: Sequence[Argument]) -> Type:
        expect(arguments, *accepted)
        return result

    return check


def expect(arguments: Sequence[Argument], *accepted: Accepts) -> None:
    """Check arguments positionally (the last pattern repeats for variadic functions)."""
    for i, argument in enumerate(arguments):
        pattern = accepted[min(i, len(accepted) - 1)]
        if not pattern(argument.type):
            raise SignatureError(f"needs {pattern.words}, not {argument.type}", i)


def simple(
    name: str,
    parameters: Sequence[Accepts],
    returns: Type | Callable[[Sequence[Argument]], Type],
    sql: str,
    *,
    optional: int = 0,
    description: str = "",
) -> Function:
    """A function whose SQL is a template over its arguments (`"upper({0})"`), null in null out."""

    def check(arguments: Sequence[Argument]) -> Type:
        expect(arguments, *parameters)
        return returns(arguments) if callable(returns) else returns

    def render(call: CallSql) -> str:
        return sql.format(*call.arguments)

    count = len(parameters)
    return Function(name, count - optional, count, check, render, description)
