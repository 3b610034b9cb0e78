"""GRU4Rec: what a training step ranks against, the losses, learning a sequence, serving the
latest session, item vectors as input, rarely seen items scored by their vectors (shrinkage),
early stopping and determinism (the sessions and mini-batches themselves: test_sessions.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

from plugins.algorithm import ParameterError, UserHistory
from plugins.builtin import gru4rec_network
from plugins.builtin.gru4rec import GRU4Rec
from plugins.builtin.gru4rec_network import bpr_max, cross_entropy
from plugins.builtin.item_knn import ItemKNN
from plugins.training import ItemEmbeddings
from storage.fashion_sessions import Simulation, look_alikes, simulate
from tests.plugins.sequences import CYCLE, cyclic, next_item_accuracy, sequence_data

# Small and quick: the cycle is easy to learn.
SMALL: dict[str, Any] = {
    "hidden": 32,
    "batch_size": 16,
    "n_sample": 16,
    "epochs": 8,
    "learning_rate": 0.1,
}


def fitted(**settings: Any) -> GRU4Rec:
    model = GRU4Rec(seed=1, **{**SMALL, **settings})
    model.fit(cyclic())
    return model


@pytest.fixture(scope="module")
def model() -> GRU4Rec:
    return fitted()


# -- training -----------------------------------------------------------------------------------


def test_a_step_ranks_against_the_other_targets_and_the_samples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Sessions of two items, (2k -> 2k + 1): every target is odd; 5 users, 3 slots.
    data = sequence_data([[2 * k, 2 * k + 1] for k in range(5)], 10)
    seen: list[tuple[int, list[int]]] = []
    score_some = gru4rec_network.SessionGRU.score_some

    def spy(network: Any, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        seen.append((len(state), items.tolist()))
        return score_some(network, state, items)

    monkeypatch.setattr(gru4rec_network.SessionGRU, "score_some", spy)
    GRU4Rec(seed=2, batch_size=3, n_sample=4, epochs=1, hidden=8).fit(data)
    targets = []
    for rows, items in seen:
        assert len(items) == rows + 4
        targets += items[:rows]  # the slots' targets first, then the shared samples
    assert sorted(targets) == [1, 3, 5, 7, 9]
    # The samples come from the items seen, by popularity: all 10 are seen once.
    assert {i for _, items in seen for i in items} <= set(range(10))


# -- losses -------------------------------------------------------------------------------------


def test_bpr_max_matches_a_hand_computed_value() -> None:
    scores = torch.tensor([[2.0, 0.5, -1.0], [0.3, 1.0, 0.7]])
    total = 0.0
    for row, values in enumerate(scores.tolist()):
        negatives = [v for j, v in enumerate(values) if j != row]
        weights = [math.exp(v) / sum(math.exp(u) for u in negatives) for v in negatives]
        ranked = sum(
            w / (1 + math.exp(-(values[row] - v))) for w, v in zip(weights, negatives, strict=True)
        )
        penalty = sum(w * v * v for w, v in zip(weights, negatives, strict=True))
        total += -math.log(ranked) + 0.5 * penalty
    assert float(bpr_max(scores, bpreg=0.5)) == pytest.approx(total, rel=1e-6)
    # With ELU, the same on ELU(scores): -1.0 becomes 0.3 * (e^-1 - 1).
    elu = scores.clone()
    elu[0, 2] = 0.3 * (math.exp(-1.0) - 1.0)
    assert float(bpr_max(scores, 0.5, elu=0.3)) == pytest.approx(float(bpr_max(elu, 0.5)))


def test_cross_entropy_matches_a_hand_computed_value() -> None:
    scores = torch.tensor([[2.0, 0.5, -1.0], [0.3, 1.0, 0.7]])
    expected = sum(
        -math.log(math.exp(row[i]) / sum(math.exp(v) for v in row))
        for i, row in enumerate(scores.tolist())
    )
    assert float(cross_entropy(scores)) == pytest.approx(expected, rel=1e-6)
    correction = torch.tensor([0.1, 0.2, 0.3])
    assert float(cross_entropy(scores, correction)) == pytest.approx(
        float(cross_entropy(scores - correction))
    )


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
def test_both_losses_decrease_and_learn_the_cycle(loss: str) -> None:
    model = fitted(loss=loss)
    assert len(model.losses) == 8
    assert model.losses[-1] < 0.9 * model.losses[0]
    assert next_item_accuracy(model.item_scores(list(range(CYCLE)))) >= 0.9


def test_it_learns_what_a_non_sequential_model_cannot(model: GRU4Rec) -> None:
    histories = [UserHistory.of_items([(i - 2) % CYCLE, (i - 1) % CYCLE, i]) for i in range(CYCLE)]
    assert next_item_accuracy(model.user_scores(histories)) >= 0.9
    # Item-kNN sees items i - 1 and i + 1 next to i equally often: it cannot tell which is next.
    knn = ItemKNN()
    knn.fit(cyclic())
    assert next_item_accuracy(knn.user_scores(histories)) <= 0.6


@pytest.mark.parametrize(
    "settings",
    [
        {"layers": 2, "dropout_hidden": 0.1, "dropout_embedding": 0.1},
        {"embedding": 16, "momentum": 0.3, "session_order": "time"},
        {"optimizer": "adam", "learning_rate": 0.01, "logq": 0.0},
        {"n_sample": 0, "loss": "bpr-max", "elu_param": 0.0},
        {"batch_size": 100, "epochs": 30},  # more slots than sessions
    ],
)
def test_variants_learn_the_cycle(settings: dict[str, Any]) -> None:
    model = fitted(**settings)
    assert next_item_accuracy(model.item_scores(list(range(CYCLE)))) >= 0.8


# -- serving ------------------------------------------------------------------------------------


def test_a_new_interaction_changes_the_top_item(model: GRU4Rec) -> None:
    before, after = model.user_scores(
        [UserHistory.of_items([3, 4]), UserHistory.of_items([3, 4, 9])]
    )
    assert before.argmax() == 5
    assert after.argmax() == 10


def test_scores_read_the_latest_session_only(model: GRU4Rec) -> None:
    items = np.array([3, 4, 9])
    paused = UserHistory(items, timestamps=np.array([0.0, 60.0, 7200.0]))
    steady = UserHistory(items, timestamps=np.array([0.0, 60.0, 120.0]))
    paused_scores, steady_scores, alone = model.user_scores(
        [paused, steady, UserHistory.of_items([9])]
    )
    np.testing.assert_allclose(paused_scores, alone, rtol=1e-5, atol=1e-5)
    assert not np.allclose(paused_scores, steady_scores)
    np.testing.assert_allclose(model.item_scores([9])[0], alone, rtol=1e-5, atol=1e-5)


def test_a_batch_scores_each_history_as_alone(model: GRU4Rec) -> None:
    histories = [
        UserHistory.of_items([1, 2, 3, 4, 5]),
        UserHistory.empty(),
        UserHistory.of_items([7]),
        UserHistory.of_items([CYCLE + 5, 11, CYCLE + 1]),  # items unknown to the model
        UserHistory.of_items(list(range(CYCLE)) * 4),  # longer than max_history
    ]
    batch = model.user_scores(histories)
    assert batch.shape == (5, CYCLE)
    assert batch.dtype == np.float32
    for row, history in enumerate(histories):
        np.testing.assert_allclose(batch[row], model.user_scores([history])[0], atol=1e-5)
    np.testing.assert_allclose(batch[3], model.item_scores([11])[0], atol=1e-5)
    np.testing.assert_allclose(
        batch[4], model.user_scores([UserHistory.of_items(list(range(CYCLE)) * 2)])[0], atol=1e-5
    )
    # No history: the output biases, finite, the same for everyone.
    assert np.isfinite(batch[1]).all()
    np.testing.assert_allclose(batch[1], model.state()["bias"][:, 0], atol=1e-6)
    np.testing.assert_allclose(model.item_scores([CYCLE + 3])[0], batch[1], atol=1e-6)


def test_scoring_before_fitting_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        GRU4Rec().user_scores([UserHistory.of_items([1])])


# -- item vectors -------------------------------------------------------------------------------


def vector_provider(calls: list[Mapping[str, Any]]) -> Any:
    """A provider of 6-dimensional unit vectors in which items i and i + 10 look the same, and
    item 7 has none."""

    def provide(
        *, embedder: str, settings: Mapping[str, Any], image_property: str
    ) -> ItemEmbeddings:
        calls.append({"embedder": embedder, "settings": settings, "image_property": image_property})
        rng = np.random.default_rng(0)
        half = rng.normal(size=(10, 6)).astype(np.float32)
        vectors = np.concatenate([half, half])
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        present = np.ones(CYCLE, dtype=np.bool_)
        present[7] = False
        vectors[7] = 0.0
        return ItemEmbeddings(vectors, present)

    return provide


@pytest.mark.parametrize("features", ["vectors", "both"])
def test_item_vectors_as_input_survive_save_and_load(features: str, tmp_path: Path) -> None:
    calls: list[Mapping[str, Any]] = []
    properties = pa.table({"picture": [f"p{i}" for i in range(CYCLE)]})
    data = cyclic(item_properties=properties, item_vectors=vector_provider(calls))
    settings = {"embedder": "raw-pixels", "embedder_settings": {"size": 8}}
    model = GRU4Rec(
        seed=1, item_features=features, image_property="picture", **{**SMALL, **settings}
    )
    model.fit(data)
    assert calls == [
        {"embedder": "raw-pixels", "settings": {"size": 8}, "image_property": "picture"}
    ]
    arrays = model.state()
    assert arrays["vectors"].shape == (CYCLE, 6)
    assert not arrays["vectors"][7].any()
    scores = model.item_scores(list(range(CYCLE)))
    if features == "vectors":
        # The input is the vector alone: items that look the same lead to the same scores.
        np.testing.assert_allclose(scores[3], scores[13], atol=1e-5)
    else:
        assert not np.allclose(scores[3], scores[13], atol=1e-5)
    model.save(tmp_path / "gru")
    loaded = GRU4Rec.load(tmp_path / "gru")  # no provider at hand
    np.testing.assert_array_equal(loaded.item_scores(list(range(CYCLE))), scores)


def test_vectors_without_a_provider_or_property_are_refused() -> None:
    with pytest.raises(ParameterError, match=r"item_features.*provides none"):
        GRU4Rec(item_features="vectors", **SMALL).fit(cyclic())
    calls: list[Mapping[str, Any]] = []
    data = cyclic(item_vectors=vector_provider(calls))  # no "image" property
    with pytest.raises(ParameterError, match=r"item_features.*no property 'image'"):
        GRU4Rec(item_features="both", **SMALL).fit(data)
    assert calls == []


# -- training loop ------------------------------------------------------------------------------


def test_early_stopping_keeps_the_best_epoch() -> None:
    data = cyclic(holdout=True)
    model = GRU4Rec(seed=4, **{**SMALL, "epochs": 40, "patience": 2, "learning_rate": 0.02})
    model.fit(data)
    curve = model.validation_ndcg
    assert len(curve) == model.epochs_trained
    assert model.best_epoch == int(np.argmax(curve)) + 1
    assert model.epochs_trained == model.best_epoch + 2 or model.epochs_trained == 40
    assert max(curve) > 0.9  # the next step of the cycle ranks first

    def scores(users: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return model.user_scores(
            [UserHistory(data.sequence(int(u)), timestamps=np.zeros(0)) for u in users]
        )

    assert data.validation is not None
    assert data.validation.mean_ndcg(scores, data.matrix) == pytest.approx(max(curve), abs=1e-9)


def test_fitting_is_deterministic_per_seed() -> None:
    data = cyclic()
    states = []
    for seed in (5, 5, 6):
        model = GRU4Rec(seed=seed, **{**SMALL, "epochs": 2, "dropout_hidden": 0.2})
        model.fit(data)
        states.append(model.state())
    for key in states[0]:
        np.testing.assert_array_equal(states[0][key], states[1][key])
    assert any(not np.array_equal(states[0][k], states[2][k]) for k in states[0])


def test_parameters_are_validated() -> None:
    with pytest.raises(ParameterError, match="loss"):
        GRU4Rec(loss="top1")
    with pytest.raises(ParameterError, match="item_features"):
        GRU4Rec(item_features="pixels")
    with pytest.raises(ParameterError, match="sample_alpha"):
        GRU4Rec(sample_alpha=1.5)
    with pytest.raises(ParameterError, match="session_gap"):
        GRU4Rec(session_gap="30m")
    with pytest.raises(ParameterError, match=r"shrinkage.*below the minimum"):
        GRU4Rec(shrinkage=-1.0)
    with pytest.raises(ParameterError, match=r"shrinkage.*must be float"):
        GRU4Rec(shrinkage="5")
    assert GRU4Rec(shrinkage=2).settings["shrinkage"] == 2.0
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="no CUDA device"):
            GRU4Rec(device="cuda")


def test_torch_threads_are_set_back_after_fitting() -> None:
    before = torch.get_num_threads()
    seen: list[int] = []
    step = gru4rec_network.SessionGRU.step

    def spy(network: Any, *args: Any) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return step(network, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gru4rec_network.SessionGRU, "step", spy)
        GRU4Rec(seed=1, **{**SMALL, "epochs": 1, "threads": 1}).fit(cyclic())
    assert set(seen) == {1}
    assert torch.get_num_threads() == before


def test_data_without_a_pair_to_learn_from() -> None:
    # Every interaction alone in its session (an hour apart): nothing to train on, yet the
    # model fits, and scores by its (untrained) biases.
    data = sequence_data([[1, 2, 3], [4]], 6, times=[[0.0, 3600.0, 7200.0], [0.0]])
    model = GRU4Rec(seed=1, **SMALL)
    model.fit(data)
    scores = model.user_scores([UserHistory.of_items([1, 2]), UserHistory.empty()])
    assert scores.shape == (2, 6)
    assert np.isfinite(scores).all()


def test_vectors_let_items_never_seen_in_training_be_recommended() -> None:
    """Users walk a cycle over items 0-9; items 10-19 look exactly like items 0-9 (the same
    vectors) but nobody ever viewed them. Fed with vectors, the scoring side knows what an item
    looks like, so after item i the best of the unseen items is the look-alike of item i + 1;
    on ids alone, the unseen items are at chance."""
    rng = np.random.default_rng(3)
    half = rng.normal(size=(10, 8)).astype(np.float32)
    twins = np.concatenate([half, half])
    twins /= np.linalg.norm(twins, axis=1, keepdims=True)

    def provide(**_: Any) -> ItemEmbeddings:
        return ItemEmbeddings(twins, np.ones(20, dtype=np.bool_))

    sequences = [[int(x) for x in (rng.integers(10) + np.arange(12)) % 10] for _ in range(60)]
    properties = pa.table({"image": [f"p{i}" for i in range(20)]})
    accuracy = {}
    for features in ("vectors", "id"):
        data = sequence_data(sequences, 20, item_properties=properties, item_vectors=provide)
        model = GRU4Rec(seed=1, item_features=features, **{**SMALL, "epochs": 12})
        model.fit(data)
        scores = model.user_scores([UserHistory.of_items([i]) for i in range(10)])
        best_unseen = scores[:, 10:].argmax(axis=1) + 10
        accuracy[features] = float(np.mean(best_unseen == (np.arange(10) + 1) % 10 + 10))
    assert accuracy["vectors"] >= 0.8
    assert accuracy["id"] <= 0.4


# -- rarely seen items --------------------------------------------------------------------------


def test_shrinkage_lets_rarely_seen_look_alikes_into_the_top_ten() -> None:
    """bench.sequence's simulation in small: 1,000 items with random 16-d "pictures", sessions
    that start by a Zipf popularity and move mostly to one of an item's 10 look-alikes (the
    nearest by cosine), whatever their popularity. An item viewed once or twice is as likely
    after an item it looks like as a popular look-alike is; on the free parameters that a few
    updates (mostly as a sampled negative) gave it, it is ranked far down, while weighed by
    its training views (shrinkage) it is scored by its vector and reaches the top 10 about
    twice as often."""
    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(1000, 16, 1)).astype(np.float32)
    sessions = simulate(pixels, rng.integers(3, size=1000), Simulation(users=300, neighbours=10))
    sequences = [sessions.items[sessions.users == u].tolist() for u in range(sessions.n_users)]
    vectors = pixels[:, :, 0] / np.linalg.norm(pixels[:, :, 0], axis=1, keepdims=True)

    def provide(**_: Any) -> ItemEmbeddings:
        return ItemEmbeddings(vectors, np.ones(1000, dtype=np.bool_))

    counts = np.bincount(sessions.items, minlength=1000)
    near = look_alikes(pixels, 10)
    # Each rarely seen item after (up to) three of the items it is a look-alike of.
    pairs = [
        (int(context), rare)
        for rare in np.flatnonzero((counts >= 1) & (counts <= 2))
        for context in np.flatnonzero((near == rare).any(axis=1))[:3]
    ]
    assert len(pairs) > 500
    properties = pa.table({"image": [f"p{i}" for i in range(1000)]})
    top10 = {}
    for shrinkage in (0.0, 5.0):
        data = sequence_data(sequences, 1000, item_properties=properties, item_vectors=provide)
        settings = {**SMALL, "n_sample": 128, "epochs": 5, "shrinkage": shrinkage}
        model = GRU4Rec(seed=1, item_features="vectors", **settings)
        model.fit(data)
        scores = model.user_scores([UserHistory.of_items([c]) for c, _ in pairs])
        ranks = [(row > row[r]).sum() + 1 for row, (_, r) in zip(scores, pairs, strict=True)]
        top10[shrinkage] = float(np.mean(np.array(ranks) <= 10))
    # Measured: 0.16 without, 0.31 with.
    assert top10[0.0] <= 0.2
    assert top10[5.0] >= 0.25
    assert top10[5.0] >= 1.5 * top10[0.0]


def test_shrinkage_weighs_free_parameters_by_training_views(model: GRU4Rec) -> None:
    """With vectors, serving weighs each item's free output embedding and bias by
    n / (n + shrinkage); an item never seen is scored by its vector alone. With ids alone,
    the setting changes nothing."""
    calls: list[Mapping[str, Any]] = []
    properties = pa.table({"image": [f"p{i}" for i in range(CYCLE)]})
    data = cyclic(item_properties=properties, item_vectors=vector_provider(calls))
    fed = GRU4Rec(seed=1, item_features="vectors", **{**SMALL, "shrinkage": 4.0})
    fed.fit(data)
    counts = np.bincount(data.items, minlength=CYCLE)
    arrays = fed.state()
    weights = arrays["free_weight"]
    np.testing.assert_allclose(weights[:, 0], counts / (counts + 4.0))
    # The scores, written out: (w_j output[j] + P v_j) . h + w_j bias[j] + c . v_j.
    assert fed.network is not None
    state = torch.randn(3, SMALL["hidden"], generator=torch.Generator().manual_seed(0))
    vectors = arrays["vectors"]
    item = weights * arrays["output"] + vectors @ arrays["projection.weight"].T
    bias = weights[:, 0] * arrays["bias"][:, 0] + vectors @ arrays["content_bias.weight"][0]
    expected = state.numpy() @ item.T + bias
    with torch.inference_mode():
        np.testing.assert_allclose(fed.network.score_all(state).numpy(), expected, atol=1e-5)
    # `model`: ids alone, the default shrinkage.
    assert "free_weight" not in model.state()
    unshrunk = fitted(shrinkage=0.0).item_scores(list(range(CYCLE)))
    np.testing.assert_array_equal(unshrunk, model.item_scores(list(range(CYCLE))))


def test_a_model_saved_without_shrinkage_loads_as_it_was(tmp_path: Path) -> None:
    """A model fitted with `shrinkage: 0` (as every model was before the setting) has neither
    the weights of the free parameters nor a content bias, and serves as before once loaded."""
    calls: list[Mapping[str, Any]] = []
    properties = pa.table({"image": [f"p{i}" for i in range(CYCLE)]})
    data = cyclic(item_properties=properties, item_vectors=vector_provider(calls))
    model = GRU4Rec(seed=1, item_features="vectors", **{**SMALL, "shrinkage": 0.0})
    model.fit(data)
    arrays = model.state()
    assert not {"free_weight", "content_bias.weight"} & set(arrays)
    scores = model.item_scores(list(range(CYCLE)))
    # The settings of an older model lack `shrinkage`: they take today's default.
    older = GRU4Rec(item_features="vectors", **SMALL)
    older.n_items = CYCLE
    older.restore(arrays)
    np.testing.assert_array_equal(older.item_scores(list(range(CYCLE))), scores)
