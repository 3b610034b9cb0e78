"""`server.serving.ranking` against a plain reference: rank every candidate by its key."""

from __future__ import annotations

from typing import Any

import numpy as np

from server.serving import ranking


def reference_keys(
    scores: np.ndarray[Any, Any], popularity: np.ndarray[Any, Any], padded: bool
) -> np.ndarray[Any, Any]:
    """Every candidate's key as the ranking defines it (the module docstring)."""
    relevant = scores > 0
    keys = np.full(len(scores), -np.inf)
    if relevant.any():
        keys[relevant] = 2.0 + scores[relevant] / scores[relevant].max()
    if padded:
        rest = np.isfinite(scores) & ~relevant
        peak = popularity[rest].max() if rest.any() else 0.0
        keys[rest] = 0.01 + (popularity[rest] / (peak + 1.0) if peak > 0 else 0.0)
    return keys


def test_relevant_top_is_the_top_of_every_candidate() -> None:
    answered = sum(_relevant_top_agrees(seed) for seed in range(300))
    assert answered > 60  # the shortcut is taken often enough to be tested


def _relevant_top_agrees(seed: int) -> bool:
    """Whether relevant_top answered (and then, that it agreed with the reference)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    scores = np.where(rng.random(n) < rng.uniform(0.05, 0.6), rng.random(n), 0.0)
    scores[rng.random(n) < 0.1] = -np.inf  # filtered out
    popularity = rng.random(n) * rng.uniform(0.5, 100)
    boosts = []
    for _ in range(int(rng.integers(0, 3))):
        levels = rng.choice([0.5, 1.0, 2.0, 10.0, 40.0], size=3)
        boosts.append(levels[rng.integers(0, 3, n)])
    padded = bool(rng.integers(0, 2))
    pool = int(rng.integers(1, 30))

    keys = reference_keys(scores, popularity, padded)
    for array in boosts:
        keys = keys * array
    expected = ranking.top(keys, pool)

    relevant = np.flatnonzero(scores > 0)
    bounded = [(a, float(a.min()), float(a.max())) for a in boosts]
    found = ranking.relevant_top(relevant, scores[relevant], bounded, pool, padded)
    if found is None:
        return False
    chosen, chosen_keys = found
    np.testing.assert_array_equal(chosen, expected, err_msg=f"seed {seed}")
    np.testing.assert_allclose(chosen_keys, keys[expected])
    return True


def test_relevant_top_answers_when_padding_cannot_rank() -> None:
    scores = np.zeros(100)
    scores[:30] = np.linspace(1, 2, 30)
    found = ranking.relevant_top(np.arange(30), scores[:30], [], 10, padded=True)
    assert found is not None
    np.testing.assert_array_equal(found[0], np.arange(29, 19, -1))


def test_relevant_top_declines_when_a_boost_lifts_padding() -> None:
    scores = np.zeros(100)
    scores[:30] = 1.0
    boost = np.ones(100)
    boost[50] = 100.0  # a padded candidate, boosted above every relevant one
    bounded = [(boost, 1.0, 100.0)]
    assert ranking.relevant_top(np.arange(30), scores[:30], bounded, 10, padded=True) is None
    found = ranking.relevant_top(np.arange(30), scores[:30], bounded, 10, padded=False)
    assert found is not None
    assert 50 not in found[0]


def test_top_breaks_ties_by_the_lower_index() -> None:
    keys = np.array([1.0, 3.0, 3.0, -np.inf, 3.0, 2.0])
    np.testing.assert_array_equal(ranking.top(keys, 2), [1, 2])
    np.testing.assert_array_equal(ranking.top(keys, 10), [1, 2, 4, 5, 0])


def test_relevance_keys_keep_the_order_of_scores_of_any_sign() -> None:
    rng = np.random.default_rng(7)
    for scores in (rng.random(50) + 0.1, -rng.random(50) * 100, rng.normal(size=50)):
        keys = ranking.relevance_keys(scores)
        assert ((keys > 2.0) & (keys <= 3.0)).all()
        np.testing.assert_array_equal(
            np.argsort(keys, kind="stable"), np.argsort(scores, kind="stable")
        )
    # Scores above 0 keep the keys the ranking always gave them: 2 + score / best.
    positive = np.array([0.5, 2.0, 1.0])
    np.testing.assert_allclose(ranking.relevance_keys(positive), [2.25, 3.0, 2.5])


def test_relevant_top_ranks_negative_scores_by_their_order() -> None:
    # Log-likelihoods of 6 candidates: every finite one relevant (relevance_threshold None).
    scores = np.array([-3.2, -0.4, -np.inf, -12.0, -0.9, -5.5])
    relevant = np.flatnonzero(np.isfinite(scores))
    found = ranking.relevant_top(relevant, scores[relevant], [], 3, padded=True)
    assert found is not None
    assert found[0].tolist() == [1, 4, 0]
