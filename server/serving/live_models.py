"""Trained models on disk and in memory.

`train_model` snapshots a database, fits a model and writes it to a new versioned directory
(`<data_dir>/models/<db>/<model>/<version>/`), then points `current` at it with an atomic rename.
`LiveModels` serves the current version of each model and picks up a newer one without a restart:
the swap is one assignment, so a request sees either the old model or the new one.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from plugins.algorithm import Algorithm, ParameterError
from plugins.builtin.ensemble import Ensemble
from plugins.manager import Registry
from plugins.training import TrainingData, WeightError, validate_weights
from server.config import Config, ConfigError
from server.serving.item_vectors import provider_for
from server.serving.scenarios import ModelConfig
from storage.database import Database
from storage.errors import DiskFull
from storage.snapshot import take_snapshot


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    algorithm: Algorithm


def train_model(
    database: Database,
    model: ModelConfig,
    registry: Registry,
    directory: Path,
    models: Mapping[str, ModelConfig] | None = None,
) -> Path:
    """Fit one model on a fresh snapshot and publish it as the current version. An ensemble's
    members that have no version yet are trained first (`models`: the configured models)."""
    algorithm = registry.algorithm(model.algorithm)(**model.params)
    if isinstance(algorithm, Ensemble) and models is not None:
        for member in algorithm.members:
            if current_version(directory, member) is None:
                train_model(database, models[member], registry, directory, models)
    snapshot = database.read_sync(take_snapshot)
    data = TrainingData.from_snapshot(snapshot, model.weights)
    # Image models (and any plugin that wants item embeddings) get them from the host.
    provider = provider_for(database, registry, data.item_properties, data.n_items)
    algorithm.fit(replace(data, item_vectors=provider))
    home = directory / model.name
    version = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() % 10**9:09d}"
    staging = home / f".{version}.tmp"
    algorithm.save(staging)
    target = home / version
    staging.rename(target)
    pointer = home / ".current.tmp"
    pointer.write_text(version)
    os.replace(pointer, home / "current")
    _prune(home, keep={version})
    return target


def check_models(config: Config, registry: Registry) -> None:
    """Every configured model names a registered algorithm with valid parameters."""
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


def ensemble_members(model: ModelConfig, registry: Registry) -> tuple[str, ...]:
    """The members of a model whose algorithm is an ensemble (none for other models)."""
    cls = registry.algorithms.get(model.algorithm)
    if cls is None or not issubclass(cls, Ensemble):
        return ()
    return tuple(cls.validate(model.params)["members"])


def check_ensembles(config: Config, registry: Registry) -> None:
    """Every ensemble's members are configured models, and no ensemble contains itself."""
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
                f"an ensemble cannot contain itself: {' -> '.join(path)}",
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


def training_order(
    names: list[str], models: Mapping[str, ModelConfig], registry: Registry
) -> list[str]:
    """The models in `names`, each ensemble after those of its members that are listed (so
    that a member is not trained twice)."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        for member in ensemble_members(models[name], registry):
            if member in names:
                visit(member)
        ordered.append(name)

    for name in names:
        visit(name)
    return ordered


def current_version(directory: Path, model: str) -> str | None:
    try:
        return (directory / model / "current").read_text().strip() or None
    except FileNotFoundError:
        return None


def _prune(home: Path, keep: set[str], keep_last: int = 3) -> None:
    """Remove old versions, keeping the newest few (a server may still be loading one)."""
    versions = sorted(p for p in home.iterdir() if p.is_dir() and not p.name.startswith("."))
    for old in versions[:-keep_last]:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)


class LiveModels:
    """The models a database serves, loaded from their current versions (trained on first use
    when none exists yet)."""

    def __init__(
        self,
        database: Database,
        models: dict[str, ModelConfig],
        registry: Registry,
        directory: Path,
    ) -> None:
        self.database = database
        self.configs = models
        self.registry = registry
        self.directory = directory
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

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
        """Load every model whose current version on disk is newer than the loaded one."""
        changed = []
        for name, loaded in list(self._loaded.items()):
            version = current_version(self.directory, name)
            if version is not None and version != loaded.version:
                fresh = self._load(name)
                with self._lock:
                    self._loaded = {**self._loaded, name: fresh}
                changed.append(name)
        return changed

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
        """Every configured model, each ensemble after its members (so that training them all
        trains a member once)."""
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
        if isinstance(algorithm, Ensemble):
            # Members are resolved at each request, so that a retrained member counts at once.
            algorithm.bind(lambda member: self.get(member).algorithm)
        return LoadedModel(name, version, algorithm)
