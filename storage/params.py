"""Reading request parameters as Recombee types.

Parameters arrive either as JSON values (request bodies, batch `params`) or as text (query
strings). The readers accept both forms, so one handler serves a direct request and the same
request inside a batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from storage.errors import BadParameter

_MISSING: Any = object()


def check_known(params: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Refuse parameters that the endpoint does not define (Recombee answers 400 to those)."""
    allowed_set = set(allowed)
    for name in params:
        if name not in allowed_set:
            known = ", ".join(sorted(allowed_set)) or "none"
            raise BadParameter(name, f"unknown parameter (this endpoint takes: {known})")


def read_str(params: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise BadParameter(name, "is required")
        return None
    if not isinstance(value, str):
        raise BadParameter(name, f"must be a string, got {value!r}")
    return value


def read_bool(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
    raise BadParameter(name, f"must be true or false, got {value!r}")


def read_number(
    params: Mapping[str, Any],
    name: str,
    *,
    required: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float | None:
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise BadParameter(name, "is required")
        return None
    if isinstance(value, bool):
        raise BadParameter(name, f"must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise BadParameter(name, f"must be a number, got {value!r}") from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise BadParameter(name, f"must be a finite number, got {value!r}")
    number = float(value)
    if minimum is not None and number < minimum:
        raise BadParameter(name, f"{value} is below the minimum {minimum:g}")
    if maximum is not None and number > maximum:
        raise BadParameter(name, f"{value} is above the maximum {maximum:g}")
    return number


def read_int(
    params: Mapping[str, Any], name: str, *, default: int | None = None, minimum: int = 0
) -> int | None:
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise BadParameter(name, f"must be an integer, got {value!r}") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadParameter(name, f"must be an integer, got {value!r}")
    if value < minimum:
        raise BadParameter(name, f"must be at least {minimum}, got {value}")
    return value


def read_str_list(params: Mapping[str, Any], name: str) -> list[str] | None:
    """A list of names: a JSON array, or comma-separated text in a query string."""
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        return None
    if isinstance(value, str):
        return [part for part in value.split(",") if part]
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return list(value)
    raise BadParameter(
        name, f"must be a comma-separated list or an array of strings, got {value!r}"
    )
