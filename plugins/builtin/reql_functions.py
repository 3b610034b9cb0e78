"""ReQL's documented functions, registered like any plugin's."""

from __future__ import annotations

from plugins.hookspecs import hookimpl
from reql import BUILTIN_FUNCTIONS
from reql.functions import Function


@hookimpl
def register_reql_functions() -> list[Function]:
    return list(BUILTIN_FUNCTIONS.values())
