"""The writes that the writer applies, in a form that travels: JSON payloads, each applied by a
named command. The writer applies a command to the database file and records it in the change
feed; servers apply the same entries, with the same functions, to their copies.

A command must give the same result wherever it is applied to the same state: what a write takes
from its surroundings is in its payload (`now`, the time the writer gave it; the ids that a
filter selected on the writer).

- `calls`: writes of Recombee's API by operation name, with their path arguments and parameters
  (a request, or a batch's consecutive writes); concurrent ones are applied together.
- `selected`: the write of Delete/Update More Items, with the ids its filter selected.
- `log`: a server's batch of recommendation records (their recommIds work on every server once
  the feed brings them).
- `extend`: a Recommend Next Items page added to its record.
- `context`: the user or item that a recommendation with cascadeCreate creates.
- `assign`: users held to a variant of a scenario's experiment.
- `models`: model versions a trainer published (servers load them as they apply it).
- `text-vectors`: item text vectors a server embedded, for the cache in the writer's file
  (storage/text_vectors.py); the change feed carries only their count.
- `image-vectors`: image vectors a trainer embedded, likewise (storage/embeddings.py's cache).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from server.api.batch import PreparedCall, run_writes
from server.api.operations import Call, Params, error_body
from server.api.table import operation_table
from storage.contexts import WriteContext
from storage.entities import create_context
from storage.errors import InvalidInput, StorageError
from storage.kpi import Assignment, save_assignments
from storage.recommendations import extend_recommendation, log_recommendations, record_from_json
from storage.text_vectors import store_payload
from storage.timestamps import fixed_now

logger = logging.getLogger("reqo")

Payload = dict[str, Any]


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def apply_calls(ctx: WriteContext, payloads: Sequence[Payload]) -> list[Any]:
    """Writes of Recombee's API, many requests' together: each payload's answer is the list of
    its calls' `{code, json}`, as a batch answers them."""
    table = operation_table()
    prepared: list[PreparedCall] = []
    sizes: list[int] = []
    for payload in payloads:
        calls = payload["calls"]
        sizes.append(len(calls))
        with fixed_now(int(payload["now"])):
            for call in calls:
                prepared.append(_prepare(table.by_name(call["op"]), call))
    responses = run_writes(ctx, prepared)
    answers: list[Any] = []
    start = 0
    for payload, size in zip(payloads, sizes, strict=True):
        mine = responses[start : start + size]
        start += size
        done = [c for c, r in zip(payload["calls"], mine, strict=True) if r["code"] < 300]
        if done:
            ctx.record(dumps({"cmd": "calls", "calls": done, "now": payload["now"]}))
        answers.append(mine)
    return answers


def _prepare(operation: Any, call: Mapping[str, Any]) -> PreparedCall:
    params = Params(query=call.get("query") or {}, body=call.get("body") or {})
    prepared = PreparedCall(Call(operation, call.get("args") or {}, params))
    coalesce = operation.coalesce
    if coalesce is not None:
        try:
            prepared.payload = coalesce.prepare(prepared.call.args, params)
        except StorageError as error:
            prepared.refusal = error
    return prepared


def apply_selected(ctx: WriteContext, payload: Payload) -> Any:
    """The write of a read-then-write operation, for what its read selected."""
    operation = operation_table().by_name(payload["op"])
    steps = operation.read_then_write
    if steps is None:
        raise InvalidInput(f"operation '{payload['op']}' is not a read-then-write operation")
    with fixed_now(int(payload["now"])):
        result = steps.apply(ctx, payload["selected"])
    ctx.record(dumps({"cmd": "selected", **payload}))
    return result


def apply_log(ctx: WriteContext, payloads: Sequence[Payload]) -> list[Any]:
    """Recommendations' records (each payload a server's batch of them), many at once."""
    records = [record_from_json(r) for p in payloads for r in p["records"]]
    log_recommendations(ctx, records)
    for payload in payloads:
        ctx.record(dumps({"cmd": "log", **payload}))
    return [None] * len(payloads)


def apply_extend(ctx: WriteContext, payload: Payload) -> Any:
    extend_recommendation(ctx, payload["recommId"], payload["ids"])
    ctx.record(dumps({"cmd": "extend", **payload}))
    return None


def apply_context(ctx: WriteContext, payload: Payload) -> Any:
    """Create a recommendation's unknown user or item (404 without cascadeCreate)."""
    created = create_context(
        ctx, payload.get("userId"), payload.get("itemId"), bool(payload.get("cascade"))
    )
    if created:
        ctx.record(dumps({"cmd": "context", **payload}))
    return None


def apply_models(ctx: WriteContext, payload: Payload) -> Any:
    """New model versions that a trainer published: nothing to store (the artifacts are in the
    models directory), but every server swaps them in as it applies the entry, so that a request
    after the publication is answered by them on any server."""
    ctx.record(dumps({"cmd": "models", **payload}))
    return None


def apply_text_vectors(ctx: WriteContext, payload: Payload) -> Any:
    """Cache text vectors in the writer's file. The feed records only that it happened (not the
    vectors: megabytes that no server needs at once), which moves the sequence number on, so
    that the next snapshot, the one a server starting now loads, is exported with them."""
    if "vectors" not in payload:
        return None  # a server applying the record: nothing to store in its copy
    stored = store_payload(ctx, payload)
    ctx.record(dumps({"cmd": "text-vectors", "stored": stored, "now": payload.get("now")}))
    return stored


def apply_image_vectors(ctx: WriteContext, payload: Payload) -> Any:
    """Cache image vectors a trainer embedded (its own copy of the database is thrown away
    after training); recorded as `text-vectors` is, for the same reason."""
    if "vectors" not in payload:
        return None
    stored = store_payload(ctx, payload, "image")
    ctx.record(dumps({"cmd": "image-vectors", "stored": stored, "now": payload.get("now")}))
    return stored


def apply_assign(ctx: WriteContext, payload: Payload) -> Any:
    save_assignments(ctx, [Assignment(*row) for row in payload["assignments"]])
    ctx.record(dumps({"cmd": "assign", **payload}))
    return None


@dataclass(frozen=True)
class Command:
    """How the writer applies one kind of write: alone, or together with its neighbours."""

    name: str
    apply: Callable[[WriteContext, Payload], Any] | None = None
    apply_many: Callable[[WriteContext, Sequence[Payload]], list[Any]] | None = None


COMMANDS: dict[str, Command] = {
    "calls": Command("calls", apply_many=apply_calls),
    "selected": Command("selected", apply=apply_selected),
    "log": Command("log", apply_many=apply_log),
    "extend": Command("extend", apply=apply_extend),
    "context": Command("context", apply=apply_context),
    "assign": Command("assign", apply=apply_assign),
    "models": Command("models", apply=apply_models),
    "text-vectors": Command("text-vectors", apply=apply_text_vectors),
    "image-vectors": Command("image-vectors", apply=apply_image_vectors),
}


def command(name: str) -> Command:
    found = COMMANDS.get(name)
    if found is None:
        raise InvalidInput(f"unknown write command '{name}'")
    return found


def apply_entries(ctx: WriteContext, entries: Sequence[Payload]) -> int:
    """Apply change feed entries in order (a server's copy of the database); consecutive
    entries of a command that applies many at once go together. Returns how many writes were
    refused here although the writer stored them: a copy that refuses one has diverged."""
    refused = 0
    index = 0
    while index < len(entries):
        name = entries[index]["cmd"]
        found = command(name)
        if found.apply_many is not None:
            end = index + 1
            while end < len(entries) and entries[end]["cmd"] == name:
                end += 1
            for answer in found.apply_many(ctx, entries[index:end]):
                if isinstance(answer, list):
                    refused += sum(1 for r in answer if r["code"] >= 300)
            index = end
            continue
        assert found.apply is not None
        try:
            found.apply(ctx, entries[index])
        except StorageError as error:
            refused += 1
            logger.error("a change feed entry was refused here: %s", error_body(error))
        index += 1
    return refused
