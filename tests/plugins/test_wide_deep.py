"""The `wide-deep` algorithm: new items scored from their attributes, new users from their
properties, crosses validated, the state round trip and determinism.

The catalog is built by construction in a real DuckDB file: users of occupation A take genre X,
users of occupation B genre Y; the items n0..n3 have a genre and no interaction, and the user
`new-a` (occupation A) has none either."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plugins.algorithm import ParameterError, UserHistory
from plugins.builtin.wide_deep import WideDeepModel
from plugins.builtin.wide_deep_features import Cross, ItemKeys, KeyRows, training_pairs
from plugins.training import Holdout, ItemEmbeddings, TrainingData
from storage import catalog
from storage.database import Database, WriteContext
from storage.interactions import InteractionKind, apply_interaction_writes, parse_interaction
from storage.schema import Entity
from storage.snapshot import take_snapshot

USERS, ITEMS = 40, 24
NEW_ITEMS = {"n0": "X", "n1": "X", "n2": "Y", "n3": "Y"}
FAST: dict[str, Any] = {
    "embedding": 8,
    "hidden": [16],
    "output": 8,
    "epochs": 30,
    "batch_size": 64,
    "learning_rate": 0.01,
    "text_embedder": "",
}
CROSSED: dict[str, Any] = {**FAST, "crosses": [["genre", "occupation"]]}


def genre_of(item: int) -> str:
    return "X" if item % 2 == 0 else "Y"


def build(path: Path, seed: int = 5) -> TrainingData:
    rng = random.Random(seed)
    database = Database("wide", path)

    def fill(ctx: WriteContext) -> None:
        catalog.add_property(ctx, Entity.ITEM, "genre", "string")
        catalog.add_property(ctx, Entity.ITEM, "tags", "set")
        catalog.add_property(ctx, Entity.ITEM, "price", "double")
        catalog.add_property(ctx, Entity.USER, "occupation", "string")
        catalog.add_property(ctx, Entity.USER, "age", "int")
        for i in range(ITEMS):
            genre = genre_of(i)
            values = {"genre": genre, "tags": [genre.lower(), f"t{i % 3}"], "price": 5.0 + i}
            catalog.set_values(ctx, Entity.ITEM, f"i{i}", values, cascade_create=True)
        for item, genre in NEW_ITEMS.items():
            values = {"genre": genre, "tags": [genre.lower()]}  # no price: a missing number
            catalog.set_values(ctx, Entity.ITEM, item, values, cascade_create=True)
        for u in range(USERS):
            values = {"occupation": "A" if u % 2 == 0 else "B", "age": 20 + u}
            catalog.set_values(ctx, Entity.USER, f"u{u}", values, cascade_create=True)
        catalog.set_values(
            ctx, Entity.USER, "new-a", {"occupation": "A", "age": 30}, cascade_create=True
        )
        writes = []
        for n in range(USERS * 8):
            user = n % USERS
            liked = "X" if user % 2 == 0 else "Y"
            wanted = liked if rng.random() < 0.9 else ("Y" if liked == "X" else "X")
            chosen = rng.choice([i for i in range(ITEMS) if genre_of(i) == wanted])
            params = {
                "userId": f"u{user}",
                "itemId": f"i{chosen}",
                "timestamp": 1_700_000_000 + n * 60,
            }
            writes.append(parse_interaction(InteractionKind.DETAIL_VIEW, params))
        apply_interaction_writes(ctx, writes)

    database.write_sync(fill)
    data = TrainingData.from_snapshot(database.read_sync(take_snapshot))
    database.close()
    return data


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> TrainingData:
    return build(tmp_path_factory.mktemp("wide") / "catalog.duckdb")


def fitted(data: TrainingData, **settings: Any) -> WideDeepModel:
    model = WideDeepModel(**{**FAST, **settings})
    model.fit(data)
    return model


@pytest.fixture(scope="module")
def deep(data: TrainingData) -> WideDeepModel:
    """The deep part alone."""
    return fitted(data)


@pytest.fixture(scope="module")
def crossed(data: TrainingData) -> WideDeepModel:
    """Wide and deep, genre x occupation crossed."""
    return fitted(data, **CROSSED)


@pytest.fixture(params=["deep", "crossed"])
def model(request: pytest.FixtureRequest) -> WideDeepModel:
    found: WideDeepModel = request.getfixturevalue(request.param)
    return found


def index(ids: list[str | None], wanted: str) -> int:
    return ids.index(wanted)


def known_user(data: TrainingData, user: int) -> UserHistory:
    return UserHistory(data.sequence(user), user=user)


def test_a_new_item_of_the_users_genre_ranks_above_one_of_the_other(
    data: TrainingData, model: WideDeepModel
) -> None:
    new_x = [index(data.item_ids, i) for i in ("n0", "n1")]
    new_y = [index(data.item_ids, i) for i in ("n2", "n3")]
    assert all(data.matrix[:, i].nnz == 0 for i in new_x + new_y)
    a_users = [index(data.user_ids, f"u{u}") for u in range(0, USERS, 2)]
    scores = model.user_scores([known_user(data, u) for u in a_users])
    # Each user's own history has a tenth of the other genre: nearly all, not all, must agree.
    assert (scores[:, new_x].min(axis=1) > scores[:, new_y].max(axis=1)).mean() >= 0.9
    b_users = [index(data.user_ids, f"u{u}") for u in range(1, USERS, 2)]
    scores = model.user_scores([known_user(data, u) for u in b_users])
    assert (scores[:, new_y].min(axis=1) > scores[:, new_x].max(axis=1)).mean() >= 0.9


def test_a_new_user_gets_the_genre_of_its_occupation_first(
    data: TrainingData, model: WideDeepModel
) -> None:
    genres = {data.item_ids.index(f"i{i}"): genre_of(i) for i in range(ITEMS)}
    genres |= {data.item_ids.index(i): g for i, g in NEW_ITEMS.items()}
    new_a = index(data.user_ids, "new-a")
    assert data.indptr[new_a + 1] == data.indptr[new_a]  # no interactions
    empty = np.zeros(0, dtype=np.int64)
    for history, wanted in [
        (UserHistory(empty, user=new_a), "X"),  # known by index: its properties from training
        (UserHistory(empty, properties={"occupation": "A", "age": 31}), "X"),  # unknown
        (UserHistory(empty, properties={"occupation": "B"}), "Y"),
    ]:
        scores = model.user_scores([history])[0]
        top = np.argsort(-scores)[:3]
        assert [genres[int(i)] for i in top] == [wanted] * 3


def test_text_vectors_carry_a_new_item_without_attributes(data: TrainingData) -> None:
    """Items whose only content is their text vector: the new ones have no genre at all."""
    genre_column = data.item_properties.column_names.index("genre")
    ids = data.item_properties.column("$id").to_pylist()
    table = data.item_properties.set_column(
        genre_column, "genre", [[None] * len(ids)]
    ).drop_columns(["tags"])
    rng = np.random.default_rng(0)
    vectors = rng.normal(0, 0.1, (data.n_items, 6)).astype(np.float32)
    for position, item_id in enumerate(ids):
        genre = NEW_ITEMS.get(item_id) or genre_of(int(item_id[1:]))
        vectors[position, 0 if genre == "X" else 1] += 1.0
    asked: list[str] = []

    def provider(*, embedder: str) -> ItemEmbeddings:
        asked.append(embedder)
        return ItemEmbeddings(vectors, np.ones(data.n_items, dtype=bool))

    content = replace(data, item_properties=table, item_text_vectors=provider)
    model = fitted(content, text_embedder="minilm", item_properties=["price"])
    assert asked == ["minilm"]
    new_x = [index(data.item_ids, i) for i in ("n0", "n1")]
    new_y = [index(data.item_ids, i) for i in ("n2", "n3")]
    a_users = [index(data.user_ids, f"u{u}") for u in range(0, USERS, 2)]
    scores = model.user_scores([known_user(data, u) for u in a_users])
    assert scores[:, new_x].mean() > scores[:, new_y].mean()
    assert (scores[:, new_x].min(axis=1) > scores[:, new_y].max(axis=1)).mean() > 0.8

    def refusing(*, embedder: str) -> ItemEmbeddings:
        raise ValueError(f"unknown text embedder '{embedder}'")

    with pytest.raises(ParameterError, match=r"text_embedder.*unknown text embedder"):
        fitted(replace(data, item_text_vectors=refusing), text_embedder="nope")


def test_items_to_item_by_deep_similarity(data: TrainingData, model: WideDeepModel) -> None:
    new_x = index(data.item_ids, "n0")
    scores = model.item_scores([new_x])[0]
    scores[new_x] = -np.inf
    best = int(np.argmax(scores))
    assert data.item_ids[best] in {"n1"} or genre_of(int(str(data.item_ids[best])[1:])) == "X"


@pytest.mark.parametrize(
    ("crosses", "problem"),
    [
        ("genre", "must be list"),
        ([["genre"]], "two or more"),
        ([["genre", 3]], "two or more"),
        ([["genre", "genre"]], "twice"),
        ([["genre", "occupation"], "age"], "two or more"),
    ],
)
def test_malformed_crosses_are_refused(crosses: Any, problem: str) -> None:
    with pytest.raises(ParameterError, match=f"crosses.*{problem}"):
        WideDeepModel(crosses=crosses)


@pytest.mark.parametrize(
    ("crosses", "problem"),
    [
        ([["genre", "colour"]], "no item or user property 'colour'"),
        ([["occupation", "age"]], "user properties alone"),
        ([["price", "occupation"]], "'price' is a double"),
        ([["user.genre", "occupation"]], "no user property 'genre'"),
    ],
)
def test_crosses_must_name_properties_that_can_be_crossed(
    data: TrainingData, crosses: Any, problem: str
) -> None:
    with pytest.raises(ParameterError, match=f"crosses.*{problem}"):
        fitted(data, crosses=crosses, epochs=1)


def test_other_parameters_are_checked(data: TrainingData) -> None:
    with pytest.raises(ParameterError, match="hidden"):
        WideDeepModel(hidden=[0])
    with pytest.raises(ParameterError, match=r"item_properties.*no item property 'colour'"):
        fitted(data, item_properties=["colour"], epochs=1)
    # A table without user properties (hand-built data) trains on ids and histories.
    model = fitted(replace(data, user_properties=None), epochs=1)
    assert model.user_scores([UserHistory.empty()]).shape == (1, data.n_items)


def test_save_then_load_gives_identical_scores(
    data: TrainingData, crossed: WideDeepModel, tmp_path: Path
) -> None:
    model = crossed
    model.save(tmp_path / "model")
    assert not list((tmp_path / "model").glob("*.pkl"))
    loaded = WideDeepModel.load(tmp_path / "model")
    histories = [
        known_user(data, 0),
        UserHistory(np.zeros(0, dtype=np.int64), properties={"occupation": "B", "age": 50}),
        UserHistory.of_items([1, 2, data.n_items + 5]),
        UserHistory(np.array([3]), user=index(data.user_ids, "new-a")),
    ]
    np.testing.assert_array_equal(model.user_scores(histories), loaded.user_scores(histories))
    np.testing.assert_array_equal(model.item_scores([0, 7]), loaded.item_scores([0, 7]))


def test_fitting_is_deterministic_under_a_seed(data: TrainingData) -> None:
    histories = [known_user(data, u) for u in range(5)]
    short = {**CROSSED, "epochs": 3}
    first = fitted(data, seed=4, **short).user_scores(histories)
    np.testing.assert_array_equal(first, fitted(data, seed=4, **short).user_scores(histories))
    assert not np.array_equal(first, fitted(data, seed=5, **short).user_scores(histories))


def test_early_stopping_on_the_validation_holdout(data: TrainingData) -> None:
    users = np.arange(0, 10, dtype=np.int64)
    items = np.array([data.sequence(int(u))[-1] for u in users])
    validated = replace(data, validation=Holdout.of(users, items, data.n_users))
    model = fitted(validated, epochs=6, patience=2, loss="softmax")
    assert 1 <= len(model.validation_ndcg) <= 6
    assert model.best_epoch == 1 + int(np.argmax(model.validation_ndcg))


def test_training_pairs_cross_every_user_key_with_every_item_key() -> None:
    cross = Cross(("occupation",), ("genres",))
    columns: dict[str, list[Any]] = {"genres": [["X", "Y"], None], "occupation": ["A"]}
    items = ItemKeys.of([cross], columns, 2)
    users = KeyRows.of([cross.user_keys({"occupation": "A"})])
    examples, buckets = training_pairs(np.array([0, 0]), np.array([0, 1]), [users], items, 1 << 20)
    assert examples.tolist() == [0, 0, 1]  # two genres, then a missing one
    assert len(set(buckets.tolist())) == 3
