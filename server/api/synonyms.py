"""Recombee's search synonym operations, under `/synonyms/items/`."""

from __future__ import annotations

from collections.abc import Mapping

from server.api.operations import Mode, Operation, Params
from storage import synonyms
from storage.database import WriteContext
from storage.params import check_known, read_bool, read_int


def _add(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    merged = params.merged
    check_known(merged, ("term", "synonym", "oneWay"))
    return synonyms.add_synonym(
        ctx, merged.get("term"), merged.get("synonym"), read_bool(merged, "oneWay", False)
    )


def _list(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    merged = params.merged
    check_known(merged, ("count", "offset"))
    count = read_int(merged, "count", default=1000, minimum=1)
    return synonyms.list_synonyms(ctx, count, read_int(merged, "offset", default=0) or 0)


def _delete(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    check_known(params.merged, ())
    return synonyms.delete_synonym(ctx, args["id"])


def _delete_all(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    check_known(params.merged, ())
    return synonyms.delete_all_synonyms(ctx)


def synonym_operations() -> list[Operation]:
    base = "/synonyms/items/"
    return [
        Operation("add search synonym", "POST", base, _add, Mode.WRITE, status=201),
        Operation("list search synonyms", "GET", base, _list, Mode.READ),
        Operation("delete all search synonyms", "DELETE", base, _delete_all, Mode.WRITE),
        Operation("delete search synonym", "DELETE", base + "{id}", _delete, Mode.WRITE),
    ]
