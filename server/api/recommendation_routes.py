"""The recommendation endpoints as operations of the table (so that batches can hold them),
apart from the pipeline that runs them: the writer's process builds the table without loading
the serving code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.api.operations import Mode, Operation, Params
from storage.database import WriteContext

__all__ = ["PAGES", "PATHS", "recommendation_operations"]


PATHS = {
    "items-to-user": "/recomms/users/{userId}/items/",
    "items-to-item": "/recomms/items/{itemId}/items/",
    "users-to-item": "/recomms/items/{itemId}/users/",
    "users-to-user": "/recomms/users/{userId}/users/",
    "search-items": "/search/users/{userId}/items/",
    "next-items": "/recomms/next/items/{recommId}",
    "items-to-item-segment": "/recomms/item-segments/items/",
    "item-segments-to-user": "/recomms/users/{userId}/item-segments/",
    "item-segments-to-item": "/recomms/items/{itemId}/item-segments/",
    "item-segments-to-item-segment": "/recomms/item-segments/item-segments/",
    "search-item-segments": "/search/users/{userId}/item-segments/",
    "next-item-segments": "/recomms/next/item-segments/{recommId}",
    "composite": "/recomms/composite/",
}
PAGES = ("next-items", "next-item-segments")
"""The kinds that page an earlier recommendation (by its recommId)."""


def recommendation_operations() -> list[Operation]:
    """The recommendation endpoints as operations, so that batches can hold them; the host runs
    them with its pipeline (they need more than a connection)."""
    return [
        Operation(f"recommend {kind}", method, path, _host_only, Mode.READ, recommendation=kind)
        for kind, path in PATHS.items()
        for method in ("POST", "GET")
    ]


def _host_only(ctx: WriteContext, args: Mapping[str, str], params: Params) -> Any:
    raise RuntimeError("recommendation operations are run by the host's pipeline")
