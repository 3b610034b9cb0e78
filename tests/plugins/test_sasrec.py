"""SASRec: its training windows, causal attention, learning a sequence (and an order), serving the
latest items, the losses, early stopping, save and load, and determinism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plugins.algorithm import ParameterError, UserHistory
from plugins.builtin.sasrec import SASRec
from plugins.builtin.sasrec_network import CHUNK, batches, full_cross_entropy, windows
from plugins.builtin.sessions import sessions
from tests.plugins.sequences import CYCLE, cyclic, next_item_accuracy, sequence_data

# Small and quick: the cycle is easy to learn.
SMALL: dict[str, Any] = {
    "hidden": 32,
    "heads": 2,
    "batch_size": 32,
    "epochs": 10,
    "learning_rate": 0.01,
    "dropout": 0.1,
    "max_history": 8,
}


def fitted(**settings: Any) -> SASRec:
    model = SASRec(seed=1, **{**SMALL, **settings})
    model.fit(cyclic())
    return model


@pytest.fixture(scope="module")
def model() -> SASRec:
    return fitted()


# -- training -----------------------------------------------------------------------------------


def test_windows_learn_every_pair_once_the_latest_whole() -> None:
    # Sequences of 7, 3 and 1 items: 6, 2 and 0 pairs; windows of at most 4 pairs.
    data = sequence_data([[1, 2, 3, 4, 5, 6, 7], [8, 9, 0], [5]], 10)
    starts, ends = sessions(data.indptr, data.timestamps, 0.0)
    firsts, sizes = windows(starts, ends, 4)
    assert firsts.tolist() == [2, 0, 7]  # the first user's latest 4 pairs, then the 2 before
    assert sizes.tolist() == [4, 2, 2]
    pairs = [
        (int(data.items[p]), int(data.items[p + 1]))
        for first, size in zip(firsts, sizes, strict=True)
        for p in range(first, first + size)
    ]
    assert sorted(pairs) == sorted([(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (8, 9), (9, 0)])


def test_batches_cover_every_window_once_and_group_like_lengths() -> None:
    rng = np.random.default_rng(0)
    # Mostly short windows and a few whole ones, as histories shorter than the window give.
    sizes = np.where(rng.random(5_000) < 0.2, 200, rng.integers(5, 60, 5_000)).astype(np.int64)
    chosen = batches(sizes, 64, np.random.default_rng(1))
    assert sorted(np.concatenate(chosen).tolist()) == list(range(len(sizes)))
    assert all(0 < len(batch) <= 64 for batch in chosen)
    # A batch is padded to its longest window: far fewer positions than random batches cost.
    padded = sum(int(sizes[batch].max()) * len(batch) for batch in chosen)
    shuffled = np.random.default_rng(1).permutation(len(sizes))
    random_padded = sum(
        int(sizes[shuffled[at : at + 64]].max()) * len(shuffled[at : at + 64])
        for at in range(0, len(sizes), 64)
    )
    assert padded < 0.6 * random_padded
    # The order is random (the long windows are not all at the end), and seeded.
    firsts = [int(sizes[batch].max()) for batch in chosen]
    assert firsts != sorted(firsts)
    again = batches(sizes, 64, np.random.default_rng(1))
    assert [b.tolist() for b in again] == [b.tolist() for b in chosen]


def test_the_full_softmax_is_torch_cross_entropy_in_chunks() -> None:
    generator = torch.Generator().manual_seed(0)
    rows = 2 * CHUNK + 17  # three chunks, the last one short
    leaves = [
        torch.randn(rows, 8, generator=generator),
        torch.randn(50, 8, generator=generator),
        torch.randn(50, generator=generator),
    ]
    targets = torch.randint(50, (rows,), generator=generator)
    ours = [leaf.clone().requires_grad_() for leaf in leaves]
    theirs = [leaf.clone().requires_grad_() for leaf in leaves]
    loss = full_cross_entropy(ours[0], ours[1], ours[2], targets)
    expected = F.cross_entropy(
        torch.addmm(theirs[2], theirs[0], theirs[1].T), targets, reduction="sum"
    )
    torch.testing.assert_close(loss, expected)
    (0.5 * loss).backward()  # type: ignore[no-untyped-call]
    (0.5 * expected).backward()  # type: ignore[no-untyped-call]
    for mine, torchs in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine.grad, torchs.grad)


def test_a_position_reads_no_later_position(model: SASRec) -> None:
    """Causal attention: the state after position t is the same whatever items follow it (in
    training, a position's prediction cannot peek at the item it predicts)."""
    assert model.network is not None
    generator = torch.Generator().manual_seed(0)
    items = torch.randint(CYCLE, (4, 8), generator=generator)
    changed = items.clone()
    changed[:, 5:] = (changed[:, 5:] + 7) % CYCLE
    with torch.inference_mode():
        before, after = model.network.states(items), model.network.states(changed)
    torch.testing.assert_close(before[:, :5], after[:, :5], rtol=0, atol=0)
    assert not torch.allclose(before[:, 5:], after[:, 5:])
    # The earlier items do reach a later position.
    changed[:, 0] = (changed[:, 0] + 3) % CYCLE
    with torch.inference_mode():
        assert not torch.allclose(model.network.states(changed)[:, 7], after[:, 7])


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"n_sample": 6},  # sampled softmax
        {"loss": "bce", "epochs": 25},  # the paper's loss
        {"layers": 1, "heads": 1, "dropout": 0.0, "session_gap": 600.0},
    ],
)
def test_it_ranks_the_true_next_item_first(settings: dict[str, Any]) -> None:
    model = fitted(**settings)
    assert model.losses[-1] < 0.5 * model.losses[0]
    histories = [UserHistory.of_items([(i - 2) % CYCLE, (i - 1) % CYCLE, i]) for i in range(CYCLE)]
    assert next_item_accuracy(model.user_scores(histories)) >= 0.9
    assert next_item_accuracy(model.item_scores(list(range(CYCLE)))) >= 0.9


def test_it_tells_the_order_of_the_history() -> None:
    # 0 then 1 leads to 2; 1 then 0 leads to 3: the same items, another next one.
    data = sequence_data([[0, 1, 2]] * 20 + [[1, 0, 3]] * 20, 4)
    model = SASRec(seed=2, **SMALL)
    model.fit(data)
    forward, backward = model.user_scores(
        [UserHistory.of_items([0, 1]), UserHistory.of_items([1, 0])]
    )
    assert forward.argmax() == 2
    assert backward.argmax() == 3


# -- serving ------------------------------------------------------------------------------------


def test_a_new_interaction_changes_the_top_item(model: SASRec) -> None:
    before, after = model.user_scores(
        [UserHistory.of_items([3, 4]), UserHistory.of_items([3, 4, 9])]
    )
    assert before.argmax() == 5
    assert after.argmax() == 10


def test_a_batch_scores_each_history_as_alone(model: SASRec) -> None:
    histories = [
        UserHistory.of_items([1, 2, 3, 4, 5]),
        UserHistory.empty(),
        UserHistory.of_items([7]),
        UserHistory.of_items([CYCLE + 5, 11, CYCLE + 1]),  # items unknown to the model
        UserHistory.of_items([int(i) for i in np.arange(30) * 7 % CYCLE]),  # > max_history
    ]
    batch = model.user_scores(histories)
    assert batch.shape == (5, CYCLE)
    assert batch.dtype == np.float32
    for row, history in enumerate(histories):
        np.testing.assert_allclose(batch[row], model.user_scores([history])[0], atol=1e-5)
    np.testing.assert_allclose(batch[3], model.item_scores([11])[0], atol=1e-5)
    # Only the latest max_history (8) items count.
    latest = UserHistory.of_items(histories[4].items[-8:].tolist())
    np.testing.assert_allclose(batch[4], model.user_scores([latest])[0], atol=1e-5)
    # No history: the output biases, finite, the same for everyone.
    np.testing.assert_allclose(batch[1], model.state()["bias"], atol=1e-6)
    np.testing.assert_allclose(model.item_scores([CYCLE + 3])[0], batch[1], atol=1e-6)


def test_scores_read_the_latest_session_only() -> None:
    model = fitted(session_gap=600.0)
    items = np.array([3, 4, 9])
    paused = UserHistory(items, timestamps=np.array([0.0, 60.0, 7200.0]))
    steady = UserHistory(items, timestamps=np.array([0.0, 60.0, 120.0]))
    paused_scores, steady_scores, alone = model.user_scores(
        [paused, steady, UserHistory.of_items([9])]
    )
    np.testing.assert_allclose(paused_scores, alone, atol=1e-5)
    assert not np.allclose(paused_scores, steady_scores)


def test_save_and_load_give_identical_scores(model: SASRec, tmp_path: Path) -> None:
    model.save(tmp_path / "sasrec")
    assert not list((tmp_path / "sasrec").glob("*.pkl"))
    loaded = SASRec.load(tmp_path / "sasrec")
    histories = [UserHistory.of_items([1, 2, 3]), UserHistory.of_items([9]), UserHistory.empty()]
    np.testing.assert_array_equal(loaded.user_scores(histories), model.user_scores(histories))
    np.testing.assert_array_equal(loaded.item_scores([4, 5]), model.item_scores([4, 5]))


def test_scoring_before_fitting_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        SASRec().user_scores([UserHistory.of_items([1])])


# -- training loop ------------------------------------------------------------------------------


def test_early_stopping_keeps_the_best_epoch() -> None:
    data = cyclic(holdout=True)
    model = SASRec(seed=4, **{**SMALL, "epochs": 40, "patience": 2, "learning_rate": 0.003})
    model.fit(data)
    curve = model.validation_ndcg
    assert len(curve) == model.epochs_trained
    assert model.best_epoch == int(np.argmax(curve)) + 1
    assert model.epochs_trained == model.best_epoch + 2 or model.epochs_trained == 40
    assert max(curve) > 0.9  # the next step of the cycle ranks first

    def scores(users: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return model.user_scores(
            [UserHistory.of_items(data.sequence(int(u)).tolist()) for u in users]
        )

    assert data.validation is not None
    assert data.validation.mean_ndcg(scores, data.matrix) == pytest.approx(max(curve), abs=1e-9)


def test_fitting_is_deterministic_per_seed() -> None:
    data = cyclic()
    states = []
    for seed in (5, 5, 6):
        model = SASRec(seed=seed, **{**SMALL, "epochs": 2, "dropout": 0.3, "n_sample": 6})
        model.fit(data)
        states.append(model.state())
    assert set(states[0]) >= {"items", "bias", "positions", "blocks.0.qkv.weight"}
    for key in states[0]:
        np.testing.assert_array_equal(states[0][key], states[1][key])
    assert any(not np.array_equal(states[0][k], states[2][k]) for k in states[0])


def test_data_without_a_pair_to_learn_from() -> None:
    # Every interaction alone in its session: nothing to train on, yet the model fits.
    data = sequence_data([[1, 2, 3], [4]], 6, times=[[0.0, 3600.0, 7200.0], [0.0]])
    model = SASRec(seed=1, **{**SMALL, "session_gap": 600.0})
    model.fit(data)
    scores = model.user_scores([UserHistory.of_items([1, 2]), UserHistory.empty()])
    assert scores.shape == (2, 6)
    assert np.isfinite(scores).all()


def test_parameters_are_validated() -> None:
    with pytest.raises(ParameterError, match=r"heads.*do not divide hidden 30"):
        SASRec(hidden=30, heads=4)
    with pytest.raises(ParameterError, match="loss"):
        SASRec(loss="bpr")
    with pytest.raises(ParameterError, match="dropout"):
        SASRec(dropout=1.0)
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="no CUDA device"):
            SASRec(device="cuda")
