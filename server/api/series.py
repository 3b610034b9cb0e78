"""Recombee's series operations: `/series/{seriesId}`, `/series/list/` and
`/series/{seriesId}/items/` (storage/series.py)."""

from __future__ import annotations

from collections.abc import Mapping

from server.api.operations import Mode, Operation, Params
from storage import series
from storage.database import WriteContext
from storage.params import check_known, read_bool


def _add(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    merged = params.merged
    check_known(merged, ("cascadeCreate",))
    cascade = read_bool(merged, "cascadeCreate", True)
    return series.add_series(ctx, args["seriesId"], cascade_create=cascade)


def _delete(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    merged = params.merged
    check_known(merged, ("cascadeDelete",))
    cascade = read_bool(merged, "cascadeDelete", False)
    return series.delete_series(ctx, args["seriesId"], cascade_delete=cascade)


def _list(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    check_known(params.merged, ())
    return series.list_series(ctx)


def _items(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    check_known(params.merged, ())
    return series.list_series_items(ctx, args["seriesId"])


def _insert(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    merged = params.merged
    check_known(merged, ("itemType", "itemId", "time", "cascadeCreate"))
    return series.insert_to_series(
        ctx,
        args["seriesId"],
        merged.get("itemType"),
        merged.get("itemId"),
        merged.get("time"),
        cascade_create=read_bool(merged, "cascadeCreate", False),
    )


def _remove(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    merged = params.merged
    check_known(merged, ("itemType", "itemId"))
    return series.remove_from_series(
        ctx, args["seriesId"], merged.get("itemType"), merged.get("itemId")
    )


def series_operations() -> list[Operation]:
    return [
        Operation("list series", "GET", "/series/list/", _list, Mode.READ),
        Operation("add series", "PUT", "/series/{seriesId}", _add, Mode.WRITE, status=201),
        Operation("delete series", "DELETE", "/series/{seriesId}", _delete, Mode.WRITE),
        Operation("list series items", "GET", "/series/{seriesId}/items/", _items, Mode.READ),
        Operation("insert to series", "POST", "/series/{seriesId}/items/", _insert, Mode.WRITE),
        Operation("remove from series", "DELETE", "/series/{seriesId}/items/", _remove, Mode.WRITE),
    ]
