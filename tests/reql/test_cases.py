"""The table of ReQL cases (cases.yaml), each evaluated against the shop in a real DuckDB file.

A case gives an expression, optionally its purpose (filter, booster, value), the context item and
user, and what it must give: the ids that pass (`ids`), booster values (`boosts`), values per item
(`value` at `at`, or `values`), or an error class with its position (`error`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import reql
from server.serving.expressions import BadExpression, Context, condition
from server.serving.reql_engine import ExpressionEngine
from storage import catalog
from storage.database import Database
from storage.schema import Entity
from tests.reql.shop import build_shop

CASES_FILE = Path(__file__).with_name("cases.yaml")
CASES: list[dict[str, Any]] = yaml.safe_load(CASES_FILE.read_text())
KNOWN_KEYS = {
    "expr",
    "purpose",
    "item",
    "user",
    "candidate",
    "ids",
    "boosts",
    "value",
    "at",
    "values",
    "error",
    "note",
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database, _ = build_shop(tmp_path_factory.mktemp("shop") / "shop.duckdb")
    yield database
    database.close()


@pytest.fixture(scope="module")
def engine(shop: Database) -> ExpressionEngine:
    return ExpressionEngine(shop)


def _case_id(case: dict[str, Any]) -> str:
    return str(case["expr"])[:60]


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_case(case: dict[str, Any], shop: Database, engine: ExpressionEngine) -> None:
    assert set(case) <= KNOWN_KEYS, f"unknown keys {set(case) - KNOWN_KEYS}"
    expectations = {"ids", "boosts", "value", "values", "error"} & set(case)
    assert len(expectations) == 1, "a case states exactly one expectation"
    text = str(case["expr"])
    context = Context(item_id=case.get("item"), user_id=case.get("user"))
    purpose = reql.Purpose(
        case.get(
            "purpose",
            "value"
            if {"value", "values"} & set(case)
            else "booster"
            if "boosts" in case
            else "filter",
        )
    )
    try:
        outcome = shop.read_sync(lambda ctx: _evaluate(ctx, engine, case, text, purpose, context))
    except BadExpression as failure:
        error = failure.reql_error
        assert "error" in case, f"unexpected error: {error}"
        expected = case["error"]
        assert type(error).__name__ == expected["class"], str(error)
        assert (error.line, error.column) == (expected.get("line", 1), expected["column"]), str(
            error
        )
        if "message" in expected:
            assert expected["message"] in error.message
        assert str(error).startswith("ReQL: ")
        return
    assert "error" not in case, f"expected {case['error']}, got {outcome!r}"
    if "ids" in case:
        assert outcome == sorted(case["ids"])
    elif "boosts" in case:
        for item_id, expected_boost in case["boosts"].items():
            assert outcome[item_id] == pytest.approx(expected_boost), item_id
    elif "value" in case:
        _assert_value(outcome[case.get("at", "i1")], case["value"])
    else:
        for item_id, expected_value in case["values"].items():
            _assert_value(outcome[item_id], expected_value)


def _evaluate(
    ctx: Any,
    engine: ExpressionEngine,
    case: dict[str, Any],
    text: str,
    purpose: reql.Purpose,
    context: Context,
) -> Any:
    if case.get("candidate") == "user":
        where = condition(ctx, text, candidate=Entity.USER)
        return catalog.list_entities(
            ctx,
            Entity.USER,
            count=None,
            offset=0,
            return_properties=False,
            included_properties=None,
            condition=where,
        )
    ids = catalog.list_entities(
        ctx,
        Entity.ITEM,
        count=None,
        offset=0,
        return_properties=False,
        included_properties=None,
    )
    rows = ctx.conn.execute('SELECT "$id", "$idx" FROM items').fetchall()
    index = dict(rows)
    if purpose is reql.Purpose.FILTER:
        mask = engine.mask(ctx, text, context)
        return sorted(item_id for item_id in ids if mask[index[item_id]])
    if purpose is reql.Purpose.BOOSTER:
        boosts = engine.boosts(ctx, text, context)
        return {item_id: float(boosts[index[item_id]]) for item_id in ids}
    values = engine.values(ctx, text, ids, context)
    return dict(zip(ids, values, strict=True))


def _assert_value(actual: Any, expected: Any) -> None:
    if isinstance(expected, float) and math.isnan(expected):
        assert actual is None  # NaN has no JSON form; values give null for it
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-9)
    elif isinstance(expected, dict) and isinstance(actual, dict):
        assert set(actual) == set(expected)
        for key in expected:
            _assert_value(actual[key], expected[key])
    elif isinstance(expected, list) and isinstance(actual, list):
        assert len(actual) == len(expected), (actual, expected)
        for a, e in zip(actual, expected, strict=True):
            _assert_value(a, e)
    else:
        assert actual == expected
        assert type(actual) is type(expected) or expected is None


def test_the_table_is_large_and_covers_every_function() -> None:
    assert len(CASES) >= 250
    texts = " ".join(str(c["expr"]) for c in CASES)
    for name in reql.BUILTIN_FUNCTIONS:
        assert f"{name}" in texts, f"no case calls {name}()"
    for error_class in ("ReqlSyntaxError", "ReqlNameError", "ReqlTypeError", "ReqlLimitError"):
        assert any(c.get("error", {}).get("class") == error_class for c in CASES), error_class
