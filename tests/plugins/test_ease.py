"""EASE: the closed form against a direct computation, fold-in, and the item-count guard."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from plugins.algorithm import ParameterError, UserHistory
from plugins.builtin import ease
from plugins.builtin.ease import EASE, TooManyItemsError
from plugins.training import Holdout, TrainingData


def training_data(matrix: np.ndarray[Any, Any], validation: Holdout | None = None) -> TrainingData:
    """TrainingData with one interaction per nonzero cell of a dense users x items array,
    weighted by the cell; a NaN cell is an interaction of weight 0 (an explicit zero in the
    matrix, as a -1 rating gives)."""
    users, items = np.nonzero(np.nan_to_num(matrix, nan=1.0))
    weights = np.nan_to_num(matrix[users, items], nan=0.0).astype(np.float32)
    n_users, n_items = matrix.shape
    csr = sp.csr_matrix((weights, (users, items)), shape=(n_users, n_items), dtype=np.float32)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return TrainingData(
        matrix=csr,
        users=users.astype(np.int64),
        items=items.astype(np.int64),
        kinds=np.zeros(len(users), dtype=np.uint8),
        timestamps=np.arange(len(users), dtype=np.float64),
        weights=weights,
        indptr=indptr,
        item_ids=[f"i{i}" for i in range(n_items)],
        user_ids=[f"u{u}" for u in range(n_users)],
        item_properties=pa.table({}),
        kind_weights={},
        validation=validation,
    )


def random_matrix(seed: int = 0, users: int = 40, items: int = 12) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    matrix: np.ndarray[Any, Any] = (rng.random((users, items)) < 0.3) * rng.choice(
        [1.0, 2.0, 5.0], (users, items)
    )
    matrix[0, 0] = np.nan  # an explicit zero (a -1 rating): it must not count
    matrix[1, :] = 0.0  # a user with no interaction at all
    return matrix


def direct(binary: np.ndarray[Any, Any], l2: float) -> np.ndarray[Any, Any]:
    """Steck's closed form, written out."""
    gram = binary.T @ binary + l2 * np.eye(binary.shape[1])
    inverse = np.linalg.inv(gram)
    weights: np.ndarray[Any, Any] = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


@pytest.mark.parametrize("block", [2048, 5])
@pytest.mark.parametrize("l2", [0.5, 10.0, 250.0])
def test_weights_are_the_closed_form(
    l2: float, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small block runs the blockwise Gram matrix and symmetrisation over several blocks.
    monkeypatch.setattr(ease, "BLOCK", block)
    matrix = random_matrix()
    model = EASE(l2=l2)
    model.fit(training_data(matrix))
    binary = (np.nan_to_num(matrix) > 0).astype(np.float64)
    assert model.weights.dtype == np.float32
    assert model.weights.shape == (12, 12)
    np.testing.assert_array_equal(np.diag(model.weights), np.zeros(12, dtype=np.float32))
    np.testing.assert_allclose(model.weights, direct(binary, l2), rtol=1e-5, atol=1e-6)
    # The explicit zero counts as no interaction: with it as a 1, the weights differ.
    binary[0, 0] = 1.0
    assert not np.allclose(model.weights, direct(binary, l2), rtol=1e-5, atol=1e-6)


def test_an_unused_item_without_regularisation_gives_finite_weights() -> None:
    matrix = random_matrix()
    matrix[:, 4] = 0.0  # nobody used item 4: XᵀX is singular, and with λ = 0 so is G
    model = EASE(l2=0.0)
    model.fit(training_data(matrix))
    assert np.isfinite(model.weights).all()
    np.testing.assert_array_equal(model.weights[:, 4], np.zeros(12, dtype=np.float32))


def test_scores_fold_in_the_current_history() -> None:
    model = EASE(l2=5.0)
    model.fit(training_data(random_matrix()))
    weights = model.weights
    histories = [
        UserHistory.of_items([2, 5]),
        # a repeated item counts once, an unknown item (index 40) not at all, nor an item whose
        # weights sum to 0 (item 7)
        UserHistory(
            np.array([2, 5, 5, 40, 7, 7]),
            weights=np.array([1.0, 1.0, 3.0, 1.0, 0.0, 0.0], dtype=np.float32),
        ),
        UserHistory(np.array([3, 9, 11])),  # no weights: each item counts
        UserHistory.empty(),
    ]
    scores = model.user_scores(histories)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores[0], weights[2] + weights[5], rtol=1e-6)
    np.testing.assert_allclose(scores[1], weights[2] + weights[5], rtol=1e-6)
    np.testing.assert_allclose(scores[2], weights[3] + weights[9] + weights[11], rtol=1e-6)
    np.testing.assert_array_equal(scores[3], np.zeros(12, dtype=np.float32))
    # A new interaction changes the next scores at once.
    grown = model.user_scores([UserHistory.of_items([2, 5, 6])])[0]
    np.testing.assert_allclose(grown - scores[0], weights[6], rtol=1e-5, atol=1e-6)


def test_item_scores_are_the_item_row() -> None:
    model = EASE(l2=5.0)
    model.fit(training_data(random_matrix()))
    scores = model.item_scores([3, 50, 0])
    np.testing.assert_array_equal(scores[0], model.weights[3])
    np.testing.assert_array_equal(scores[1], np.zeros(12, dtype=np.float32))
    np.testing.assert_array_equal(scores[2], model.weights[0])
    np.testing.assert_allclose(
        scores[0], model.user_scores([UserHistory.of_items([3])])[0], rtol=1e-6
    )


def test_too_many_items_is_a_clear_error() -> None:
    model = EASE(max_items=10)
    with pytest.raises(TooManyItemsError) as caught:
        model.fit(training_data(random_matrix(items=12)))
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert "12 items" in message
    assert "'max_items' (10)" in message
    assert "1.7 KiB" in message  # 12 bytes per cell of a 12 x 12 matrix: 1,728 bytes
    assert caught.value.needed_bytes == 12 * 12 * 12
    assert model.weights.shape == (0, 0)


def test_the_error_names_the_memory_of_a_large_catalog() -> None:
    error = TooManyItemsError("ease", 100_000, 30_000)
    assert "100,000 items" in str(error)
    assert "111.8 GiB" in str(error)  # 12 x 10¹⁰ bytes


def test_parameters_are_validated() -> None:
    with pytest.raises(ParameterError, match="l2"):
        EASE(l2=-1.0)
    with pytest.raises(ParameterError, match="max_items"):
        EASE(max_items=0)
    assert EASE().settings == {"l2": 350.0, "max_items": 30_000}
