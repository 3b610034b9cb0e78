"""Recombee's Batch: up to 10,000 sub-requests in one HTTP request, each with its own outcome.

Sub-requests run in order, as if sent one by one. Consecutive writes run in one transaction on
the writer thread, and consecutive interaction writes are stored together by one vectorised call,
which is what lets a batch of 10,000 interactions cost a handful of queries. Reads,
recommendations and the filters of Delete/Update More Items run on readers, after the writes
before them have committed: the writer, which every write of the database waits for, never
evaluates an expression.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from server.api.operations import Call, Mode, Operation, OperationTable, Params, error_body
from storage.database import ReadContext, WriteContext
from storage.errors import BadParameter, NotFound, StorageError, TooLarge
from storage.params import check_known, read_bool

if TYPE_CHECKING:
    from server.serving.store import Served

MAX_BATCH_SIZE = 10_000
logger = logging.getLogger("reqo")


@dataclass
class PreparedCall:
    """A matched sub-request; for coalescable writes, its validated payload or its refusal."""

    call: Call
    payload: Any = None
    refusal: StorageError | None = None


@dataclass
class PreparedBatch:
    """A batch ready to run: its sub-requests, and whether recommendations must be distinct."""

    calls: list[PreparedCall]
    distinct_recomms: bool = False
    recommended: set[str] = field(default_factory=set)


Recommend = Callable[[Call, "PreparedBatch"], Awaitable[Any]]
"""Runs a recommendation sub-request; with distinct_recomms it excludes, and adds to,
`recommended`."""


def parse_batch(table: OperationTable, params: Params) -> PreparedBatch:
    """Check the batch's shape and match every sub-request before anything runs.

    A sub-request whose method and path match no endpoint makes the whole batch a 404 (the
    batch is a priori erroneous), as Recombee does.
    """
    merged = params.merged
    check_known(merged, ("requests", "distinctRecomms"))
    distinct = read_bool(merged, "distinctRecomms", False)
    requests = merged.get("requests")
    if not isinstance(requests, list):
        raise BadParameter("requests", "is required: an array of {method, path, params}")
    if len(requests) > MAX_BATCH_SIZE:
        raise TooLarge(
            f"the batch has {len(requests)} requests; the limit is {MAX_BATCH_SIZE} per batch"
        )
    prepared = []
    for index, request in enumerate(requests):
        call = _parse_request(table, index, request)
        item = PreparedCall(call)
        coalesce = call.operation.coalesce
        if coalesce is not None:
            try:
                item.payload = coalesce.prepare(call.args, call.params)
            except StorageError as error:
                item.refusal = error
        prepared.append(item)
    return PreparedBatch(prepared, distinct)


def _parse_request(table: OperationTable, index: int, request: object) -> Call:
    where = f"requests[{index}]"
    if not isinstance(request, Mapping):
        raise BadParameter(where, "must be an object with method, path and params")
    check_known(request, ("method", "path", "params"))
    method, path = request.get("method"), request.get("path")
    if not isinstance(method, str) or not isinstance(path, str):
        raise BadParameter(where, "needs a string method and a string path")
    sub_params = request.get("params", {})
    if sub_params is None:
        sub_params = {}
    if not isinstance(sub_params, Mapping):
        raise BadParameter(f"{where}.params", "must be an object")
    path, _, query_text = path.partition("?")
    query: dict[str, Any] = dict(parse_qsl(query_text, keep_blank_values=True))
    matched = table.match(method, path)
    if matched is None:
        raise NotFound(f"{where}: no endpoint {method.upper()} {path}; the batch was not executed")
    operation, args = matched
    if method.upper() in ("GET", "DELETE"):
        query.update(sub_params)
        return Call(operation, args, Params(query=query))
    return Call(operation, args, Params(query=query, body=dict(sub_params)))


def call_payload(operation: Operation, args: Mapping[str, str], params: Params) -> dict[str, Any]:
    """A write as the writer's `calls` command takes it (and the change feed carries it)."""
    return {
        "op": operation.name,
        "args": dict(args),
        "query": dict(params.query),
        "body": dict(params.body),
    }


class BatchOn:
    """Where a server runs a batch: reads on its copy of the database, writes on the writer;
    after a write segment it waits for its copy to hold the segment's writes, so that what
    follows in the batch sees them."""

    def __init__(self, served: Served) -> None:
        self.served = served

    async def read(self, run: Callable[[ReadContext], Any]) -> Any:
        return await self.served.database.read(run)

    async def write_calls(self, calls: Sequence[Call]) -> list[dict[str, Any]]:
        payload = [call_payload(c.operation, c.args, c.params) for c in calls]
        started = time.monotonic()
        answers, seq = await self.served.writer.write(self.served.name, "calls", {"calls": payload})
        # This server's copy applies the same writes: a large segment takes it about as long
        # as it took the writer.
        await self.served.replica.caught_up(seq, extra=2 * (time.monotonic() - started))
        result: list[dict[str, Any]] = answers
        return result

    async def select_then_write(self, call: Call) -> Any:
        result, seq = await self.served.select_then_write(call.operation, call.args, call.params)
        await self.served.replica.caught_up(seq)
        return result


async def run_batch(
    target: BatchOn, batch: PreparedBatch, recommend: Recommend
) -> list[dict[str, Any]]:
    """Execute matched sub-requests in order; returns Recombee's `[{code, json}]`."""
    calls = batch.calls
    responses: list[dict[str, Any]] = []
    index = 0
    while index < len(calls):
        call = calls[index].call
        operation = call.operation
        if operation.recommendation is not None:
            responses.append(await _recommendation(recommend, call, batch))
            index += 1
            continue
        if operation.read_then_write is not None:
            responses.append(await _read_then_write(target, call))
            index += 1
            continue
        end, kind = index + 1, _segment(operation)
        while end < len(calls) and _segment(calls[end].call.operation) == kind:
            end += 1
        segment = calls[index:end]
        try:
            if kind == "read":
                outcomes = await target.read(partial(_run_reads, calls=segment))
            else:
                outcomes = await target.write_calls([item.call for item in segment])
        except Exception as error:
            # The whole segment was refused (a full disk), or failed (a bug): its sub-requests
            # say so, and what ran before it stands, as its outcomes say.
            outcomes = [_failure(error)] * len(segment)
        responses.extend(outcomes)
        index = end
    return responses


def _segment(operation: Operation) -> str:
    """Which consecutive sub-requests run together: reads on a reader, writes on the writer;
    recommendations and read-then-write operations one by one."""
    if operation.recommendation is not None or operation.read_then_write is not None:
        return "alone"
    return "read" if operation.mode is Mode.READ and operation.coalesce is None else "write"


async def _recommendation(recommend: Recommend, call: Call, batch: PreparedBatch) -> dict[str, Any]:
    try:
        return {"code": 200, "json": await recommend(call, batch)}
    except Exception as error:
        return _failure(error)


async def _read_then_write(target: BatchOn, call: Call) -> dict[str, Any]:
    try:
        result = await target.select_then_write(call)
    except Exception as error:
        return _failure(error)
    return {"code": call.operation.status, "json": result}


def _failure(error: Exception) -> dict[str, Any]:
    """A sub-request's outcome for an exception: its refusal, or a logged 500 (a bug) that
    leaves the outcomes of the sub-requests before it standing (they may have committed)."""
    if isinstance(error, StorageError):
        return {"code": error.status, "json": error_body(error)}
    logger.error("a batch sub-request failed", exc_info=error)
    body = {"statusCode": 500, "error": f"internal error: {type(error).__name__}"}
    return {"code": 500, "json": body}


def _run_reads(ctx: ReadContext, calls: Sequence[PreparedCall]) -> list[dict[str, Any]]:
    return [_run_one(ctx, item.call) for item in calls]


def run_writes(ctx: WriteContext, prepared: Sequence[PreparedCall]) -> list[dict[str, Any]]:
    """Consecutive writes in one transaction, coalescable ones applied together."""
    responses: list[dict[str, Any]] = []
    index = 0
    while index < len(prepared):
        call = prepared[index].call
        coalesce = call.operation.coalesce
        if coalesce is None:
            responses.append(_run_one(ctx, call))
            index += 1
            continue
        end = index
        while end < len(prepared):
            other = prepared[end].call.operation.coalesce
            if other is None or other.apply is not coalesce.apply:
                break
            end += 1
        group = prepared[index:end]
        valid = [item.payload for item in group if item.refusal is None]
        outcomes = iter(coalesce.apply(ctx, valid) if valid else [])
        for item in group:
            outcome = item.refusal if item.refusal is not None else next(outcomes)
            if isinstance(outcome, StorageError):
                responses.append({"code": outcome.status, "json": error_body(outcome)})
            else:
                responses.append({"code": item.call.operation.status, "json": outcome})
        index = end
    return responses


def _run_one(ctx: ReadContext, call: Call) -> dict[str, Any]:
    try:
        result = call.operation.handler(ctx, call.args, call.params)
    except StorageError as error:
        return {"code": error.status, "json": error_body(error)}
    return {"code": call.operation.status, "json": result}
