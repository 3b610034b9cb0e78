"""A server loads a model's trained version when it appears, in the background: the first
request that wants the model finds it in memory (loading can import torch or read a large
index, which has no place inside a request)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from plugins.manager import collect, get_plugin_manager
from server.serving.live_models import FALLBACK_VERSION, LiveModels
from server.serving.scenarios import parse_models
from server.training.artifacts import current_version, train_model
from tests.plugins.catalog import build_catalog


def test_refresh_loads_models_a_trainer_published_before_any_request(tmp_path: Path) -> None:
    database = build_catalog(tmp_path / "catalog.duckdb", users=20, items=30, interactions=300)
    registry = collect(get_plugin_manager())
    configs = parse_models(None)
    directory = tmp_path / "models"
    asked: list[str] = []
    models = LiveModels(database, configs, registry, directory, on_missing=asked.append)
    try:
        assert models.refresh() == []
        assert all(models.peek(name) is None for name in configs)
        # Another process (the trainer) publishes a version of one model.
        train_model(database, configs["item-knn"], registry, directory, configs)
        assert models.refresh() == ["item-knn"]
        loaded = models.peek("item-knn")
        assert loaded is not None
        assert loaded.version == current_version(directory, "item-knn")
        # Models without a version stay unloaded (and no trainer is asked for them here).
        assert models.peek("popularity") is None
        assert asked == []
        # A newer version swaps in; an unchanged one is left as it is.
        assert models.refresh() == []
        train_model(database, configs["item-knn"], registry, directory, configs)
        assert models.refresh() == ["item-knn"]
        swapped = models.peek("item-knn")
        assert swapped is not None
        assert swapped.version != loaded.version
        assert swapped.version != FALLBACK_VERSION
    finally:
        database.close()


def test_a_version_that_fails_to_load_holds_up_no_other_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = build_catalog(tmp_path / "catalog.duckdb", users=20, items=30, interactions=300)
    registry = collect(get_plugin_manager())
    configs = parse_models(None)
    directory = tmp_path / "models"
    models = LiveModels(database, configs, registry, directory, on_missing=lambda name: None)
    try:
        broken = train_model(database, configs["popularity"], registry, directory, configs)
        (broken / "popularity.npy").write_bytes(b"not an array")
        train_model(database, configs["item-knn"], registry, directory, configs)
        with caplog.at_level(logging.ERROR, logger="reqo"):
            assert models.refresh() == ["item-knn"]
            assert models.refresh() == []
        assert models.peek("popularity") is None
        failures = [r for r in caplog.records if "could not be loaded" in r.getMessage()]
        assert len(failures) == 1  # once per version, not at every poll
        assert broken.name in failures[0].getMessage()
        # A newer version is tried again, and serves.
        train_model(database, configs["popularity"], registry, directory, configs)
        assert models.refresh() == ["popularity"]
        assert models.peek("popularity") is not None
    finally:
        database.close()
