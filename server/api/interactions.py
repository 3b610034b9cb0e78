"""Operations on the six kinds of interaction: add (or set), delete, list per user and per item."""

from __future__ import annotations

from collections.abc import Mapping

from server.api.operations import Coalesce, Mode, Operation, Params
from storage import interactions
from storage.database import WriteContext
from storage.interactions import InteractionKind, InteractionWrite
from storage.params import check_known
from storage.schema import Entity


def kind_operations(kind: InteractionKind) -> list[Operation]:
    base = f"/{kind.value}/"
    label = kind.reql_name.replace("_", " ")

    def prepare(args: Mapping[str, str], params: Params) -> InteractionWrite:
        return interactions.parse_interaction(kind, params.merged)

    def add(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
        outcome = interactions.apply_interaction_writes(ctx, [prepare(args, params)])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def delete(ctx: WriteContext, args: Mapping[str, str], params: Params) -> str:
        return interactions.delete_interactions(ctx, kind, params.merged)

    def lister(entity: Entity) -> Operation:
        key = entity.id_field

        def run(ctx: WriteContext, args: Mapping[str, str], params: Params) -> object:
            check_known(params.merged, ())
            return interactions.list_interactions(ctx, kind, entity, args[key])

        path = f"/{entity.table}/{{{key}}}/{kind.value}/"
        return Operation(f"list {entity.value} {label}", "GET", path, run, Mode.READ)

    verb = "set" if kind is InteractionKind.VIEW_PORTION else "add"
    return [
        Operation(
            f"{verb} {label}",
            "POST",
            base,
            add,
            Mode.WRITE,
            coalesce=Coalesce(prepare, interactions.apply_interaction_writes),
        ),
        Operation(f"delete {label}", "DELETE", base, delete, Mode.WRITE),
        lister(Entity.USER),
        lister(Entity.ITEM),
    ]


def interaction_operations() -> list[Operation]:
    return [op for kind in InteractionKind for op in kind_operations(kind)]
