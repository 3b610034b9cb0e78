"""The trainer's choice between training in memory and from a snapshot's files in shards
(`train_in_shards_over`): past the threshold, the models that learn from mini-batches read the
shards; the others still train in memory, in the same round."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from plugins.builtin.autoencoders import MultDAE
from plugins.manager import collect, get_plugin_manager
from server.config import load_config
from server.training.artifacts import current_version
from server.training.trainer import fit_snapshot, interaction_rows
from storage.export import export_snapshot
from tests.plugins.catalog import build_catalog

MODELS = {
    "dae": {"algorithm": "mult-dae", "params": {"hidden": 0, "latent": 8, "epochs": 2}},
    "pop": {"algorithm": "popularity"},
}


def fitted(tmp_path: Path, snapshot: Path, name: str, threshold: int) -> MultDAE:
    directory = tmp_path / name
    directory.mkdir()
    config_path = directory / "reqo.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "databases": {"shop": {"token": "t"}},
                "models": MODELS,
                "train_in_shards_over": threshold,
            }
        )
    )
    config = load_config(config_path)
    registry = collect(get_plugin_manager())
    # Shards of 64 rows: many buckets, so the mini-batches come in another order than in memory.
    versions = fit_snapshot(config, registry, "shop", snapshot, ["dae", "pop"], batch_rows=64)
    models = config.models_dir("shop")
    assert versions == {m: current_version(models, m) for m in ("dae", "pop")}
    return MultDAE.load(models / "dae" / versions["dae"])


def test_past_the_threshold_the_autoencoder_trains_from_shards(tmp_path: Path) -> None:
    database = build_catalog(tmp_path / "shop.duckdb")
    snapshot = database.read_sync(lambda ctx: export_snapshot(ctx, tmp_path / "snapshots"))
    database.close()
    assert interaction_rows(snapshot) == 600
    in_memory = fitted(tmp_path, snapshot, "memory", threshold=600)
    again = fitted(tmp_path, snapshot, "memory-again", threshold=600)
    sharded = fitted(tmp_path, snapshot, "shards", threshold=599)
    same = [
        np.array_equal(a, b)
        for a, b in zip(in_memory.state().values(), again.state().values(), strict=True)
    ]
    # Training is seeded: the same path gives the same weights, the other path (shards, in
    # another order of mini-batches) gives others.
    assert all(same)
    differ = [
        not np.array_equal(a, b)
        for a, b in zip(in_memory.state().values(), sharded.state().values(), strict=True)
    ]
    assert any(differ)
    assert sharded.n_items == in_memory.n_items
