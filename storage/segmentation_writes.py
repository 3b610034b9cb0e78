"""The writes of segmentations (storage/segmentations.py): Recombee's Create and Update Property
Based, Auto ReQL and Manual ReQL Segmentation, Add, Update and Delete Manual ReQL Segment, and
Delete Segmentation.

Everything a write is given is checked before anything is stored: ids, the source type, that a
property exists and holds strings or sets of them, that an auto ReQL expression gives segment ids
and that a segment's filter is boolean, each against the catalog as it is now. An update changes
the fields it is given (a field given as null is cleared) and keeps the others.
"""

from __future__ import annotations

from typing import Final

import reql
from storage.contexts import WriteContext
from storage.errors import BadParameter, Conflict, InvalidInput, NotFound
from storage.reql_queries import compile_for
from storage.schema import validate_id
from storage.segmentations import (
    AUTO_REQL,
    KIND_NAMES,
    MANUAL_REQL,
    PROPERTY,
    SEGMENT_PROPERTY_TYPES,
    Segmentation,
    SegmentationNotFound,
    SegmentNotFound,
    checked_source_type,
    find_segmentation,
    segment_ids_problem,
)


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()
"""An update's value for a field it was not given: the stored value stays."""

MAX_TEXT_LENGTH = 4096
"""The longest title or description, in characters."""


def _text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadParameter(name, f"must be a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT_LENGTH:
        raise BadParameter(name, f"is longer than {MAX_TEXT_LENGTH} characters")
    return value


def _required_text(name: str, value: object) -> str:
    if value is None or value == "":
        raise BadParameter(name, "is required")
    if not isinstance(value, str):
        raise BadParameter(name, f"must be a string, got {type(value).__name__}")
    return value


def _property(ctx: WriteContext, value: object) -> str:
    """A property that segments can be made of: 404 where it does not exist (as Recombee),
    400 where it is not a string or set property."""
    name = _required_text("propertyName", value)
    prop = ctx.schema.items.get(name)
    if prop is None:
        raise NotFound(f"parameter 'propertyName': item property '{name}' does not exist")
    if prop.type not in SEGMENT_PROPERTY_TYPES:
        raise BadParameter(
            "propertyName",
            f"item property '{name}' is of type {prop.type}; a segmentation needs a string or "
            "set property",
        )
    return prop.name


def _expression(ctx: WriteContext, value: object) -> str:
    """An auto ReQL expression that compiles and gives a string or a set of strings."""
    text = _required_text("expression", value)
    compiled = compile_for(ctx.schema, text, reql.Purpose.VALUE, parameter="expression")
    problem = segment_ids_problem(compiled.type)
    if problem is not None:
        raise BadParameter("expression", problem)
    return text


def _filter(ctx: WriteContext, value: object) -> str:
    """A segment's filter that compiles and is boolean."""
    text = _required_text("filter", value)
    compile_for(ctx.schema, text, reql.Purpose.FILTER, parameter="filter")
    return text


def _new_id(ctx: WriteContext, segmentation_id: str) -> str:
    validate_id(segmentation_id, "segmentationId")
    if find_segmentation(ctx, segmentation_id) is not None:
        raise Conflict(f"segmentation '{segmentation_id}' already exists")
    return segmentation_id


def _existing(ctx: WriteContext, segmentation_id: str, kind: str) -> Segmentation:
    validate_id(segmentation_id, "segmentationId")
    found = find_segmentation(ctx, segmentation_id)
    if found is None:
        raise SegmentationNotFound(segmentation_id)
    if found.kind != kind:
        raise InvalidInput(
            f"segmentation '{segmentation_id}' is {KIND_NAMES[found.kind]}, not {KIND_NAMES[kind]}"
        )
    return found


def _insert(
    ctx: WriteContext,
    segmentation_id: str,
    kind: str,
    source_type: str,
    title: object,
    description: object,
    *,
    property_name: str | None = None,
    expression: str | None = None,
) -> str:
    ctx.conn.execute(
        "INSERT INTO segmentations VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            segmentation_id,
            source_type,
            kind,
            _text("title", title),
            _text("description", description),
            property_name,
            expression,
        ],
    )
    return "ok"


def _update(ctx: WriteContext, segmentation_id: str, fields: dict[str, object]) -> str:
    """Set the given columns, each checked already (KEEP: left as it is)."""
    changed = {column: value for column, value in fields.items() if value is not KEEP}
    if changed:
        assignments = ", ".join(f"{column} = ?" for column in changed)
        ctx.conn.execute(
            f"UPDATE segmentations SET {assignments} WHERE id = ?",
            [*changed.values(), segmentation_id],
        )
    return "ok"


def _optional_text(name: str, value: object) -> object:
    return KEEP if value is KEEP else _text(name, value)


def create_property_based(
    ctx: WriteContext,
    segmentation_id: str,
    source_type: object,
    property_name: object,
    title: object = None,
    description: object = None,
) -> str:
    """Create a property-based segmentation (409 where the id is taken)."""
    checked_id = _new_id(ctx, segmentation_id)
    source = checked_source_type(source_type)
    name = _property(ctx, property_name)
    return _insert(ctx, checked_id, PROPERTY, source, title, description, property_name=name)


def update_property_based(
    ctx: WriteContext,
    segmentation_id: str,
    property_name: object = KEEP,
    title: object = KEEP,
    description: object = KEEP,
) -> str:
    """Change a property-based segmentation's property, title or description."""
    _existing(ctx, segmentation_id, PROPERTY)
    fields = {
        "property_name": KEEP if property_name is KEEP else _property(ctx, property_name),
        "title": _optional_text("title", title),
        "description": _optional_text("description", description),
    }
    return _update(ctx, segmentation_id, fields)


def create_auto_reql(
    ctx: WriteContext,
    segmentation_id: str,
    source_type: object,
    expression: object,
    title: object = None,
    description: object = None,
) -> str:
    """Create an auto ReQL segmentation (409 where the id is taken)."""
    checked_id = _new_id(ctx, segmentation_id)
    source = checked_source_type(source_type)
    text = _expression(ctx, expression)
    return _insert(ctx, checked_id, AUTO_REQL, source, title, description, expression=text)


def update_auto_reql(
    ctx: WriteContext,
    segmentation_id: str,
    expression: object = KEEP,
    title: object = KEEP,
    description: object = KEEP,
) -> str:
    """Change an auto ReQL segmentation's expression, title or description."""
    _existing(ctx, segmentation_id, AUTO_REQL)
    fields = {
        "expression": KEEP if expression is KEEP else _expression(ctx, expression),
        "title": _optional_text("title", title),
        "description": _optional_text("description", description),
    }
    return _update(ctx, segmentation_id, fields)


def create_manual_reql(
    ctx: WriteContext,
    segmentation_id: str,
    source_type: object,
    title: object = None,
    description: object = None,
) -> str:
    """Create a manual ReQL segmentation, without segments yet (409 where the id is taken)."""
    checked_id = _new_id(ctx, segmentation_id)
    source = checked_source_type(source_type)
    return _insert(ctx, checked_id, MANUAL_REQL, source, title, description)


def update_manual_reql(
    ctx: WriteContext, segmentation_id: str, title: object = KEEP, description: object = KEEP
) -> str:
    """Change a manual ReQL segmentation's title or description."""
    _existing(ctx, segmentation_id, MANUAL_REQL)
    fields = {
        "title": _optional_text("title", title),
        "description": _optional_text("description", description),
    }
    return _update(ctx, segmentation_id, fields)


def _segment(ctx: WriteContext, segmentation_id: str, segment_id: str) -> tuple[Segmentation, bool]:
    """The manual ReQL segmentation of a segment write, and whether it has the segment."""
    validate_id(segment_id, "segmentId")
    found = _existing(ctx, segmentation_id, MANUAL_REQL)
    return found, any(segment == segment_id for segment, _, _ in found.segments)


def add_segment(
    ctx: WriteContext, segmentation_id: str, segment_id: str, filter_text: object, title: object
) -> str:
    """Add a segment to a manual ReQL segmentation, after its others (409 where it has one of
    that id)."""
    _, exists = _segment(ctx, segmentation_id, segment_id)
    if exists:
        raise Conflict(f"segment '{segment_id}' exists in segmentation '{segmentation_id}' already")
    text, checked_title = _filter(ctx, filter_text), _text("title", title)
    ctx.conn.execute(
        "INSERT INTO segmentation_segments SELECT ?, ?, ?, ?, coalesce(max(position) + 1, 0) "
        "FROM segmentation_segments WHERE segmentation_id = ?",
        [segmentation_id, segment_id, text, checked_title, segmentation_id],
    )
    return "ok"


def update_segment(
    ctx: WriteContext,
    segmentation_id: str,
    segment_id: str,
    filter_text: object,
    title: object = KEEP,
) -> str:
    """Replace a segment's filter (and its title, where given); it keeps its place."""
    _, exists = _segment(ctx, segmentation_id, segment_id)
    if not exists:
        raise SegmentNotFound(segmentation_id, segment_id)
    text, checked_title = _filter(ctx, filter_text), _optional_text("title", title)
    where = "WHERE segmentation_id = ? AND segment_id = ?"
    if checked_title is KEEP:
        statement = f"UPDATE segmentation_segments SET filter = ? {where}"
        values: list[object] = [text, segmentation_id, segment_id]
    else:
        statement = f"UPDATE segmentation_segments SET filter = ?, title = ? {where}"
        values = [text, checked_title, segmentation_id, segment_id]
    ctx.conn.execute(statement, values)
    return "ok"


def delete_segment(ctx: WriteContext, segmentation_id: str, segment_id: str) -> str:
    """Take a segment out of a manual ReQL segmentation."""
    _, exists = _segment(ctx, segmentation_id, segment_id)
    if not exists:
        raise SegmentNotFound(segmentation_id, segment_id)
    ctx.conn.execute(
        "DELETE FROM segmentation_segments WHERE segmentation_id = ? AND segment_id = ?",
        [segmentation_id, segment_id],
    )
    return "ok"


def delete_segmentation(ctx: WriteContext, segmentation_id: str) -> str:
    """Delete a segmentation of any kind, with its segments."""
    validate_id(segmentation_id, "segmentationId")
    if find_segmentation(ctx, segmentation_id) is None:
        raise SegmentationNotFound(segmentation_id)
    ctx.conn.execute("DELETE FROM segmentations WHERE id = ?", [segmentation_id])
    ctx.conn.execute(
        "DELETE FROM segmentation_segments WHERE segmentation_id = ?", [segmentation_id]
    )
    return "ok"


def forget_all(ctx: WriteContext) -> None:
    """Delete every segmentation (Reset Database)."""
    ctx.conn.execute("DELETE FROM segmentations")
    ctx.conn.execute("DELETE FROM segmentation_segments")
