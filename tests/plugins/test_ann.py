"""The vector index: exact and Annoy agree, filters hold (over-fetch, exact fall back), and a
saved index answers the same once memory-mapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plugins.ann import ANNOY_FILE, VectorIndex
from plugins.embedders import normalise


def clustered(n: int = 3000, d: int = 32, clusters: int = 30, seed: int = 1) -> Any:
    """Unit vectors around a few centres (as embeddings are), some items without a vector."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    vectors = centres[rng.integers(0, clusters, n)] + 0.3 * rng.standard_normal((n, d))
    present = rng.random(n) > 0.05
    vectors[~present] = 0
    return normalise(vectors), present


@pytest.fixture(scope="module")
def built() -> tuple[VectorIndex, VectorIndex]:
    vectors, present = clustered()
    annoy = VectorIndex.build(vectors, present, trees=30, exact_below=0)
    exact = VectorIndex.build(vectors, present, exact_below=10**9)
    assert annoy.annoy is not None
    assert exact.annoy is None
    return annoy, exact


def test_exact_and_annoy_agree_on_the_top_k(built: tuple[VectorIndex, VectorIndex]) -> None:
    annoy, exact = built
    overlap = []
    for item in np.flatnonzero(annoy.present)[:50]:
        a, cos_a = annoy.nearest(annoy.vectors[item], 10)
        e, cos_e = exact.nearest(exact.vectors[item], 10)
        assert e[0] == item
        assert cos_e[0] == pytest.approx(1.0, abs=1e-5)
        assert np.all(np.diff(cos_a) <= 1e-6)  # best first
        overlap.append(len(set(a) & set(e)) / 10)
        # Annoy's cosines are the true ones for the items it returns.
        np.testing.assert_allclose(cos_a, annoy.vectors[a] @ annoy.vectors[item], atol=1e-4)
    assert np.mean(overlap) >= 0.9


def test_items_without_a_vector_are_never_returned(built: tuple[VectorIndex, VectorIndex]) -> None:
    for index in built:
        found, _ = index.nearest(index.vectors[0] + index.vectors[1], 500)
        assert index.present[found].all()
        assert np.isneginf(index.cosines(index.vectors[1])[~index.present]).all()


@pytest.mark.parametrize("share", [0.5, 0.05, 0.002])
def test_filters_hold_and_find_the_best_allowed(
    built: tuple[VectorIndex, VectorIndex], share: float
) -> None:
    annoy, exact = built
    rng = np.random.default_rng(3)
    allowed = rng.random(len(annoy)) < share
    query = annoy.vectors[np.flatnonzero(annoy.present)[7]]
    a, _ = annoy.nearest(query, 10, allowed)
    e, _ = exact.nearest(query, 10, allowed)
    expected = min(10, int(np.count_nonzero(allowed & annoy.present)))
    assert len(a) == len(e) == expected
    assert allowed[a].all()
    assert allowed[e].all()
    assert len(set(a) & set(e)) >= 0.8 * expected


def test_too_few_through_annoy_falls_back_to_exact(built: tuple[VectorIndex, VectorIndex]) -> None:
    annoy, exact = built
    # The allowed items are those farthest from the query: Annoy's neighbours never pass, so
    # every round fails and the exact search over the allowed set must answer.
    query = annoy.vectors[np.flatnonzero(annoy.present)[0]]
    cosines = exact.cosines(query)
    allowed = np.zeros(len(annoy), dtype=np.bool_)
    allowed[np.argsort(cosines)[:2500]] = True  # -inf (absent) first, then the farthest
    annoy.exact_below = 100  # so that the filtered set is searched with Annoy first
    try:
        a, cos_a = annoy.nearest(query, 5, allowed)
    finally:
        annoy.exact_below = 0
    e, cos_e = exact.nearest(query, 5, allowed)
    np.testing.assert_array_equal(a, e)
    np.testing.assert_allclose(cos_a, cos_e, atol=1e-5)


def test_a_short_mask_disallows_the_rest(built: tuple[VectorIndex, VectorIndex]) -> None:
    _, exact = built
    found, _ = exact.nearest(exact.vectors[5], 20, np.ones(100, dtype=np.bool_))
    assert (found < 100).all()


def test_save_and_load_memory_mapped_give_the_same_answers(
    built: tuple[VectorIndex, VectorIndex], tmp_path: Path
) -> None:
    annoy, _ = built
    annoy.save(tmp_path)
    assert (tmp_path / ANNOY_FILE).exists()
    assert {p.name for p in tmp_path.iterdir()} == {"vectors.npy", "present.npy", ANNOY_FILE}
    loaded = VectorIndex.load(tmp_path, exact_below=0)
    assert isinstance(loaded.vectors, np.memmap)
    allowed = np.arange(len(annoy)) % 3 == 0
    for item in (3, 400, 2000):
        for mask in (None, allowed):
            first = annoy.nearest(annoy.vectors[item], 10, mask)
            second = loaded.nearest(annoy.vectors[item], 10, mask)
            np.testing.assert_array_equal(first[0], second[0])
            np.testing.assert_allclose(first[1], second[1], atol=1e-6)


def test_an_empty_filter_finds_nothing(built: tuple[VectorIndex, VectorIndex]) -> None:
    for index in built:
        found, cosines = index.nearest(index.vectors[0], 10, np.zeros(len(index), np.bool_))
        assert len(found) == len(cosines) == 0
