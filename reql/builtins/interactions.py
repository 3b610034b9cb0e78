"""Functions over the interactions table: user_interactions and the num_item_* counts."""

from __future__ import annotations

from collections.abc import Sequence

from reql import ast
from reql import types as t
from reql.builtins.common import never_null
from reql.functions import (
    STRING_ARG,
    Argument,
    CallSql,
    Function,
    SignatureError,
    expect,
)
from reql.types import Kind, Type, quote_identifier, quote_string

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
        reads_tables=True,
        description=f"how many {kind.replace('_', ' ')} the item has",
    )


FUNCTIONS: list[Function] = [
    Function(
        "user_interactions",
        2,
        3,
        _user_interactions_check,
        _user_interactions_render,
        "the user's last n interactions of the given types, oldest first",
        uses_interactions=True,
        reads_tables=True,
        nullable=never_null,
    ),
    *(_count_of(kind) for kind in INTERACTION_TYPES[:5]),
]
