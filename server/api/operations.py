"""An operation is one endpoint of Recombee's API, independent of how it was called.

The same operation serves a direct HTTP request and a sub-request of a batch: a handler gets a
context (a DuckDB connection and the property catalogue), the path arguments and the parameters,
and returns the JSON result or raises a StorageError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.routing import compile_path

from storage.database import ReadContext, WriteContext
from storage.errors import InvalidInput, StorageError, TooLarge


@dataclass(frozen=True)
class Params:
    """The parameters of a request: the query string's and the JSON body's.

    Most handlers read `merged`; Set Values needs them apart, because its body keys are property
    names (a property may well be called `cascadeCreate`).
    """

    query: Mapping[str, Any] = field(default_factory=dict)
    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def merged(self) -> dict[str, Any]:
        return {**self.query, **self.body}


class Mode(Enum):
    READ = "read"  # runs on a reader thread
    WRITE = "write"  # runs on the writer thread, in a transaction


Handler = Callable[[WriteContext, Mapping[str, str], Params], Any]
Prepare = Callable[[Mapping[str, str], Params], Any]
Apply = Callable[[WriteContext, Sequence[Any]], list[Any]]


@dataclass(frozen=True)
class Coalesce:
    """How a small write joins its neighbours: `prepare` validates one request into a payload
    (off the writer thread), `apply` stores many payloads with one outcome each."""

    prepare: Prepare
    apply: Apply


@dataclass(frozen=True)
class ReadThenWrite:
    """A write whose costly part runs on a reader first, so that the writer, which every write
    of the database waits for, never evaluates an expression: `select` validates the request
    and evaluates its filter (a reader, under the query time limit); `apply` writes what it
    selected (the writer)."""

    select: Callable[[ReadContext, Mapping[str, str], Params], Any]
    apply: Callable[[WriteContext, Any], Any]


@dataclass(frozen=True)
class Operation:
    """One endpoint: method, path under `/{databaseId}`, handler, and what success returns."""

    name: str
    method: str
    path: str
    handler: Handler
    mode: Mode
    status: int = 200
    coalesce: Coalesce | None = None
    read_then_write: ReadThenWrite | None = None
    recommendation: str | None = None
    """For recommendation endpoints (which the host runs with its pipeline): the endpoint kind."""


@dataclass(frozen=True)
class Call:
    """A request matched to its operation."""

    operation: Operation
    args: Mapping[str, str]
    params: Params


class OperationTable:
    """All operations, matchable by method and path (for batch sub-requests)."""

    def __init__(self, operations: Sequence[Operation]) -> None:
        self.operations = tuple(operations)
        seen: set[tuple[str, str]] = set()
        # Paths without parameters (every interaction write) are found by a dictionary lookup:
        # a batch matches 10,000 of them.
        self._literal: dict[tuple[str, str], Operation] = {}
        self._compiled = []
        self._named: dict[str, Operation] = {}
        for op in self.operations:
            if op.recommendation is None:  # the writer's commands name the others
                if op.name in self._named:
                    raise ValueError(f"two operations named {op.name!r}")
                self._named[op.name] = op
            key = (op.method, op.path)
            if key in seen:
                raise ValueError(f"two operations for {op.method} {op.path}")
            seen.add(key)
            if "{" not in op.path:
                self._literal[key] = op
            regex, _, convertors = compile_path(op.path)
            self._compiled.append((op, regex, convertors))

    def by_name(self, name: str) -> Operation:
        """The operation of a name (as the writer's commands give it)."""
        found = self._named.get(name)
        if found is None:
            raise InvalidInput(f"unknown operation '{name}'")
        return found

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation for a method and a path (relative to the database), or None."""
        method = method.upper()
        literal = self._literal.get((method, path))
        if literal is not None:
            return literal, {}
        for op, regex, convertors in self._compiled:
            if op.method != method:
                continue
            found = regex.match(path)
            if found:
                args = {k: convertors[k].convert(v) for k, v in found.groupdict().items()}
                return op, args
        return None


def error_body(error: StorageError) -> dict[str, Any]:
    """Recombee's error JSON."""
    return {"statusCode": error.status, "error": error.message}


async def read_body(request: HttpRequest, limit: int) -> bytes:
    """The request body, refused (TooLarge) beyond `limit` bytes, declared or streamed."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the request body has {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
