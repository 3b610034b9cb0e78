"""The six kinds of user-item interaction: validation, vectorised writes, deletes and listings.

Writes arrive one by one or in batches of thousands; `apply_interaction_writes` takes any number
of them and does a fixed number of queries, whatever the count, with outcomes exactly as if the
writes had been applied one after another.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

import pyarrow as pa

from storage.database import ReadContext, WriteContext
from storage.entities import SMALL, create_entities, entity_exists, existing_users_and_items
from storage.errors import (
    BadParameter,
    Conflict,
    EntityNotFound,
    InvalidInput,
    NotFound,
    StorageError,
)
from storage.params import check_known, read_bool, read_number, read_str
from storage.schema import Entity, validate_id
from storage.timestamps import datetime_to_epoch, now_us, parse_timestamp


class InteractionKind(Enum):
    """A kind of interaction; the value is its path segment in Recombee's API."""

    DETAIL_VIEW = "detailviews"
    PURCHASE = "purchases"
    RATING = "ratings"
    CART_ADDITION = "cartadditions"
    BOOKMARK = "bookmarks"
    VIEW_PORTION = "viewportions"

    @property
    def code(self) -> int:
        """The small integer stored in the `kind` column."""
        return _CODES[self]

    @property
    def reql_name(self) -> str:
        """The name used by ReQL's `user_interactions` (e.g. `detail_views`)."""
        return _REQL_NAMES[self]

    @property
    def fields(self) -> tuple[str, ...]:
        """The kind's own parameters, beyond the ones every interaction has."""
        return _FIELDS[self]

    @classmethod
    def from_code(cls, code: int) -> InteractionKind:
        return _BY_CODE[code]

    @classmethod
    def from_name(cls, name: str) -> InteractionKind:
        """Accept the path segment, the ReQL name or the singular (`detail_view`)."""
        key = name.lower().replace("-", "_")
        for kind in cls:
            if key in (kind.value, kind.reql_name, kind.reql_name.rstrip("s")):
                return kind
        names = ", ".join(k.reql_name for k in cls)
        raise InvalidInput(f"unknown interaction kind {name!r}; one of {names}")


_CODES = {kind: code for code, kind in enumerate(InteractionKind, start=1)}
_BY_CODE = {code: kind for kind, code in _CODES.items()}
_REQL_NAMES = {
    InteractionKind.DETAIL_VIEW: "detail_views",
    InteractionKind.PURCHASE: "purchases",
    InteractionKind.RATING: "ratings",
    InteractionKind.CART_ADDITION: "cart_additions",
    InteractionKind.BOOKMARK: "bookmarks",
    InteractionKind.VIEW_PORTION: "view_portions",
}
_FIELDS: dict[InteractionKind, tuple[str, ...]] = {
    InteractionKind.DETAIL_VIEW: ("duration", "autoPresented"),
    InteractionKind.PURCHASE: ("amount", "price", "profit"),
    InteractionKind.RATING: ("rating",),
    InteractionKind.CART_ADDITION: ("amount", "price"),
    InteractionKind.BOOKMARK: (),
    InteractionKind.VIEW_PORTION: ("portion", "sessionId", "autoPresented", "timeSpent"),
}
COMMON_FIELDS = ("userId", "itemId", "timestamp", "cascadeCreate", "recommId", "additionalData")

# Stored columns, in table order, after kind/user_id/item_id/ts.
_VALUE_COLUMNS = (
    "recomm_id",
    "additional_data",
    "duration",
    "auto_presented",
    "amount",
    "price",
    "profit",
    "rating",
    "portion",
    "session_id",
    "time_spent",
)
_JSON_NAMES = {
    "recomm_id": "recommId",
    "additional_data": "additionalData",
    "duration": "duration",
    "auto_presented": "autoPresented",
    "amount": "amount",
    "price": "price",
    "profit": "profit",
    "rating": "rating",
    "portion": "portion",
    "session_id": "sessionId",
    "time_spent": "timeSpent",
}
# What a listing returns per kind, after itemId/userId/timestamp (Recombee's response shapes).
_LISTED: dict[InteractionKind, tuple[str, ...]] = {
    InteractionKind.DETAIL_VIEW: ("duration", "auto_presented"),
    InteractionKind.PURCHASE: ("amount", "price", "profit"),
    InteractionKind.RATING: ("rating",),
    InteractionKind.CART_ADDITION: ("amount", "price"),
    InteractionKind.BOOKMARK: (),
    InteractionKind.VIEW_PORTION: ("session_id", "portion", "auto_presented", "time_spent"),
}


@dataclass(slots=True)
class InteractionWrite:
    """One validated interaction, ready to be stored."""

    kind: InteractionKind
    user_id: str
    item_id: str
    ts_us: int
    cascade_create: bool
    timestamp_given: bool
    recomm_id: str | None = None
    additional_data: str | None = None
    duration: float | None = None
    auto_presented: bool | None = None
    amount: float | None = None
    price: float | None = None
    profit: float | None = None
    rating: float | None = None
    portion: float | None = None
    session_id: str | None = None
    time_spent: float | None = None

    def row(self) -> tuple[Any, ...]:
        return (
            self.kind.code,
            self.user_id,
            self.item_id,
            self.ts_us,
            self.recomm_id,
            self.additional_data,
            self.duration,
            self.auto_presented,
            self.amount,
            self.price,
            self.profit,
            self.rating,
            self.portion,
            self.session_id,
            self.time_spent,
        )


def parse_interaction(kind: InteractionKind, params: Mapping[str, Any]) -> InteractionWrite:
    """Validate the parameters of an Add (or Set, for view portions) interaction request."""
    check_known(params, (*COMMON_FIELDS, *kind.fields))
    for required in ("userId", "itemId"):
        if params.get(required) is None:
            raise BadParameter(required, "is required")
    user_id = validate_id(params["userId"], "userId")
    item_id = validate_id(params["itemId"], "itemId")
    raw_ts = params.get("timestamp")
    ts_us = now_us() if raw_ts is None else parse_timestamp(raw_ts)
    additional = params.get("additionalData")
    if additional is not None and not isinstance(additional, dict):
        raise BadParameter("additionalData", "must be a JSON object")
    write = InteractionWrite(
        kind=kind,
        user_id=user_id,
        item_id=item_id,
        ts_us=ts_us,
        cascade_create=read_bool(params, "cascadeCreate", False),
        timestamp_given=raw_ts is not None,
        recomm_id=read_str(params, "recommId"),
        additional_data=None if additional is None else json.dumps(additional),
    )
    if kind is InteractionKind.DETAIL_VIEW:
        write.duration = read_number(params, "duration", minimum=0)
        write.auto_presented = read_bool(params, "autoPresented", False)
    elif kind in (InteractionKind.PURCHASE, InteractionKind.CART_ADDITION):
        write.amount = read_number(params, "amount", minimum=0)
        if write.amount is None:
            write.amount = 1.0
        write.price = read_number(params, "price")
        if kind is InteractionKind.PURCHASE:
            write.profit = read_number(params, "profit")
    elif kind is InteractionKind.RATING:
        write.rating = read_number(params, "rating", required=True, minimum=-1.0, maximum=1.0)
    elif kind is InteractionKind.VIEW_PORTION:
        write.portion = read_number(params, "portion", required=True, minimum=0.0, maximum=1.0)
        session = params.get("sessionId")
        write.session_id = None if session is None else validate_id(session, "sessionId")
        write.auto_presented = read_bool(params, "autoPresented", False)
        write.time_spent = read_number(params, "timeSpent", minimum=0)
    return write


def apply_interaction_writes(
    ctx: WriteContext, writes: Sequence[InteractionWrite]
) -> list[str | StorageError]:
    """Store many interactions; each gets "ok" or the error that refused it alone.

    Outcomes are those of applying the writes in order: an earlier write's cascade-created user
    exists for a later write, and the second of two identical interactions is a duplicate.
    """
    found = existing_users_and_items(
        ctx, users=(w.user_id for w in writes), items=(w.item_id for w in writes)
    )
    users, items = found[Entity.USER], found[Entity.ITEM]
    stored_keys = _existing_event_keys(ctx, [w for w in writes if w.kind is not _PORTION])
    portions = _existing_portions(ctx, [w for w in writes if w.kind is _PORTION])

    outcomes: list[str | StorageError] = []
    accepted: list[InteractionWrite] = []
    new_users: list[str] = []
    new_items: list[str] = []
    seen_keys: set[tuple[int, str, str, int]] = set()
    replaced_portions: list[InteractionWrite] = []  # stored rows that a write updates
    written_portions: dict[tuple[str, str, str | None], InteractionWrite] = {}
    superseded: set[int] = set()  # ids of this call's own writes that a later write updates
    for write in writes:
        missing = _missing_entity(write, users, items)
        if missing is not None:
            outcomes.append(missing)
            continue
        if write.kind is _PORTION:
            key = (write.user_id, write.item_id, write.session_id)
            earlier = written_portions.get(key)
            previous = earlier if earlier is not None else portions.get(key)
            refusal = _portion_conflict(write, previous)
            if refusal is not None:
                outcomes.append(refusal)
                continue
            if previous is not None and write.time_spent is None:
                write.time_spent = previous.time_spent
            elif write.time_spent is None:
                write.time_spent = 0.0
            if earlier is not None:
                superseded.add(id(earlier))
            elif previous is not None:
                replaced_portions.append(previous)
            written_portions[key] = write
        else:
            event_key = (write.kind.code, write.user_id, write.item_id, write.ts_us)
            if event_key in stored_keys or event_key in seen_keys:
                outcomes.append(
                    Conflict(
                        f"a {_singular(write.kind)} of item '{write.item_id}' by user "
                        f"'{write.user_id}' at timestamp {write.ts_us / 1e6:g} already exists"
                    )
                )
                continue
            seen_keys.add(event_key)
        if write.user_id not in users:
            users.add(write.user_id)
            new_users.append(write.user_id)
        if write.item_id not in items:
            items.add(write.item_id)
            new_items.append(write.item_id)
        accepted.append(write)
        outcomes.append("ok")

    create_entities(ctx, Entity.USER, new_users)
    create_entities(ctx, Entity.ITEM, new_items)
    if replaced_portions:
        _delete_portions(ctx, replaced_portions)
    insert_rows(ctx, [w.row() for w in accepted if id(w) not in superseded])
    return outcomes


_PORTION = InteractionKind.VIEW_PORTION


def insert_rows(ctx: WriteContext, rows: Sequence[tuple[Any, ...]]) -> None:
    """Append interaction rows (as built by InteractionWrite.row) in one statement."""
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    if len(rows) <= SMALL:
        # A list parameter per column, unnested together: cheaper to bind than a VALUES list.
        ctx.conn.execute(_INSERT_UNNESTED, [list(column) for column in columns])
    else:
        # Thousands of rows convert far faster as Arrow arrays than as Python lists.
        table = pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(columns, _ARROW_SCHEMA, strict=True)],
            schema=_ARROW_SCHEMA,
        )
        with _registered(ctx, "_reqo_new_interactions", table):
            ctx.conn.execute(
                "INSERT INTO interactions SELECT kind, user_id, item_id, make_timestamp(ts_us), "
                + ", ".join(_VALUE_COLUMNS)
                + " FROM _reqo_new_interactions"
            )
    ctx.touched_interactions()


_COLUMN_TYPES = (
    "UTINYINT", "VARCHAR", "VARCHAR", "BIGINT", "VARCHAR", "VARCHAR", "DOUBLE", "BOOLEAN",
    "DOUBLE", "DOUBLE", "DOUBLE", "DOUBLE", "DOUBLE", "VARCHAR", "DOUBLE",
)  # fmt: skip
_ARROW_SCHEMA = pa.schema(
    [
        ("kind", pa.uint8()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("ts_us", pa.int64()),
        ("recomm_id", pa.string()),
        ("additional_data", pa.string()),
        ("duration", pa.float64()),
        ("auto_presented", pa.bool_()),
        ("amount", pa.float64()),
        ("price", pa.float64()),
        ("profit", pa.float64()),
        ("rating", pa.float64()),
        ("portion", pa.float64()),
        ("session_id", pa.string()),
        ("time_spent", pa.float64()),
    ]
)
_INSERT_UNNESTED = "INSERT INTO interactions SELECT " + ", ".join(
    f"make_timestamp(unnest(${n}::{t}[]))" if n == 4 else f"unnest(${n}::{t}[])"
    for n, t in enumerate(_COLUMN_TYPES, start=1)
)


@contextmanager
def _registered(ctx: WriteContext, name: str, table: pa.Table) -> Iterator[None]:
    """Make an Arrow table queryable under `name` for the duration of a block."""
    ctx.conn.register(name, table)
    try:
        yield
    finally:
        ctx.conn.unregister(name)


def _missing_entity(
    write: InteractionWrite, users: set[str], items: set[str]
) -> StorageError | None:
    if write.cascade_create:
        return None
    if write.user_id not in users:
        return EntityNotFound("user", write.user_id)
    if write.item_id not in items:
        return EntityNotFound("item", write.item_id)
    return None


def _portion_conflict(
    write: InteractionWrite, previous: InteractionWrite | None
) -> StorageError | None:
    if previous is None:
        return None
    session = "no session" if write.session_id is None else f"session '{write.session_id}'"
    subject = f"the view portion of item '{write.item_id}' by user '{write.user_id}' ({session})"
    if write.timestamp_given and previous.ts_us >= write.ts_us:
        return Conflict(f"{subject} is already stored with an equal or later timestamp")
    if (
        previous.portion is not None
        and write.portion is not None
        and previous.portion > write.portion
    ):
        return Conflict(
            f"{subject} is already stored with a greater portion ({previous.portion:g})"
        )
    if (
        write.time_spent is not None
        and previous.time_spent is not None
        and write.time_spent < previous.time_spent
    ):
        return Conflict(f"{subject}: timeSpent may only increase (stored {previous.time_spent:g})")
    return None


def _existing_event_keys(
    ctx: WriteContext, writes: Sequence[InteractionWrite]
) -> set[tuple[int, str, str, int]]:
    if not writes:
        return set()
    if len(writes) <= SMALL:
        # Filtering on literal timestamps lets DuckDB skip every row group outside them.
        marks = ", ".join(["make_timestamp(?::BIGINT)"] * len(writes))
        rows = ctx.conn.execute(
            "SELECT kind, user_id, item_id, epoch_us(ts) FROM interactions "
            f"WHERE ts IN ({marks}) AND user_id IN ({', '.join('?' * len(writes))})",
            [w.ts_us for w in writes] + [w.user_id for w in writes],
        ).fetchall()
        return {(int(k), u, i, int(t)) for k, u, i, t in rows}
    probe = pa.table(
        {
            "kind": pa.array([w.kind.code for w in writes], pa.uint8()),
            "user_id": [w.user_id for w in writes],
            "item_id": [w.item_id for w in writes],
            "ts_us": pa.array([w.ts_us for w in writes], pa.int64()),
        }
    )
    with _registered(ctx, "_reqo_probe", probe):
        # Joining on the timestamp first lets DuckDB skip row groups outside the probe's range.
        rows = ctx.conn.execute(
            """SELECT DISTINCT p.kind, p.user_id, p.item_id, p.ts_us
               FROM _reqo_probe AS p JOIN interactions AS i
                 ON i.ts = make_timestamp(p.ts_us) AND i.user_id = p.user_id
                AND i.item_id = p.item_id AND i.kind = p.kind"""
        ).fetchall()
    return {(int(k), u, i, int(t)) for k, u, i, t in rows}


def _existing_portions(
    ctx: WriteContext, writes: Sequence[InteractionWrite]
) -> dict[tuple[str, str, str | None], InteractionWrite]:
    if not writes:
        return {}
    probe = pa.table(
        {
            "user_id": [w.user_id for w in writes],
            "item_id": [w.item_id for w in writes],
            "session_id": pa.array([w.session_id for w in writes], pa.string()),
        }
    )
    with _registered(ctx, "_reqo_probe", probe):
        rows = ctx.conn.execute(
            f"""SELECT DISTINCT i.user_id, i.item_id, i.session_id, epoch_us(i.ts), i.portion,
                      i.time_spent
               FROM _reqo_probe AS p JOIN interactions AS i
                 ON i.kind = {_PORTION.code} AND i.user_id = p.user_id AND i.item_id = p.item_id
                AND i.session_id IS NOT DISTINCT FROM p.session_id"""
        ).fetchall()

    found = {}
    for user_id, item_id, session_id, ts_us, portion, time_spent in rows:
        found[(user_id, item_id, session_id)] = InteractionWrite(
            kind=_PORTION,
            user_id=user_id,
            item_id=item_id,
            ts_us=int(ts_us),
            cascade_create=False,
            timestamp_given=True,
            portion=portion,
            session_id=session_id,
            time_spent=time_spent,
        )
    return found


def _delete_portions(ctx: WriteContext, portions: Sequence[InteractionWrite]) -> None:
    for portion in portions:
        ctx.conn.execute(
            f"""DELETE FROM interactions WHERE kind = {_PORTION.code} AND user_id = ?
                AND item_id = ? AND session_id IS NOT DISTINCT FROM ?""",
            [portion.user_id, portion.item_id, portion.session_id],
        )


def delete_interactions(ctx: WriteContext, kind: InteractionKind, params: Mapping[str, Any]) -> str:
    """Delete one interaction (by timestamp, or session for view portions) or all of a pair."""
    allowed = ("userId", "itemId", "sessionId" if kind is _PORTION else "timestamp")
    check_known(params, allowed)
    user_id = validate_id(read_str(params, "userId", required=True), "userId")
    item_id = validate_id(read_str(params, "itemId", required=True), "itemId")
    if not entity_exists(ctx, Entity.USER, user_id):
        raise EntityNotFound("user", user_id)
    if not entity_exists(ctx, Entity.ITEM, item_id):
        raise EntityNotFound("item", item_id)
    condition = "kind = ? AND user_id = ? AND item_id = ?"
    arguments: list[Any] = [kind.code, user_id, item_id]
    if kind is _PORTION:
        session = params.get("sessionId")
        session_id = None if session is None else validate_id(session, "sessionId")
        condition += " AND session_id IS NOT DISTINCT FROM ?"
        arguments.append(session_id)
    elif params.get("timestamp") is not None:
        condition += " AND ts = make_timestamp(?::BIGINT)"
        arguments.append(parse_timestamp(params["timestamp"]))
    deleted = ctx.conn.execute(
        f"DELETE FROM interactions WHERE {condition} RETURNING 1", arguments
    ).fetchall()
    if not deleted:
        raise NotFound(
            f"no {kind.reql_name.replace('_', ' ')} of item '{item_id}' by user '{user_id}' "
            "match the request"
        )
    ctx.touched_interactions()
    return "ok"


def list_interactions(
    ctx: ReadContext, kind: InteractionKind, entity: Entity, entity_id: str
) -> list[dict[str, Any]]:
    """All interactions of one kind made by a user, or made with an item, oldest first."""
    validate_id(entity_id, entity.id_field)
    if not entity_exists(ctx, entity, entity_id):
        raise EntityNotFound(entity.value, entity_id)
    key = "item_id" if entity is Entity.ITEM else "user_id"
    extra = _LISTED[kind]
    optional = ("recomm_id", "additional_data")
    columns = ", ".join(("item_id", "user_id", "ts", *extra, *optional))
    rows = ctx.conn.execute(
        f"SELECT {columns} FROM interactions WHERE kind = ? AND {key} = ? "
        "ORDER BY ts, user_id, item_id",
        [kind.code, entity_id],
    ).fetchall()
    listed = []
    for row in rows:
        record: dict[str, Any] = {
            "itemId": row[0],
            "userId": row[1],
            "timestamp": datetime_to_epoch(row[2]),
        }
        for name, value in zip(extra, row[3 : 3 + len(extra)], strict=True):
            record[_JSON_NAMES[name]] = value
        recomm_id, additional = row[3 + len(extra) :]
        if recomm_id is not None:
            record["recommId"] = recomm_id
        if additional is not None:
            record["additionalData"] = json.loads(additional)
        listed.append(record)
    return listed


def _singular(kind: InteractionKind) -> str:
    return kind.reql_name.replace("_", " ").removesuffix("s")
