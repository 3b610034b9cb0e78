"""Operations on items, users and their properties (Recombee's Items / Users sections)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import reql
from server.api.operations import Mode, Operation, Params, ReadThenWrite
from server.serving.expressions import BadExpression, condition, run_guarded
from storage import catalog
from storage.database import ReadContext, WriteContext
from storage.errors import BadParameter, NotFound
from storage.params import check_known, read_bool, read_int, read_str_list
from storage.schema import Entity, coerce_values

_LIST_PARAMS = ("filter", "count", "offset", "returnProperties", "includedProperties")


def entity_operations(entity: Entity) -> list[Operation]:
    """The operations of one entity kind, under `/items/` or `/users/`."""
    base = "/" + entity.table
    key = entity.id_field

    def add(ctx: WriteContext, args: Mapping[str, str], params: Params) -> str:
        check_known(params.merged, ())
        return catalog.add_entity(ctx, entity, args[key])

    def delete(ctx: WriteContext, args: Mapping[str, str], params: Params) -> str:
        check_known(params.merged, ())
        return catalog.delete_entity(ctx, entity, args[key])

    def set_values(ctx: WriteContext, args: Mapping[str, str], params: Params) -> str:
        check_known(params.query, ("cascadeCreate",))
        values = dict(params.body)
        cascade = read_bool(params.query, "cascadeCreate", False)
        if "!cascadeCreate" in values:
            cascade = read_bool(values, "!cascadeCreate", False)
            del values["!cascadeCreate"]
        for name in values:
            if name.startswith("!"):
                raise BadParameter(name, "unknown parameter (the only one is !cascadeCreate)")
        return catalog.set_values(ctx, entity, args[key], values, cascade_create=cascade)

    def get_values(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
        check_known(params.merged, ())
        return catalog.get_values(ctx, entity, args[key])

    def list_all(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
        merged = params.merged
        check_known(merged, _LIST_PARAMS)
        text = merged.get("filter")
        try:
            where = None if text in (None, "") else condition(ctx, text, candidate=entity)
        except BadExpression as error:
            if isinstance(error.reql_error, reql.ReqlUnknownProperty):
                # Recombee's List Items answers a filter on a missing property with 404.
                raise NotFound(str(error.reql_error)) from None
            raise
        count = read_int(merged, "count")
        offset = read_int(merged, "offset", default=0) or 0
        return_properties = read_bool(merged, "returnProperties", False)
        included = read_str_list(merged, "includedProperties")
        return run_guarded(
            str(text),
            "filter",
            lambda: catalog.list_entities(
                ctx,
                entity,
                count=count,
                offset=offset,
                return_properties=return_properties,
                included_properties=included,
                condition=where,
            ),
            ctx,
        )

    def add_property(ctx: WriteContext, args: Mapping[str, str], params: Params) -> str:
        merged = params.merged
        check_known(merged, ("type", "role", "metadata"))
        return catalog.add_property(
            ctx,
            entity,
            args["propertyName"],
            merged.get("type"),
            role=merged.get("role"),
            metadata=merged.get("metadata"),
        )

    def delete_property(ctx: WriteContext, args: Mapping[str, str], params: Params) -> str:
        check_known(params.merged, ())
        return catalog.delete_property(ctx, entity, args["propertyName"])

    def get_property(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
        check_known(params.merged, ())
        return catalog.get_property(ctx, entity, args["propertyName"])

    def list_properties(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
        check_known(params.merged, ())
        return catalog.list_properties(ctx, entity)

    name = entity.value
    one = f"{base}/{{{key}}}"
    prop = f"{base}/properties/{{propertyName}}"
    return [
        Operation(f"add {name}", "PUT", one, add, Mode.WRITE, status=201),
        Operation(f"delete {name}", "DELETE", one, delete, Mode.WRITE),
        Operation(f"set {name} values", "POST", one, set_values, Mode.WRITE),
        Operation(f"get {name} values", "GET", one, get_values, Mode.READ),
        Operation(f"list {name}s", "GET", f"{base}/list/", list_all, Mode.READ),
        Operation(f"add {name} property", "PUT", prop, add_property, Mode.WRITE, status=201),
        Operation(f"delete {name} property", "DELETE", prop, delete_property, Mode.WRITE),
        Operation(f"get {name} property info", "GET", prop, get_property, Mode.READ),
        Operation(
            f"list {name} properties", "GET", f"{base}/properties/list/", list_properties, Mode.READ
        ),
    ]


def _merge_users(ctx: WriteContext, args: Mapping[str, str], params: Params) -> str:
    merged = params.merged
    check_known(merged, ("cascadeCreate",))
    return catalog.merge_users(
        ctx,
        args["targetUserId"],
        args["sourceUserId"],
        cascade_create=read_bool(merged, "cascadeCreate", False),
    )


def _reset(ctx: WriteContext, args: Mapping[str, str], params: Params) -> str:
    check_known(params.merged, ())
    return catalog.reset(ctx)


def _select_deleted(ctx: ReadContext, args: Mapping[str, str], params: Params) -> list[str]:
    merged = params.merged
    check_known(merged, ("filter",))
    return _matching(ctx, _required_filter(merged))


def _select_updated(
    ctx: ReadContext, args: Mapping[str, str], params: Params
) -> tuple[list[str], dict[str, Any]]:
    merged = params.merged
    check_known(merged, ("filter", "changes"))
    text = _required_filter(merged)
    changes = merged.get("changes")
    if not isinstance(changes, dict):
        raise BadParameter("changes", "must be an object of property values")
    # Bad changes are refused before the filter costs anything.
    coerce_values(ctx.schema.items, changes)
    return _matching(ctx, text), changes


def _matching(ctx: ReadContext, text: str) -> list[str]:
    where = condition(ctx, text)
    return run_guarded(text, "filter", lambda: catalog.matching_items(ctx, where), ctx)


def _delete_selected(ctx: WriteContext, ids: list[str]) -> object:
    return catalog.delete_items(ctx, ids)


def _update_selected(ctx: WriteContext, selected: tuple[list[str], dict[str, Any]]) -> object:
    ids, changes = selected
    return catalog.update_items(ctx, ids, changes)


def _read_then_write(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    raise RuntimeError("read-then-write operations are run in two steps by the host")


def _required_filter(merged: Mapping[str, object]) -> str:
    text = merged.get("filter")
    if text is None or text == "":
        raise BadParameter("filter", "is required")
    if not isinstance(text, str):
        raise BadParameter("filter", "must be a string")
    return text


def catalog_operations() -> list[Operation]:
    return [
        *entity_operations(Entity.ITEM),
        *entity_operations(Entity.USER),
        Operation(
            "merge users",
            "PUT",
            "/users/{targetUserId}/merge/{sourceUserId}",
            _merge_users,
            Mode.WRITE,
            status=201,
        ),
        Operation(
            "delete more items",
            "DELETE",
            "/more-items/",
            _read_then_write,
            Mode.WRITE,
            read_then_write=ReadThenWrite(_select_deleted, _delete_selected),
        ),
        Operation(
            "update more items",
            "POST",
            "/more-items/",
            _read_then_write,
            Mode.WRITE,
            read_then_write=ReadThenWrite(_select_updated, _update_selected),
        ),
        Operation("reset database", "DELETE", "/", _reset, Mode.WRITE),
    ]
