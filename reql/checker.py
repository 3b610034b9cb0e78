"""The type-checking pass: every node gets a type and a nullability, and every name a meaning."""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from reql import ast
from reql import types as t
from reql.catalog import Catalog, Column, EntityTable
from reql.errors import (
    ReqlError,
    ReqlLimitError,
    ReqlNameError,
    ReqlTypeError,
    ReqlUnknownProperty,
)
from reql.functions import Argument, Function, FunctionRegistry, SignatureError
from reql.operators import binary_result, comparison_problem
from reql.parser import integer_out_of_range, number_out_of_range, start_of
from reql.types import Kind, Type

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
CONTEXTS = {"context_item": "item", "context_user": "user"}


class Purpose(StrEnum):
    """What an expression is for, which decides the type it must have."""

    FILTER = "filter"
    BOOSTER = "booster"
    VALUE = "value"


@dataclass(frozen=True)
class Info:
    """What the checker learnt of one node."""

    type: Type
    nullable: bool
    function: Function | None = None  # for calls
    column: Column | None = None  # for candidate properties and context access
    context: str | None = None  # "item" or "user" for context access
    variable: int | None = None  # for lambda variables: the lambda's depth


@dataclass(frozen=True)
class Environment:
    """Everything an expression is checked against."""

    catalog: Catalog
    functions: FunctionRegistry
    candidate: str = "item"  # "item" or "user": what the expression is evaluated over
    context_item: bool = False
    context_user: bool = False


@dataclass
class Checked:
    """A checked expression: the tree and the facts about each node (by node identity)."""

    source: str
    tree: ast.Node
    environment: Environment
    info: dict[int, Info] = field(default_factory=dict)

    def __getitem__(self, node: ast.Node) -> Info:
        return self.info[id(node)]


def check(source: str, tree: ast.Node, environment: Environment, purpose: Purpose) -> Checked:
    """Type-check a parsed expression for a purpose; raises a ReqlError subclass."""
    checked = Checked(source, tree, environment)
    root = _Checker(checked).visit(tree)
    line, column = start_of(tree)
    if purpose is Purpose.FILTER and root.type.kind not in (Kind.BOOLEAN, Kind.NULL):
        raise ReqlTypeError(f"a filter must be boolean, not {root.type}", source, line, column)
    if purpose is Purpose.BOOSTER and not (root.type.is_number or root.type.is_null):
        raise ReqlTypeError(f"a booster must be a number, not {root.type}", source, line, column)
    if root.type.is_mixed:
        raise ReqlTypeError(
            "a set that mixes kinds of values can only be used with 'in' and size()",
            source,
            line,
            column,
        )
    return checked


class _Checker:
    def __init__(self, checked: Checked) -> None:
        self.checked = checked
        self.env = checked.environment
        self.scopes: list[dict[str, Type]] = []

    def visit(self, node: ast.Node) -> Info:
        info: Info = getattr(self, f"{node.kind}_type")(node)
        self.checked.info[id(node)] = info
        return info

    def fail(self, cls: type[ReqlError], message: str, node: ast.Node) -> ReqlError:
        return cls(message, self.checked.source, node.line, node.column)

    # -- leaves ---------------------------------------------------------------------------------

    def literal_type(self, node: ast.Literal) -> Info:
        value = node.value
        if value is None:
            return Info(t.NULL, True)
        if isinstance(value, bool):
            return Info(t.BOOLEAN, False)
        if isinstance(value, int):
            # The parser refuses longer literals; this catches 2**63, which is in range only
            # as the magnitude of a negative literal.
            if not INT64_MIN <= value <= INT64_MAX:
                raise self.fail(ReqlLimitError, integer_out_of_range(str(value)), node)
            return Info(t.INT, False)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.fail(ReqlLimitError, number_out_of_range(repr(value)), node)
            return Info(t.DOUBLE, False)
        return Info(t.STRING, False)

    def set_literal_type(self, node: ast.SetLiteral) -> Info:
        return self._collection(node, node.elements, Kind.SET)

    def array_literal_type(self, node: ast.ArrayLiteral) -> Info:
        return self._collection(node, node.elements, Kind.ARRAY)

    def _collection(self, node: ast.Node, elements: Sequence[ast.Node], kind: Kind) -> Info:
        infos = [self.visit(e) for e in elements]
        for element, info in zip(elements, infos, strict=True):
            if info.type.is_mixed:
                raise self.fail(
                    ReqlTypeError, "a set that mixes kinds of values cannot be nested", element
                )
            if info.type.kind is Kind.DICT:
                raise self.fail(ReqlTypeError, "dictionaries cannot be set elements", element)
        element_type = t.unify_all([i.type for i in infos])
        if element_type is None:
            families: dict[str, list[Type]] = {}
            for info in infos:
                families.setdefault(info.type.family, []).append(info.type)
            for family in families.values():
                if t.unify_all(family) is None:
                    raise self.fail(
                        ReqlTypeError,
                        "the sets inside a set must hold the same kind of values",
                        node,
                    )
        return Info(Type(kind, element_type or t.MIXED), False)

    def property_type(self, node: ast.Property) -> Info:
        for depth in range(len(self.scopes) - 1, -1, -1):
            if node.name in self.scopes[depth]:
                return Info(self.scopes[depth][node.name], True, variable=depth)
        table = self.env.catalog.of(self.env.candidate)
        if node.name == table.id_name:
            return Info(t.STRING, False)
        column = table.column(node.name)
        if column is None:
            names = [*table.names, *(n for scope in self.scopes for n in scope)]
            raise self.fail(
                ReqlUnknownProperty,
                f"unknown property '{node.name}'{_did_you_mean(node.name, names)}",
                node,
            )
        return Info(column.type, not column.type.is_collection, column=column)

    def name_type(self, node: ast.Name) -> Info:
        if node.name.lower() in CONTEXTS:
            raise self.fail(
                ReqlTypeError,
                f'{node.name} is read with a property name: {node.name}["property"]',
                node,
            )
        return self._call(node, node.name, ())

    # -- access and calls -----------------------------------------------------------------------

    def index_type(self, node: ast.Index) -> Info:
        if isinstance(node.target, ast.Name) and node.target.name.lower() in CONTEXTS:
            return self._context(node, node.target)
        target = self.visit(node.target)
        key = self.visit(node.key)
        if target.type.is_null:
            return Info(t.NULL, True)
        if target.type.kind is Kind.DICT:
            if not (isinstance(node.key, ast.Literal) and isinstance(node.key.value, str)):
                raise self.fail(ReqlTypeError, "a dictionary key must be a string", node.key)
            field_type = target.type.field(node.key.value)
            if field_type is None:
                names = [k for k, _ in target.type.fields]
                raise self.fail(
                    ReqlNameError,
                    f"the dictionary has no key {_quoted(node.key.value)}"
                    f"{_did_you_mean(node.key.value, names)}",
                    node.key,
                )
            return Info(field_type, True)
        if target.type.kind is Kind.ARRAY and not target.type.is_mixed:
            if not (key.type.kind is Kind.INT or key.type.is_null):
                raise self.fail(
                    ReqlTypeError, f"an array index must be an int, not {key.type}", node.key
                )
            return Info(target.type.element or t.NULL, True)
        raise self.fail(
            ReqlTypeError, f"[ ] reads dictionaries and arrays, not {target.type}", node
        )

    def _context(self, node: ast.Index, target: ast.Name) -> Info:
        entity = CONTEXTS[target.name.lower()]
        available = self.env.context_item if entity == "item" else self.env.context_user
        if not available:
            what = "no context item" if entity == "item" else "no context user"
            raise self.fail(
                ReqlNameError, f"{target.name} cannot be used here: the request has {what}", target
            )
        self.checked.info[id(target)] = Info(t.NULL, True)
        key = node.key
        if not (isinstance(key, ast.Literal) and isinstance(key.value, str)):
            raise self.fail(
                ReqlTypeError, f"{target.name}[...] takes a property name in double quotes", key
            )
        self.visit(key)
        table: EntityTable = self.env.catalog.of(entity)
        if key.value == table.id_name:
            return Info(t.STRING, False, context=entity)
        column = table.column(key.value)
        if column is None:
            raise self.fail(
                ReqlUnknownProperty,
                f"unknown property {_quoted(key.value)} of the context {entity}"
                f"{_did_you_mean(key.value, table.names)}",
                key,
            )
        return Info(column.type, not column.type.is_collection, column=column, context=entity)

    def call_type(self, node: ast.Call) -> Info:
        return self._call(node, node.name, node.arguments)

    def _call(self, node: ast.Node, name: str, arguments: Sequence[ast.Node]) -> Info:
        function = self.env.functions.get(name.lower())
        if function is None:
            if name.lower() in CONTEXTS:
                raise self.fail(ReqlTypeError, f'use {name}["property"], not {name}(...)', node)
            suggestion = self.env.functions.suggest(name)
            hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
            raise self.fail(ReqlNameError, f"unknown function '{name}'{hint}", node)
        count = len(arguments)
        if count < function.min_args or (
            function.max_args is not None and count > function.max_args
        ):
            raise self.fail(
                ReqlTypeError,
                f"{function.name}() takes {function.arity} argument"
                f"{'' if function.arity == '1' else 's'}, not {count}",
                node,
            )
        if function.uses_interactions and self.env.catalog.interactions is None:
            raise self.fail(
                ReqlNameError,
                f"{function.name}() needs interactions, which are not available",
                node,
            )
        infos: dict[int, Info] = {}
        for i, argument in enumerate(arguments):
            if i != function.lambda_argument:
                if isinstance(argument, ast.Lambda):
                    raise self.fail(
                        ReqlTypeError, f"{function.name}() takes no lambda here", argument
                    )
                infos[i] = self.visit(argument)
        if function.lambda_argument is not None and function.lambda_argument < count:
            infos[function.lambda_argument] = self._lambda(
                function, arguments, infos, function.lambda_argument
            )
        checked_args = [
            Argument(infos[i].type, infos[i].nullable, a) for i, a in enumerate(arguments)
        ]
        try:
            result = function.check(checked_args)
        except SignatureError as error:
            where = node if error.argument is None else arguments[error.argument]
            prefix = "" if error.argument is None else f"argument {error.argument + 1} of "
            raise self.fail(
                ReqlTypeError, f"{prefix}{function.name}() {error.message}", where
            ) from None
        if function.result_from_catalog is not None:
            result = function.result_from_catalog(self.env.catalog)
        if function.nullable is None and any(a.type.is_null for a in checked_args):
            # "A function with a null argument returns null."
            result = t.NULL
        if function.nullable is not None:
            nullable = function.nullable(checked_args)
        else:
            nullable = result.is_null or any(a.nullable for a in checked_args)
        return Info(result, nullable, function=function)

    def _lambda(
        self,
        function: Function,
        arguments: Sequence[ast.Node],
        infos: dict[int, Info],
        position: int,
    ) -> Info:
        node = arguments[position]
        if not isinstance(node, ast.Lambda):
            raise self.fail(
                ReqlTypeError,
                f"argument {position + 1} of {function.name}() must be a lambda",
                node,
            )
        assert function.lambda_variables is not None
        others = [
            Argument(infos[i].type, infos[i].nullable, a)
            for i, a in enumerate(arguments)
            if i != position
        ]
        try:
            variables = function.lambda_variables(others)
        except SignatureError as error:
            index = error.argument if error.argument is not None else 0
            where = [a for i, a in enumerate(arguments) if i != position][index]
            raise self.fail(ReqlTypeError, f"{function.name}() {error.message}", where) from None
        if len(node.parameters) > len(variables):
            raise self.fail(
                ReqlTypeError,
                f"the lambda of {function.name}() takes at most {len(variables)} variable"
                f"{'' if len(variables) == 1 else 's'}",
                node,
            )
        if len(set(node.parameters)) != len(node.parameters):
            raise self.fail(ReqlNameError, "a lambda variable is named twice", node)
        self.scopes.append(dict(zip(node.parameters, variables, strict=False)))
        try:
            body = self.visit(node.body)
        finally:
            self.scopes.pop()
        if body.type.is_mixed:
            raise self.fail(ReqlTypeError, "a lambda cannot return a mixed set", node.body)
        info = Info(body.type, body.nullable, variable=len(self.scopes))
        self.checked.info[id(node)] = info
        return info

    def lambda_type(self, node: ast.Lambda) -> Info:
        raise self.fail(ReqlTypeError, "a lambda can only be a function's argument", node)

    # -- operators ------------------------------------------------------------------------------

    def unary_type(self, node: ast.Unary) -> Info:
        operand = self.visit(node.operand)
        if node.operator == "not":
            if operand.type.kind not in (Kind.BOOLEAN, Kind.NULL):
                raise self.fail(ReqlTypeError, f"'not' needs a boolean, not {operand.type}", node)
            return Info(t.BOOLEAN, operand.nullable)
        if not (operand.type.is_number or operand.type.is_null):
            raise self.fail(ReqlTypeError, f"'-' needs a number, not {operand.type}", node)
        return Info(operand.type, operand.nullable)

    def binary_type(self, node: ast.Binary) -> Info:
        left, right = self.visit(node.left), self.visit(node.right)
        result = binary_result(node.operator, left.type, right.type)
        if result is None:
            raise self.fail(
                ReqlTypeError,
                f"'{node.operator}' cannot combine {left.type} and {right.type}",
                node,
            )
        nullable = left.nullable or right.nullable
        if result.is_collection and not (left.type.is_null or right.type.is_null):
            nullable = False  # set operations on sets give sets, never null
        return Info(result, nullable)

    def logical_type(self, node: ast.Logical) -> Info:
        nullable = False
        for operand in node.operands:
            info = self.visit(operand)
            if info.type.kind not in (Kind.BOOLEAN, Kind.NULL):
                raise self.fail(
                    ReqlTypeError, f"'{node.operator}' needs booleans, not {info.type}", operand
                )
            nullable = nullable or info.nullable
        return Info(t.BOOLEAN, nullable)

    def compare_type(self, node: ast.Compare) -> Info:
        infos = [self.visit(o) for o in node.operands]
        nullable = False
        for i, operator in enumerate(node.operators):
            left, right = infos[i], infos[i + 1]
            problem = comparison_problem(operator, left.type, right.type)
            if problem is not None:
                raise self.fail(ReqlTypeError, problem, node)
            if operator in ("in", "not in"):
                nullable = nullable or left.nullable or right.type.is_null
            elif operator not in ("==", "!="):
                nullable = nullable or left.nullable or right.nullable
        return Info(t.BOOLEAN, nullable)

    def conditional_type(self, node: ast.Conditional) -> Info:
        condition = self.visit(node.condition)
        if condition.type.kind not in (Kind.BOOLEAN, Kind.NULL):
            raise self.fail(
                ReqlTypeError,
                f"'if' needs a boolean condition, not {condition.type}",
                node.condition,
            )
        then, otherwise = self.visit(node.then), self.visit(node.otherwise)
        result = t.unify(then.type, otherwise.type)
        if result is None or result.is_mixed:
            raise self.fail(
                ReqlTypeError,
                f"the branches of 'if' have different types: {then.type} and {otherwise.type}",
                node,
            )
        return Info(result, then.nullable or otherwise.nullable)


def _quoted(text: str) -> str:
    """Caller text for a message, in quotes, with control characters escaped."""
    escaped = json.dumps(text, ensure_ascii=False)[1:-1].replace('\\"', '"')
    return f"'{escaped}'"


def _did_you_mean(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    return f" (did you mean '{close[0]}'?)" if close else ""
