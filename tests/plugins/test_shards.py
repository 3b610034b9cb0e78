"""Training from a snapshot's Parquet files read in shards (plugins.shards): the shards hold
exactly what TrainingData holds, in bounded memory; a walk over sessions in parts covers each
session once; Mult-DAE and GRU4Rec learn from shards as well as in memory; a model trained from
shards is published and loads."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
import torch

from plugins.algorithm import ParameterError, UserHistory
from plugins.builtin import gru4rec_network
from plugins.builtin.autoencoders import MultDAE, MultVAE
from plugins.builtin.gru4rec import GRU4Rec
from plugins.builtin.next_item import torch_threads
from plugins.builtin.sessions import Carried, Pause, session_parallel, sessions
from plugins.evaluation.metrics import ndcg_at, recall_at, top_k
from plugins.manager import collect, get_plugin_manager
from plugins.shards import SnapshotShards
from plugins.training import Holdout, TrainingData, WeightError
from server.serving.scenarios import ModelConfig
from server.training.artifacts import (
    current_version,
    learns_from_shards,
    train_model_from_shards,
)
from storage.database import Database, WriteContext
from storage.export import export_snapshot, import_snapshot
from storage.interactions import InteractionKind
from storage.movielens import load
from storage.snapshot import take_snapshot
from tests.plugins.catalog import build_catalog

HELD = 5
"""Each MovieLens user's latest ratings held out of training, to score the models on."""
WEIGHTS = {"ratings": 0.5, "purchases": 7.0, "view_portions": 3.0}
"""Kind weights other than the defaults, for the catalog: the shards must weight as memory."""


@dataclass(frozen=True)
class Prepared:
    """A snapshot directory, TrainingData of the same data as take_snapshot reads it, and (for
    MovieLens) the held-out latest ratings."""

    snapshot: Path
    data: TrainingData
    weights: dict[str, float] | None = None
    holdout: Holdout | None = None


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread: on these 2-core machines, two threads make the autoencoders' many
    small steps wait on each other whenever another process is busy."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    """MovieLens-100K without each user's HELD latest ratings."""
    directory = tmp_path_factory.mktemp("ml-shards")
    database = Database("ml", directory / "ml.duckdb")
    load(database, progress=False)
    latest = f"""SELECT user_id, item_id, ts FROM (
        SELECT user_id, item_id, ts, row_number() OVER (
            PARTITION BY user_id ORDER BY ts DESC, item_id DESC) AS rank
        FROM interactions) WHERE rank <= {HELD}"""

    def hold_out(ctx: WriteContext) -> list[tuple[Any, ...]]:
        held = ctx.conn.execute(latest).fetchall()
        ctx.conn.execute(f"DELETE FROM interactions WHERE (user_id, item_id, ts) IN ({latest})")
        ctx.touched_interactions()
        return held

    held = database.write_sync(hold_out)
    snapshot = database.read_sync(lambda ctx: export_snapshot(ctx, directory / "snapshots"))
    data = TrainingData.from_snapshot(database.read_sync(take_snapshot))
    database.close()
    users = {user_id: index for index, user_id in enumerate(data.user_ids)}
    items = {item_id: index for index, item_id in enumerate(data.item_ids)}
    holdout = Holdout.of(
        np.array([users[u] for u, _, _ in held]),
        np.array([items[i] for _, i, _ in held]),
        data.n_users,
    )
    return Prepared(snapshot, data, holdout=holdout)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    """The synthetic catalog (several kinds, -1 ratings), its snapshot's interactions file
    rewritten with what a join drops (an unknown user, an unknown item), view portions with and
    without a portion, a rating without a value and a tie in time, in several row groups; the
    reference is take_snapshot of that very snapshot, loaded into a database of its own."""
    directory = tmp_path_factory.mktemp("catalog-shards")
    database = build_catalog(directory / "catalog.duckdb")
    snapshot = database.read_sync(lambda ctx: export_snapshot(ctx, directory / "snapshots"))
    database.close()
    path = snapshot / "interactions.parquet"
    table = pq.read_table(path)
    moment = datetime(2024, 1, 1, 12, 0, 0)
    portion, rating = InteractionKind.VIEW_PORTION.code, InteractionKind.RATING.code
    extra = [
        {"kind": 1, "user_id": "ghost", "item_id": "i0", "ts": moment},
        {"kind": 1, "user_id": "u0", "item_id": "ghost", "ts": moment},
        {"kind": portion, "user_id": "u1", "item_id": "i4", "ts": moment, "portion": None},
        {"kind": portion, "user_id": "u1", "item_id": "i3", "ts": moment, "portion": 0.5},
        {"kind": rating, "user_id": "u2", "item_id": "i5", "ts": moment, "rating": None},
    ]
    rows = pa.Table.from_pylist(extra[:2], schema=table.schema)
    more = pa.Table.from_pylist(extra[2:], schema=table.schema)
    pq.write_table(pa.concat_tables([rows, table, more]), path, row_group_size=128)
    reference = Database("reference", None)
    reference.write_sync(lambda ctx: import_snapshot(ctx, snapshot))
    data = TrainingData.from_snapshot(reference.read_sync(take_snapshot), WEIGHTS)
    reference.close()
    return Prepared(snapshot, data, WEIGHTS)


# -- what the shards hold ------------------------------------------------------------------------


@pytest.mark.parametrize(("prepared", "batch_rows"), [("movielens", 1500), ("catalog", 40)])
def test_the_shards_hold_what_training_data_holds(
    prepared: str, batch_rows: int, request: pytest.FixtureRequest
) -> None:
    given: Prepared = request.getfixturevalue(prepared)
    data = given.data
    with SnapshotShards(given.snapshot, batch_rows=batch_rows, weights=given.weights) as shards:
        assert shards.n_buckets >= 20
        assert (shards.n_items, shards.n_users) == (data.n_items, data.n_users)
        assert shards.item_ids == data.item_ids
        assert shards.user_ids == data.user_ids
        assert shards.n_interactions == len(data.items)
        np.testing.assert_array_equal(
            shards.item_counts, np.bincount(data.items, minlength=data.n_items)
        )
        seen: list[int] = []
        for shard in shards.shards():
            assert 0 < len(shard) <= batch_rows
            for j, user in enumerate(shard.users.tolist()):
                seen.append(user)
                ours = slice(shard.indptr[j], shard.indptr[j + 1])
                theirs = slice(data.indptr[user], data.indptr[user + 1])
                # Whole users, oldest first, each interaction weighted as in memory.
                np.testing.assert_array_equal(shard.items[ours], data.items[theirs])
                np.testing.assert_array_equal(shard.timestamps[ours], data.timestamps[theirs])
                np.testing.assert_array_equal(shard.kinds[ours], data.kinds[theirs])
                np.testing.assert_array_equal(shard.weights[ours], data.weights[theirs])
        assert sorted(seen) == np.flatnonzero(np.diff(data.indptr)).tolist()
        for user, items, times in shards.sequences(np.random.default_rng(0)):
            np.testing.assert_array_equal(items, data.sequence(user))
            np.testing.assert_array_equal(
                times, data.timestamps[data.indptr[user] : data.indptr[user + 1]]
            )
        # One bucket (about half of batch_rows) or one read batch at a time, never the lot.
        assert shards.peak_rows <= 2 * batch_rows
        assert shards.peak_rows < len(data.items) / 8

        rows, users = [], []
        batches = list(shards.user_batches(16, np.random.default_rng(1)))
        for batch in batches:
            users.append(batch.users)
            rows.append(batch.matrix)
        assert all(len(batch.users) == 16 for batch in batches[:-1])
    order = np.concatenate(users)
    assert sorted(order.tolist()) == sorted(set(seen))
    matrix = sp.lil_matrix(data.matrix.shape, dtype=np.float32)
    matrix[order] = sp.vstack(rows)
    np.testing.assert_allclose(matrix.toarray(), data.matrix.toarray(), rtol=1e-6)


def test_bad_weights_are_refused_and_the_spill_is_removed(
    catalog: Prepared, tmp_path: Path
) -> None:
    with pytest.raises(WeightError, match="likes"):
        SnapshotShards(catalog.snapshot, weights={"likes": 1.0}, spill=tmp_path)
    shards = SnapshotShards(catalog.snapshot, batch_rows=100, spill=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    shards.close()
    assert list(tmp_path.iterdir()) == []


def test_a_walk_in_parts_reads_each_session_whole_in_one_slot() -> None:
    """Sessions walked in five parts, each paused where it would start to shrink and its busy
    slots carried into the next: every slot reads one session from its first item to its last
    input, on the same row of the state from part to part (as train_pass keeps it)."""
    rng = np.random.default_rng(4)
    lengths = rng.integers(2, 12, 60)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    parts = [0, 9, 10, 31, 47, 60]
    carried = Carried(np.zeros(0, np.int64), np.zeros(0, np.int64), 0)
    rows: list[list[int]] = []  # what each slot has read since its state was last reset
    read: list[list[int]] = []
    for first, last in itertools.pairwise(parts):
        items = np.arange(bounds[first], bounds[last])  # item k is position k overall
        starts = bounds[first:last] - bounds[first]
        ends = bounds[first + 1 : last + 1] - bounds[first]
        order = rng.permutation(last - first)
        items, starts, ends, order = carried.before(items, starts, ends, order)
        pause = Pause() if last < parts[-1] else None
        assert len(rows) == carried.busy
        steps = session_parallel(starts, ends, order, 7, carried=carried.busy, pause=pause)
        for step in steps:
            if step.keep is not None:
                read += [r for r, kept in zip(rows, step.keep, strict=True) if not kept]
                rows = [r for r, kept in zip(rows, step.keep, strict=True) if kept]
            rows += [[] for _ in range(len(step.inputs) - len(rows))]
            for reset in np.flatnonzero(step.reset).tolist():
                read.append(rows[reset])
                rows[reset] = []
            for slot, position in enumerate(step.inputs.tolist()):
                assert items[position + 1] == items[position] + 1  # the target: the next
                rows[slot].append(int(items[position]))
        if pause is not None:
            assert pause.paused
            read += [r for r, busy in zip(rows, pause.busy, strict=True) if not busy]
            rows = [r for r, busy in zip(rows, pause.busy, strict=True) if busy]
            carried = pause.carried(items, starts, ends)
    read = [r for r in read + rows if r]
    expected = [list(range(bounds[s], bounds[s + 1] - 1)) for s in range(60)]
    assert sorted(read) == sorted(expected)


# -- learning from shards ------------------------------------------------------------------------


Scorer = Callable[[list[UserHistory]], np.ndarray[Any, Any]]


def scored(scores: Scorer, given: Prepared) -> tuple[float, float]:
    """Recall@20 and NDCG@10 of the held-out ratings, each user scored (`scores`: a model's
    user_scores) from their training history, their training items left out."""
    data, holdout = given.data, given.holdout
    assert holdout is not None
    users = holdout.users.tolist()
    histories = [
        UserHistory(
            data.sequence(u),
            timestamps=data.timestamps[data.indptr[u] : data.indptr[u + 1]],
            weights=data.weights[data.indptr[u] : data.indptr[u + 1]],
        )
        for u in users
    ]
    ranked = top_k(scores(histories), 20, [data.sequence(u) for u in users])
    relevant = [holdout.of_user(u) for u in users]
    return float(recall_at(ranked, relevant, 20).mean()), float(
        ndcg_at(ranked, relevant, 10).mean()
    )


def popularity(given: Prepared) -> tuple[float, float]:
    """The figures of ranking by training interaction counts: what a model must beat."""
    counts = np.bincount(given.data.items, minlength=given.data.n_items).astype(np.float32)
    return scored(lambda histories: np.tile(counts, (len(histories), 1)), given)


DAE = {"hidden": 0, "latent": 64, "dropout": 0.5, "epochs": 10, "batch_size": 64, "lr": 3e-3}
"""Small and quick. On these held-out ratings, seeds 0-2 gave recall@20 0.170-0.175 in memory
and 0.168-0.174 from shards (popularity: 0.111)."""


def test_mult_dae_from_shards_scores_as_well_as_in_memory(movielens: Prepared) -> None:
    in_memory = MultDAE(seed=0, **DAE)
    in_memory.fit(movielens.data)
    with SnapshotShards(movielens.snapshot, batch_rows=4000) as shards:
        sharded = MultDAE(seed=0, **DAE)
        sharded.fit_shards(shards)
    assert sharded.n_items == movielens.data.n_items
    assert sharded.epochs_trained == sharded.best_epoch == 10
    recall, ndcg = scored(sharded.user_scores, movielens)
    memory_recall, memory_ndcg = scored(in_memory.user_scores, movielens)
    # Within about three times the spread between seeds.
    assert abs(recall - memory_recall) <= 0.02
    assert abs(ndcg - memory_ndcg) <= 0.015
    assert recall > popularity(movielens)[0] + 0.03


def test_mult_vae_from_shards_is_deterministic(catalog: Prepared) -> None:
    settings = {"hidden": 16, "latent": 4, "epochs": 3, "batch_size": 8, "seed": 2}
    states = []
    for _ in range(2):
        with SnapshotShards(catalog.snapshot, batch_rows=40) as shards:
            model = MultVAE(**settings)
            model.fit_shards(shards)
        states.append(model.state())
        scores = model.user_scores([UserHistory.of_items([0, 3])])
        assert scores.shape == (1, catalog.data.n_items)
        assert np.isfinite(scores).all()
    for key, value in states[0].items():
        np.testing.assert_array_equal(value, states[1][key])


GRU = {"hidden": 16, "n_sample": 16, "batch_size": 8, "epochs": 2, "session_gap": 0.0}


def test_gru4rec_from_shards_learns_every_pair_once_carrying_the_state(
    catalog: Prepared, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every (item, next item) pair once per epoch, and each slot's hidden state going on from
    shard to shard: a spy marks column 0 of the state with the item just read (+ 1; 0 after a
    reset), and at each step a slot whose state is not reset must read that item's next."""
    data = catalog.data
    expected: Counter[tuple[int, int]] = Counter()
    starts, ends = sessions(data.indptr, data.timestamps, 0.0)
    for start, end in zip(starts, ends, strict=True):
        expected.update(itertools.pairwise(data.items[start:end].tolist()))
    pairs: Counter[tuple[int, int]] = Counter()
    inputs: list[list[int]] = []
    begun = 0
    step, score_some = gru4rec_network.SessionGRU.step, gru4rec_network.SessionGRU.score_some

    def spy_step(
        network: Any, items: torch.Tensor, state: list[torch.Tensor], *args: Any
    ) -> torch.Tensor:
        nonlocal begun
        for mark, item in zip(state[0][:, 0].tolist(), items.tolist(), strict=True):
            if mark == 0:
                begun += 1
            else:
                assert (int(mark) - 1, item) in expected
        inputs.append(items.tolist())
        output = step(network, items, state, *args)
        for layer, h in enumerate(state):
            state[layer] = h.clone()
            state[layer][:, 0] = items.float() + 1
        return output

    def spy_scores(network: Any, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        pairs.update(zip(inputs[-1], items[: len(state)].tolist(), strict=True))
        return score_some(network, state, items)

    monkeypatch.setattr(gru4rec_network.SessionGRU, "step", spy_step)
    monkeypatch.setattr(gru4rec_network.SessionGRU, "score_some", spy_scores)
    with SnapshotShards(catalog.snapshot, batch_rows=40) as shards:
        assert shards.n_buckets >= 20
        model = GRU4Rec(seed=1, **GRU)
        model.fit_shards(shards)
    assert pairs == Counter({pair: 2 * count for pair, count in expected.items()})  # 2 epochs
    assert begun == 2 * len(starts)  # each session started once per epoch, never twice
    # The slots stay full across shards: only each epoch's end drains them, for at most as
    # many steps as the longest session has pairs.
    longest = int(np.diff(data.indptr).max()) - 1
    assert sum(len(i) < GRU["batch_size"] for i in inputs) <= 2 * longest


def test_gru4rec_from_one_shard_is_the_model_fit_trains(catalog: Prepared) -> None:
    settings = {**GRU, "session_order": "time", "session_gap": 1800.0}
    with SnapshotShards(catalog.snapshot, batch_rows=10_000, weights=WEIGHTS) as shards:
        sharded = GRU4Rec(seed=3, **settings)
        sharded.fit_shards(shards)
    in_memory = GRU4Rec(seed=3, **settings)
    in_memory.fit(catalog.data)
    assert sharded.losses == in_memory.losses
    for key, value in in_memory.state().items():
        np.testing.assert_array_equal(sharded.state()[key], value)


def test_gru4rec_from_shards_learns_the_next_items(movielens: Prepared) -> None:
    settings = {"hidden": 32, "n_sample": 64, "batch_size": 128, "epochs": 1, "session_gap": 0.0}
    with SnapshotShards(movielens.snapshot, batch_rows=8000) as shards:
        model = GRU4Rec(seed=0, **settings)
        model.fit_shards(shards)
    recall, _ = scored(model.user_scores, movielens)
    # 0.208 at this seed (in memory: 0.213); popularity 0.111.
    assert recall > popularity(movielens)[0] + 0.05
    assert np.isfinite(model.losses).all()


def test_gru4rec_with_item_vectors_refuses_shards(catalog: Prepared) -> None:
    model = GRU4Rec(item_features="both")
    assert not model.can_learn_from_shards(model.settings)
    with (
        SnapshotShards(catalog.snapshot) as shards,
        pytest.raises(ParameterError, match="item_features"),
    ):
        model.fit_shards(shards)


# -- publishing ----------------------------------------------------------------------------------

REGISTRY = collect(get_plugin_manager())


def test_a_model_trained_from_shards_is_published_and_loads(
    catalog: Prepared, tmp_path: Path
) -> None:
    model = ModelConfig(
        "dae", "mult-dae", {"hidden": 0, "latent": 8, "epochs": 2, "seed": 1}, WEIGHTS
    )
    assert learns_from_shards(model, REGISTRY)
    target = train_model_from_shards(
        catalog.snapshot, model, REGISTRY, tmp_path / "models", batch_rows=64
    )
    assert current_version(tmp_path / "models", "dae") == target.name
    loaded = MultDAE.load(target)
    assert loaded.n_items == catalog.data.n_items
    scores = loaded.user_scores([UserHistory.of_items([1, 4, 7])])
    assert np.isfinite(scores).all()
    assert np.ptp(scores) > 0


def test_models_that_cannot_learn_from_shards_are_refused(
    catalog: Prepared, tmp_path: Path
) -> None:
    assert not learns_from_shards(ModelConfig("e", "ease"), REGISTRY)
    vectors = ModelConfig("g", "gru4rec", {"item_features": "vectors"})
    assert not learns_from_shards(vectors, REGISTRY)
    assert learns_from_shards(ModelConfig("g", "gru4rec"), REGISTRY)
    with pytest.raises(ValueError, match="cannot be trained from shards"):
        train_model_from_shards(catalog.snapshot, vectors, REGISTRY, tmp_path, batch_rows=64)
    assert not (tmp_path / "g").exists()
