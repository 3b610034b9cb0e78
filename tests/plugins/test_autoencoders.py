"""Mult-VAE and Mult-DAE: they learn, stop early on the validation holdout, are deterministic,
fold in the current history, and refuse bad parameters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from plugins.algorithm import ParameterError, UserHistory
from plugins.builtin.autoencoders import MultAutoEncoder, MultDAE, MultVAE
from plugins.builtin.ease import binarised
from plugins.training import Holdout
from tests.plugins.test_ease import training_data

MODELS = [MultVAE, MultDAE]
CLUSTERS, PER_CLUSTER, USERS = 3, 20, 150
# Small layers and few epochs: the synthetic task is easy, and each test must stay fast.
SMALL = {"hidden": 32, "latent": 8, "epochs": 30, "batch_size": 32, "lr": 3e-3}


def clustered(seed: int = 0) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Users who each like one of 3 clusters of 20 items: a users x items array in which each
    user has 6 of their cluster's items (weights 1 to 3), and each user's cluster."""
    rng = np.random.default_rng(seed)
    cluster = np.arange(USERS) % CLUSTERS
    matrix = np.zeros((USERS, CLUSTERS * PER_CLUSTER), dtype=np.float32)
    for user in range(USERS):
        chosen = rng.choice(PER_CLUSTER, 6, replace=False) + cluster[user] * PER_CLUSTER
        matrix[user, chosen] = rng.integers(1, 4, len(chosen))
    return matrix, cluster


def holdout_of(matrix: np.ndarray[Any, Any], seed: int) -> tuple[np.ndarray[Any, Any], Holdout]:
    """One interaction per user moved from the matrix to a holdout."""
    rng = np.random.default_rng(seed)
    train = matrix.copy()
    users, items = [], []
    for user in range(len(matrix)):
        item = rng.choice(np.flatnonzero(matrix[user] > 0))
        train[user, item] = 0.0
        users.append(user)
        items.append(item)
    return train, Holdout.of(np.array(users), np.array(items), len(matrix))


def history(row: np.ndarray[Any, Any]) -> UserHistory:
    items = np.flatnonzero(row)
    return UserHistory(items, weights=row[items].astype(np.float32))


@pytest.mark.parametrize("cls", MODELS)
def test_the_users_cluster_ranks_first(cls: type[MultAutoEncoder]) -> None:
    matrix, cluster = clustered()
    model = cls(seed=1, **SMALL)
    model.fit(training_data(matrix))
    assert model.epochs_trained == 30
    assert model.validation_ndcg == []
    scores = model.user_scores([history(row) for row in matrix])
    own = np.zeros_like(scores, dtype=bool)
    for user, c in enumerate(cluster):
        own[user, c * PER_CLUSTER : (c + 1) * PER_CLUSTER] = True
    unseen = matrix == 0
    # Every user's unseen items of their cluster score above every item of the others, by a
    # clear margin on average.
    lowest_own = np.where(own & unseen, scores, np.inf).min(axis=1)
    highest_other = np.where(~own, scores, -np.inf).max(axis=1)
    assert (lowest_own > highest_other).mean() >= 0.95
    assert np.mean(lowest_own - highest_other) > 1.0
    # A new user, never seen in training, gets their cluster from two items of history.
    new = model.user_scores([UserHistory.of_items([41, 45])])[0]
    assert set(np.argsort(-new)[:10].tolist()) <= set(range(40, 60))


@pytest.mark.parametrize("cls", MODELS)
def test_early_stopping_keeps_the_best_epoch(cls: type[MultAutoEncoder]) -> None:
    matrix, _ = clustered(seed=2)
    train, validation = holdout_of(matrix, seed=3)
    data = training_data(train, validation)
    model = cls(seed=4, **{**SMALL, "epochs": 300, "patience": 3})
    model.fit(data)
    curve = model.validation_ndcg
    assert model.epochs_trained < 300
    assert len(curve) == model.epochs_trained
    assert model.best_epoch == int(np.argmax(curve)) + 1
    # It stopped after `patience` epochs without a better figure ...
    assert model.epochs_trained == model.best_epoch + 3
    # ... and kept the best epoch's weights, not the last one's.
    rows = binarised(data.matrix)

    def scores(users: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return model.user_scores([history(rows[int(u)].toarray()[0]) for u in users])

    assert validation.mean_ndcg(scores, data.matrix) == pytest.approx(max(curve), abs=1e-9)


@pytest.mark.parametrize("cls", MODELS)
def test_fitting_is_deterministic_per_seed(cls: type[MultAutoEncoder]) -> None:
    data = training_data(clustered()[0])
    states = []
    for seed in (5, 5, 6):
        model = cls(seed=seed, **{**SMALL, "epochs": 3})
        model.fit(data)
        states.append(model.state())
    assert list(states[0]) == list(states[1])
    for key in states[0]:
        np.testing.assert_array_equal(states[0][key], states[1][key])
    assert any(not np.array_equal(states[0][key], states[2][key]) for key in states[0])


@pytest.mark.parametrize("cls", MODELS)
def test_scores_fold_in_the_current_history(cls: type[MultAutoEncoder]) -> None:
    matrix, _ = clustered()
    model = cls(seed=1, **{**SMALL, "epochs": 5})
    model.fit(training_data(matrix))
    n = matrix.shape[1]
    before, after, unknown, zero, unweighted = model.user_scores(
        [
            UserHistory.of_items([1, 4]),
            UserHistory.of_items([1, 4, 25]),
            UserHistory.of_items([1, 4, n + 3]),  # an item added after training
            UserHistory(np.array([1, 4, 30]), weights=np.array([1.0, 2.0, 0.0], dtype=np.float32)),
            UserHistory(np.array([1, 4, 4])),  # no weights: each item counts, once
        ]
    )
    assert before.shape == (n,)
    assert before.dtype == np.float32
    assert not np.allclose(before, after)
    np.testing.assert_allclose(unknown, before, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(zero, before, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(unweighted, before, rtol=1e-5, atol=1e-6)
    # One batch scores each history as it would alone.
    alone = model.user_scores([UserHistory.of_items([1, 4, 25])])[0]
    np.testing.assert_allclose(alone, after, rtol=1e-5, atol=1e-6)
    # The default item scores are those of a one-item history.
    np.testing.assert_allclose(
        model.item_scores([7])[0], model.user_scores([UserHistory.of_items([7])])[0], rtol=1e-6
    )


@pytest.mark.parametrize("cls", MODELS)
def test_the_layers_follow_the_parameters(cls: type[MultAutoEncoder]) -> None:
    data = training_data(clustered()[0])
    code = 2 * 8 if cls is MultVAE else 8
    deep = cls(seed=1, **{**SMALL, "epochs": 1})
    deep.fit(data)
    shapes = {key: value.shape for key, value in deep.state().items()}
    assert shapes["encoder.0.weight"] == (32, 60)
    assert shapes["encoder.2.weight"] == (code, 32)
    assert shapes["decoder.0.weight"] == (32, 8)
    assert shapes["decoder.2.weight"] == (60, 32)
    shallow = cls(seed=1, **{**SMALL, "epochs": 1, "hidden": 0})
    shallow.fit(data)
    shapes = {key: value.shape for key, value in shallow.state().items()}
    assert shapes == {
        "encoder.0.weight": (code, 60),
        "encoder.0.bias": (code,),
        "decoder.0.weight": (60, 8),
        "decoder.0.bias": (60,),
    }


def test_parameters_are_validated() -> None:
    with pytest.raises(ParameterError, match="dropout"):
        MultVAE(dropout=1.0)
    with pytest.raises(ParameterError, match="latent"):
        MultDAE(latent=0)
    with pytest.raises(ParameterError, match="device"):
        MultDAE(device="tpu")
    with pytest.raises(ParameterError, match="unknown parameter"):
        MultDAE(beta_max=0.2)  # the DAE has no KL term
    with pytest.raises(ParameterError, match="epochs"):
        MultVAE(epochs=1.5)
    with pytest.raises(ParameterError, match="lr"):
        MultVAE(lr=0.0)


def test_cuda_is_refused_where_there_is_none() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    with pytest.raises(ParameterError, match="no CUDA device"):
        MultVAE(device="cuda")


def test_scoring_before_fitting_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        MultDAE().user_scores([UserHistory.of_items([1])])
