"""Helpers shared by the built-in functions."""

from __future__ import annotations

from collections.abc import Sequence

from reql.functions import Argument
from reql.types import Type


def never_null(arguments: Sequence[Argument]) -> bool:
    return False


def always_nullable(arguments: Sequence[Argument]) -> bool:
    return True


def cast(sql: str, own: Type, target: Type) -> str:
    """SQL that holds `own` values, cast to how `target` values are held (if that differs)."""
    return sql if own.sql() == target.sql() else f"CAST({sql} AS {target.sql()})"
