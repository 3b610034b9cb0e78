"""ials: implicit ALS with an unobserved weight and frequency-scaled regularisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from plugins.algorithm import UserHistory
from plugins.builtin.content_mf import solve_rows
from plugins.builtin.ials import IALS, conjugate_gradient_rows
from plugins.training import TrainingData, validate_weights

N_ITEMS, N_USERS = 30, 60
PAIR = (0, 1)
"""Two items that the same users always take together, and nobody takes apart."""


def training_data(pairs: list[tuple[int, int]], weights: list[float] | None = None) -> TrainingData:
    """TrainingData over N_ITEMS items and N_USERS users from (user, item) pairs."""
    users = np.array([u for u, _ in pairs], dtype=np.int64)
    items = np.array([i for _, i in pairs], dtype=np.int64)
    weight = np.ones(len(pairs), dtype=np.float32) if weights is None else np.array(weights)
    order = np.argsort(users, kind="stable")
    users, items, weight = users[order], items[order], weight[order].astype(np.float32)
    matrix = sp.csr_matrix((weight, (users, items)), shape=(N_USERS, N_ITEMS))
    matrix.sum_duplicates()
    indptr = np.zeros(N_USERS + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=N_USERS), out=indptr[1:])
    ids = [f"i{i}" for i in range(N_ITEMS)]
    return TrainingData(
        matrix=matrix,
        users=users,
        items=items,
        kinds=np.zeros(len(users), dtype=np.uint8),
        timestamps=np.arange(len(users), dtype=np.float64),
        weights=weight,
        indptr=indptr,
        item_ids=list[str | None](ids),
        user_ids=list[str | None]([f"u{u}" for u in range(N_USERS)]),
        item_properties=pa.table({"$idx": np.arange(N_ITEMS), "$id": ids}),
        kind_weights=validate_weights(None),
    )


def catalog(seed: int = 1) -> list[tuple[int, int]]:
    """Every user takes 5 random items of 2..N_ITEMS-1; every third user also takes both
    PAIR items (and so they are each other's only strong co-occurrence)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for user in range(N_USERS):
        for item in rng.choice(np.arange(2, N_ITEMS), size=5, replace=False):
            pairs.append((user, int(item)))
        if user % 3 == 0:
            pairs += [(user, PAIR[0]), (user, PAIR[1])]
    return pairs


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return training_data(catalog())


@pytest.fixture(scope="module")
def graded() -> TrainingData:
    """The same interactions with weights between 0.5 and 3."""
    pairs = catalog()
    weights = np.random.default_rng(5).uniform(0.5, 3.0, len(pairs))
    return training_data(pairs, weights.tolist())


def fitted(data: TrainingData, **settings: Any) -> IALS:
    model = IALS(**{"factors": 8, "epochs": 6, "seed": 2, **settings})
    model.record_loss = True
    model.fit(data)
    return model


def test_the_co_consumed_item_ranks_first(data: TrainingData) -> None:
    model = fitted(data)
    scores = model.user_scores([UserHistory.of_items([PAIR[0]])])[0]
    scores[PAIR[0]] = -np.inf  # the history's own item
    assert int(np.argmax(scores)) == PAIR[1]
    related = model.item_scores([PAIR[0]])[0]
    related[PAIR[0]] = -np.inf
    assert int(np.argmax(related)) == PAIR[1]


@pytest.mark.parametrize(
    ("settings", "weighted"),
    [
        ({}, False),
        ({"frequency_scaling": 0.0, "regularisation": 5.0, "alpha": 4.0}, False),
        ({"unobserved": 0.3, "frequency_scaling": 0.5, "init_scale": 1.0}, True),
    ],
)
def test_more_epochs_lower_the_training_loss(
    data: TrainingData, graded: TrainingData, settings: Any, weighted: bool
) -> None:
    interactions = graded if weighted else data
    one = fitted(interactions, epochs=1, **settings)
    eight = fitted(interactions, epochs=8, **settings)
    assert eight.training_loss[0] == pytest.approx(one.training_loss[0])
    # Each half-step is an exact minimisation: the objective never rises, and it does fall.
    assert all(
        b <= a * (1 + 1e-9)
        for a, b in zip(eight.training_loss[:-1], eight.training_loss[1:], strict=True)
    )
    assert eight.training_loss[-1] < 0.99 * one.training_loss[0]


def dense_objective(model: IALS, matrix: Any, users: Any, items: Any) -> float:
    """The objective written out over the full user x item grid."""
    s = model.settings
    weights = np.asarray(matrix.todense(), dtype=np.float64)
    observed = weights > 0
    confidence = np.where(observed, 1.0 + s["alpha"] * weights, s["unobserved"])
    predicted = users @ items.T
    loss = float(np.sum(confidence * (observed - predicted) ** 2))

    def l2(total: Any, factors: Any) -> float:
        scale = s["regularisation"] * total ** s["frequency_scaling"]
        return float(scale @ np.sum(factors**2, axis=1))

    return loss + l2(confidence.sum(axis=1), users) + l2(confidence.sum(axis=0), items)


def test_the_recorded_loss_is_the_objective(graded: TrainingData) -> None:
    model = IALS(factors=4, alpha=3.0, unobserved=0.3, regularisation=0.05)
    rng = np.random.default_rng(0)
    users, items = rng.standard_normal((N_USERS, 4)), rng.standard_normal((N_ITEMS, 4))
    by_user = graded.matrix.astype(np.float64)
    found = model.objective(
        by_user,
        users,
        items,
        model.row_l2(by_user, N_ITEMS),
        model.row_l2(by_user.T.tocsr(), N_USERS),
    )
    assert found == pytest.approx(dense_objective(model, by_user, users, items), rel=1e-9)


def test_folding_in_a_history_is_the_als_user_step(data: TrainingData) -> None:
    settings = {"alpha": 3.0, "unobserved": 0.4, "regularisation": 0.02, "frequency_scaling": 1.0}
    model = fitted(data, **settings)
    # Item 5 twice (weights summed: 2.5), item 7 once, an unknown item ignored.
    history = UserHistory(
        np.array([5, 7, 5, N_ITEMS + 3]),
        ("detail_views",) * 4,
        np.arange(4, dtype=np.float64),
        np.array([1.0, 2.0, 1.5, 1.0], dtype=np.float32),
    )
    folded = model.user_factors([history])[0]
    # The minimiser of the user's row of the objective, as a weighted ridge regression over
    # every item: Σ_i c_i (p_i - x·y_i)² + λ_u |x|².
    items = model.item_factors.astype(np.float64)
    weights = np.zeros(N_ITEMS)
    weights[5], weights[7] = 2.5, 2.0
    confidence = np.where(weights > 0, 1.0 + 3.0 * weights, 0.4)
    l2 = 0.02 * confidence.sum()
    lhs = items.T @ (confidence[:, None] * items) + l2 * np.eye(items.shape[1])
    rhs = items.T @ (confidence * (weights > 0))
    np.testing.assert_allclose(folded, np.linalg.solve(lhs, rhs), rtol=1e-8, atol=1e-10)
    # The scores are that user's products with the item factors.
    scores = model.user_scores([history])[0]
    np.testing.assert_allclose(scores, items @ folded, rtol=1e-4, atol=1e-5)


def test_solve_rows_keeps_its_default_behaviour_with_the_new_keywords(data: TrainingData) -> None:
    rows = data.matrix.astype(np.float64)
    items = np.random.default_rng(3).standard_normal((N_ITEMS, 6))
    plain = solve_rows(rows, items, 2.0, 7.0)
    same = solve_rows(rows, items, 2.0, 123.0, unobserved=1.0, row_l2=np.full(N_USERS, 7.0))
    np.testing.assert_allclose(same, plain, rtol=1e-12)


@pytest.mark.parametrize("unobserved", [1.0, 0.3])
def test_conjugate_gradient_converges_to_the_exact_half_step(
    graded: TrainingData, unobserved: float
) -> None:
    rows = graded.matrix.astype(np.float64)
    items = np.random.default_rng(3).standard_normal((N_ITEMS, 6))
    l2 = np.random.default_rng(4).uniform(0.5, 5.0, N_USERS)
    exact = solve_rows(rows, items, 2.0, 0.0, unobserved=unobserved, row_l2=l2)
    start = np.zeros_like(exact)
    errors = [
        np.abs(
            conjugate_gradient_rows(rows, items, 2.0, start, l2, unobserved=unobserved, steps=n)
            - exact
        ).max()
        for n in (1, 3, 6)
    ]
    # k = 6 unknowns: conjugate gradient is exact (to rounding) after 6 steps, and gets closer
    # on the way.
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-8 * np.abs(exact).max()
    # Started at the answer, it stays there.
    np.testing.assert_allclose(
        conjugate_gradient_rows(rows, items, 2.0, exact, l2, unobserved=unobserved, steps=3),
        exact,
        atol=1e-10,
    )


def test_conjugate_gradient_training_matches_the_exact_solver(data: TrainingData) -> None:
    exact = fitted(data, solver="exact", epochs=12)
    approximate = fitted(data, solver="cg", cg_steps=3, epochs=12)
    # The same objective reached within a few percent, and the same strongest co-occurrence.
    assert approximate.training_loss[-1] == pytest.approx(exact.training_loss[-1], rel=0.05)
    assert approximate.training_loss[-1] < approximate.training_loss[0]
    for model in (exact, approximate):
        scores = model.item_scores([PAIR[0]])[0]
        scores[PAIR[0]] = -np.inf
        assert int(np.argmax(scores)) == PAIR[1]


def test_save_then_load_gives_the_same_model(data: TrainingData, tmp_path: Path) -> None:
    model = fitted(data, unobserved=0.2)
    model.save(tmp_path / "ials")
    assert sorted(p.name for p in (tmp_path / "ials").iterdir()) == [
        "item_factors.npy",
        "meta.json",
    ]
    loaded = IALS.load(tmp_path / "ials")
    assert loaded.settings == model.settings
    histories = [UserHistory.of_items([0, 4]), UserHistory.of_items([9]), UserHistory.empty()]
    np.testing.assert_array_equal(loaded.user_scores(histories), model.user_scores(histories))
    np.testing.assert_array_equal(loaded.item_scores([3, 99]), model.item_scores([3, 99]))
    assert not loaded.user_scores([UserHistory.empty()]).any()
