"""The console's look-ups in one database: a ReQL expression checked as it is typed, users and
items found by id or by a ReQL filter, one user (properties, history) and one item
(properties, interactions, its nearest items by each model)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import reql
from server.api.admin import ServerState
from server.api.operations import Params
from server.api.recommendations import answer, parse_request
from server.console.api import served_or_404
from server.serving.expressions import BadExpression, compile_for, condition, run_guarded
from server.serving.scenario_check import CONTEXTS
from server.serving.scenarios import ScenarioConfig
from storage.catalog import Condition, get_values, list_entities
from storage.errors import BadParameter, StorageError
from storage.interactions import InteractionKind
from storage.schema import Entity, validate_id
from storage.timestamps import datetime_to_epoch

PURPOSES = {"filter": reql.Purpose.FILTER, "booster": reql.Purpose.BOOSTER}
LISTS = {"list-items": Entity.ITEM, "list-users": Entity.USER}
"""The list endpoints, whose filters have no context item or user."""
MAX_FOUND = 20
HISTORY_LENGTH = 50
NEIGHBOURS = 8
PREVIEW_SCENARIO = "$console"
"""The name of the scenario a neighbours request runs as (no configured scenario can be called
so: a scenario name is an identifier)."""


def check_expression(
    state: ServerState, database: str, expression: str, purpose: str, endpoint: str
) -> dict[str, Any]:
    """Whether an expression compiles for an endpoint's candidates on the database's schema;
    ReQL's report, line and column where it does not."""
    served = served_or_404(state, database)
    if purpose not in PURPOSES:
        raise BadParameter("purpose", f"must be filter or booster, not {purpose!r}")
    if endpoint not in CONTEXTS and endpoint not in LISTS:
        raise BadParameter("endpoint", f"unknown endpoint {endpoint!r}")
    if not expression.strip():
        return {"ok": True}
    entity = LISTS.get(endpoint) or (Entity.USER if endpoint.startswith("users") else Entity.ITEM)
    context_item, context_user = CONTEXTS.get(endpoint, (False, False))
    try:
        compile_for(
            served.database.schema,
            expression,
            PURPOSES[purpose],
            parameter=purpose,
            candidate=entity,
            context_item=context_item,
            context_user=context_user,
            functions=state.registry.functions,
        )
    except BadExpression as error:
        found = error.reql_error
        return {
            "ok": False,
            "error": found.message,
            "kind": found.kind,
            "line": found.line,
            "column": found.column,
            "report": str(found),
        }
    return {"ok": True}


def _entity(name: str) -> Entity:
    if name == "items":
        return Entity.ITEM
    if name == "users":
        return Entity.USER
    raise BadParameter("entity", f"must be items or users, not {name!r}")


async def find(state: ServerState, database: str, entity_name: str, text: str) -> dict[str, Any]:
    """Up to MAX_FOUND users or items: those whose id starts with `text`, or, where `text` is a
    ReQL filter (it quotes a property), those it lets through; with their properties."""
    served = served_or_404(state, database)
    entity = _entity(entity_name)
    text = text.strip()
    if "'" in text:

        def matching(ctx: Any) -> list[Any]:
            where = condition(ctx, text, parameter="q", candidate=entity)
            # Under the query time limit, as List Items' filter.
            return run_guarded(
                text,
                "q",
                lambda: list_entities(
                    ctx,
                    entity,
                    count=MAX_FOUND,
                    offset=0,
                    return_properties=True,
                    included_properties=None,
                    condition=where,
                ),
                ctx,
            )

        found = await served.database.read(matching)
        return {"by": "filter", "found": found}

    def by_prefix(ctx: Any) -> list[Any]:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = ctx.conn.execute(
            f'SELECT "$id" FROM {entity.table} WHERE "$id" LIKE ? ESCAPE \'\\\' '
            'ORDER BY length("$id"), "$id" LIMIT ?',
            [escaped + "%", MAX_FOUND],
        ).fetchall()
        values = _values_of(ctx, entity, [row[0] for row in rows])
        return [{entity.id_field: row[0], **values[row[0]]} for row in rows]

    found = await served.database.read(by_prefix)
    return {"by": "id", "found": found}


def _values_of(ctx: Any, entity: Entity, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The properties of these items (or users), in one query (one deleted since has none)."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    rows = list_entities(
        ctx,
        entity,
        count=None,
        offset=0,
        return_properties=True,
        included_properties=None,
        condition=Condition('c."$id" IN (SELECT unnest(CAST($ids AS VARCHAR[])))', {"ids": wanted}),
    )
    found = {row.pop(entity.id_field): row for row in rows}
    return {item_id: found.get(item_id, {}) for item_id in wanted}


def _recent(ctx: Any, column: str, entity_id: str, limit: int) -> list[dict[str, Any]]:
    rows = ctx.conn.execute(
        f"SELECT kind, user_id, item_id, ts, rating, price FROM interactions WHERE {column} = ? "
        "ORDER BY ts DESC, kind LIMIT ?",
        [entity_id, limit],
    ).fetchall()
    return [
        {
            "type": InteractionKind.from_code(row[0]).value,
            "userId": row[1],
            "itemId": row[2],
            "timestamp": datetime_to_epoch(row[3]),
            **({"rating": row[4]} if row[4] is not None else {}),
            **({"price": row[5]} if row[5] is not None else {}),
        }
        for row in rows
    ]


def _kinds(ctx: Any, column: str, entity_id: str) -> dict[str, int]:
    rows = ctx.conn.execute(
        f"SELECT kind, count(*) FROM interactions WHERE {column} = ? GROUP BY kind",
        [entity_id],
    ).fetchall()
    return {InteractionKind.from_code(kind).value: int(n) for kind, n in rows}


async def user(state: ServerState, database: str, user_id: str) -> dict[str, Any]:
    """A user's properties, interaction counts and latest interactions (with the items'
    properties)."""
    served = served_or_404(state, database)
    validate_id(user_id, "userId")

    def read(ctx: Any) -> dict[str, Any]:
        values = get_values(ctx, Entity.USER, user_id)
        recent = _recent(ctx, "user_id", user_id, HISTORY_LENGTH)
        return {
            "userId": user_id,
            "values": values,
            "interactions": _kinds(ctx, "user_id", user_id),
            "history": recent,
            "items": _values_of(ctx, Entity.ITEM, [r["itemId"] for r in recent]),
        }

    result: dict[str, Any] = await served.database.read(read)
    return result


async def item(state: ServerState, database: str, item_id: str) -> dict[str, Any]:
    """An item's properties, interaction counts and latest interactions."""
    served = served_or_404(state, database)
    validate_id(item_id, "itemId")

    def read(ctx: Any) -> dict[str, Any]:
        return {
            "itemId": item_id,
            "values": get_values(ctx, Entity.ITEM, item_id),
            "interactions": _kinds(ctx, "item_id", item_id),
            "recent": _recent(ctx, "item_id", item_id, HISTORY_LENGTH),
        }

    result: dict[str, Any] = await served.database.read(read)
    return result


async def neighbours(
    state: ServerState, database: str, item_id: str, count: int = NEIGHBOURS
) -> dict[str, Any]:
    """The item's nearest items by each configured model (Items to Item with that model, no
    filter, not logged); a model that cannot answer says why."""
    served = served_or_404(state, database)
    validate_id(item_id, "itemId")
    # An unknown item is the request's 404, not each model's error.
    await served.database.read(lambda ctx: get_values(ctx, Entity.ITEM, item_id))
    config = state.live.config
    by_model: list[dict[str, Any]] = []
    for name in sorted(served.models.configs):
        scenarios: Mapping[str, ScenarioConfig] = {
            PREVIEW_SCENARIO: ScenarioConfig(PREVIEW_SCENARIO, "items-to-item", model=name)
        }
        params = Params(query={"count": count, "scenario": PREVIEW_SCENARIO})
        try:
            request = parse_request(
                "items-to-item",
                {"itemId": item_id},
                params,
                scenarios,
                config.models,
                state.registry.logics,
            )
            _, body, _ = await answer(served, request)
        except StorageError as error:
            by_model.append({"model": name, "error": str(error)})
            continue
        by_model.append({"model": name, "ids": [r["id"] for r in body["recomms"]]})
    ids = [i for entry in by_model for i in entry.get("ids", [])]
    values = await served.database.read(lambda ctx: _values_of(ctx, Entity.ITEM, ids))
    return {"itemId": item_id, "models": by_model, "items": values}
