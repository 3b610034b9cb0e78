"""attribute-ridge: new items from their content and a user's history, new users from their
properties, the blend between the two as interactions accrue."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from plugins.algorithm import UserHistory
from plugins.builtin.attribute_ridge import AttributeRidge
from plugins.evaluation.harness import rank
from plugins.training import Holdout
from tests.plugins.test_cold_start import data_with

GENRES = ["drama", "drama", "comedy", "comedy", "drama", "comedy"]
"""Items 4 (a drama) and 5 (a comedy) have no interactions: the new items."""


def genre_data(vectors: np.ndarray[Any, Any] | None = None) -> Any:
    items = pa.table({"$idx": range(6), "genre": GENRES})
    users = pa.table({"$idx": range(6), "gender": ["F", "F", "F", "M", "M", "M"]})
    # Women watch the dramas 0 and 1, men the comedies 2 and 3 (and one woman comedy 2).
    watched = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 1), (2, 2), (3, 2), (3, 3), (4, 2), (4, 3)]
    watched += [(5, 3)]
    return data_with(
        [item for _, item in watched], [user for user, _ in watched], 6, items, users, vectors
    )


def fitted(**settings: Any) -> AttributeRidge:
    model = AttributeRidge(**{"item_l2": 1.0, "user_l2": 1.0, **settings})
    model.fit(genre_data())
    return model


def test_a_new_item_is_scored_by_what_its_content_earns_with_the_user() -> None:
    model = fitted()
    drama_lover, comedy_lover = model.score_users(
        [UserHistory.of_items([0, 1]), UserHistory.of_items([2, 3])], 6
    )
    assert drama_lover[4] > drama_lover[5]
    assert comedy_lover[5] > comedy_lover[4]


def test_a_new_user_is_scored_from_their_properties() -> None:
    model = fitted()
    woman, man, unknown = model.score_users(
        [
            UserHistory(np.zeros(0, dtype=np.int64), properties={"gender": "F"}),
            UserHistory(np.zeros(0, dtype=np.int64), properties={"gender": "M"}),
            UserHistory(np.zeros(0, dtype=np.int64), properties={"gender": "X"}),
        ],
        6,
    )
    assert woman[0] > woman[3]
    assert woman[1] > woman[2]
    assert man[3] > man[0]
    # New items too, from what their genre's columns look like.
    assert woman[4] > woman[5]
    assert man[5] > man[4]
    # A value never seen in training: the population's rates (item 0 is watched by 2 of the 6
    # users, the others by 3).
    np.testing.assert_allclose(unknown[:4], [2 / 6, 3 / 6, 3 / 6, 3 / 6], atol=1e-6)


def test_the_history_takes_over_from_the_properties_as_it_grows() -> None:
    model = fitted(history_prior=2.0)
    woman = {"gender": "F"}
    one = UserHistory(np.array([2]), properties=woman)
    many = UserHistory(np.array([2, 3, 2, 3, 2, 3, 2, 3]), properties=woman)
    model_one, model_many = model.score_users([one, many], 6)
    # Watched one comedy: still more a woman than a comedy fan; eight of them: a comedy fan.
    assert model_one[4] > model_one[5]
    assert model_many[5] > model_many[4]


def test_numbers_are_binned_so_that_both_ends_can_be_popular() -> None:
    years = [1930, 1931, 1960, 1961, 1995, 1996, 1932, 1962, 1997]
    items = pa.table({"$idx": range(9), "year": years})
    # Everyone watches the old classics and the new films, nobody the sixties; 6-8 are new.
    watched = [(u, i) for u in range(6) for i in (0, 1, 4, 5)] + [(0, 2), (1, 3)]
    data = data_with([i for _, i in watched], [u for u, _ in watched], 9, items)
    model = AttributeRidge(bins=3, item_l2=1.0)
    model.fit(data)
    scores = model.score_users([UserHistory.of_items([0, 4])], 9)[0]
    assert scores[6] > scores[7]
    assert scores[8] > scores[7]


def test_text_vectors_carry_taste_to_an_item_without_properties() -> None:
    # Items 0 and 4 point the same way, 2 and 5 too; the genres are left out.
    vectors = np.array(
        [[1, 0, 0], [0.8, 0.2, 0], [0, 1, 0], [0, 0.8, 0.2], [0.95, 0, 0.05], [0, 0.9, 0.1]]
    )
    data = genre_data(vectors)
    data = type(data)(**{**data.__dict__, "item_properties": pa.table({"$idx": range(6)})})
    model = AttributeRidge(item_l2=0.1)
    model.fit(data)
    drama_lover = model.score_users([UserHistory.of_items([0, 1])], 6)[0]
    assert drama_lover[4] > drama_lover[5]
    similar = model.score_items([4], 6)[0]
    assert similar[0] > similar[2]


def test_save_and_load_keep_the_property_map(tmp_path: Any) -> None:
    model = fitted()
    model.save(tmp_path / "model")
    loaded = AttributeRidge.load(tmp_path / "model")
    history = UserHistory(np.array([0]), properties={"gender": "M"})
    np.testing.assert_array_equal(loaded.score_users([history], 6), model.score_users([history], 6))


def test_ties_are_broken_by_the_order_given() -> None:
    data = genre_data()

    class Flat(AttributeRidge):
        def user_scores(self, histories: Any) -> np.ndarray[Any, Any]:
            return np.ones((len(histories), self.n_items), dtype=np.float32)

    model = Flat()
    model.fit(data)
    excluded = Holdout.of(np.array([0]), np.array([5]), data.n_users)
    candidates = np.ones(6, dtype=bool)
    users = np.array([0, 1])
    by_index = rank(model, data, users, excluded, 3, candidates)
    np.testing.assert_array_equal(by_index, [[0, 1, 2], [0, 1, 2]])
    order = np.array([5, 3, 0, 4, 1, 2])
    shuffled = rank(model, data, users, excluded, 3, candidates, order)
    # User 0 has item 5 left out; the rest follow the order given.
    np.testing.assert_array_equal(shuffled, [[3, 0, 4], [5, 3, 0]])


def test_embeddings_are_cut_to_their_principal_axes() -> None:
    rng = np.random.default_rng(0)
    # 8-d vectors that vary in two directions (plus a little noise): two axes keep the taste.
    basis = rng.standard_normal((2, 8))
    drama, comedy = basis
    noise = 0.01 * rng.standard_normal((6, 8))
    vectors = np.array([drama, drama, comedy, comedy, drama, comedy]) + noise
    data = genre_data(vectors)
    data = type(data)(**{**data.__dict__, "item_properties": pa.table({"$idx": range(6)})})
    full, cut = AttributeRidge(item_l2=0.1), AttributeRidge(item_l2=0.1, embedding_dimensions=2)
    full.fit(data)
    cut.fit(data)
    assert full.features.shape[1] == 8 + 1
    assert cut.features.shape[1] == 2 + 1
    scores = cut.score_users([UserHistory.of_items([0, 1])], 6)[0]
    assert scores[4] > scores[5]
