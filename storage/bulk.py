"""Bulk import of items, users and interactions from CSV, Parquet and NDJSON files.

An import is one write job, so one transaction: the file is staged into a temporary table,
checked with a handful of set-wise queries, and written with a few INSERT/UPDATE ... SELECT
statements. A file with any bad row imports nothing; the error names the first bad row.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import yaml
from tqdm import tqdm

from storage import bulk_sql as sql
from storage.catalog import ensure_properties
from storage.database import Database, WriteContext
from storage.entities import ID, create_entities
from storage.errors import InvalidInput, StorageError
from storage.feed import RELOAD_ENTRY
from storage.interactions import InteractionKind
from storage.schema import (
    Entity,
    PropertyType,
    parse_property_type,
    quote_identifier,
    validate_property_name,
)
from storage.timestamps import now_us


class BulkImportError(InvalidInput):
    """A file that cannot be imported; the message names the file, row, column and problem."""


class _Abort(Exception):
    """Carries an BulkImportError out of the write job.

    The writer commits a job that raises a StorageError (it only refuses that job), so the import
    raises this instead: any other exception makes the writer roll the transaction back.
    """

    def __init__(self, error: BulkImportError) -> None:
        super().__init__(error.message)
        self.error = error


_STAGE = "_reqo_import_rows"
_KINDS = "_reqo_import_kinds"
_NEW = {Entity.USER: "_reqo_import_users", Entity.ITEM: "_reqo_import_items"}
_TEMP_TABLES = (_STAGE, _KINDS, *_NEW.values())
_WIDENS = {
    (PropertyType.INT, PropertyType.DOUBLE),
    (PropertyType.STRING, PropertyType.IMAGE),
    (PropertyType.STRING, PropertyType.SET),
    (PropertyType.STRING, PropertyType.IMAGE_LIST),
    (PropertyType.SET, PropertyType.IMAGE_LIST),
}
"""(inferred, stored): a column whose inferred type fills a stored property of another type."""


@dataclass
class _Job:
    path: Path
    fmt: sql.Format
    entity: Entity | None  # None: interactions
    schema: dict[str, PropertyType]
    kind: InteractionKind | None
    advance: Callable[[str], None]
    import_us: int = field(default_factory=now_us)

    def fail(
        self, problem: str, row: int | None = None, column: str | None = None
    ) -> BulkImportError:
        where = ""
        if row is not None:
            where = f"row {row}" + (f" (line {row + 1})" if self.fmt == "csv" else "") + ": "
        if column is not None:
            where += f"column '{column}': "
        return BulkImportError(f"{self.path}: {where}{problem}")


def import_file(
    database: Database,
    what: str,
    path: Path | str,
    *,
    schema: str | None = None,
    kind: str | None = None,
    file_format: str | None = None,
    progress: bool = True,
) -> str:
    """Import `what` (items, users or interactions) from a file, all or nothing; return a report.

    Raises BulkImportError for a file that cannot be imported (then nothing is written).
    Interactions without a timestamp get the import time plus their row number in microseconds,
    so that they keep the file's order and rows of one user and item stay distinct.
    """
    path = Path(path)
    fmt = sql.detect_format(path, file_format)
    if fmt is None:
        raise BulkImportError(f"{path}: unknown format; use .csv, .parquet, .ndjson or .jsonl")
    if what not in ("items", "users", "interactions"):
        raise BulkImportError(f"cannot import {what!r}; one of items, users, interactions")
    if not path.is_file():
        raise BulkImportError(f"{path}: no such file")
    entity = {"items": Entity.ITEM, "users": Entity.USER}.get(what)
    if entity is None and schema is not None:
        raise BulkImportError(
            "--schema is for items and users; interaction columns have fixed types"
        )
    if entity is not None and kind is not None:
        raise BulkImportError("--kind is for interactions")
    try:
        parsed_kind = None if kind is None else InteractionKind.from_name(kind)
        parsed_schema = {} if entity is None or schema is None else _parse_schema(entity, schema)
    except InvalidInput as error:
        raise BulkImportError(error.message) from None

    started = time.perf_counter()
    with tqdm(total=3, desc=f"import {path.name}", unit="phase", disable=not progress) as bar:

        def advance(phase: str) -> None:
            bar.set_postfix_str(phase, refresh=False)
            bar.update(1)

        bar.set_postfix_str("read")

        job = _Job(path, fmt, entity, parsed_schema, parsed_kind, advance)
        try:
            summary = database.write_sync(lambda ctx: _run(ctx, job))
        except _Abort as abort:
            raise abort.error from None
        advance("done")
    return f"imported {summary} from {path} in {time.perf_counter() - started:.2f} s"


def _parse_schema(entity: Entity, schema: str) -> dict[str, PropertyType]:
    """Property types from 'name:type,...' text or a YAML/JSON file mapping names to types."""
    as_path = Path(schema)
    mapping: Any
    if as_path.suffix.lower() in (".yaml", ".yml", ".json") or as_path.is_file():
        try:
            mapping = yaml.safe_load(as_path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise BulkImportError(f"schema {schema}: cannot be read: {error}") from None
        if not isinstance(mapping, dict):
            raise BulkImportError(f"schema {schema}: must map property names to types")
    else:
        mapping = {}
        for part in filter(None, (p.strip() for p in schema.split(","))):
            name, colon, type_name = part.rpartition(":")  # names may contain ':', types cannot
            if not colon or not name:
                raise BulkImportError(f"schema: {part!r} is not name:type")
            mapping[name.strip()] = type_name.strip()
    parsed = {}
    for name, type_name in mapping.items():
        try:
            parsed[str(name)] = parse_property_type(entity, type_name)
        except InvalidInput as error:
            raise BulkImportError(f"schema: property '{name}': {error.message}") from None
    return parsed


def _run(ctx: WriteContext, job: _Job) -> str:
    try:
        if job.entity is None:
            summary = _import_interactions(ctx, job)
        else:
            summary = _import_entities(ctx, job, job.entity)
        # Servers replay the feed's writes; a bulk import they load from a snapshot instead.
        ctx.record(RELOAD_ENTRY)
        return summary
    except BulkImportError as error:
        raise _Abort(error) from None
    except StorageError as error:
        raise _Abort(job.fail(error.message)) from None
    except duckdb.Error as error:
        # DuckDB appends the failing SQL ("LINE 1: ..."), which says nothing about the file.
        reason = str(error).split("\nLINE ")[0].strip()
        raise _Abort(job.fail(f"cannot be read: {reason}")) from None
    finally:
        for table in _TEMP_TABLES:
            with contextlib.suppress(duckdb.Error):  # aborted: the rollback drops them
                ctx.conn.execute(f"DROP TABLE IF EXISTS {table}")


def _stage(ctx: WriteContext, job: _Job, columns: list[str], join: str = "") -> int:
    source = sql.reader(job.path, job.fmt)
    ctx.conn.execute(
        f"CREATE TEMP TABLE {_STAGE} AS SELECT src.{sql.ROW}, {', '.join(columns)} "
        f"FROM {source} AS src {join}"
    )
    counted = ctx.conn.execute(f"SELECT count(*) FROM {_STAGE}").fetchone()
    rows = 0 if counted is None else int(counted[0])
    job.advance(f"validate {rows} rows")
    return rows


def _check_rules(ctx: WriteContext, job: _Job, rules: list[sql.Rule]) -> None:
    failure = sql.first_failure(ctx.conn, rules)
    if failure is None:
        return
    row, rule = failure
    problem = rule.problem
    if rule.value is not None:
        shown = ctx.conn.execute(
            f"SELECT CAST({rule.value} AS VARCHAR) FROM {rule.table} WHERE {sql.ROW} = ?", [row]
        ).fetchone()
        if shown is not None and shown[0] is not None:
            text = str(shown[0])
            problem += f", got {text[:80]!r}" + ("..." if len(text) > 80 else "")
    raise job.fail(problem, row, rule.column)


def _converted(
    job: _Job, label: str, stage: str, sql_type: str, target: sql.Target, rules: list[sql.Rule]
) -> list[str]:
    """The staged select items for one file column, adding a rule if its conversion can fail."""
    conversion = sql.convert(f"src.{quote_identifier(label)}", sql_type, target)
    if conversion is None:
        raise job.fail(
            f"a column of type {sql_type} cannot hold {sql.EXPECTED[target]}", None, label
        )
    items = [f"{conversion.expr} AS {stage}"]
    if conversion.can_fail:
        raw = quote_identifier(f"raw:{stage}")
        source = f"src.{quote_identifier(label)}"
        # JSON values are shown and tested as their text ('abc', not '"abc"').
        items.append(f"{source} ->> '$' AS {raw}" if sql_type == "JSON" else f"{source} AS {raw}")
        problem = f"cannot be read as {sql.EXPECTED[target]}"
        rules.append(
            sql.Rule(_STAGE, label, f"{raw} IS NOT NULL AND {stage} IS NULL", problem, raw)
        )
    return items


# -- items and users -----------------------------------------------------------------------


def _import_entities(ctx: WriteContext, job: _Job, entity: Entity) -> str:
    conn = ctx.conn
    sniffed = sql.describe(conn, sql.reader(job.path, job.fmt, sniff=True))
    id_names = {entity.id_field.lower(), f"{entity.value}_id", "id"}
    id_columns = [name for name, _ in sniffed if name.lower() in id_names]
    if len(id_columns) != 1:
        accepted = f"{entity.id_field}, {entity.value}_id or id"
        count = "no" if not id_columns else "more than one"
        found = ", ".join(repr(name) for name, _ in sniffed)
        raise job.fail(f"the file has {count} id column ({accepted}); its columns: {found}")
    id_label = id_columns[0]
    for name in job.schema:
        if name not in {n for n, _ in sniffed}:
            raise job.fail(f"the schema names '{name}', which is not a column of the file")
    stored = ctx.schema.of(entity)
    rules: list[sql.Rule] = []
    select: list[str] = []
    wanted: dict[str, PropertyType] = {}
    for name, sniffed_type in sniffed:
        source_type = "VARCHAR" if job.fmt == "csv" else sniffed_type
        if name == id_label:
            select += _converted(job, name, ID, source_type, "id", rules)
            continue
        try:
            validate_property_name(entity, name)
        except InvalidInput as error:
            raise job.fail(error.message, None, name) from None
        if name.lower() in {n.lower() for n in wanted}:
            raise job.fail("appears twice (property names are case-insensitive)", None, name)
        ptype = job.schema.get(name) or sql.infer_type(sniffed_type)
        if ptype is None:
            raise job.fail(f"cannot tell the type of a {sniffed_type} column; give it in --schema")
        existing = stored.get(name)
        if name not in job.schema and existing is not None and (ptype, existing.type) in _WIDENS:
            ptype = existing.type
        wanted[name] = ptype
        stage = quote_identifier(f"p{len(wanted)}")
        select += _converted(job, name, stage, source_type, sql.TARGET_OF[ptype], rules)

    rows = _stage(ctx, job, select)
    rules += [
        sql.Rule(_STAGE, id_label, f"{ID} IS NULL", "is empty; every row needs an id"),
        *sql.id_rules(_STAGE, id_label, ID),
    ]
    _check_rules(ctx, job, rules)
    duplicate = sql.first_duplicate(conn, _STAGE, [ID])
    if duplicate is not None:
        raise job.fail(f"repeats the id of row {duplicate[1]}", duplicate[0], id_label)

    job.advance("write")
    created = ensure_properties(ctx, entity, wanted)
    new_ids = _new_ids(ctx, entity, _STAGE, ID)
    create_entities(ctx, entity, new_ids)
    if wanted:
        assignments = ", ".join(
            f"{quote_identifier(name)} = s.p{i}" for i, name in enumerate(wanted, start=1)
        )
        conn.execute(
            f"UPDATE {entity.table} SET {assignments} FROM {_STAGE} AS s "
            f"WHERE {entity.table}.{ID} = s.{ID}"
        )
    ctx.touched_catalog()
    return (
        f"{rows} {entity.table} ({len(new_ids)} new, {rows - len(new_ids)} updated, "
        f"{len(created)} new properties)"
    )


def _new_ids(ctx: WriteContext, entity: Entity, table: str, column: str) -> list[str]:
    """Ids in `table` that the catalog lacks, in order of first appearance in the file."""
    found = ctx.conn.execute(
        f"SELECT {column} AS id FROM {table} AS s WHERE NOT EXISTS "
        f"(SELECT 1 FROM {entity.table} AS e WHERE e.{ID} = s.{column}) ORDER BY s.{sql.ROW}"
    ).fetchnumpy()
    ids: list[str] = found["id"].tolist()
    return ids


# -- interactions --------------------------------------------------------------------------


def _import_interactions(ctx: WriteContext, job: _Job) -> str:
    conn = ctx.conn
    columns = sql.describe(conn, sql.reader(job.path, job.fmt))
    labels: dict[str, str] = {}  # camelCase field -> the file's column
    unknown = []
    for name, _ in columns:
        canonical = sql.FIELD_NAMES.get(name)
        if canonical is None:
            if name != "type":
                unknown.append(repr(name))
        elif canonical in labels:
            raise job.fail(f"'{name}' and '{labels[canonical]}' are the same field")
        else:
            labels[canonical] = name
    if unknown:
        accepted = ", ".join(["type", *sql.FIELDS])
        plural = "s" if len(unknown) > 1 else ""
        raise job.fail(f"unknown column{plural} {', '.join(unknown)} (accepted: {accepted})")
    for required in ("userId", "itemId"):
        if required not in labels:
            raise job.fail(f"the file has no {required} column")
    types = dict(columns)
    rules: list[sql.Rule] = []
    select: list[str] = []
    for name, (stage, target) in sql.FIELDS.items():
        label = labels.get(name)
        if label is None:
            select.append(f"{sql.null_of(target)} AS {stage}")
        else:
            select += _converted(job, label, stage, types[label], target, rules)

    join = ""
    if job.kind is not None:
        if "type" in types:
            raise job.fail("the file has a 'type' column; leave out --kind")
        select.append(f"CAST({job.kind.code} AS UTINYINT) AS kind")
    elif "type" not in types:
        raise job.fail("the file has no 'type' column; give the interaction type with --kind")
    else:
        conn.execute(f"CREATE TEMP TABLE {_KINDS} (name VARCHAR, code UTINYINT)")
        conn.executemany(f"INSERT INTO {_KINDS} VALUES (?, ?)", sql.kind_names())
        text = 'src."type"' if types["type"] == "VARCHAR" else 'CAST(src."type" AS VARCHAR)'
        select += ["m.code AS kind", f"{text} AS raw_type"]
        join = f"LEFT JOIN {_KINDS} AS m ON m.name = lower(replace({text}, '-', '_'))"
        names = ", ".join(k.reql_name for k in InteractionKind)
        unknown_kind = f"unknown interaction type (one of {names})"
        rules += [
            sql.Rule(_STAGE, "type", "raw_type IS NULL", "is empty"),
            sql.Rule(_STAGE, "type", "kind IS NULL", unknown_kind, "raw_type"),
        ]
    rows = _stage(ctx, job, select, join)
    for entity, column in ((Entity.USER, "user_id"), (Entity.ITEM, "item_id")):
        # Checking ids once per distinct id is cheaper, and these tables are needed for the
        # cascade anyway; min(row) keeps the first row that uses each id.
        conn.execute(
            f"CREATE TEMP TABLE {_NEW[entity]} AS SELECT {column} AS id, "
            f"min({sql.ROW}) AS {sql.ROW} FROM {_STAGE} "
            f"WHERE {column} IS NOT NULL GROUP BY {column}"
        )
        label = labels[entity.id_field]
        rules += [sql.Rule(_STAGE, label, f"{column} IS NULL", "is required")]
        rules += sql.id_rules(_NEW[entity], label, "id")
    rules += sql.kind_rules(_STAGE, labels)
    _check_rules(ctx, job, rules)

    ts = sql.final_ts(job.import_us)
    portion = sql.PORTION.code
    keys = ["kind", "user_id", "item_id", f"CASE WHEN kind = {portion} THEN NULL ELSE {ts} END"]
    duplicate = sql.first_duplicate(conn, _STAGE, [*keys, "session_id"])
    same = "same type, userId, itemId and timestamp; view portions: same userId, itemId, sessionId"
    if duplicate is not None:
        raise job.fail(f"repeats row {duplicate[1]} ({same})", duplicate[0])
    stored = sql.first_stored_duplicate(conn, _STAGE, job.import_us)
    if stored is not None:
        raise job.fail(f"is already stored ({same})", stored)

    job.advance("write")
    new_users = _new_ids(ctx, Entity.USER, _NEW[Entity.USER], "id")
    new_items = _new_ids(ctx, Entity.ITEM, _NEW[Entity.ITEM], "id")
    create_entities(ctx, Entity.USER, new_users)
    create_entities(ctx, Entity.ITEM, new_items)
    kinds = sql.owners()
    presented, counted = sql.codes(kinds["auto_presented"]), sql.codes(kinds["amount"])
    conn.execute(
        f"""INSERT INTO interactions (kind, user_id, item_id, ts, recomm_id, additional_data,
                duration, auto_presented, amount, price, profit, rating, portion, session_id,
                time_spent)
            SELECT kind, user_id, item_id, {ts}, recomm_id, additional_data, duration,
                CASE WHEN kind IN {presented} THEN coalesce(auto_presented, false) END,
                CASE WHEN kind IN {counted} THEN coalesce(amount, 1) END,
                price, profit, rating, portion, session_id,
                CASE WHEN kind = {portion} THEN coalesce(time_spent, 0) END
            FROM {_STAGE}"""
    )
    ctx.touched_interactions()
    return f"{rows} interactions ({len(new_users)} new users, {len(new_items)} new items)"
