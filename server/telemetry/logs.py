"""Structured logs: JSON lines for a log collector, or readable lines on a terminal.

Every record carries the time (UTC), level, role (`server`, `writer`, `trainer`, `supervisor`),
process id and message; a record logged while a request is handled also carries its request id.
Fields passed as `extra=` (`event`, `db`, `endpoint`, `scenario`, `status`, `latency_ms`, …) are
fields of the JSON object, or `key=value` pairs after a text line's message.

Nothing here logs a query string: request lines are logged by path (`server.telemetry.middleware`),
so that a signature (`hmac_sign`) or a token never reaches a log.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import orjson

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
"""The id of the request being handled (in its task and in the threads it starts)."""

_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "color_message"}  # uvicorn's copy of the message, in colours
)
_CONTROL = {code: f"\\x{code:02x}" for code in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t"}


class _Identity:
    """Who is logging: set once per process by `configure_logging`."""

    role = "reqo"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's `extra=` fields, and its request id."""
    fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
    request_id = REQUEST_ID.get()
    if request_id is not None and "request_id" not in fields:
        fields["request_id"] = request_id
    return fields


def _utc(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "role": _Identity.role,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """A line for people: time, role[pid], level, message, then `key=value` fields."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        stamp += f".{int(record.created % 1 * 1000):03d}"
        line = f"{stamp} {_Identity.role}[{record.process}] {record.levelname:<7} "
        line += record.getMessage().translate(_CONTROL)
        fields = _fields(record)
        if fields.pop("event", None) in ("request", "slow_request"):
            for shown_in_message in ("method", "path", "status", "latency_ms"):
                fields.pop(shown_in_message, None)
        fields = {k: v for k, v in fields.items() if v != ""}
        if fields:
            line += "  " + " ".join(f"{k}={_shown(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    text = text.translate(_CONTROL)
    return repr(text) if (" " in text or not text) else text


def use_json(log_format: str) -> bool:
    """Whether `format` (auto, json, text) means JSON lines here: auto does unless stderr is a
    terminal."""
    if log_format == "auto":
        return not sys.stderr.isatty()
    return log_format == "json"


def configure_logging(*, role: str, level: str = "info", log_format: str = "auto") -> None:
    """Send every logger's records to stderr in the chosen format (replacing what was there)."""
    _Identity.role = role
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json(log_format) else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Where uvicorn logs, its records go through the same handler.
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
