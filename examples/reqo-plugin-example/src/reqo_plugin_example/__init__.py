"""reqo-plugin-example: a third-party reqo plugin.

reqo finds this module through the entry point `example` of the group `reqo` (see pyproject.toml)
and registers it with its plugin manager; the functions marked `@hookimpl` below are the hook
implementations. A hook returns a list; reqo merges the lists of all plugins, and a name that two
plugins register is an error that names both.
"""

from __future__ import annotations

from plugins.algorithm import Algorithm
from plugins.hookspecs import hookimpl
from plugins.logic import Logic
from reql.functions import Function
from reqo_plugin_example.cooccurrence import CoOccurrence
from reqo_plugin_example.functions import CLAMP
from reqo_plugin_example.logics import UNDER_PRICE

__all__ = [
    "CLAMP",
    "UNDER_PRICE",
    "CoOccurrence",
    "register_algorithms",
    "register_logics",
    "register_reql_functions",
]


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [CoOccurrence]


@hookimpl
def register_reql_functions() -> list[Function]:
    return [CLAMP]


@hookimpl
def register_logics() -> list[Logic]:
    return [UNDER_PRICE]
