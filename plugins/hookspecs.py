"""The hooks of reqo's plugin contract (pluggy project "reqo").

Registration hooks return lists that the host merges at start-up; a name registered twice is an
error that names both plugins. Call hooks with keyword arguments only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from plugins.algorithm import Algorithm
    from plugins.embedders import Embedder
    from plugins.logic import Logic
    from plugins.text_embedders import TextEmbedder
    from reql.functions import Function

PROJECT = "reqo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_algorithms() -> list[type[Algorithm]]:  # type: ignore[empty-body]
    """Algorithm classes that scenarios and models can name (by their `name`)."""


@hookspec
def register_reql_functions() -> list[Function]:  # type: ignore[empty-body]
    """ReQL functions to add to the built-in ones (by their `name`)."""


@hookspec
def register_embedders() -> list[type[Embedder] | type[TextEmbedder]]:  # type: ignore[empty-body]
    """Image embedder classes that visual models can name, and text embedder classes
    (`TextEmbedder`) that Search Items can name (by their `name`)."""


@hookspec
def register_logics() -> list[Logic]:  # type: ignore[empty-body]
    """Logics (`plugins.logic.Logic`) that requests' `logic` and scenarios can name (by `name`)."""


@hookspec
def startup(config: Any) -> None:
    """Called once when the server starts, with its validated configuration."""


@hookspec
def shutdown() -> None:
    """Called once when the server stops."""
