"""Model artifacts: fitting a model on a snapshot and publishing it as a new version.

`train_model` fits one model and writes it to a new versioned directory
(`<data_dir>/models/<db>/<model>/<version>/`), then points `current` at it with an atomic
rename; servers load the current version (`server.serving.live_models`) and swap it in.
`train_model_from_shards` does the same from a snapshot directory whose interactions are read
in shards (plugins.shards), for the models that can learn so from training data larger than
memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from plugins.algorithm import Algorithm
from plugins.builtin.members import MemberModel, ModelFactory
from plugins.manager import Registry
from plugins.shards import SnapshotShards
from plugins.training import TrainingData
from server.serving.scenarios import ModelConfig
from server.training.item_vectors import provider_for, text_provider_for
from storage.database import Database
from storage.snapshot import take_snapshot


def train_model(
    database: Database,
    model: ModelConfig,
    registry: Registry,
    directory: Path,
    models: Mapping[str, ModelConfig] | None = None,
) -> Path:
    """Fit one model on a fresh snapshot and publish it as the current version. The members
    of a model over other models (an ensemble, a stacker) that have no version yet are trained
    first (`models`: the configured models); a stacker, which fits copies of its members while
    it learns, gets a factory of them (it keeps no copies: the server binds the members it
    serves)."""
    algorithm = registry.algorithm(model.algorithm)(**model.params)
    if isinstance(algorithm, MemberModel) and models is not None:
        for member in algorithm.members:
            if current_version(directory, member) is None:
                train_model(database, models[member], registry, directory, models)
        if algorithm.fits_members:
            algorithm.bind_factory(member_factory(models, registry), hosted=True)
    snapshot = database.read_sync(take_snapshot)
    data = TrainingData.from_snapshot(snapshot, model.weights)
    # Image models (and any plugin that wants item embeddings) get them from the host.
    provider = provider_for(database, registry, data.item_properties, data.n_items)
    texts = text_provider_for(registry, data.item_properties, data.n_items, database)
    started = time.monotonic()
    algorithm.fit(replace(data, item_vectors=provider, item_text_vectors=texts))
    figures = {
        "seconds": round(time.monotonic() - started, 3),
        "users": int(data.matrix.shape[0]),
        "items": int(data.matrix.shape[1]),
        "interactions": int(data.matrix.nnz),
    }
    counts = np.diff(data.matrix.tocsc().indptr).astype(np.int64)
    return _publish(algorithm, directory / model.name, counts, figures)


def learns_from_shards(model: ModelConfig, registry: Registry) -> bool:
    """Whether a model can be trained from a snapshot's Parquet files read in shards
    (`train_model_from_shards`): its algorithm learns from shards with the model's parameters."""
    cls = registry.algorithm(model.algorithm)
    return cls.can_learn_from_shards(cls.validate(model.params))


def train_model_from_shards(
    snapshot_dir: Path, model: ModelConfig, registry: Registry, directory: Path, *, batch_rows: int
) -> Path:
    """Fit one model on a snapshot directory (what storage.export.export_snapshot writes), its
    interactions read in shards of at most `batch_rows` rows rather than all at once (training
    data larger than memory), and publish it as the current version, as `train_model` does.
    ValueError for a model that cannot learn from shards (see `learns_from_shards`)."""
    algorithm = registry.algorithm(model.algorithm)(**model.params)
    if not algorithm.can_learn_from_shards(algorithm.settings):
        raise ValueError(
            f"model '{model.name}' ({model.algorithm}) cannot be trained from shards "
            "with these parameters"
        )
    started = time.monotonic()
    with SnapshotShards(snapshot_dir, batch_rows=batch_rows, weights=model.weights) as shards:
        algorithm.fit_shards(shards)
    figures = {"seconds": round(time.monotonic() - started, 3), "shards": True}
    return _publish(algorithm, directory / model.name, figures=figures)


ITEM_INTERACTIONS = "item_interactions.npy"
"""Beside a saved model: how many users had interacted with each item in its training data."""
TRAINING_FIGURES = "training.json"
"""Beside a saved model: how long it trained, on how many users, items and interactions."""


def _publish(
    algorithm: Algorithm,
    home: Path,
    counts: np.ndarray[Any, Any] | None = None,
    figures: Mapping[str, Any] | None = None,
) -> Path:
    """Save a fitted model (with its training data's interaction `counts` per item and its
    training `figures`, where given) as a new version under `home` and point `current` at it
    (an atomic rename, so that a server never reads half a version); returns the version's
    directory."""
    version = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() % 10**9:09d}"
    staging = home / f".{version}.tmp"
    algorithm.save(staging)
    if counts is not None:
        np.save(staging / ITEM_INTERACTIONS, counts, allow_pickle=False)
    if figures is not None:
        (staging / TRAINING_FIGURES).write_text(json.dumps(dict(figures)))
    target = home / version
    staging.rename(target)
    _point(home, version)
    _prune(home, keep={version})
    return target


def item_interactions(version_dir: Path) -> np.ndarray[Any, Any] | None:
    """The per-item interaction counts saved with a model version; None where it has none (or
    they cannot be read: the model serves without them)."""
    path = version_dir / ITEM_INTERACTIONS
    try:
        counts = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return counts if counts.ndim == 1 else None


def _point(home: Path, version: str) -> None:
    pointer = home / ".current.tmp"
    pointer.write_text(version)
    os.replace(pointer, home / "current")


class VersionError(ValueError):
    """A model version that does not exist (or no version to roll back to)."""


@dataclass(frozen=True)
class ModelVersion:
    """One saved version of a model."""

    model: str
    version: str
    saved_at: float
    """When it was saved (seconds since the epoch)."""
    live: bool
    """Whether `current` points at it."""
    meta: Mapping[str, Any]
    """What the algorithm saved about itself (algorithm, settings, n_items)."""
    training: Mapping[str, Any] | None = None
    """Its training figures (seconds, users, items, interactions), where they were saved."""

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "savedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.saved_at)),
            "live": self.live,
            "algorithm": self.meta.get("algorithm"),
            "nItems": self.meta.get("n_items"),
            "training": dict(self.training) if self.training is not None else None,
        }


def model_versions(directory: Path, model: str) -> list[ModelVersion]:
    """The saved versions of a model, oldest first."""
    home = directory / model
    if not home.is_dir():
        return []
    live = current_version(directory, model)
    found = []
    for path in sorted(home.iterdir()):
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError):
            continue  # not a complete version
        training = None
        with contextlib.suppress(OSError, ValueError):
            training = json.loads((path / TRAINING_FIGURES).read_text())
        found.append(
            ModelVersion(model, path.name, path.stat().st_mtime, path.name == live, meta, training)
        )
    return found


def roll_back(directory: Path, model: str, to: str | None = None) -> tuple[str | None, str]:
    """Point a model's `current` at an older version (`to`, or the one before the live one);
    returns the version that was live and the one that is now."""
    versions = [v.version for v in model_versions(directory, model)]
    live = current_version(directory, model)
    if to is None:
        older = [v for v in versions if live is None or v < live]
        if not older:
            raise VersionError(
                f"model '{model}' has no version older than {live or 'none'} to roll back to "
                f"(versions: {', '.join(versions) or 'none'})"
            )
        to = older[-1]
    elif to not in versions:
        raise VersionError(
            f"model '{model}' has no version '{to}' (versions: {', '.join(versions) or 'none'})"
        )
    _point(directory / model, to)
    return live, to


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


def member_factory(models: Mapping[str, ModelConfig], registry: Registry) -> ModelFactory:
    """A maker of fresh, unfitted models of the configured models by name, for a model that
    fits copies of its members (a stacker)."""

    def fresh(name: str) -> Algorithm:
        config = models[name]
        return registry.algorithm(config.algorithm)(**config.params)

    return fresh


def offline_algorithm(
    models: Mapping[str, ModelConfig], registry: Registry, name: str
) -> type[Algorithm]:
    """The class of configured model `name` for code that fits it where no host binds members
    (evaluation, search): a stacker, which fits copies of its members while it learns, comes
    with a factory of the configured models."""
    algorithm = registry.algorithm(models[name].algorithm)
    if issubclass(algorithm, MemberModel) and algorithm.fits_members:
        return algorithm.with_factory(member_factory(models, registry))
    return algorithm


def ensemble_members(model: ModelConfig, registry: Registry) -> tuple[str, ...]:
    """The members of a model over other models (an ensemble, a stacker: a MemberModel);
    none for other models."""
    cls = registry.algorithms.get(model.algorithm)
    if cls is None or not issubclass(cls, MemberModel):
        return ()
    return tuple(cls.validate(model.params)["members"])


def training_order(
    names: list[str], models: Mapping[str, ModelConfig], registry: Registry
) -> list[str]:
    """The models in `names`, each ensemble (or stacker) after those of its members that are
    listed (so that a member is not trained twice)."""
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
