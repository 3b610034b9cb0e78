"""The API reference of the types a plugin touches, generated from their signatures and
docstrings: README's "Plugin API reference" is this text (`python -m plugins.reference`), and a
test holds the two equal."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from plugins import hookspecs
from plugins.algorithm import Algorithm, Parameter, ParameterError, UserHistory
from plugins.embedders import Embedder
from plugins.logic import Logic, LogicPlan, Setting, SettingError
from plugins.text_embedders import TextEmbedder
from plugins.training import (
    ItemEmbeddings,
    ItemTextVectorProvider,
    ItemVectorProvider,
    TrainingData,
)
from reql import functions as reql_functions

DOCUMENTED: tuple[tuple[str, Any], ...] = (
    ("plugins.hookspecs.hookimpl", hookspecs.hookimpl),
    ("plugins.algorithm.Algorithm", Algorithm),
    ("plugins.algorithm.Parameter", Parameter),
    ("plugins.algorithm.ParameterError", ParameterError),
    ("plugins.algorithm.UserHistory", UserHistory),
    ("plugins.training.TrainingData", TrainingData),
    ("plugins.training.ItemEmbeddings", ItemEmbeddings),
    ("plugins.training.ItemVectorProvider", ItemVectorProvider),
    ("plugins.training.ItemTextVectorProvider", ItemTextVectorProvider),
    ("plugins.embedders.Embedder", Embedder),
    ("plugins.text_embedders.TextEmbedder", TextEmbedder),
    ("plugins.logic.Logic", Logic),
    ("plugins.logic.Setting", Setting),
    ("plugins.logic.SettingError", SettingError),
    ("plugins.logic.LogicPlan", LogicPlan),
    ("reql.functions.Function", reql_functions.Function),
    ("reql.functions.simple", reql_functions.simple),
)
"""What the reference covers, by the name a plugin imports it by."""


HOOKIMPL = (
    "The decorator that marks a plugin module's functions as implementations of reqo's hooks "
    "(`plugins/hookspecs.py`): pluggy's `HookimplMarker` for the project `reqo`. A function "
    "whose name is no reqo hook is refused at start-up."
)


def api_reference() -> str:
    """The reference as Markdown."""
    text = "\n".join(_lines())
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n"


def _lines() -> Iterator[str]:
    for path, obj in DOCUMENTED:
        yield f"#### `{path}`"
        yield ""
        if inspect.isclass(obj):
            yield from _class(obj)
        elif callable(obj) and inspect.isfunction(obj):
            yield f"`{obj.__name__}{_signature(obj)}`"
            yield ""
            yield _doc(obj)
        else:
            yield HOOKIMPL
        yield ""


def _class(cls: type) -> Iterator[str]:
    yield _doc(cls)
    yield ""
    if dataclasses.is_dataclass(cls):
        for field in dataclasses.fields(cls):
            yield f"- `{field.name}: {field.type}`"
    for name, value in sorted(vars(cls).items()):
        if name.startswith("_") or name in {f.name for f in _fields(cls)}:
            continue
        member = _member(cls, name, value)
        if member is not None:
            yield member


def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ()


def _member(cls: type, name: str, value: Any) -> str | None:
    function: Callable[..., Any] | None = None
    if isinstance(value, classmethod | staticmethod):
        function = value.__func__
    elif inspect.isfunction(value):
        function = value
    elif isinstance(value, property):
        return f"- `{name}` (property): {_first(value.__doc__)}"
    if function is not None:
        return f"- `{name}{_signature(function)}`: {_first(function.__doc__)}"
    annotation = inspect.get_annotations(cls).get(name)
    if annotation is not None:
        return f"- `{name}: {annotation}` = `{value!r}`"
    return None


def _signature(function: Callable[..., Any]) -> str:
    return str(inspect.signature(function)).replace("'", "")


def _doc(obj: Any) -> str:
    return inspect.cleandoc(obj.__doc__ or "")


def _first(doc: str | None) -> str:
    """A docstring's first sentence-paragraph, on one line."""
    text = inspect.cleandoc(doc or "")
    return text.split("\n\n")[0].replace("\n", " ")


if __name__ == "__main__":
    print(api_reference(), end="")
