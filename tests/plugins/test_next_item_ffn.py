"""next-item-ffn: its one-hot inputs and training pairs, learning a sequence (and an order),
serving from the current history, early stopping and determinism."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from plugins.algorithm import ParameterError, UserHistory
from plugins.builtin.next_item_ffn import NextItemFFN, history_inputs, training_pairs
from tests.plugins.sequences import CYCLE, cyclic, next_item_accuracy, sequence_data

SMALL: dict[str, Any] = {"hidden": 32, "batch_size": 32, "epochs": 15, "learning_rate": 0.01}


@pytest.fixture(scope="module")
def model() -> NextItemFFN:
    fitted = NextItemFFN(seed=1, **SMALL)
    fitted.fit(cyclic())
    return fitted


def test_inputs_are_one_hot_per_position() -> None:
    # 10 items, 3 positions: row p * 10 + item for the item p places before the end; 30 pads.
    inputs = history_inputs([np.array([4, 5, 6, 7]), np.array([2]), np.zeros(0, np.int64)], 10, 3)
    assert inputs.tolist() == [[7, 16, 25], [2, 30, 30], [30, 30, 30]]


def test_every_pair_of_every_sequence_is_a_training_example() -> None:
    data = sequence_data([[1, 2, 3], [4], [5, 6]], 10)
    inputs, targets = training_pairs(data, 2)
    assert targets.tolist() == [2, 3, 6]
    assert inputs.tolist() == [[1, 20], [2, 11], [5, 20]]


def test_the_loss_decreases_and_it_learns_the_cycle(model: NextItemFFN) -> None:
    assert len(model.losses) == 15
    assert model.losses[-1] < 0.5 * model.losses[0]
    histories = [UserHistory.of_items([(i - 1) % CYCLE, i]) for i in range(CYCLE)]
    assert next_item_accuracy(model.user_scores(histories)) >= 0.9
    assert next_item_accuracy(model.item_scores(list(range(CYCLE)))) >= 0.9


def test_it_tells_the_order_of_the_history() -> None:
    # 0 then 1 leads to 2; 1 then 0 leads to 3: the same items, another next one.
    data = sequence_data([[0, 1, 2]] * 20 + [[1, 0, 3]] * 20, 4)
    fitted = NextItemFFN(seed=2, **SMALL)
    fitted.fit(data)
    forward, backward = fitted.user_scores(
        [UserHistory.of_items([0, 1]), UserHistory.of_items([1, 0])]
    )
    assert forward.argmax() == 2
    assert backward.argmax() == 3


def test_a_new_interaction_changes_the_top_item(model: NextItemFFN) -> None:
    before, after = model.user_scores(
        [UserHistory.of_items([3, 4]), UserHistory.of_items([3, 4, 5])]
    )
    assert before.argmax() == 5
    assert after.argmax() == 6


def test_a_batch_scores_each_history_as_alone(model: NextItemFFN) -> None:
    histories = [
        UserHistory.of_items([1, 2, 3, 4, 5, 6, 7]),
        UserHistory.empty(),
        UserHistory.of_items([CYCLE + 4, 11, CYCLE + 1]),  # items unknown to the model
        UserHistory.empty(),
    ]
    batch = model.user_scores(histories)
    assert batch.shape == (4, CYCLE)
    assert batch.dtype == np.float32
    for row, history in enumerate(histories):
        np.testing.assert_allclose(batch[row], model.user_scores([history])[0], atol=1e-5)
    np.testing.assert_allclose(batch[2], model.item_scores([11])[0], atol=1e-5)
    # Only the last `history_length` (5) items count.
    np.testing.assert_allclose(
        batch[0], model.user_scores([UserHistory.of_items([3, 4, 5, 6, 7])])[0], atol=1e-5
    )
    assert np.isfinite(batch[1]).all()
    np.testing.assert_array_equal(batch[1], batch[3])


def test_early_stopping_keeps_the_best_epoch() -> None:
    data = cyclic(holdout=True)
    fitted = NextItemFFN(seed=4, **{**SMALL, "epochs": 60, "patience": 2, "learning_rate": 3e-3})
    fitted.fit(data)
    curve = fitted.validation_ndcg
    assert len(curve) == fitted.epochs_trained
    assert fitted.best_epoch == int(np.argmax(curve)) + 1
    assert fitted.epochs_trained in (fitted.best_epoch + 2, 60)
    assert max(curve) > 0.9

    def scores(users: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return fitted.user_scores([UserHistory(data.sequence(int(u))) for u in users])

    assert data.validation is not None
    assert data.validation.mean_ndcg(scores, data.matrix) == pytest.approx(max(curve), abs=1e-9)


def test_fitting_is_deterministic_per_seed() -> None:
    data = cyclic()
    states = []
    for seed in (5, 5, 6):
        fitted = NextItemFFN(seed=seed, **{**SMALL, "epochs": 2, "layers": 2})
        fitted.fit(data)
        states.append(fitted.state())
    assert list(states[0]) == list(states[1])
    for key in states[0]:
        np.testing.assert_array_equal(states[0][key], states[1][key])
    assert any(not np.array_equal(states[0][k], states[2][k]) for k in states[0])


def test_parameters_are_validated() -> None:
    with pytest.raises(ParameterError, match="history_length"):
        NextItemFFN(history_length=0)
    with pytest.raises(ParameterError, match="dropout"):
        NextItemFFN(dropout=1.0)
    with pytest.raises(ParameterError, match="unknown parameter"):
        NextItemFFN(session_gap=10.0)


def test_scoring_before_fitting_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        NextItemFFN().user_scores([UserHistory.of_items([1])])


def test_data_without_a_pair_to_learn_from() -> None:
    fitted = NextItemFFN(seed=1, **SMALL)
    fitted.fit(sequence_data([[1], [4]], 6))
    scores = fitted.user_scores([UserHistory.of_items([1, 2]), UserHistory.empty()])
    assert scores.shape == (2, 6)
    assert np.isfinite(scores).all()
