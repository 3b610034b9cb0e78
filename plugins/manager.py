"""The plugin manager: built-in plugins, then installed ones (entry points of the group "reqo"),
then the modules or files the configuration lists; and the registries merged from their hooks."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from plugins import hookspecs
from plugins.algorithm import Algorithm
from plugins.embedders import Embedder
from plugins.logic import Logic
from plugins.text_embedders import TextEmbedder
from reql.functions import Function, FunctionRegistry

ENTRY_POINT_GROUP = "reqo"
BUILTIN_PLUGINS = (
    "plugins.builtin.reql_functions",
    "plugins.builtin.popularity",
    "plugins.builtin.baselines",
    "plugins.builtin.content_knn",
    "plugins.builtin.item_knn",
    "plugins.builtin.recently_viewed",
    "plugins.builtin.ease",
    "plugins.builtin.slim",
    "plugins.builtin.rp3beta",
    "plugins.builtin.content_mf",
    "plugins.builtin.ials",
    "plugins.builtin.attribute_ridge",
    "plugins.builtin.autoencoders",
    "plugins.builtin.image_embedders",
    "plugins.builtin.text_embedders",
    "plugins.builtin.small_cnn",
    "plugins.builtin.stored_vectors",
    "plugins.builtin.visual",
    "plugins.builtin.ensemble",
    "plugins.builtin.stacker",
    "plugins.builtin.gru4rec",
    "plugins.builtin.sasrec",
    "plugins.builtin.next_item_ffn",
    "plugins.builtin.wide_deep",
    "plugins.builtin.logics",
)


class PluginError(Exception):
    """A plugin that cannot be loaded, or two plugins that register the same name."""


def get_plugin_manager(extra: Sequence[str] = ()) -> pluggy.PluginManager:
    """A plugin manager with the built-ins, the installed plugins and `extra` (module names or
    paths of .py files, from the configuration's `plugins:`) registered, in that order."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        manager.register(importlib.import_module(name), name=name)
    manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for spec in dict.fromkeys(extra):  # the same plugin listed twice is loaded once
        module = _import(spec)
        if manager.is_registered(module):
            continue
        _check_hooks(manager, spec, module)
        manager.register(module, name=spec)
    check_pending(manager)
    return manager


def check_pending(manager: pluggy.PluginManager) -> None:
    """Every hook implementation of every registered plugin (installed ones included) must be a
    reqo hook: pluggy registers a misspelt one without a word, and it never runs."""
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        plugin = manager.get_name(error.plugin) or repr(error.plugin)
        raise PluginError(f"plugin {plugin}: {error}") from None


def _check_hooks(manager: pluggy.PluginManager, spec: str, module: ModuleType) -> None:
    """A listed module must implement a reqo hook, and only reqo hooks: pluggy would register
    `plugins: [os]`, or a misspelt hook, without a word, and the plugin would never run."""
    hooks = [name for name in vars(hookspecs) if manager.parse_hookspec_opts(hookspecs, name)]
    what = f"plugin file {spec}" if spec.endswith(".py") or "/" in spec else f"module {spec!r}"
    implemented = []
    for name in dir(module):
        options = manager.parse_hookimpl_opts(module, name)
        if options is None:
            continue
        hook = options.get("specname") or name
        if hook not in hooks and not options.get("optionalhook"):
            raise PluginError(
                f"{what}: {name} is marked @hookimpl but {hook} is no reqo hook "
                f"({', '.join(hooks)})"
            )
        implemented.append(hook)
    if not implemented:
        raise PluginError(f"{what} implements no reqo hook ({', '.join(hooks)})")


def _import(spec: str) -> ModuleType:
    try:
        if spec.endswith(".py") or "/" in spec:
            path = Path(spec)
            if not path.is_file():
                raise PluginError(f"plugin file {spec} does not exist")
            # A name no installed package uses, so that a file cannot replace a real module.
            name = f"_reqo_plugin_file_{path.stem}"
            loader = importlib.util.spec_from_file_location(name, path)
            if loader is None or loader.loader is None:
                raise PluginError(f"plugin file {spec} cannot be imported")
            module = importlib.util.module_from_spec(loader)
            sys.modules[name] = module
            loader.loader.exec_module(module)
            return module
        return importlib.import_module(spec)
    except PluginError:
        raise
    except Exception as error:
        raise PluginError(f"plugin {spec} cannot be imported: {error}") from error


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin and what it registers."""

    name: str
    version: str | None
    algorithms: tuple[str, ...]
    reql_functions: tuple[str, ...]
    embedders: tuple[str, ...] = ()
    logics: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "algorithms": list(self.algorithms),
            "reqlFunctions": list(self.reql_functions),
            "embedders": list(self.embedders),
            "logics": list(self.logics),
        }


@dataclass(frozen=True)
class Registry:
    """What the plugins register, merged: algorithms, ReQL functions, embedders and logics by
    name."""

    algorithms: Mapping[str, type[Algorithm]]
    functions: FunctionRegistry
    plugins: tuple[PluginInfo, ...]
    manager: pluggy.PluginManager
    embedders: Mapping[str, type[Embedder]] = field(default_factory=dict)
    text_embedders: Mapping[str, type[TextEmbedder]] = field(default_factory=dict)
    """Text embedders (Search Items' semantic retrieval) by name."""
    logics: Mapping[str, Logic] = field(default_factory=dict)
    """Logics (a request's `logic`, a scenario's `logic:`) by name."""

    def algorithm(self, name: str) -> type[Algorithm]:
        try:
            return self.algorithms[name]
        except KeyError:
            known = ", ".join(sorted(self.algorithms))
            raise PluginError(f"unknown algorithm '{name}' (known: {known})") from None

    def embedder(self, name: str) -> type[Embedder]:
        try:
            return self.embedders[name]
        except KeyError:
            known = ", ".join(sorted(self.embedders))
            raise PluginError(f"unknown embedder '{name}' (known: {known})") from None

    def text_embedder(self, name: str) -> type[TextEmbedder]:
        try:
            return self.text_embedders[name]
        except KeyError:
            known = ", ".join(sorted(self.text_embedders))
            raise PluginError(f"unknown text embedder '{name}' (known: {known})") from None


def collect(manager: pluggy.PluginManager) -> Registry:
    """Merge the registration hooks' lists; a name registered twice fails, naming both plugins."""
    algorithms: dict[str, tuple[str, type[Algorithm]]] = {}
    functions: dict[str, tuple[str, Function]] = {}
    embedders: dict[str, tuple[str, type[Embedder]]] = {}
    text_embedders: dict[str, tuple[str, type[TextEmbedder]]] = {}
    logics: dict[str, tuple[str, Logic]] = {}
    by_plugin: dict[str, tuple[list[str], list[str], list[str], list[str]]] = {
        name: ([], [], [], []) for name, _ in manager.list_name_plugin()
    }
    # Implementations one by one (rather than the merged hook result), to know who registered what.
    for implementation in manager.hook.register_algorithms.get_hookimpls():
        plugin = implementation.plugin_name
        for algorithm in _registered(implementation):
            if not (isinstance(algorithm, type) and issubclass(algorithm, Algorithm)):
                raise PluginError(
                    f"plugin {plugin} registers {algorithm!r}, not an Algorithm class"
                )
            name = _name_of(algorithm, plugin, "algorithm")
            _claim(algorithms, name, plugin, algorithm, "algorithm")
            by_plugin[plugin][0].append(name)
    for implementation in manager.hook.register_reql_functions.get_hookimpls():
        plugin = implementation.plugin_name
        for function in _registered(implementation):
            if not isinstance(function, Function):
                raise PluginError(f"plugin {plugin} registers {function!r}, not a reql Function")
            _claim(functions, function.name.lower(), plugin, function, "ReQL function")
            by_plugin[plugin][1].append(function.name)
    for implementation in manager.hook.register_embedders.get_hookimpls():
        plugin = implementation.plugin_name
        for embedder in _registered(implementation):
            if isinstance(embedder, type) and issubclass(embedder, TextEmbedder):
                name = _name_of(embedder, plugin, "text embedder")
                _claim(text_embedders, name, plugin, embedder, "text embedder")
                by_plugin[plugin][2].append(name)
                continue
            if not (isinstance(embedder, type) and issubclass(embedder, Embedder)):
                raise PluginError(
                    f"plugin {plugin} registers {embedder!r}, not an Embedder or TextEmbedder class"
                )
            name = _name_of(embedder, plugin, "embedder")
            _claim(embedders, name, plugin, embedder, "embedder")
            by_plugin[plugin][2].append(name)
    for implementation in manager.hook.register_logics.get_hookimpls():
        plugin = implementation.plugin_name
        for logic in _registered(implementation):
            if not isinstance(logic, Logic):
                raise PluginError(f"plugin {plugin} registers {logic!r}, not a plugins.logic.Logic")
            _claim(logics, logic.name, plugin, logic, "logic")
            by_plugin[plugin][3].append(logic.name)
    infos = tuple(
        PluginInfo(
            name,
            _version(manager, plugin),
            tuple(by_plugin[name][0]),
            tuple(by_plugin[name][1]),
            tuple(by_plugin[name][2]),
            tuple(by_plugin[name][3]),
        )
        for name, plugin in manager.list_name_plugin()
    )
    return Registry(
        algorithms={key: cls for key, (_, cls) in algorithms.items()},
        functions=FunctionRegistry(function for _, function in functions.values()),
        plugins=infos,
        manager=manager,
        embedders={key: cls for key, (_, cls) in embedders.items()},
        text_embedders={key: cls for key, (_, cls) in text_embedders.items()},
        logics={key: logic for key, (_, logic) in logics.items()},
    )


def _name_of(cls: type, plugin: str, what: str) -> str:
    """A registered class's `name`: a non-empty string of its own."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(
            f"plugin {plugin} registers the {what} class {cls.__name__}, which has no `name` "
            "(a class attribute: the name configurations use)"
        )
    return name


def _claim(taken: dict[str, tuple[str, Any]], key: str, plugin: str, value: Any, what: str) -> None:
    """Take a name; names equal up to case are the same name (a configuration that says
    `EASE` must not pick one of two algorithms by accident)."""
    same = next((k for k in taken if k.lower() == key.lower()), None)
    if same is not None:
        also = "" if same == key else f" (as '{same}')"
        raise PluginError(
            f"the {what} '{key}' is registered twice{also}: "
            f"by plugin {taken[same][0]} and by plugin {plugin}"
        )
    taken[key] = (plugin, value)


def _version(manager: pluggy.PluginManager, plugin: object) -> str | None:
    for loaded, distribution in manager.list_plugin_distinfo():
        if loaded is plugin:
            return str(distribution.version)
    return None


def _registered(implementation: Any) -> list[Any]:
    result = implementation.function()
    if not isinstance(result, list | tuple):
        raise PluginError(
            f"plugin {implementation.plugin_name}: {implementation.function.__name__}() "
            f"must return a list, not {type(result).__name__}"
        )
    return list(result)
