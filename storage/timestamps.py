"""Timestamps: Recombee accepts ISO-8601 text or epoch seconds; reqo stores UTC microseconds."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

from storage.errors import BadParameter

_EPOCH = datetime(1970, 1, 1)
# DuckDB's TIMESTAMP reaches year 294247; keep to what Python's datetime can also hold.
_MAX_EPOCH_SECONDS = 253402300799.0  # 9999-12-31T23:59:59Z


_FIXED_NOW: ContextVar[int | None] = ContextVar("reqo_fixed_now", default=None)


def now_us() -> int:
    """The current time in epoch microseconds (the fixed time, inside `fixed_now`)."""
    fixed = _FIXED_NOW.get()
    return time.time_ns() // 1000 if fixed is None else fixed


@contextlib.contextmanager
def fixed_now(us: int) -> Iterator[None]:
    """Make `now_us` return `us` in this context: a write that the change feed replays on
    another process must default its timestamps to the time the writer gave it, not the
    replaying process's time."""
    token = _FIXED_NOW.set(us)
    try:
        yield
    finally:
        _FIXED_NOW.reset(token)


def parse_timestamp(value: object, parameter: str = "timestamp") -> int:
    """Parse ISO-8601 text or epoch seconds (a number, or a number as text) into epoch microseconds.

    Naive ISO-8601 text is read as UTC. Times before 1970 are refused, as Recombee refuses them.
    """
    if isinstance(value, bool) or value is None:
        raise BadParameter(parameter, "must be an ISO-8601 string or epoch seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = _parse_iso(text, parameter)
    else:
        raise BadParameter(parameter, "must be an ISO-8601 string or epoch seconds")
    if not math.isfinite(seconds) or seconds < 0:
        raise BadParameter(parameter, f"{value!r} is not a time at or after 1970-01-01T00:00:00Z")
    if seconds > _MAX_EPOCH_SECONDS:
        raise BadParameter(parameter, f"{value!r} is after the year 9999")
    return round(seconds * 1_000_000)


def _parse_iso(text: str, parameter: str) -> float:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadParameter(
            parameter, f"{text!r} is neither ISO-8601 (e.g. 2024-05-01T12:00:00Z) nor epoch seconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def us_to_datetime(us: int) -> datetime:
    """Epoch microseconds as a naive UTC datetime (what DuckDB's TIMESTAMP holds)."""
    return _EPOCH + timedelta(microseconds=us)


def datetime_to_epoch(value: datetime) -> float:
    """A naive UTC datetime as epoch seconds."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return (value - _EPOCH) / timedelta(seconds=1)
