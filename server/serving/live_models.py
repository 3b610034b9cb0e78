"""Trained models in memory.

`LiveModels` serves the current version of each model and picks up a newer one without a restart:
the swap is one assignment, so a request sees either the old model or the new one.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plugins.algorithm import Algorithm, ParameterError
from plugins.builtin.members import MemberModel
from plugins.manager import Registry
from plugins.training import WeightError, validate_weights
from server.config import Config, ConfigError
from server.serving.logics import check_logics
from server.serving.scenarios import FALLBACK_MODEL, ModelConfig
from server.training.artifacts import (
    current_version,
    ensemble_members,
    item_interactions,
    train_model,
    training_order,
)
from storage.database import Database
from storage.errors import DiskFull

logger = logging.getLogger("reqo")


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    algorithm: Algorithm
    item_interactions: np.ndarray[Any, Any] | None = None
    """How many users had interacted with each item when the model was trained (None where the
    version does not say): a scenario's cold start weighs the model by it."""


def check_models(config: Config, registry: Registry) -> None:
    """Every configured model names a registered algorithm with valid parameters; every
    registered logic a configured model, and every scenario's logic a registered one with valid
    settings; every semantic or hybrid search scenario a registered text embedder."""
    for name, model in config.models.items():
        if model.algorithm not in registry.algorithms:
            known = ", ".join(sorted(registry.algorithms))
            raise ConfigError(
                config.source,
                f"models.{name}.algorithm",
                f"unknown algorithm '{model.algorithm}' (known: {known})",
            )
        try:
            registry.algorithm(model.algorithm).validate(model.params)
        except ParameterError as error:
            raise ConfigError(
                config.source, f"models.{name}.params.{error.parameter}", error.problem
            ) from None
        try:
            validate_weights(model.weights)
        except WeightError as error:
            raise ConfigError(config.source, f"models.{name}.weights", str(error)) from None
    check_ensembles(config, registry)
    check_logics(config, registry)
    for name, scenario in config.scenarios.items():
        if scenario.search_mode != "full-text" and (
            scenario.text_embedder not in registry.text_embedders
        ):
            known = ", ".join(sorted(registry.text_embedders)) or "none"
            raise ConfigError(
                config.source,
                f"scenarios.{name}.text_embedder",
                f"unknown text embedder '{scenario.text_embedder}' (known: {known})",
            )


def check_ensembles(config: Config, registry: Registry) -> None:
    """Every member of a model over other models (an ensemble, a stacker) is a configured
    model, no such model contains itself, and a stacker's members fit on their own (it fits
    copies of them: an ensemble or a stacker cannot be one)."""
    members = {name: ensemble_members(m, registry) for name, m in config.models.items()}
    for name, names in members.items():
        for member in names:
            if member not in config.models:
                known = ", ".join(sorted(config.models))
                raise ConfigError(
                    config.source,
                    f"models.{name}.params.members",
                    f"'{member}' is not a configured model (known: {known})",
                )
    for name in members:
        path = _cycle(name, members, (name,))
        if path is not None:
            raise ConfigError(
                config.source,
                f"models.{name}.params.members",
                f"a model over other models ({config.models[name].algorithm}) cannot contain "
                f"itself: {' -> '.join(path)}",
            )
    for name, names in members.items():
        cls = registry.algorithm(config.models[name].algorithm)
        if not issubclass(cls, MemberModel) or not cls.fits_members:
            continue
        for member in names:
            algorithm = config.models[member].algorithm
            if issubclass(registry.algorithm(algorithm), MemberModel):
                raise ConfigError(
                    config.source,
                    f"models.{name}.params.members",
                    f"'{member}' is a model over other models ({algorithm}): a "
                    f"{config.models[name].algorithm} fits copies of its members, which must "
                    "learn on their own",
                )


def _cycle(
    name: str, members: Mapping[str, tuple[str, ...]], path: tuple[str, ...]
) -> tuple[str, ...] | None:
    """A chain of members from `path` back to its first model, or None."""
    for member in members.get(name, ()):
        if member == path[0]:
            return (*path, member)
        if member not in path:
            found = _cycle(member, members, (*path, member))
            if found is not None:
                return found
    return None


FALLBACK_VERSION = "fallback"
"""The version of a model that is served by the fallback until a trainer has fitted it."""


class LiveModels:
    """The models a database serves, loaded from their current versions.

    A model without a version is trained on first use where the models are used offline
    (benchmarks, tools). A server passes `on_missing` instead: it asks a trainer to fit the
    model and serves the fallback model (popularity) meanwhile, with a warning in the log;
    `refresh` swaps the trained version in."""

    def __init__(
        self,
        database: Database,
        models: dict[str, ModelConfig],
        registry: Registry,
        directory: Path,
        *,
        on_missing: Callable[[str], None] | None = None,
    ) -> None:
        self.database = database
        self.configs = models
        self.registry = registry
        self.directory = directory
        self.on_missing = on_missing
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.RLock()
        self.awaiting: set[str] = set()
        """Models served by the fallback until a trainer has fitted them."""
        self._unloadable: dict[str, str] = {}
        """The version of each model that failed to load in the background (not tried again)."""

    def get(self, name: str) -> LoadedModel:
        """The current version of a model (loading, or training, it if needed)."""
        loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        with self._lock:
            loaded = self._loaded.get(name)
            if loaded is None:
                loaded = self._load(name)
                self._loaded = {**self._loaded, name: loaded}
            return loaded

    def peek(self, name: str) -> LoadedModel | None:
        """The model's loaded version, or None where it has not been loaded yet."""
        return self._loaded.get(name)

    def refresh(self) -> list[str]:
        """Load every model whose current version on disk is newer than the loaded one (or
        that the fallback served until now), and every configured model that has a version
        and is not loaded yet: loading (a torch import, a large index) happens here, in the
        background, never in the first request that wants the model."""
        changed = self._preload()
        for name, loaded in sorted(self._loaded.items(), key=lambda kv: kv[0] != FALLBACK_MODEL):
            version = current_version(self.directory, name)
            if version is None and loaded.version == FALLBACK_VERSION and name != FALLBACK_MODEL:
                # Still untrained: it follows the fallback, which may have been trained since.
                base = self._loaded.get(FALLBACK_MODEL)
                if base is not None and base.algorithm is not loaded.algorithm:
                    with self._lock:
                        self._loaded = {**self._loaded, name: self._fallback(name)}
                continue
            if version is not None and version != loaded.version:
                self.awaiting.discard(name)
                fresh = self._load(name)
                with self._lock:
                    self._loaded = {**self._loaded, name: fresh}
                changed.append(name)
                logger.info(
                    "database %r: model '%s' serves version %s (was %s)",
                    self.database.name,
                    name,
                    version,
                    loaded.version,
                    extra={
                        "event": "model_swap",
                        "db": self.database.name,
                        "model": name,
                        "version": version,
                        "previous": loaded.version,
                    },
                )
        return changed

    def _preload(self) -> list[str]:
        """Load the configured models that have a current version but are not loaded. A version
        that fails to load is logged once and left to the request that wants the model (which
        reports the error), so that it holds up neither the other models nor their swaps."""
        loaded = []
        for name in self.training_order():
            version = None if name in self._loaded else current_version(self.directory, name)
            if version is None or self._unloadable.get(name) == version:
                continue
            with self._lock:
                if name in self._loaded:
                    continue
                try:
                    self._loaded = {**self._loaded, name: self._load(name)}
                except Exception:
                    self._unloadable[name] = version
                    logger.exception(
                        "database %r: model '%s' version %s could not be loaded",
                        self.database.name,
                        name,
                        version,
                    )
                    continue
            loaded.append(name)
        return loaded

    def update(self, configs: dict[str, ModelConfig]) -> None:
        """New model definitions (a configuration reload): models whose definition changed are
        trained again on first use; the others keep serving."""
        with self._lock:
            self._loaded = {
                name: loaded
                for name, loaded in self._loaded.items()
                if configs.get(name) == self.configs.get(name)
            }
            self.configs = configs

    def training_order(self) -> list[str]:
        """Every configured model, each ensemble (or stacker) after its members (so that
        training them all trains a member once)."""
        return training_order(sorted(self.configs), self.configs, self.registry)

    def train(self, name: str) -> LoadedModel:
        """Train a model now and serve the new version."""
        train_model(self.database, self.configs[name], self.registry, self.directory, self.configs)
        fresh = self._load(name)
        with self._lock:
            self._loaded = {**self._loaded, name: fresh}
        return fresh

    def _load(self, name: str) -> LoadedModel:
        config = self.configs[name]
        version = current_version(self.directory, name)
        if version is None and self.on_missing is not None:
            return self._fallback(name)
        if version is None:
            try:
                train_model(self.database, config, self.registry, self.directory, self.configs)
            except OSError as error:
                if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    raise DiskFull(
                        self.database.name, f"model '{name}' could not be saved"
                    ) from None
                raise
            version = current_version(self.directory, name)
            assert version is not None
        cls = self.registry.algorithm(config.algorithm)
        algorithm = cls.load(self.directory / name / version)
        if isinstance(algorithm, MemberModel):
            # Members are resolved at each request, so that a retrained member counts at once.
            algorithm.bind(lambda member: self.get(member).algorithm)
        return LoadedModel(
            name, version, algorithm, item_interactions(self.directory / name / version)
        )

    def _fallback(self, name: str) -> LoadedModel:
        """What serves a model that has no version yet (under the lock)."""
        if name not in self.awaiting:
            self.awaiting.add(name)
            logger.warning(
                "database %r: model '%s' has no trained version; %s serves it while a trainer "
                "fits it",
                self.database.name,
                name,
                FALLBACK_MODEL,
            )
            assert self.on_missing is not None
            self.on_missing(name)
        if name != FALLBACK_MODEL and FALLBACK_MODEL in self.configs:
            base = self.get(FALLBACK_MODEL)
            return LoadedModel(name, FALLBACK_VERSION, base.algorithm)
        # The fallback itself is not trained yet: every item scores 0 (the order of the index).
        algorithm = self.registry.algorithm(self.configs[FALLBACK_MODEL].algorithm)()
        return LoadedModel(name, FALLBACK_VERSION, algorithm)
