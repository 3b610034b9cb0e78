"""Recombee's segmentation operations, under `/segmentations/` (storage/segmentations.py and
storage/segmentation_writes.py).

As Recombee's document gives them: creates and updates answer 201 (updates too), and so does
Delete Manual ReQL Segment; Delete Segmentation answers 200.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.api.operations import Handler, Mode, Operation, Params
from storage import segmentation_writes as writes
from storage import segmentations
from storage.database import WriteContext
from storage.params import check_known

_TEXTS = ("title", "description")
PROPERTY_BASED = "/segmentations/property-based/{segmentationId}"
AUTO_REQL = "/segmentations/auto-reql/{segmentationId}"
MANUAL_REQL = "/segmentations/manual-reql/{segmentationId}"
SEGMENT = MANUAL_REQL + "/segments/{segmentId}"


def _given(merged: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """An update's fields, by their storage names: those the request has (the others are kept)."""
    return {_snake(name): merged[name] for name in names if name in merged}


def _snake(name: str) -> str:
    return "property_name" if name == "propertyName" else name


def _create_property(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    merged = params.merged
    check_known(merged, ("sourceType", "propertyName", *_TEXTS))
    return writes.create_property_based(
        ctx,
        args["segmentationId"],
        merged.get("sourceType"),
        merged.get("propertyName"),
        merged.get("title"),
        merged.get("description"),
    )


def _update_property(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    merged = params.merged
    check_known(merged, ("propertyName", *_TEXTS))
    fields = _given(merged, "propertyName", *_TEXTS)
    return writes.update_property_based(ctx, args["segmentationId"], **fields)


def _create_auto(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    merged = params.merged
    check_known(merged, ("sourceType", "expression", *_TEXTS))
    return writes.create_auto_reql(
        ctx,
        args["segmentationId"],
        merged.get("sourceType"),
        merged.get("expression"),
        merged.get("title"),
        merged.get("description"),
    )


def _update_auto(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    merged = params.merged
    check_known(merged, ("expression", *_TEXTS))
    fields = _given(merged, "expression", *_TEXTS)
    return writes.update_auto_reql(ctx, args["segmentationId"], **fields)


def _create_manual(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    merged = params.merged
    check_known(merged, ("sourceType", *_TEXTS))
    return writes.create_manual_reql(
        ctx,
        args["segmentationId"],
        merged.get("sourceType"),
        merged.get("title"),
        merged.get("description"),
    )


def _update_manual(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    merged = params.merged
    check_known(merged, _TEXTS)
    return writes.update_manual_reql(ctx, args["segmentationId"], **_given(merged, *_TEXTS))


def _add_segment(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    merged = params.merged
    check_known(merged, ("filter", "title"))
    return writes.add_segment(
        ctx, args["segmentationId"], args["segmentId"], merged.get("filter"), merged.get("title")
    )


def _update_segment(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    merged = params.merged
    check_known(merged, ("filter", "title"))
    return writes.update_segment(
        ctx,
        args["segmentationId"],
        args["segmentId"],
        merged.get("filter"),
        merged.get("title", writes.KEEP),
    )


def _delete_segment(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    check_known(params.merged, ())
    return writes.delete_segment(ctx, args["segmentationId"], args["segmentId"])


def _list(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    merged = params.merged
    check_known(merged, ("sourceType",))
    return segmentations.list_segmentations(ctx, merged.get("sourceType"))


def _get(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    check_known(params.merged, ())
    return segmentations.get_segmentation(ctx, args["segmentationId"]).to_json()


def _delete(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
    check_known(params.merged, ())
    return writes.delete_segmentation(ctx, args["segmentationId"])


_OPERATIONS: tuple[tuple[str, str, str, Handler, int], ...] = (
    ("create property based segmentation", "PUT", PROPERTY_BASED, _create_property, 201),
    ("update property based segmentation", "POST", PROPERTY_BASED, _update_property, 201),
    ("create auto reql segmentation", "PUT", AUTO_REQL, _create_auto, 201),
    ("update auto reql segmentation", "POST", AUTO_REQL, _update_auto, 201),
    ("create manual reql segmentation", "PUT", MANUAL_REQL, _create_manual, 201),
    ("update manual reql segmentation", "POST", MANUAL_REQL, _update_manual, 201),
    ("add manual reql segment", "PUT", SEGMENT, _add_segment, 201),
    ("update manual reql segment", "POST", SEGMENT, _update_segment, 201),
    ("delete manual reql segment", "DELETE", SEGMENT, _delete_segment, 201),
    ("list segmentations", "GET", "/segmentations/list/", _list, 200),
    ("get segmentation", "GET", "/segmentations/list/{segmentationId}", _get, 200),
    ("delete segmentation", "DELETE", "/segmentations/{segmentationId}", _delete, 200),
)


def segmentation_operations() -> list[Operation]:
    """The twelve segmentation operations (the GETs read; the others go through the writer)."""
    return [
        Operation(name, method, path, handler, Mode.READ if method == "GET" else Mode.WRITE, status)
        for name, method, path, handler, status in _OPERATIONS
    ]
