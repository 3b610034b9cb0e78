"""How the stacker learns: the held-out parts of each user's items, and LightGBM's LambdaRank
over the pools' features (see plugins.builtin.stacker)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from plugins.training import Holdout, TrainingData

if TYPE_CHECKING:
    import lightgbm

Array = np.ndarray[Any, Any]
EARLY_STOPPING_SHARE = 0.2
"""The share of the labelled users whose NDCG@10 stops the boosting."""
EVAL_AT = 10


def hold_out(
    data: TrainingData, users: Array, validation: float, rng: np.random.Generator
) -> tuple[TrainingData, Holdout]:
    """The data without a random part of the users' items (a share below 1, else a count; at
    least one item, never all of a user's), and that part as a Holdout."""
    n_items = data.n_items
    chosen = np.zeros(data.n_users, dtype=np.bool_)
    chosen[users] = True
    keys = np.unique((data.users * n_items + data.items)[chosen[data.users]])
    owners = keys // n_items
    order = np.lexsort((rng.random(len(keys)), owners))
    keys, owners = keys[order], owners[order]
    distinct = np.bincount(owners, minlength=data.n_users)
    starts = np.cumsum(distinct) - distinct
    place = np.arange(len(keys)) - starts[owners]
    if validation < 1:
        wanted = np.maximum(1, np.round(validation * distinct)).astype(np.int64)
    else:
        wanted = np.full(data.n_users, int(validation), dtype=np.int64)
    wanted = np.minimum(wanted, distinct - 1)
    held = keys[place < wanted[owners]]
    dropped = np.isin(data.users * n_items + data.items, held)
    holdout = Holdout.of(held // n_items, held % n_items, data.n_users)
    return without(data, dropped), holdout


def without(data: TrainingData, dropped: Array) -> TrainingData:
    """The training data less some interactions (the rest of it kept: ids, properties, item
    vectors, ...)."""
    keep = ~dropped
    users, items, weights = data.users[keep], data.items[keep], data.weights[keep]
    matrix = sp.csr_matrix(
        (weights, (users, items)), shape=(data.n_users, data.n_items), dtype=np.float32
    )
    matrix.sum_duplicates()
    indptr = np.zeros(data.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=data.n_users), out=indptr[1:])
    return replace(
        data,
        matrix=matrix,
        users=users,
        items=items,
        kinds=data.kinds[keep],
        timestamps=data.timestamps[keep],
        weights=weights,
        indptr=indptr,
        validation=None,
    )


def train_ranker(
    features: Array,
    targets: Array,
    groups: Array,
    owners: Array,
    names: list[str],
    categorical: list[int],
    settings: Mapping[str, Any],
) -> lightgbm.Booster | None:
    """LambdaRank over the pools (one query each, `owners` their users); None where fewer than
    two users have a held-out item in their pool (nothing to learn an order from). With
    early stopping, a seeded fifth of the users picks the number of rounds, then the ranker
    is fitted again on every user for that many."""
    if len(np.unique(owners)) < 2:
        return None
    import lightgbm

    seed = int(settings["seed"])
    params: dict[str, Any] = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [EVAL_AT],
        "num_leaves": int(settings["num_leaves"]),
        "learning_rate": float(settings["learning_rate"]),
        "min_data_in_leaf": int(settings["min_data_in_leaf"]),
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
        "num_threads": int(settings["threads"]),
        # A better score or rank from a member never makes an item less likely: without this,
        # trees fitted step functions of a member's z-score that ranked worse than the member.
        "monotone_constraints": [
            1 if name.endswith(("_z", "_margin")) else -1 if name.endswith("_rank") else 0
            for name in names
        ],
    }
    labels = targets.astype(np.float32)
    rounds = int(settings["n_estimators"])
    patience = int(settings["early_stopping"])

    def dataset(chosen: Array, reference: lightgbm.Dataset | None = None) -> lightgbm.Dataset:
        rows = np.repeat(chosen, groups)
        return lightgbm.Dataset(
            features[rows],
            labels[rows],
            group=groups[chosen],
            feature_name=names,
            categorical_feature=categorical,
            reference=reference,
            free_raw_data=True,
        )

    everyone = np.ones(len(groups), dtype=np.bool_)
    distinct = np.unique(owners)
    picked = np.random.default_rng(seed).random(len(distinct)) < EARLY_STOPPING_SHARE
    inner = np.isin(owners, distinct[picked])
    if patience and inner.any() and not inner.all():
        fitting = dataset(~inner)
        stopped = lightgbm.train(
            params,
            fitting,
            num_boost_round=rounds,
            valid_sets=[dataset(inner, fitting)],
            callbacks=[lightgbm.early_stopping(patience, verbose=False)],
        )
        rounds = max(1, int(stopped.best_iteration))
    return lightgbm.train(params, dataset(everyone), num_boost_round=rounds)


def users_with_items(data: TrainingData, at_least: int) -> Array:
    """The users with at least this many distinct items."""
    owners = np.unique(data.users * data.n_items + data.items) // max(1, data.n_items)
    return np.flatnonzero(np.bincount(owners, minlength=data.n_users) >= at_least)


def sample(users: Array, most: int, rng: np.random.Generator) -> Array:
    """At most `most` of the users (a seeded sample, in index order)."""
    users = np.asarray(users, dtype=np.int64)
    if len(users) <= most:
        return users
    return np.sort(rng.choice(users, size=most, replace=False))
