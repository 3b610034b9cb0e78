"""SQL building blocks of the bulk importer: file readers, type conversions and validation rules.

Every conversion is one SQL expression that yields the target type, or NULL where a value cannot
be converted; a value that is present in the file but NULL after conversion is a bad value. That
keeps all checks vectorised: a rule is a condition, and the first bad row is `min(row)` over it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb

from storage.interactions import InteractionKind
from storage.schema import ID_PATTERN, MAX_ID_LENGTH, PropertyType

Format = Literal["csv", "parquet", "ndjson"]
Target = Literal["int", "double", "string", "boolean", "timestamp", "set", "id", "json"]

ROW = '"$row"'
"""The 1-based data row number of each staged row (no property name can contain '$')."""

ID_REGEX = ID_PATTERN.pattern  # RE2, which DuckDB uses, reads it as Python does
_MAX_EPOCH_SECONDS = 253402300799  # 9999-12-31T23:59:59Z, as storage.timestamps allows
_MIN_TS = "TIMESTAMP '1970-01-01 00:00:00'"
_MAX_TS = "TIMESTAMP '9999-12-31 23:59:59.999999'"

TARGET_OF: dict[PropertyType, Target] = {
    PropertyType.INT: "int",
    PropertyType.DOUBLE: "double",
    PropertyType.STRING: "string",
    PropertyType.BOOLEAN: "boolean",
    PropertyType.TIMESTAMP: "timestamp",
    PropertyType.SET: "set",
    PropertyType.IMAGE: "string",
    PropertyType.IMAGE_LIST: "set",
}
EXPECTED: dict[Target, str] = {
    "int": "an integer",
    "double": "a finite number",
    "string": "text",
    "boolean": "true/false (or 1/0)",
    "timestamp": "ISO-8601 text or epoch seconds, at or after 1970 and before 10000",
    "set": 'a list of strings (a JSON array like ["a","b"], or a|b)',
    "id": "an id (text, or an integer)",
    "json": "a JSON object",
}

_INTEGERS = re.compile(r"U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)")
_FLOATS = re.compile(r"FLOAT|DOUBLE|DECIMAL\(\d+,\s*\d+\)")
_TIMES = re.compile(r"DATE|TIMESTAMP(_S|_MS|_NS| WITH TIME ZONE)?")


def string_literal(text: str) -> str:
    """A SQL string literal (paths and names come from users; quoting keeps SQL safe)."""
    return "'" + text.replace("'", "''") + "'"


def detect_format(path: Path, explicit: str | None) -> Format | None:
    """The file format from the explicit argument or the file suffix."""
    name = (explicit or path.suffix.lstrip(".")).lower()
    if name == "csv":
        return "csv"
    if name == "parquet":
        return "parquet"
    if name in ("ndjson", "jsonl"):
        return "ndjson"
    return None


def reader(path: Path, fmt: Format, *, sniff: bool = False) -> str:
    """A table function over the file; its rows carry ROW, numbered in file order.

    CSV is staged as text (`sniff=False`) so that every cell converts under our rules and a bad
    cell names its row, rather than failing DuckDB's read half-way through the file.
    """
    file = string_literal(str(path))
    if fmt == "parquet":
        # The Parquet reader numbers rows itself: no window function, so the scan stays parallel.
        return (
            f"(SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS {ROW} "
            f"FROM read_parquet({file}, file_row_number = true))"
        )
    if fmt == "csv":
        # The header is required: the column names say what each column is.
        source = f"read_csv({file}, header = true{'' if sniff else ', all_varchar = true'})"
    else:
        # Sampling the whole file: with a partial sample, DuckDB drops keys first seen after it
        # and turns later values of a column sampled as all-null into NULLs, silently.
        source = f"read_json({file}, format = 'newline_delimited', sample_size = -1)"
    return f"(SELECT *, row_number() OVER () AS {ROW} FROM {source})"


def describe(conn: duckdb.DuckDBPyConnection, table_sql: str) -> list[tuple[str, str]]:
    """The columns (name, DuckDB type) of a table expression, without ROW."""
    rows = conn.execute(f"DESCRIBE SELECT * FROM {table_sql}").fetchall()
    return [(str(r[0]), str(r[1])) for r in rows if r[0] != "$row"]


def infer_type(sql_type: str) -> PropertyType | None:
    """The property type that a column of this DuckDB type holds, if there is one."""
    if _INTEGERS.fullmatch(sql_type):
        return PropertyType.INT
    if _FLOATS.fullmatch(sql_type):
        return PropertyType.DOUBLE
    if sql_type == "VARCHAR":
        return PropertyType.STRING
    if sql_type == "BOOLEAN":
        return PropertyType.BOOLEAN
    if _TIMES.fullmatch(sql_type):
        return PropertyType.TIMESTAMP
    if sql_type == "VARCHAR[]":
        return PropertyType.SET
    return None


@dataclass(frozen=True)
class Conversion:
    """How a source column becomes a target value; `can_fail` says whether to check it."""

    expr: str
    can_fail: bool


def null_of(target: Target) -> str:
    """A NULL of the target's SQL type (for columns that the file lacks)."""
    return f"CAST(NULL AS {_TARGET_SQL[target]})"


def convert(v: str, sql_type: str, target: Target) -> Conversion | None:
    """The conversion of source expression `v` (of `sql_type`) to `target`, or None if none."""
    if sql_type == '"NULL"':
        return Conversion(null_of(target), False)
    if sql_type == "JSON":
        if target == "json":
            return Conversion(
                f"CASE WHEN json_type({v}) = 'OBJECT' THEN CAST({v} AS VARCHAR) END", True
            )
        if target == "set":
            return _from_text(f"CAST({v} AS VARCHAR)", target)
        return _from_text(f"({v} ->> '$')", target)
    if sql_type == "VARCHAR":
        return _from_text(v, target)
    if _INTEGERS.fullmatch(sql_type) or _FLOATS.fullmatch(sql_type):
        return _from_number(v, bool(_INTEGERS.fullmatch(sql_type)), target)
    if sql_type == "BOOLEAN":
        if target == "boolean":
            return Conversion(v, False)
        return Conversion(f"CAST({v} AS VARCHAR)", False) if target == "string" else None
    if _TIMES.fullmatch(sql_type):
        # With the connection's TimeZone = 'UTC', TIMESTAMPTZ -> TIMESTAMP is the UTC wall time.
        return (
            Conversion(_ts_range(f"CAST({v} AS TIMESTAMP)"), True)
            if target == "timestamp"
            else None
        )
    if sql_type == "VARCHAR[]" and target == "set":
        return Conversion(f"CASE WHEN list_count({v}) = len({v}) THEN {_dedupe(v)} END", True)
    if target == "json" and sql_type.startswith(("STRUCT", "MAP")):
        return Conversion(f"CAST(to_json({v}) AS VARCHAR)", False)
    return None


_TARGET_SQL: dict[Target, str] = {
    "int": "BIGINT",
    "double": "DOUBLE",
    "string": "VARCHAR",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "set": "VARCHAR[]",
    "id": "VARCHAR",
    "json": "VARCHAR",
}


def _from_text(v: str, target: Target) -> Conversion:
    number = f"TRY_CAST({v} AS DOUBLE)"
    if target in ("string", "id"):
        return Conversion(v, False)
    if target == "int":
        return Conversion(
            f"CASE WHEN regexp_full_match(trim({v}), '[+-]?[0-9]+') "
            f"THEN TRY_CAST(trim({v}) AS BIGINT) "
            f"WHEN {number} = trunc({number}) THEN TRY_CAST({number} AS BIGINT) END",
            True,
        )
    if target == "double":
        return Conversion(f"CASE WHEN isfinite({number}) THEN {number} END", True)
    if target == "boolean":
        return Conversion(
            f"CASE lower(trim({v})) WHEN 'true' THEN true WHEN '1' THEN true "
            "WHEN 'false' THEN false WHEN '0' THEN false END",
            True,
        )
    if target == "timestamp":
        iso = _ts_range(f"CAST(TRY_CAST({v} AS TIMESTAMPTZ) AS TIMESTAMP)")
        return Conversion(
            f"CASE WHEN {number} IS NOT NULL THEN {_epoch(number)} ELSE {iso} END", True
        )
    if target == "json":
        # Nested CASEs, because DuckDB evaluates both sides of AND and json_type raises on junk.
        return Conversion(
            f"CASE WHEN json_valid({v}) THEN CASE WHEN json_type({v}) = 'OBJECT' THEN {v} END END",
            True,
        )
    # A set: a JSON array of strings, or '|'-separated text.
    element_types = f"json_type({v}, '$[*]')"
    all_strings = f"coalesce(list_bool_and(list_transform({element_types}, {_IS_STRING})), true)"
    from_json = _dedupe(f"CAST(CAST({v} AS JSON) AS VARCHAR[])")
    from_pipes = _dedupe(f"list_filter(string_split({v}, '|'), {_NOT_EMPTY})")
    return Conversion(
        f"CASE WHEN starts_with(ltrim({v}), '[') THEN "
        f"CASE WHEN json_valid({v}) THEN CASE WHEN json_type({v}) = 'ARRAY' THEN "
        f"CASE WHEN {all_strings} THEN {from_json} END END END "
        f"ELSE {from_pipes} END",
        True,
    )


_IS_STRING = 'lambda "$t": "$t" = \'VARCHAR\''
_NOT_EMPTY = 'lambda "$e": "$e" <> \'\''


def _from_number(v: str, integral: bool, target: Target) -> Conversion | None:
    if target == "int":
        if integral:
            return Conversion(f"TRY_CAST({v} AS BIGINT)", True)
        return Conversion(f"CASE WHEN {v} = trunc({v}) THEN TRY_CAST({v} AS BIGINT) END", True)
    if target == "double":
        if integral:
            return Conversion(f"CAST({v} AS DOUBLE)", False)
        return Conversion(
            f"CASE WHEN isfinite(CAST({v} AS DOUBLE)) THEN CAST({v} AS DOUBLE) END", True
        )
    if target == "timestamp":
        return Conversion(_epoch(f"CAST({v} AS DOUBLE)"), True)
    if target == "string" or (target == "id" and integral):
        return Conversion(f"CAST({v} AS VARCHAR)", False)
    return None


def _epoch(seconds: str) -> str:
    # NaN compares greater than any number in DuckDB, so the upper bound also refuses it.
    return (
        f"CASE WHEN {seconds} >= 0 AND {seconds} <= {_MAX_EPOCH_SECONDS} "
        f"THEN make_timestamp(CAST(round({seconds} * 1000000) AS BIGINT)) END"
    )


def _ts_range(ts: str) -> str:
    return f"CASE WHEN {ts} >= {_MIN_TS} AND {ts} <= {_MAX_TS} THEN {ts} END"


def _dedupe(values: str) -> str:
    # Order-preserving, as storage.schema.coerce_value keeps the first of equal elements.
    return f'list_filter({values}, lambda "$e", "$i": list_position({values}, "$e") = "$i")'


@dataclass(frozen=True)
class Rule:
    """A validation rule: rows of `table` where `condition` holds are bad."""

    table: str
    column: str
    condition: str
    problem: str
    value: str | None = None


def id_rules(table: str, column: str, v: str) -> list[Rule]:
    """Rules for the non-null ids `v` in `table`: Recombee's length limit and pattern."""
    return [
        Rule(
            table,
            column,
            f"length({v}) > {MAX_ID_LENGTH}",
            f"is longer than {MAX_ID_LENGTH} characters",
        ),
        Rule(
            table,
            column,
            f"NOT regexp_full_match({v}, {string_literal(ID_REGEX)})",
            f"must match ^{ID_REGEX}$",
            v,
        ),
    ]


def first_failure(conn: duckdb.DuckDBPyConnection, rules: list[Rule]) -> tuple[int, Rule] | None:
    """The first bad row over all rules (one scan per table); ties go to the earlier rule."""
    found: list[tuple[int, int, Rule]] = []
    tables = list(dict.fromkeys(rule.table for rule in rules))
    for table in tables:
        mine = [(i, rule) for i, rule in enumerate(rules) if rule.table == table]
        columns = ", ".join(f"min({ROW}) FILTER (WHERE {rule.condition})" for _, rule in mine)
        result = conn.execute(f"SELECT {columns} FROM {table}").fetchone()
        assert result is not None
        for (i, rule), row in zip(mine, result, strict=True):
            if row is not None:
                found.append((int(row), i, rule))
    if not found:
        return None
    row, _, rule = min(found, key=lambda f: (f[0], f[1]))
    return row, rule


def first_duplicate(
    conn: duckdb.DuckDBPyConnection, table: str, keys: list[str]
) -> tuple[int, int] | None:
    """The first row that repeats the key of an earlier row, and that earlier row."""
    key_list = ", ".join(keys)
    counted = conn.execute(
        f"SELECT count(*) = count(DISTINCT hash({key_list})) FROM {table}"
    ).fetchone()
    # Hashing makes the common case (no duplicates) a cheap aggregate; a collision only costs
    # the exact query below.
    if counted is not None and counted[0]:
        return None
    named = ", ".join(f"{key} AS k{i}" for i, key in enumerate(keys))
    names = ", ".join(f"k{i}" for i in range(len(keys)))
    same = " AND ".join(f"s.k{i} IS NOT DISTINCT FROM d.k{i}" for i in range(len(keys)))
    row = conn.execute(
        f"""WITH s AS (SELECT {ROW} AS r, {named} FROM {table}),
                 d AS (SELECT {names}, min(r) AS first FROM s GROUP BY ALL HAVING count(*) > 1)
            SELECT min(s.r) AS second, d.first FROM s JOIN d ON {same} AND s.r > d.first
            GROUP BY d.first ORDER BY second LIMIT 1"""
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


# -- interactions --------------------------------------------------------------------------

FIELDS: dict[str, tuple[str, Target]] = {
    "userId": ("user_id", "id"),
    "itemId": ("item_id", "id"),
    "timestamp": ("ts", "timestamp"),
    "recommId": ("recomm_id", "string"),
    "additionalData": ("additional_data", "json"),
    "duration": ("duration", "double"),
    "autoPresented": ("auto_presented", "boolean"),
    "amount": ("amount", "double"),
    "price": ("price", "double"),
    "profit": ("profit", "double"),
    "rating": ("rating", "double"),
    "portion": ("portion", "double"),
    "sessionId": ("session_id", "id"),
    "timeSpent": ("time_spent", "double"),
}
"""The columns of an interactions file (besides `type`): camelCase name -> staged column, target."""

FIELD_NAMES = {
    **{name: name for name in FIELDS},
    **{stage: name for name, (stage, _) in FIELDS.items()},
}
"""Accepted column names (camelCase, or the snake_case of the staged column) -> camelCase."""

PORTION = InteractionKind.VIEW_PORTION


def kind_names() -> list[tuple[str, int]]:
    """Each accepted spelling of a kind with its code, as InteractionKind.from_name accepts them."""
    names = {
        name: kind.code
        for kind in InteractionKind
        for name in (kind.value, kind.reql_name, kind.reql_name.rstrip("s"))
    }
    return list(names.items())


def owners() -> dict[str, list[InteractionKind]]:
    """For each kind-specific staged column, the kinds that have it."""
    found: dict[str, list[InteractionKind]] = {}
    for kind in InteractionKind:
        for name in kind.fields:
            found.setdefault(FIELDS[name][0], []).append(kind)
    return found


def codes(kinds: list[InteractionKind]) -> str:
    """A SQL tuple of the kinds' codes."""
    return "(" + ", ".join(str(kind.code) for kind in kinds) + ")"


def kind_rules(table: str, labels: dict[str, str]) -> list[Rule]:
    """The per-kind rules of Recombee's interaction endpoints; `labels` maps fields to columns.

    A field that the file lacks is NULL throughout, so only its "required" rules can fail;
    leaving out the others keeps the validation scan short.
    """
    rating, portion = InteractionKind.RATING.code, PORTION.code
    rules = [
        Rule(
            table,
            labels.get("rating", "rating"),
            f"kind = {rating} AND rating IS NULL",
            "is required for ratings",
        ),
        Rule(
            table,
            labels.get("portion", "portion"),
            f"kind = {portion} AND portion IS NULL",
            "is required for view portions",
        ),
    ]

    def rule(name: str, condition: str, problem: str) -> None:
        if name in labels:
            rules.append(Rule(table, labels[name], condition, problem, FIELDS[name][0]))

    rule("rating", "rating < -1 OR rating > 1", "must be between -1 and 1")
    rule("portion", "portion < 0 OR portion > 1", "must be between 0 and 1")
    if "sessionId" in labels:
        rules += id_rules(table, labels["sessionId"], "session_id")
    for name in ("amount", "duration", "timeSpent"):
        rule(name, f"{FIELDS[name][0]} < 0", "must not be negative")
    for stage, kinds in owners().items():
        names = ", ".join(kind.reql_name for kind in kinds)
        rule(
            FIELD_NAMES[stage],
            f"{stage} IS NOT NULL AND kind NOT IN {codes(kinds)}",
            f"must be empty for this interaction type (it belongs to {names})",
        )
    return rules


def final_ts(import_us: int, table: str = "") -> str:
    """The timestamp of a staged row: its own, or the import time plus its row in microseconds."""
    return f"coalesce({table}ts, make_timestamp({import_us} + {table}{ROW} - 1))"


def first_stored_duplicate(
    conn: duckdb.DuckDBPyConnection, table: str, import_us: int
) -> int | None:
    """The first staged row that repeats a stored interaction."""
    if conn.execute("SELECT 1 FROM interactions LIMIT 1").fetchone() is None:
        return None
    found = conn.execute(
        f"""SELECT min(s.{ROW}) FROM {table} AS s JOIN interactions AS i
              ON i.kind = s.kind AND i.user_id = s.user_id AND i.item_id = s.item_id
             AND (CASE WHEN s.kind = {PORTION.code}
                       THEN i.session_id IS NOT DISTINCT FROM s.session_id
                       ELSE i.ts = {final_ts(import_us, "s.")} END)"""
    ).fetchone()
    return None if found is None or found[0] is None else int(found[0])
