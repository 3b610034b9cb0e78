"""String functions."""

from __future__ import annotations

from reql import types as t
from reql.functions import (
    STRING_ARG,
    Function,
    simple,
)
from reql.types import Type


def _string_function(name: str, sql: str, returns: Type, count: int, words: str) -> Function:
    return simple(name, [STRING_ARG] * count, returns, sql, description=words)


FUNCTIONS: list[Function] = [
    _string_function("upper", "upper({0})", t.STRING, 1, "upper case"),
    _string_function("lower", "lower({0})", t.STRING, 1, "lower case"),
    _string_function(
        "split",
        "string_split({0}, {1})",
        t.array_of(t.STRING),
        2,
        "the parts of a string between separators",
    ),
    _string_function(
        "contains", "contains({0}, {1})", t.BOOLEAN, 2, "whether the string contains the other"
    ),
    _string_function(
        "starts_with",
        "starts_with({0}, {1})",
        t.BOOLEAN,
        2,
        "whether the string starts with the prefix",
    ),
    _string_function(
        "ends_with", "suffix({0}, {1})", t.BOOLEAN, 2, "whether the string ends with the suffix"
    ),
    _string_function(
        "matches",
        "regexp_matches({0}, {1})",
        t.BOOLEAN,
        2,
        "whether an RE2 regular expression matches part of the string",
    ),
    _string_function("length", "length({0})", t.INT, 1, "the number of characters"),
]
