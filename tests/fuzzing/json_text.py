"""JSON built as text: hostile scalars and values that Python's `json` would never write."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

from hypothesis import strategies as st


def jstr(value: str) -> str:
    """A JSON string literal; lone surrogates come out as `\\udxxx` escapes."""
    return json.dumps(value)


def huge_int_text(digits: int, negative: bool = False) -> str:
    text = "9" + "8" * (digits - 1)
    return ("-" if negative else "") + text


@functools.cache
@st.composite
def nasty_scalars(draw: st.DrawFn, tame: bool = False) -> str:
    """JSON text of one hostile scalar value. `tame`: only values that a body check on depth,
    surrogates, 64-bit integers and finite numbers lets through, odd as they are, so that the
    handlers behind it get them."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        if tame:
            return draw(st.sampled_from(INT64_EDGES))
        return huge_int_text(draw(st.integers(300, 5000)), draw(st.booleans()))
    if choice == 1:
        return draw(st.sampled_from(FINITE_EXTREMES if tame else HUGE_NUMBERS))
    if choice == 2:
        return draw(st.sampled_from(INT64_EDGES if tame else EDGE_NUMBERS))
    if choice == 3:
        return jstr(draw(st.text(max_size=12) if tame else surrogate_text()))
    if choice == 4:
        return draw(st.sampled_from(ODD_STRINGS if tame else SURROGATE_STRINGS))
    if choice == 5:
        bound = 2**63 - 1 if tame else 2**70
        return json.dumps(draw(st.integers(-bound, bound)))
    if choice == 6:
        return json.dumps(draw(st.floats(allow_nan=False, allow_infinity=False)))
    if choice == 7:
        return jstr("x" * draw(st.sampled_from([257, 10_001, 100_000])))
    if choice == 8:
        return jstr(draw(st.text(max_size=30)))
    return draw(st.sampled_from(ODD_TIMES))


HUGE_NUMBERS = ("1e400", "-1e400", "1e-400", "1E+999", "-0.0", "0e0", "1e308", "-1e308")
EDGE_NUMBERS = (
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "4294967296",
    "2147483648",
    "1.7976931348623157e308",
    "5e-324",
    "1e20",
    "-1e20",
    "253402300800",
    "-62135596801",
)
FINITE_EXTREMES = ("1e308", "-1e308", "1e-400", "-0.0", "0e0", "5e-324", "-5e-324", "1e300")
INT64_EDGES = (
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775806",
    "4294967296",
    "2147483648",
    "-2147483649",
    "253402300800",
    "-62135596801",
    "0",
    "-1",
)
SURROGATE_STRINGS = ('"\\ud800"', '"\\udfff"', '"a\\ud83d"', '"\\ud83d\\ude00\\udc00"')
ODD_STRINGS = (
    '"\\u0000"',
    '"\\ud83d\\ude00"',
    '"\\u202e"',
    '"e\\u0301"',
    '"\\ufeff"',
    '"\\uffff"',
    '"%00"',
    '"../../etc/passwd"',
    '"\'; DROP TABLE items; --"',
    '"\\"\\\\"',
)
ODD_TIMES = (
    '"2021-01-01T00:00:00Z"',
    '"9999-12-31T23:59:59"',
    '"0000-01-01"',
    '"0001-01-01T00:00:00"',
    '"+275760-09-13"',
    '"2021-02-30"',
    '"2021-01-01T00:00:00+99:00"',
    '"1e400"',
)


@functools.cache
def surrogate_text() -> st.SearchStrategy[str]:
    """Short text with lone surrogates mixed in (json.dumps writes them as escapes)."""
    return st.lists(
        st.one_of(
            st.sampled_from(["\ud800", "\udfff", "\udbff", "\udc00", "a", "é", "\U0001f600"]),
            st.characters(codec=None, categories=["Cs", "Lu", "Nd"]),
        ),
        min_size=1,
        max_size=6,
    ).map("".join)


def deep_json(depth: int, opener: str = "[") -> str:
    if opener == "{":
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth + "1" + "]" * depth


@functools.cache
@st.composite
def json_values(draw: st.DrawFn, depth: int = 0, tame: bool = False) -> str:
    """JSON text of a random value: hostile scalars, plain ones, small containers, deep nests
    (`tame`: at most 60 levels, and every scalar tame)."""
    choice = draw(st.integers(0, 19 if depth < 3 else 11))
    if choice <= 7:
        return draw(nasty_scalars(tame))
    if choice <= 11:
        return draw(st.sampled_from(PLAIN_VALUES))
    if choice <= 14:
        values = draw(st.lists(json_values(depth + 1, tame), max_size=3))
        return "[" + ",".join(values) + "]"
    if choice <= 17:
        key_text = st.text(max_size=8) if tame else st.one_of(st.text(max_size=8), surrogate_text())
        keys = draw(st.lists(key_text, max_size=3))
        values = [draw(json_values(depth + 1, tame)) for _ in keys]
        return "{" + ",".join(f"{jstr(k)}:{v}" for k, v in zip(keys, values, strict=True)) + "}"
    if choice == 18:
        deepest = 60 if tame else 5000
        return deep_json(draw(st.integers(2, deepest)), draw(st.sampled_from("[{")))
    return draw(st.sampled_from(PLAIN_VALUES))


PLAIN_VALUES = ("true", "false", "null", '""', "[]", "{}", '"x"', "0", "-1", "1", "0.5", '["a"]')


def json_object(fields: Sequence[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{jstr(k)}:{v}" for k, v in fields) + "}"
