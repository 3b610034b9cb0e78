"""The table of every operation of Recombee's API that reqo serves (shared by the HTTP routes
and by the writer, which applies the writes that servers hand it by operation name)."""

from __future__ import annotations

from functools import cache

from server.api.catalog import catalog_operations
from server.api.interactions import interaction_operations
from server.api.operations import OperationTable
from server.api.recommendation_routes import recommendation_operations
from server.api.segmentations import segmentation_operations
from server.api.series import series_operations
from server.api.synonyms import synonym_operations


@cache
def operation_table() -> OperationTable:
    """Every operation of Recombee's API that reqo serves."""
    return OperationTable(
        [
            *catalog_operations(),
            *interaction_operations(),
            *recommendation_operations(),
            *synonym_operations(),
            *series_operations(),
            *segmentation_operations(),
        ]
    )
