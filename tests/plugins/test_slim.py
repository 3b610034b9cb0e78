"""SLIM: coordinate descent against closed forms and optimality conditions, EASE as the special
case of every candidate and signed weights, the candidate limit, batching over candidate unions,
scoring and persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plugins.algorithm import ParameterError, UserHistory
from plugins.builtin import slim
from plugins.builtin.ease import EASE, binarised
from plugins.builtin.slim import SLIM, coordinate_descent, nearest_by_cosine
from tests.plugins.test_ease import random_matrix, training_data


def systems(seed: int, count: int = 5, m: int = 6) -> tuple[np.ndarray[Any, Any], Any]:
    """Stacked Gram systems XᵀX + I of random binary X, and their right-hand sides."""
    rng = np.random.default_rng(seed)
    x = (rng.random((count, 30, m + 1)) < 0.4).astype(np.float32)
    gram = np.einsum("cui,cuj->cij", x, x)
    a = gram[:, :m, :m] + np.eye(m, dtype=np.float32)[None]
    return a, gram[:, :m, m]


def fitted(matrix: np.ndarray[Any, Any], **settings: Any) -> SLIM:
    model = SLIM(**settings)
    model.fit(training_data(matrix))
    return model


def test_signed_descent_is_the_ridge_solution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slim, "TOLERANCE", 1e-7)
    a, b = systems(0)
    found = coordinate_descent(a, b, 0.0, nonnegative=False, sweeps=500)
    expected = np.linalg.solve(a.astype(np.float64), b[..., None].astype(np.float64))[..., 0]
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-5)
    assert (expected < 0).any()  # so the comparison says something about the sign


@pytest.mark.parametrize(("l1", "nonnegative"), [(0.0, True), (2.0, True), (2.0, False)])
def test_descent_meets_the_optimality_conditions(l1: float, nonnegative: bool) -> None:
    a, b = systems(1)
    w = coordinate_descent(a, b, l1, nonnegative, sweeps=500).astype(np.float64)
    gradient = np.einsum("cij,cj->ci", a, w) - b  # of ½wᵀAw - bᵀw, without the L1 term
    active = w != 0
    np.testing.assert_allclose(gradient[active], -l1 * np.sign(w[active]), atol=1e-3)
    if nonnegative:
        assert (w >= 0).all()
        assert (gradient[~active] >= -l1 - 1e-3).all()
    else:
        assert (np.abs(gradient[~active]) <= l1 + 1e-3).all()
    assert active.any()
    assert not active.all()


def test_every_candidate_and_signed_weights_give_ease(monkeypatch: pytest.MonkeyPatch) -> None:
    # Dense enough that every pair of items shares a user: every item is a candidate of every
    # other, and EASE's zero-diagonal closed form is each column's ridge regression on the rest.
    monkeypatch.setattr(slim, "TOLERANCE", 1e-7)
    matrix = (np.random.default_rng(3).random((60, 10)) < 0.5).astype(np.float64)
    ease = EASE(l2=4.0)
    ease.fit(training_data(matrix))
    model = fitted(matrix, neighbours=9, l2=4.0, nonnegative=False, sweeps=2000)
    np.testing.assert_allclose(model.weights.toarray(), ease.weights, rtol=1e-3, atol=1e-4)
    assert (ease.weights < 0).any()
    nonnegative = fitted(matrix, neighbours=9, l2=4.0)
    assert (nonnegative.weights.data > 0).all()
    assert nonnegative.weights.nnz < model.weights.nnz


def test_candidates_are_the_nearest_by_cosine() -> None:
    matrix = random_matrix(users=80, items=30)
    binary = (np.nan_to_num(matrix) > 0).astype(np.float64)
    norms = np.linalg.norm(binary, axis=0)
    cosine = binary.T @ binary / np.outer(norms, norms)
    np.fill_diagonal(cosine, 0.0)
    data = training_data(matrix)
    found = nearest_by_cosine(binarised(data.matrix), 5).toarray()
    assert (np.count_nonzero(found, axis=1) == 5).all()
    for item in range(30):
        chosen = np.flatnonzero(found[item])
        np.testing.assert_allclose(found[item, chosen], cosine[item, chosen], rtol=1e-6)
        assert (
            cosine[item, np.setdiff1d(np.arange(30), chosen)].max()
            <= cosine[item, chosen].min() + 1e-9
        )
    # Each column of W (what predicts an item) uses only that item's candidates.
    model = fitted(matrix, neighbours=5)
    weights = model.weights.toarray()
    assert (np.count_nonzero(weights, axis=0) <= 5).all()
    assert (found.T[weights != 0] > 0).all()
    assert (np.diag(weights) == 0).all()


def test_an_unused_item_and_no_regularisation_give_finite_weights() -> None:
    matrix = random_matrix()
    matrix[:, 4] = 0.0  # nobody used item 4: no item's candidate, and its own list all padding
    model = fitted(matrix, l2=0.0)
    weights = model.weights.toarray()
    assert np.isfinite(weights).all()
    assert not weights[4].any()
    assert not weights[:, 4].any()
    assert weights.any()


def test_l1_makes_the_weights_sparser() -> None:
    matrix = random_matrix(users=80, items=30)
    dense, sparse = fitted(matrix, l2=1.0), fitted(matrix, l2=1.0, l1=3.0)
    assert sparse.weights.nnz < dense.weights.nnz
    assert sparse.weights.sum() < dense.weights.sum()


def test_the_co_consumed_item_ranks_first() -> None:
    rng = np.random.default_rng(1)
    matrix = np.zeros((60, 6))
    matrix[:20, [0, 1]] = 1.0
    matrix[20:, 2:] = rng.random((40, 4)) < 0.5
    matrix[:20, 2:] = rng.random((20, 4)) < 0.2
    model = fitted(matrix, l2=1.0)
    scores = model.user_scores([UserHistory.of_items([0])])[0]
    scores[0] = -np.inf
    assert int(scores.argmax()) == 1
    assert model.item_scores([0])[0].argmax() == 1


def test_batches_over_candidate_unions_give_the_same_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    matrix = random_matrix(users=80, items=30)
    whole = fitted(matrix, neighbours=6, l2=2.0)
    # A catalog above UNION_MAX: each batch's Gram matrix covers its candidates' union only.
    monkeypatch.setattr(slim, "UNION_MAX", 16)
    monkeypatch.setattr(slim, "TOLERANCE", 1e-7)
    batched = fitted(matrix, neighbours=6, l2=2.0, sweeps=500)
    np.testing.assert_allclose(batched.weights.toarray(), whole.weights.toarray(), atol=1e-3)
    candidates = nearest_by_cosine(binarised(training_data(matrix).matrix), 6)
    for size in (100, 4):
        found = list(slim.batches(candidates, 16, size))
        assert len(found) > 30 // size  # the union, not only the size, cut the batches
        assert max(len(batch) for batch in found) <= size
        np.testing.assert_array_equal(np.sort(np.concatenate(found)), np.arange(30))
        for batch in found:
            union = np.union1d(batch, candidates[batch].indices)
            assert len(union) <= 16 or len(batch) == 1


def test_scores_are_the_binarised_history_times_the_weights() -> None:
    model = fitted(random_matrix(), l2=2.0)
    rows = model.weights.toarray()
    history = UserHistory(
        np.array([2, 5, 5, 40, 7]), weights=np.array([1.0, 1.0, 3.0, 1.0, 0.0], np.float32)
    )
    np.testing.assert_allclose(model.user_scores([history])[0], rows[2] + rows[5], rtol=1e-6)
    np.testing.assert_array_equal(model.item_scores([5, 99])[0], rows[5])
    np.testing.assert_array_equal(model.item_scores([99])[0], np.zeros(12, np.float32))


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    model = fitted(random_matrix(), neighbours=4, l2=3.0, l1=0.5)
    model.save(tmp_path / "model")
    loaded = SLIM.load(tmp_path / "model")
    assert loaded.settings == model.settings
    assert (loaded.weights != model.weights).nnz == 0
    history = [UserHistory.of_items([1, 4, 9])]
    np.testing.assert_array_equal(loaded.user_scores(history), model.user_scores(history))


def test_parameters_are_validated() -> None:
    with pytest.raises(ParameterError, match="l1"):
        SLIM(l1=-1.0)
    with pytest.raises(ParameterError, match="neighbours"):
        SLIM(neighbours=0)
    assert SLIM().settings == {
        "neighbours": 200,
        "l2": 100.0,
        "l1": 0.0,
        "nonnegative": True,
        "sweeps": 50,
    }
