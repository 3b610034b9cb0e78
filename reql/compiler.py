"""The compiling pass: a checked tree -> one DuckDB SQL expression and its bound parameters.

Every literal and every context value becomes a parameter (`$p0`, `$ctx0`), so no text from the
caller reaches SQL; the only names written into SQL are the schema's, quoted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reql import ast
from reql import types as t
from reql.catalog import Catalog, Storage
from reql.checker import Checked, Info, Purpose
from reql.functions import CallSql, LambdaSql
from reql.operators import binary_sql, comparison_sql, normalized_set
from reql.types import Kind, Type, quote_identifier, quote_string

_PARAMETER = re.compile(r'(?<!")\$(p\d+|ctx\d+|now)\b')


@dataclass(frozen=True)
class ContextBinding:
    """A parameter that holds a property of the context item or user at evaluation time."""

    parameter: str
    entity: str  # "item" or "user"
    property: str
    type: Type


@dataclass(frozen=True)
class CompiledExpression:
    """SQL over the candidate table (aliased `candidate_alias`) and what it needs to run."""

    source: str
    purpose: Purpose
    sql: str
    parameters: Mapping[str, Any]
    context: tuple[ContextBinding, ...]
    type: Type
    nullable: bool
    candidate_alias: str
    uses_now: bool = False
    volatile: bool = False
    uses_interactions: bool = False

    def bind(
        self,
        *,
        now: float | None = None,
        context_item: Mapping[str, Any] | None = None,
        context_user: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """All parameters for one evaluation. Context values are in ReQL's representation
        (timestamps as epoch seconds); a missing context entity or property binds null."""
        values = dict(self.parameters)
        if self.uses_now:
            if now is None:
                raise ValueError("this expression calls now(): pass `now`")
            values["now"] = float(now)
        for binding in self.context:
            source = context_item if binding.entity == "item" else context_user
            value = None if source is None else source.get(binding.property)
            if value is None and binding.type.is_collection:
                value = []
            values[binding.parameter] = value
        return values


def compile_checked(checked: Checked, purpose: Purpose, *, alias: str = "c") -> CompiledExpression:
    """Compile a checked expression."""
    compiler = SqlCompiler(checked, alias)
    sql = compiler.sql(checked.tree)
    root = checked[checked.tree]
    if root.type.is_null:
        sql = "CAST(NULL AS BOOLEAN)" if purpose is Purpose.FILTER else "CAST(NULL AS DOUBLE)"
    # Renderings may compute an argument's SQL and not use it (a literal set of interaction
    # types becomes codes); DuckDB refuses parameters that the statement does not use.
    used = set(_PARAMETER.findall(sql))
    return CompiledExpression(
        source=checked.source,
        purpose=purpose,
        sql=sql,
        parameters={k: v for k, v in compiler.parameters.items() if k in used},
        context=tuple(b for b in compiler.context if b.parameter in used),
        type=root.type,
        nullable=root.nullable,
        candidate_alias=alias,
        uses_now="now" in used,
        volatile=compiler.volatile,
        uses_interactions=compiler.uses_interactions,
    )


@dataclass
class SqlCompiler:
    """One `<node>_sql` method per node kind. Also the services that function renderings use."""

    checked: Checked
    candidate_alias: str
    parameters: dict[str, Any] = field(default_factory=dict)
    context: list[ContextBinding] = field(default_factory=list)
    uses_now: bool = False
    volatile: bool = False
    uses_interactions: bool = False
    _aliases: int = 0
    _variables: list[list[str]] = field(default_factory=list)
    _lambda_names: list[tuple[str, ...]] = field(default_factory=list)
    _reads_tables: dict[int, bool] = field(default_factory=dict)

    @property
    def catalog(self) -> Catalog:
        return self.checked.environment.catalog

    # -- services for functions -----------------------------------------------------------------

    def bind(self, value: Any, type_: Type) -> str:
        name = f"p{len(self.parameters)}"
        self.parameters[name] = value
        return f"CAST(${name} AS {type_.sql()})"

    def alias(self) -> str:
        self._aliases += 1
        return f"_r{self._aliases}"

    def now(self) -> str:
        self.uses_now = True
        return "CAST($now AS DOUBLE)"

    def partitions(self, node: ast.Node) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for element in node.children():
            info = self.checked[element]
            if info.type.is_null:
                continue
            groups.setdefault(info.type.family, []).append(self.sql(element))
        return groups

    # -- dispatch -------------------------------------------------------------------------------

    def sql(self, node: ast.Node) -> str:
        if self.checked[node].type.is_null and not isinstance(node, ast.Lambda):
            # A node of type null is null whatever the data (an empty set's max, a lambda variable
            # over an empty set); plain NULL also spares DuckDB from binding functions to the
            # placeholder types of empty lists.
            return "NULL"
        text: str = getattr(self, f"{node.kind}_sql")(node)
        return text

    def info(self, node: ast.Node) -> Info:
        return self.checked[node]

    def coerce(self, node: ast.Node, target: Type) -> str:
        """The SQL of a node, cast to `target` where its own type is held differently."""
        sql = self.sql(node)
        own = self.info(node).type
        if own == target or own.sql() == target.sql():
            return sql
        return f"CAST({sql} AS {target.sql()})"

    # -- leaves ---------------------------------------------------------------------------------

    def literal_sql(self, node: ast.Literal) -> str:
        info = self.info(node)
        if node.value is None:
            return "NULL"
        return self.bind(node.value, info.type)

    def set_literal_sql(self, node: ast.SetLiteral) -> str:
        return self._collection_sql(node, unique=True)

    def array_literal_sql(self, node: ast.ArrayLiteral) -> str:
        return self._collection_sql(node, unique=False)

    def _collection_sql(self, node: ast.Node, *, unique: bool) -> str:
        info = self.info(node)
        element_type = info.type.element or t.NULL
        elements = node.children()
        if all(isinstance(e, ast.Literal) and e.value is not None for e in elements):
            values = [e.value for e in elements if isinstance(e, ast.Literal)]
            if element_type.kind is Kind.DOUBLE:
                values = [float(v) for v in values if isinstance(v, int | float)]
            if unique:
                values = list(dict.fromkeys(values))
            return self.bind(values, info.type)
        parts = [self.coerce(e, element_type) for e in elements]
        if unique and element_type.is_collection:
            # Sets inside a set are compared as sets: {1, 2} and {2, 1} are one element.
            parts = [normalized_set(part) for part in parts]
        listed = f"CAST([{', '.join(parts)}] AS {info.type.sql()})"
        return f"list_distinct({listed})" if unique else listed

    def property_sql(self, node: ast.Property) -> str:
        info = self.info(node)
        if info.variable is not None:
            position = self._lambda_position(node)
            name = self._variables[info.variable][position]
            # DuckDB counts a lambda's index variable from 1; ReQL from 0.
            return name if position == 0 else f"({name} - 1)"
        table = self.catalog.of(self.checked.environment.candidate)
        alias = self.candidate_alias
        if info.column is None:
            return f"{alias}.{quote_identifier(table.id_column)}"
        column = f"{alias}.{quote_identifier(info.column.name)}"
        if info.column.storage is Storage.TIMESTAMP:
            return f"(epoch_us({column}) / 1000000.0)"
        if info.column.type.is_collection:
            # A set property that was never set is null in storage (as Recombee returns it), but
            # ReQL reads it as the empty set (the checker types collection columns non-null).
            return f"coalesce({column}, CAST([] AS {info.column.type.sql()}))"
        return column

    def _lambda_position(self, node: ast.Property) -> int:
        names = self._lambda_names[self.info(node).variable or 0]
        return names.index(node.name)

    def name_sql(self, node: ast.Name) -> str:
        return self._call_sql(node, ())

    # -- access and calls -----------------------------------------------------------------------

    def index_sql(self, node: ast.Index) -> str:
        info = self.info(node)
        if info.context is not None:
            assert isinstance(node.key, ast.Literal)
            assert isinstance(node.key.value, str)
            name = f"ctx{len(self.context)}"
            self.context.append(ContextBinding(name, info.context, node.key.value, info.type))
            return f"CAST(${name} AS {info.type.sql()})"
        target = self.info(node.target)
        if target.type.is_null:
            return "NULL"
        if target.type.kind is Kind.DICT:
            assert isinstance(node.key, ast.Literal)
            assert isinstance(node.key.value, str)
            return f"struct_extract({self.sql(node.target)}, {quote_string(node.key.value)})"
        index = self.sql(node.key)
        position = f"CASE WHEN {index} >= 0 THEN {index} + 1 ELSE {index} END"
        return f"list_extract({self.sql(node.target)}, {position})"

    def call_sql(self, node: ast.Call) -> str:
        return self._call_sql(node, node.arguments)

    def _call_sql(self, node: ast.Node, arguments: tuple[ast.Node, ...]) -> str:
        info = self.info(node)
        function = info.function
        assert function is not None
        self.volatile = self.volatile or function.volatile
        self.uses_interactions = self.uses_interactions or function.uses_interactions
        infos = [self.info(a) for a in arguments]
        sqls: list[str] = []
        lambdas: dict[int, LambdaSql] = {}
        for position, argument in enumerate(arguments):
            if isinstance(argument, ast.Lambda):
                parts = self._lambda_parts(argument)
                lambdas[position] = parts
                names = [parts.element, parts.position][: len(argument.parameters)]
                sqls.append(f"lambda {', '.join(names)}: {parts.body}")
            else:
                sqls.append(self.sql(argument))
        call = CallSql(
            arguments=sqls,
            types=[i.type for i in infos],
            nullable=[i.nullable for i in infos],
            nodes=arguments,
            result=info.type,
            services=self,
            lambdas=lambdas,
        )
        sql = function.render(call)
        if function.null_in_null_out:
            tests = [
                f"{s} IS NULL" for s, i in zip(call.arguments, infos, strict=True) if i.nullable
            ]
            if tests:
                sql = f"(CASE WHEN {' OR '.join(tests)} THEN NULL ELSE {sql} END)"
        return sql

    def _lambda_parts(self, node: ast.Lambda) -> LambdaSql:
        depth = len(self._variables)
        names = [quote_identifier(f"$v{depth}_{i}") for i in range(2)]
        self._variables.append(names)
        self._lambda_names.append(node.parameters)
        try:
            body = self.sql(node.body)
        finally:
            self._variables.pop()
            self._lambda_names.pop()
        return LambdaSql(names[0], names[1], body, self.reads_tables(node.body))

    def reads_tables(self, node: ast.Node) -> bool:
        """Whether the node's SQL holds a subquery (a call of a function that reads a table)."""
        key = id(node)
        if key not in self._reads_tables:
            function = self.info(node).function
            self._reads_tables[key] = (function is not None and function.reads_tables) or any(
                self.reads_tables(child) for child in node.children()
            )
        return self._reads_tables[key]

    # -- operators ------------------------------------------------------------------------------

    def unary_sql(self, node: ast.Unary) -> str:
        operand = self.sql(node.operand)
        return f"(NOT {operand})" if node.operator == "not" else f"(-{operand})"

    def binary_sql(self, node: ast.Binary) -> str:
        return binary_sql(self, node)

    def logical_sql(self, node: ast.Logical) -> str:
        joiner = " AND " if node.operator == "and" else " OR "
        return "(" + joiner.join(self.sql(o) for o in node.operands) + ")"

    def compare_sql(self, node: ast.Compare) -> str:
        parts = [
            comparison_sql(self, operator, node.operands[i], node.operands[i + 1])
            for i, operator in enumerate(node.operators)
        ]
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def conditional_sql(self, node: ast.Conditional) -> str:
        result = self.info(node).type
        condition = self.sql(node.condition)
        then = self.coerce(node.then, result)
        otherwise = self.coerce(node.otherwise, result)
        return f"(CASE WHEN {condition} THEN {then} ELSE {otherwise} END)"
