"""The MovieLens-100K loader, on the real files (from the installed RecBole wheel) and on a small
directory in GroupLens's layout written by the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.database import Database
from storage.movielens import DatasetError, find_files, interaction_count, load, read
from storage.snapshot import take_snapshot


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database = Database("demo", tmp_path_factory.mktemp("ml") / "demo.duckdb")
    load(database, progress=False)
    yield database
    database.close()


def _one(database: Database, sql: str) -> tuple[object, ...]:
    row = database.read_sync(lambda ctx: ctx.conn.execute(sql).fetchone())
    assert row is not None
    return tuple(row)


def test_the_installed_files_are_found_without_a_path() -> None:
    files = find_files(download=False)
    assert files.layout == "recbole"
    assert files.origin == "the installed recbole package"


def test_every_rating_user_and_film_is_loaded(loaded: Database) -> None:
    assert loaded.read_sync(interaction_count) == 100_000
    assert _one(loaded, "SELECT count(*) FROM items") == (1682,)
    assert _one(loaded, "SELECT count(*) FROM users") == (943,)
    # 1-5 stars become Recombee ratings (stars - 3) / 2: exactly the five values -1 .. 1.
    ratings = loaded.read_sync(
        lambda ctx: ctx.conn.execute(
            "SELECT rating, count(*) FROM interactions GROUP BY rating ORDER BY rating"
        ).fetchall()
    )
    assert [r for r, _ in ratings] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert sum(n for _, n in ratings) == 100_000
    # Original timestamps: ML-100K's ratings are from September 1997 to April 1998.
    assert _one(loaded, "SELECT year(min(ts)), year(max(ts)) FROM interactions") == (1997, 1998)


def test_properties_have_their_types(loaded: Database) -> None:
    schema = loaded.schema
    items = {p.name: p.type.value for p in schema.items.properties}
    assert items == {
        "title": "string",
        "release_year": "int",
        "genres": "set",
        "imdb_url": "string",
    }
    users = {p.name: p.type.value for p in schema.users.properties}
    assert users == {"age": "int", "gender": "string", "occupation": "string", "zip": "string"}
    title, year, genres = _one(
        loaded, "SELECT title, release_year, genres FROM items WHERE \"$id\" = '1'"
    )
    assert title == "Toy Story"
    assert year == 1995
    assert sorted(genres) == ["Animation", "Children's", "Comedy"]  # type: ignore[call-overload]
    assert _one(loaded, "SELECT age, gender FROM users WHERE \"$id\" = '1'") == (24, "M")


def test_a_snapshot_carries_user_properties_to_training(loaded: Database) -> None:
    from plugins.training import TrainingData

    snapshot = loaded.read_sync(take_snapshot)
    users = snapshot.user_properties
    assert users.num_rows == 943
    assert {"$idx", "$id", "age", "gender", "occupation"} <= set(users.column_names)
    # Row r is user index r, the way item_properties is laid out.
    assert users.column("$idx").to_pylist() == list(range(943))
    first = users.column("$id").to_pylist().index("1")
    assert snapshot.user_ids[first] == "1"
    assert users.column("age")[first].as_py() == 24
    data = TrainingData.from_snapshot(snapshot)
    assert data.user_properties is users


def test_a_database_with_data_is_refused_unless_replaced(loaded: Database) -> None:
    with pytest.raises(DatasetError, match="already holds 100,000 interactions"):
        load(loaded, progress=False)
    load(loaded, replace=True, progress=False)
    assert loaded.read_sync(interaction_count) == 100_000


def _grouplens(directory: Path) -> Path:
    """Three films, two users, four ratings in GroupLens's layout (latin-1, `|` and tabs)."""
    directory.mkdir()
    (directory / "u.genre").write_text("unknown|0\nAction|1\nComedy|2\n\n", encoding="latin-1")
    (directory / "u.item").write_text(
        "1|Film One (1995)|01-Jan-1995||http://example.test/1|0|1|1\n"
        "2|Caf\xe9 Two (1996)|01-Jan-1996||http://example.test/2|0|0|1\n"
        "3|Film Three (unknown)|||http://example.test/3|1|0|0\n",
        encoding="latin-1",
    )
    (directory / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    (directory / "u.data").write_text(
        "1\t1\t5\t881250949\n1\t2\t1\t881250950\n2\t3\t3\t881250951\n"
    )
    return directory


def test_grouplens_layout_from_a_path(tmp_path: Path) -> None:
    files = find_files(_grouplens(tmp_path / "ml-100k"))
    assert files.layout == "grouplens"
    dataset = read(files)
    assert dataset.items.column("title").to_pylist() == [
        "Film One (1995)",
        "Café Two (1996)",
        "Film Three (unknown)",
    ]
    assert dataset.items.column("release_year").to_pylist() == [1995, 1996, None]
    assert dataset.items.column("genres").to_pylist() == [
        ["Action", "Comedy"],
        ["Comedy"],
        ["unknown"],
    ]
    assert dataset.items.column("imdb_url").to_pylist()[0] == "http://example.test/1"
    assert dataset.ratings.column("rating").to_pylist() == [1.0, -1.0, 0.0]

    database = Database("small", tmp_path / "small.duckdb")
    try:
        report = load(database, tmp_path, progress=False)  # the parent of ml-100k/ works too
        assert "imported 3 items" in report
        assert database.read_sync(interaction_count) == 3
    finally:
        database.close()


def test_a_path_without_the_files_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"neither GroupLens's u\.data"):
        find_files(tmp_path)
