"""Request bodies as JSON that the rest of the server can trust.

Python's `json` module accepts documents that later break code far from the parser: integers
of hundreds of digits (`float()` overflows on them), `1e400` (read as infinity), nesting deep
enough to exhaust the interpreter's stack, and `\\ud800` escapes that decode to lone surrogates,
which no UTF-8 encoder (DuckDB's, the response's) accepts. Each is refused here with a 400 that
says what is wrong, before any handler sees the body.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from server.api.auth import AUTH_PARAMETERS
from server.api.operations import Params, read_body
from storage.errors import InvalidInput

MAX_BODY_BYTES = 64 * 2**20
"""A full batch of 10,000 requests takes a few MB; anything far larger is refused with 413."""
MAX_DEPTH = 64
"""The deepest nesting of arrays and objects a body may have (a batch needs 6)."""
MIN_INT, MAX_INT = -(2**63), 2**63 - 1
"""JSON integers must fit in 64 bits, as DuckDB's BIGINT and ReQL's integers do."""

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class BadBody(InvalidInput):
    """A request body that is not acceptable JSON (400)."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"the request body {problem}")


async def read_params(request: Request) -> tuple[Params, bytes]:
    """The query parameters (without the signature) and the JSON body object; and the body's
    bytes (a strictly signed request's digest covers them)."""
    query = {k: v for k, v in request.query_params.items() if k not in AUTH_PARAMETERS}
    raw = await read_body(request, MAX_BODY_BYTES)
    if not raw.strip():
        return Params(query=query), raw
    return Params(query=query, body=parse_object(raw)), raw


def parse_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from a request body; BadBody for anything else (see the module docs)."""
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise BadBody("must be a JSON object")
    return body


def parse_json(raw: bytes) -> Any:
    """A JSON value that the rest of the server can trust; BadBody where it is not one."""
    try:
        body = json.loads(
            raw, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant
        )
    except RecursionError:
        raise BadBody(f"is nested too deeply (the limit is {MAX_DEPTH} levels)") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise BadBody(f"is not valid JSON: {error}") from None
    # Counting brackets bounds the depth from above, so most bodies need no walk at all.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
        _check_depth(body)
    if _SURROGATE_ESCAPE.search(raw):
        _check_text(body, "")
    return body


def _bounded_int(text: str) -> int:
    # More than 20 characters cannot fit in 64 bits; int() of 4,300+ digits raises anyway.
    value = int(text) if len(text) <= 20 else MAX_INT + 1
    if not MIN_INT <= value <= MAX_INT:
        digits = len(text.lstrip("-"))
        raise ValueError(
            f"an integer of {digits} digits does not fit in 64 bits "
            "(write larger numbers with a decimal point or an exponent)"
        )
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_depth(body: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH: level by level (a bounded stack, and a tenth of the
    cost of a walk that tracks each value's depth: a full batch has 20,000 containers)."""
    level = [body] if type(body) in (dict, list) else []
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            raise BadBody(f"is nested too deeply (the limit is {MAX_DEPTH} levels)")
        below = []
        for value in level:
            for child in value.values() if type(value) is dict else value:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level = below
        depth += 1


def _check_text(value: Any, where: str) -> None:
    """Refuse strings (keys too) holding lone surrogates, naming where they are."""
    if isinstance(value, str):
        if not _encodable(value):
            raise BadBody(f"holds a string with a lone surrogate at {where or 'the top level'}")
    elif isinstance(value, Mapping):
        for key, child in value.items():
            path = f"{where}.{key}" if where else str(key)
            if not _encodable(key):
                raise BadBody(
                    f"holds a key with a lone surrogate in {where or 'the top-level object'}"
                )
            _check_text(child, path)
    elif isinstance(value, list):
        for position, child in enumerate(value):
            _check_text(child, f"{where}[{position}]")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
