"""Recombee's segmentations: named ways of splitting the items into segments (the genres of a
catalog, the rows of a home page), which segment recommendations recommend from and to.

Three kinds, as Recombee defines them:

- property-based: a segment per value of a string or set item property (an item with a set is in
  one segment per value);
- auto ReQL: an expression gives each item a segment id, or a set of them;
- manual ReQL: segments added one by one, each with a boolean ReQL filter of its items.

The definitions are stored in the database (tables `segmentations` and `segmentation_segments`,
created with it in storage/database.py), so that they are in snapshots and backups and every
server's copy follows them through the change feed; the writes are in
storage/segmentation_writes.py. Which items a segment holds is computed when asked, with SQL over
the items table (a ReQL expression compiled by reqo's ReQL compiler), under the query time limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import reql
from reql import types as rt
from storage.contexts import ReadContext
from storage.errors import BadParameter, InvalidInput, NotFound
from storage.reql_queries import BadExpression, compile_for, current_time, run_guarded
from storage.schema import ID_COLUMN, PropertyType, quote_identifier, validate_id

PROPERTY = "property"
AUTO_REQL = "auto-reql"
MANUAL_REQL = "manual-reql"
KINDS = (PROPERTY, AUTO_REQL, MANUAL_REQL)

SEGMENTATION_TYPES = {PROPERTY: "property", AUTO_REQL: "autoReQL", MANUAL_REQL: "manualReQL"}
"""Each kind's `segmentationType` in Recombee's answers."""

KIND_NAMES = {PROPERTY: "property-based", AUTO_REQL: "auto ReQL", MANUAL_REQL: "manual ReQL"}
"""Each kind in words, for messages."""

SOURCE_TYPES = ("items",)
"""What can be segmented: items only, as in Recombee."""

SEGMENT_PROPERTY_TYPES = (PropertyType.STRING, PropertyType.SET)
"""The item property types whose values can be segment ids."""

_ID = quote_identifier(ID_COLUMN)


@dataclass(frozen=True)
class Segmentation:
    """A segmentation's definition, as stored."""

    id: str
    source_type: str
    kind: str  # "property" | "auto-reql" | "manual-reql"
    title: str | None
    description: str | None
    property_name: str | None
    """The item property of a property-based segmentation."""
    expression: str | None
    """The ReQL expression of an auto ReQL segmentation."""
    segments: tuple[tuple[str, str, str | None], ...]
    """A manual ReQL segmentation's segments, in the order they were added: (segment_id, filter,
    title)."""

    def to_json(self) -> dict[str, Any]:
        """Recombee's Segmentation object (title and description where set), with what defines
        it: `propertyName`, `expression` or `segments` (each `segmentId`, `filter`, `title`)."""
        answer: dict[str, Any] = {
            "segmentationId": self.id,
            "sourceType": self.source_type,
            "segmentationType": SEGMENTATION_TYPES[self.kind],
        }
        if self.title is not None:
            answer["title"] = self.title
        if self.description is not None:
            answer["description"] = self.description
        if self.kind == PROPERTY:
            answer["propertyName"] = self.property_name
        elif self.kind == AUTO_REQL:
            answer["expression"] = self.expression
        else:
            answer["segments"] = [_segment_json(*segment) for segment in self.segments]
        return answer


def _segment_json(segment_id: str, filter_text: str, title: str | None) -> dict[str, str]:
    answer = {"segmentId": segment_id, "filter": filter_text}
    if title is not None:
        answer["title"] = title
    return answer


class SegmentationNotFound(NotFound):
    def __init__(self, segmentation_id: str) -> None:
        super().__init__(f"segmentation '{segmentation_id}' does not exist")


class SegmentNotFound(NotFound):
    def __init__(self, segmentation_id: str, segment_id: str) -> None:
        super().__init__(
            f"segment '{segment_id}' does not exist in segmentation '{segmentation_id}'"
        )


class BrokenSegmentation(InvalidInput):
    """A stored definition that the catalog no longer supports (its property was deleted or
    retyped, its expression names a property that is gone): 400, naming the segmentation."""

    def __init__(self, segmentation_id: str, problem: str) -> None:
        super().__init__(f"segmentation '{segmentation_id}': {problem}")
        self.segmentation_id = segmentation_id


# -- the definitions ------------------------------------------------------------------------


def list_segmentation_ids(ctx: ReadContext) -> list[str]:
    """The ids of every segmentation, in order."""
    rows = ctx.conn.execute("SELECT id FROM segmentations ORDER BY id").fetchall()
    return [str(row[0]) for row in rows]


def find_segmentation(ctx: ReadContext, segmentation_id: str) -> Segmentation | None:
    """A segmentation's definition, or None where there is none of that id."""
    row = ctx.conn.execute(
        "SELECT id, source_type, kind, title, description, property_name, expression "
        "FROM segmentations WHERE id = ?",
        [segmentation_id],
    ).fetchone()
    if row is None:
        return None
    segments: tuple[tuple[str, str, str | None], ...] = ()
    if row[2] == MANUAL_REQL:
        segments = tuple(
            (str(s[0]), str(s[1]), s[2])
            for s in ctx.conn.execute(
                "SELECT segment_id, filter, title FROM segmentation_segments "
                "WHERE segmentation_id = ? ORDER BY position",
                [segmentation_id],
            ).fetchall()
        )
    sid, source_type, kind, title, description, property_name, expression = row
    return Segmentation(
        sid, source_type, kind, title, description, property_name, expression, segments
    )


def get_segmentation(ctx: ReadContext, segmentation_id: str) -> Segmentation:
    """A segmentation's definition; SegmentationNotFound (404) where there is none."""
    validate_id(segmentation_id, "segmentationId")
    found = find_segmentation(ctx, segmentation_id)
    if found is None:
        raise SegmentationNotFound(segmentation_id)
    return found


def list_segmentations(ctx: ReadContext, source_type: object) -> dict[str, Any]:
    """Recombee's List Segmentations: `{"segmentations": [...]}` by id."""
    checked_source_type(source_type)
    found = (find_segmentation(ctx, sid) for sid in list_segmentation_ids(ctx))
    return {"segmentations": [s.to_json() for s in found if s is not None]}


def checked_source_type(value: object) -> str:
    """A request's `sourceType`: required, and `items`."""
    if value is None:
        raise BadParameter("sourceType", "is required")
    if value not in SOURCE_TYPES:
        raise BadParameter("sourceType", f"must be 'items' (the only one supported), not {value!r}")
    return str(value)


# -- what the segments hold -----------------------------------------------------------------


def segment_items(
    ctx: ReadContext, segmentation: Segmentation, item_ids: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """Segment id -> the ids of the items in that segment (sorted), restricted to `item_ids`
    where given. Every segment of a manual ReQL segmentation is there, empty or not; the other
    kinds have the segments that some item gives (a null or empty value gives none).

    Raises BadExpression where evaluating an expression fails or runs past the query time limit,
    BrokenSegmentation where the definition no longer fits the catalog."""
    if segmentation.kind == MANUAL_REQL:
        return {
            segment: _filtered(ctx, segmentation, text, item_ids)
            for segment, text, _ in segmentation.segments
        }
    ids = _property_ids if segmentation.kind == PROPERTY else _expression_ids
    found = ids(ctx, segmentation)
    parameters = dict(found.parameters)
    if item_ids is not None:
        parameters["reqo_item_ids"] = list(item_ids)
    alias = found.alias
    sql = (
        f"SELECT segment, list(item ORDER BY item) FROM ("
        f"SELECT DISTINCT {found.sql} AS segment, {alias}.{_ID} AS item "
        f"FROM items AS {alias}{_restricted(alias, item_ids, 'WHERE')}) "
        "WHERE segment IS NOT NULL AND segment <> '' GROUP BY segment ORDER BY segment"
    )
    rows = run_guarded(
        found.source, found.parameter, lambda: ctx.conn.execute(sql, parameters).fetchall(), ctx
    )
    return {str(segment): [str(item) for item in items] for segment, items in rows}


def item_segment_ids(ctx: ReadContext, segmentation: Segmentation, item_id: str) -> list[str]:
    """The segments one item is in (none for an unknown item): by id, or for a manual ReQL
    segmentation in the order of its segments."""
    found = segment_items(ctx, segmentation, [item_id])
    return [segment for segment, items in found.items() if items]


@dataclass(frozen=True)
class _SegmentIds:
    """SQL over the items table (as `alias`) that gives an item's segment ids, one row each."""

    sql: str
    alias: str
    parameters: dict[str, Any]
    source: str
    """What the user wrote (the property name or the expression), for error messages."""
    parameter: str


def _restricted(alias: str, item_ids: Sequence[str] | None, keyword: str) -> str:
    if item_ids is None:
        return ""
    return f" {keyword} {alias}.{_ID} IN (SELECT unnest(CAST($reqo_item_ids AS VARCHAR[])))"


def _property_ids(ctx: ReadContext, segmentation: Segmentation) -> _SegmentIds:
    name = str(segmentation.property_name)
    prop = ctx.schema.items.get(name)
    if prop is None:
        raise BrokenSegmentation(segmentation.id, f"its item property '{name}' no longer exists")
    if prop.type not in SEGMENT_PROPERTY_TYPES:
        raise BrokenSegmentation(
            segmentation.id, f"its item property '{name}' is now {prop.type}, not string or set"
        )
    column = f"c.{quote_identifier(name)}"
    value = f"unnest({column})" if prop.type is PropertyType.SET else column
    return _SegmentIds(value, "c", {}, name, "propertyName")


def _expression_ids(ctx: ReadContext, segmentation: Segmentation) -> _SegmentIds:
    text = str(segmentation.expression)
    compiled = _compiled(ctx, segmentation, text, reql.Purpose.VALUE, "expression")
    problem = segment_ids_problem(compiled.type)
    if problem is not None:
        raise BrokenSegmentation(segmentation.id, problem)
    value = f"unnest({compiled.sql})" if compiled.type.kind is rt.Kind.SET else compiled.sql
    parameters = compiled.bind(now=current_time())
    return _SegmentIds(value, compiled.candidate_alias, parameters, text, "expression")


def segment_ids_problem(value_type: rt.Type) -> str | None:
    """Why an auto ReQL expression of this type cannot give segment ids (None: it can: a string,
    a set of strings or an empty set)."""
    if value_type.kind is rt.Kind.STRING:
        return None
    element = value_type.element
    if (
        value_type.kind is rt.Kind.SET
        and element
        and element.kind in (rt.Kind.STRING, rt.Kind.NULL)
    ):
        return None
    return f"the expression must give a segment id (a string) or a set of them, not {value_type}"


def _filtered(
    ctx: ReadContext, segmentation: Segmentation, text: str, item_ids: Sequence[str] | None
) -> list[str]:
    """The ids of the items that pass one manual segment's filter."""
    compiled = _compiled(ctx, segmentation, text, reql.Purpose.FILTER, "filter")
    parameters = compiled.bind(now=current_time())
    if item_ids is not None:
        parameters["reqo_item_ids"] = list(item_ids)
    alias = compiled.candidate_alias
    sql = (
        f"SELECT {alias}.{_ID} FROM items AS {alias} "
        f"WHERE ({compiled.sql}){_restricted(alias, item_ids, 'AND')} ORDER BY {alias}.{_ID}"
    )
    rows = run_guarded(text, "filter", lambda: ctx.conn.execute(sql, parameters).fetchall(), ctx)
    return [str(row[0]) for row in rows]


def _compiled(
    ctx: ReadContext, segmentation: Segmentation, text: str, purpose: reql.Purpose, parameter: str
) -> reql.CompiledExpression:
    """A stored expression compiled against today's catalog (it compiled when it was stored:
    a failure now means that the catalog changed under it)."""
    try:
        return compile_for(ctx.schema, text, purpose, parameter=parameter)
    except BadExpression as error:
        raise BrokenSegmentation(
            segmentation.id, f"its {parameter} no longer compiles: {error.message}"
        ) from None
