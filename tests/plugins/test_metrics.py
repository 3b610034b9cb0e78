"""The ranking metrics against values worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from plugins.evaluation.metrics import (
    METRICS,
    hit_at,
    item_coverage,
    mrr_at,
    ndcg_at,
    precision_at,
    recall_at,
    top_k,
)


def ranked(*rows: list[int]) -> np.ndarray[Any, Any]:
    return np.array(rows, dtype=np.int64)


def relevant(*sets: list[int]) -> list[np.ndarray[Any, Any]]:
    return [np.array(items, dtype=np.int64) for items in sets]


LOG2_3 = math.log2(3)


def test_one_hit_at_the_second_rank() -> None:
    # ranked [3, 1, 7], relevant {1, 9}: the hit is item 1 at rank 2.
    lists, held = ranked([3, 1, 7]), relevant([1, 9])
    # recall@3 = 1 hit / 2 relevant; recall@1 = 0 (item 3 is not relevant)
    assert recall_at(lists, held, 3)[0] == pytest.approx(0.5)
    assert recall_at(lists, held, 1)[0] == 0.0
    # precision@3 = 1 / 3; precision@2 = 1 / 2
    assert precision_at(lists, held, 3)[0] == pytest.approx(1 / 3)
    assert precision_at(lists, held, 2)[0] == pytest.approx(1 / 2)
    # hit@3 = 1; hit@1 = 0
    assert hit_at(lists, held, 3)[0] == 1.0
    assert hit_at(lists, held, 1)[0] == 0.0
    # mrr@3 = 1 / rank 2; mrr@1 = 0
    assert mrr_at(lists, held, 3)[0] == pytest.approx(0.5)
    assert mrr_at(lists, held, 1)[0] == 0.0
    # ndcg@3: DCG = 1/log2(2 + 1) (rank 2); the ideal list holds both relevant items at ranks
    # 1 and 2: IDCG = 1/log2(2) + 1/log2(3) = 1 + 1/log2(3).
    expected = (1 / LOG2_3) / (1 + 1 / LOG2_3)
    assert ndcg_at(lists, held, 3)[0] == pytest.approx(expected)
    # ndcg@2: the same DCG; the ideal list of 2 still holds both relevant items.
    assert ndcg_at(lists, held, 2)[0] == pytest.approx(expected)


def test_a_hit_at_the_third_rank_and_more_relevant_items_than_k() -> None:
    lists = ranked([4, 5, 6], [0, 1, 8])
    held = relevant([6], [0, 1, 2, 3])
    # Row 0: the only relevant item at rank 3. ndcg@3 = (1/log2 4) / (1/log2 2) = 1/2;
    # mrr = 1/3; recall = 1/1; precision = 1/3.
    # Row 1: hits at ranks 1 and 2 of 4 relevant items. ndcg@3: DCG = 1 + 1/log2 3, the ideal
    # list of 3 holds 3 relevant items: IDCG = 1 + 1/log2 3 + 1/log2 4 = 1.5 + 1/log2 3.
    # recall@3 = 2/4; precision@3 = 2/3; mrr = 1.
    assert ndcg_at(lists, held, 3) == pytest.approx([0.5, (1 + 1 / LOG2_3) / (1.5 + 1 / LOG2_3)])
    assert mrr_at(lists, held, 3) == pytest.approx([1 / 3, 1.0])
    assert recall_at(lists, held, 3) == pytest.approx([1.0, 0.5])
    assert precision_at(lists, held, 3) == pytest.approx([1 / 3, 2 / 3])
    # At k = 2 row 0 has no hit; row 1's ideal list of 2 is all hits: ndcg@2 = 1.
    assert ndcg_at(lists, held, 2) == pytest.approx([0.0, 1.0])
    assert recall_at(lists, held, 2) == pytest.approx([0.0, 0.5])


def test_short_lists_padded_with_minus_one() -> None:
    # A list of one item (5, relevant) padded to 3; -1 never counts as a hit, even where an
    # item list would hold a -1 by mistake.
    lists = ranked([5, -1, -1], [-1, -1, -1])
    held = relevant([5], [-1, 2])
    # Row 0: recall = 1/1, ndcg = 1 (the hit is at rank 1 and there is one relevant item),
    # precision@3 = 1/3 (the padding counts as misses), mrr = 1, hit = 1.
    # Row 1: nothing ranked: every metric 0.
    assert recall_at(lists, held, 3) == pytest.approx([1.0, 0.0])
    assert ndcg_at(lists, held, 3) == pytest.approx([1.0, 0.0])
    assert precision_at(lists, held, 3) == pytest.approx([1 / 3, 0.0])
    assert mrr_at(lists, held, 3) == pytest.approx([1.0, 0.0])
    assert hit_at(lists, held, 3) == pytest.approx([1.0, 0.0])


def test_users_without_relevant_items_score_zero() -> None:
    lists = ranked([1, 2], [1, 2])
    held = relevant([], [2])
    for name, metric in METRICS.items():
        values = metric(lists, held, 2)
        assert values[0] == 0.0, name
        assert values[1] > 0.0, name  # the second user, with a hit at rank 2, counts
    # The second user: ndcg@2 = (1/log2 3) / 1, mrr = 1/2.
    assert ndcg_at(lists, held, 2)[1] == pytest.approx(1 / LOG2_3)
    assert mrr_at(lists, held, 2)[1] == pytest.approx(0.5)


def test_top_k_orders_by_score_and_breaks_ties_by_the_lower_index() -> None:
    scores = np.array([[0.1, 0.5, 0.5, 0.9, 0.5]])
    # 0.9 (item 3), then the three 0.5s in index order: 1, 2, (4)
    assert top_k(scores, 3).tolist() == [[3, 1, 2]]
    assert top_k(scores, 5).tolist() == [[3, 1, 2, 4, 0]]
    # Excluding item 1 lets item 4 in.
    assert top_k(scores, 3, [np.array([1])]).tolist() == [[3, 2, 4]]


def test_top_k_ties_at_the_edge_of_the_list_take_the_lowest_indexes() -> None:
    # One item scores 1, the 99 others tie at 0: the list is item 50, then items 0, 1, 2, 3
    # (argpartition alone may pick any of the tied items for the last places).
    scores = np.zeros((3, 100))
    scores[0, 50] = 1.0
    scores[2, 99] = 2.0
    scores[2, 98] = 2.0
    assert top_k(scores, 5).tolist() == [
        [50, 0, 1, 2, 3],
        [0, 1, 2, 3, 4],
        [98, 99, 0, 1, 2],
    ]
    # Excluding the first tied items moves the edge along.
    excluded = [np.array([0, 1]), np.array([], dtype=np.int64), np.array([98])]
    assert top_k(scores, 4, excluded).tolist() == [[50, 2, 3, 4], [0, 1, 2, 3], [99, 0, 1, 2]]


def test_top_k_pads_with_minus_one_where_too_few_items_can_be_ranked() -> None:
    # NaN and -inf cannot be ranked; item 1 is excluded: only items 3 (2.0) and 0 (1.0) remain.
    scores = np.array([[1.0, 5.0, np.nan, 2.0, -np.inf]])
    assert top_k(scores, 4, [np.array([1])]).tolist() == [[3, 0, -1, -1]]
    # k above the number of items: as many columns as items.
    assert top_k(scores, 10).tolist() == [[1, 3, 0, -1, -1]]
    # Everything excluded: nothing but padding.
    assert top_k(scores, 2, [np.arange(5)]).tolist() == [[-1, -1]]
    assert top_k(scores, 0).shape == (1, 0)


def test_top_k_does_not_change_the_scores_it_is_given() -> None:
    scores = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    top_k(scores, 2, [np.array([2])])
    assert scores.tolist() == [[1.0, 2.0, 3.0]]


def test_item_coverage() -> None:
    # Lists [0, 1, -] and [1, 2, -] show items {0, 1, 2}: 3 of 10 items.
    lists = ranked([0, 1, -1], [1, 2, -1])
    assert item_coverage(lists, 10) == pytest.approx(0.3)
    # The first column alone shows {0, 1}: 2 of 10.
    assert item_coverage(lists[:, :1], 10) == pytest.approx(0.2)
    assert item_coverage(ranked([-1]), 10) == 0.0
    assert item_coverage(lists, 0) == 0.0
