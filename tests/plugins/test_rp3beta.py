"""RP3beta: the weights against the walk written out densely, the popularity penalty, top-k
truncation, blockwise fitting, weighted input and persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from plugins.algorithm import ParameterError, UserHistory
from plugins.builtin import rp3beta
from plugins.builtin.rp3beta import RP3beta
from plugins.builtin.sparse_items import top_k_per_row
from tests.plugins.test_ease import random_matrix, training_data


def direct(matrix: np.ndarray[Any, Any], alpha: float, beta: float) -> np.ndarray[Any, Any]:
    """The three-step walk, dense and untruncated: (P_iu P_ui) / popularity^beta, no diagonal."""
    x = np.nan_to_num(matrix, nan=0.0)
    user_step = x / np.maximum(x.sum(axis=1, keepdims=True), 1e-300)
    item_step = x.T / np.maximum(x.sum(axis=0)[:, None], 1e-300)
    popularity = x.sum(axis=0)
    penalty = np.where(popularity > 0, np.maximum(popularity, 1e-300) ** -beta, 0.0)
    weights: np.ndarray[Any, Any] = (item_step**alpha) @ (user_step**alpha) * penalty[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


def weights_of(model: RP3beta, matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    model.fit(training_data(matrix))
    return np.asarray(model.weights.toarray())


def ranking(model: RP3beta, items: list[int]) -> list[int]:
    """The model's items for a history, best first, the history left out."""
    scores = model.user_scores([UserHistory.of_items(items)])[0]
    scores[items] = -np.inf
    return [int(i) for i in np.argsort(-scores, kind="stable")]


@pytest.mark.parametrize(("alpha", "beta"), [(1.0, 0.0), (0.8, 0.6), (1.5, 1.0)])
@pytest.mark.parametrize("binary", [True, False])
def test_weights_are_the_walk(alpha: float, beta: float, binary: bool) -> None:
    matrix = random_matrix()
    model = RP3beta(alpha=alpha, beta=beta, neighbours=100, binary=binary)
    model.fit(training_data(matrix))
    cells = np.nan_to_num(matrix, nan=0.0)  # the explicit zero (a -1 rating) counts nothing
    expected = direct((cells > 0).astype(np.float64) if binary else cells, alpha, beta)
    assert model.weights.dtype == np.float32
    np.testing.assert_allclose(model.weights.toarray(), expected, rtol=1e-5, atol=1e-8)
    assert (model.weights.diagonal() == 0).all()


def test_the_co_consumed_item_ranks_first() -> None:
    # Items 0 and 1 always go together; 2-5 are drawn at random, as often as item 1.
    rng = np.random.default_rng(1)
    matrix = np.zeros((60, 6))
    matrix[:20, [0, 1]] = 1.0
    matrix[20:, 2:] = rng.random((40, 4)) < 0.5
    model = RP3beta()
    model.fit(training_data(matrix))
    assert ranking(model, [0])[0] == 1
    assert model.item_scores([0])[0].argmax() == 1


def test_beta_lowers_a_popular_items_rank() -> None:
    # Item 0 is in every history; 10 of the 12 users of item 1 also have item 2, a niche item.
    # The plain walk from item 1 ends on item 0 most; divided by its popularity, item 2 wins.
    matrix = np.zeros((100, 4))
    matrix[:, 0] = 1.0
    matrix[:12, 1] = 1.0
    matrix[:10, 2] = 1.0
    matrix[50:, 3] = 1.0
    walk = RP3beta(beta=0.0)
    walk.fit(training_data(matrix))
    assert ranking(walk, [1])[0] == 0
    penalised = RP3beta(beta=0.5)
    penalised.fit(training_data(matrix))
    assert ranking(penalised, [1])[:2] == [2, 0]
    assert penalised.relevant(penalised.item_scores([1])[0])[[0, 2]].all()


def test_truncation_keeps_the_largest_weights_of_each_row() -> None:
    matrix = random_matrix(users=80, items=30)
    full = RP3beta(neighbours=30)
    full.fit(training_data(matrix))
    top = RP3beta(neighbours=4)
    top.fit(training_data(matrix))
    counts = np.diff(top.weights.indptr)
    assert counts.max() == 4
    assert top.weights.nnz < full.weights.nnz / 3
    dense, kept = full.weights.toarray(), top.weights.toarray()
    for row in range(30):
        chosen = np.flatnonzero(kept[row])
        np.testing.assert_array_equal(kept[row, chosen], dense[row, chosen])
        others = np.setdiff1d(np.arange(30), chosen)
        assert dense[row, others].max() <= kept[row, chosen].min()


def test_ties_go_to_the_lower_column() -> None:
    matrix = sp.csr_matrix(np.array([[0.5, 0.2, 0.5, 0.9, 0.5], [0.0, 0.1, 0.0, 0.0, 0.3]]))
    kept = top_k_per_row(matrix, 2).toarray()
    np.testing.assert_array_equal(kept[0], [0.5, 0.0, 0.0, 0.9, 0.0])
    np.testing.assert_array_equal(kept[1], matrix.toarray()[1])


def test_blocks_give_the_weights_of_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    matrix = random_matrix(users=50, items=20)
    whole = RP3beta(neighbours=5)
    whole.fit(training_data(matrix))
    monkeypatch.setattr(rp3beta, "BLOCK_CELLS", 30)  # a row or two per block
    blocked = RP3beta(neighbours=5)
    blocked.fit(training_data(matrix))
    assert (blocked.weights != whole.weights).nnz == 0


def test_scores_are_the_history_times_the_weights() -> None:
    matrix = random_matrix()
    weighted = RP3beta(binary=False)
    weighted.fit(training_data(matrix))
    binary = RP3beta()
    binary.fit(training_data(matrix))
    history = UserHistory(
        np.array([2, 5, 5, 40, 7]), weights=np.array([1.0, 1.0, 3.0, 1.0, 0.0], np.float32)
    )
    rows = weighted.weights.toarray()
    # Weighted: item 5 counts its summed weight 4; item 7 (weight 0) and item 40 (unknown) not.
    np.testing.assert_allclose(weighted.user_scores([history])[0], rows[2] + 4 * rows[5], rtol=1e-6)
    rows = binary.weights.toarray()
    np.testing.assert_allclose(binary.user_scores([history])[0], rows[2] + rows[5], rtol=1e-6)
    # The input's weights shape the weighted model's walk, not the binarised one's.
    heavier = np.nan_to_num(matrix, nan=0.0)
    heavier[heavier == 5.0] = 1.0
    assert not np.allclose(weights_of(RP3beta(binary=False), heavier), weighted.weights.toarray())
    assert np.allclose(weights_of(RP3beta(), heavier), binary.weights.toarray())
    empty = binary.user_scores([UserHistory.empty()])[0]
    np.testing.assert_array_equal(empty, np.zeros(12, dtype=np.float32))


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    model = RP3beta(alpha=0.7, beta=0.3, neighbours=3)
    model.fit(training_data(random_matrix()))
    model.save(tmp_path / "model")
    loaded = RP3beta.load(tmp_path / "model")
    assert loaded.settings == model.settings
    assert (loaded.weights != model.weights).nnz == 0
    history = [UserHistory.of_items([1, 4, 9])]
    np.testing.assert_array_equal(loaded.user_scores(history), model.user_scores(history))
    np.testing.assert_array_equal(loaded.item_scores([3, 99]), model.item_scores([3, 99]))


def test_parameters_are_validated() -> None:
    with pytest.raises(ParameterError, match="beta"):
        RP3beta(beta=-0.1)
    with pytest.raises(ParameterError, match="neighbours"):
        RP3beta(neighbours=0)
    assert RP3beta().settings == {"alpha": 0.7, "beta": 0.6, "neighbours": 100, "binary": True}
