"""MovieLens-100K (GroupLens: 943 users, 1,682 films, 100,000 ratings from 1997-98), found, read
and loaded into a reqo database: `reqo dataset load ml-100k`.

Its licence forbids redistribution, so reqo ships none of it. The files come, in this order, from
a directory the user names (GroupLens's `u.data`/`u.item`/`u.user`, or RecBole's atomic files
`ml-100k.inter`/`.item`/`.user`); from the copy inside an installed RecBole wheel
(`recbole==1.2.1`, which `make install` installs without its dependencies); or, on a machine with
the internet, from GroupLens's zip (kept in a cache directory).

Items get `title`, `release_year` (int), `genres` (set) and `imdb_url` (RecBole's copy has no
URLs: null); users `age` (int), `gender`, `occupation` and `zip`; each rating of 1-5 stars becomes
a Recombee rating, (stars - 3) / 2, with its original timestamp.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import os
import re
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from storage.bulk import import_file
from storage.database import Database, ReadContext
from storage.errors import InvalidInput

NAME = "ml-100k"
GROUPLENS_ZIP = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ITEM_SCHEMA = "title:string,release_year:int,genres:set,imdb_url:string"
USER_SCHEMA = "age:int,gender:string,occupation:string,zip:string"


class DatasetError(InvalidInput):
    """The dataset cannot be found or read; the message says where reqo looked."""


@dataclass(frozen=True)
class DatasetFiles:
    """Where the files are, and in which layout ("grouplens" or "recbole")."""

    directory: Path
    layout: str
    origin: str


@dataclass(frozen=True)
class MovieLens:
    """The dataset as three tables, in the columns reqo's bulk import reads."""

    items: pa.Table
    users: pa.Table
    ratings: pa.Table
    origin: str


def find_files(path: Path | None = None, *, download: bool = True) -> DatasetFiles:
    """The first place that holds the files: `path`, the RecBole wheel, GroupLens's zip."""
    looked: list[str] = []
    if path is not None:
        found = _layout(path) or _layout(path / NAME)
        if found is None:
            raise DatasetError(
                f"{path} holds neither GroupLens's u.data/u.item/u.user nor RecBole's "
                f"{NAME}.inter/.item/.user"
            )
        return found
    recbole = _recbole_directory()
    if recbole is not None:
        found = _layout(recbole)
        if found is not None:
            return DatasetFiles(found.directory, found.layout, "the installed recbole package")
        looked.append(str(recbole))
    else:
        looked.append("the recbole package (not installed)")
    if download:
        try:
            return _downloaded()
        except OSError as error:
            looked.append(f"{GROUPLENS_ZIP} ({error})")
    raise DatasetError(
        f"MovieLens-100K not found; looked in {', '.join(looked)}. Install the files with "
        "`pip install --no-deps recbole==1.2.1`, or pass --path to a copy of GroupLens's "
        "ml-100k directory"
    )


def read(files: DatasetFiles) -> MovieLens:
    """Read the files into tables."""
    if files.layout == "grouplens":
        return _read_grouplens(files)
    return _read_recbole(files)


def load(
    database: Database, path: Path | None = None, *, replace: bool = False, progress: bool = True
) -> str:
    """Load MovieLens-100K into a database; return a report. A database that holds interactions
    already is refused (nothing is written) unless `replace`, which empties it first."""
    holding = database.read_sync(interaction_count)
    if holding and not replace:
        raise DatasetError(
            f"database '{database.name}' already holds {holding:,} interactions; load into an "
            "empty database, or pass --replace to empty this one first"
        )
    dataset = read(find_files(path))
    if replace and holding:
        from storage.catalog import reset

        database.write_sync(reset)
    reports = []
    with _staged(dataset) as staged:
        for what, table, options in (
            ("items", "items", {"schema": ITEM_SCHEMA}),
            ("users", "users", {"schema": USER_SCHEMA}),
            ("interactions", "ratings", {"kind": "ratings"}),
        ):
            report = import_file(database, what, staged[table], progress=progress, **options)
            reports.append(report.replace(f" from {staged[table]}", ""))
    return f"MovieLens-100K from {dataset.origin}:\n" + "\n".join(reports)


def interaction_count(ctx: ReadContext) -> int:
    """How many interactions the database holds."""
    row = ctx.conn.execute("SELECT count(*) FROM interactions").fetchone()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def _staged(dataset: MovieLens) -> Iterator[dict[str, Path]]:
    """The tables as Parquet files for the bulk importer (typed columns, read by DuckDB)."""
    with tempfile.TemporaryDirectory(prefix="reqo-ml-100k-") as directory:
        paths = {}
        for name in ("items", "users", "ratings"):
            paths[name] = Path(directory) / f"{name}.parquet"
            pq.write_table(getattr(dataset, name), paths[name])
        yield paths


# -- finding ---------------------------------------------------------------------------------------


def _layout(directory: Path) -> DatasetFiles | None:
    if all((directory / f).is_file() for f in ("u.data", "u.item", "u.user")):
        return DatasetFiles(directory, "grouplens", str(directory))
    if all((directory / f"{NAME}.{suffix}").is_file() for suffix in ("inter", "item", "user")):
        return DatasetFiles(directory, "recbole", str(directory))
    return None


def _recbole_directory() -> Path | None:
    # The package's __init__ imports RecBole's dependencies, which are not installed: find its
    # directory without importing it.
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / NAME


def _cache_directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reqo" / "datasets"


def _downloaded() -> DatasetFiles:
    cache = _cache_directory()
    found = _layout(cache / NAME)
    if found is None:
        cache.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(GROUPLENS_ZIP, timeout=30) as response:
            archive = response.read()
        with zipfile.ZipFile(io.BytesIO(archive)) as opened:
            opened.extractall(cache)
        found = _layout(cache / NAME)
        if found is None:
            raise OSError("the zip does not hold the expected files")
    return DatasetFiles(found.directory, found.layout, GROUPLENS_ZIP)


# -- reading ---------------------------------------------------------------------------------------


def _rows(
    path: Path, delimiter: str, *, encoding: str = "utf-8", header: bool = False
) -> list[list[str]]:
    with path.open(encoding=encoding, newline="") as handle:
        rows = list(csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE))
    return rows[1:] if header else rows


def _stars(value: str) -> float:
    return (float(value) - 3.0) / 2.0


def _year(text: str) -> int | None:
    match = re.search(r"(\d{4})", text)
    return int(match.group(1)) if match else None


def _read_grouplens(files: DatasetFiles) -> MovieLens:
    directory = files.directory
    genre_names = [
        row[0] for row in _rows(directory / "u.genre", "|", encoding="latin-1") if row and row[0]
    ]
    item_rows = [r for r in _rows(directory / "u.item", "|", encoding="latin-1") if len(r) > 5]
    items = pa.table(
        {
            "itemId": [r[0] for r in item_rows],
            "title": [r[1] for r in item_rows],
            "release_year": pa.array([_year(r[2]) for r in item_rows], pa.int64()),
            "genres": pa.array(
                [
                    [g for g, flag in zip(genre_names, r[5:], strict=False) if flag == "1"]
                    for r in item_rows
                ],
                pa.list_(pa.string()),
            ),
            "imdb_url": pa.array([r[4] or None for r in item_rows], pa.string()),
        }
    )
    user_rows = [r for r in _rows(directory / "u.user", "|", encoding="latin-1") if len(r) == 5]
    users = _users_table(user_rows)
    rating_rows = [r for r in _rows(directory / "u.data", "\t") if len(r) == 4]
    return MovieLens(items, users, _ratings_table(rating_rows), files.origin)


def _read_recbole(files: DatasetFiles) -> MovieLens:
    directory = files.directory
    item_rows = _rows(directory / f"{NAME}.item", "\t", header=True)
    items = pa.table(
        {
            "itemId": [r[0] for r in item_rows],
            "title": [r[1] for r in item_rows],
            "release_year": pa.array(
                [int(r[2]) if r[2].strip().isdigit() else None for r in item_rows], pa.int64()
            ),
            "genres": pa.array([r[3].split() for r in item_rows], pa.list_(pa.string())),
            "imdb_url": pa.array([None] * len(item_rows), pa.string()),
        }
    )
    users = _users_table(_rows(directory / f"{NAME}.user", "\t", header=True))
    ratings = _ratings_table(_rows(directory / f"{NAME}.inter", "\t", header=True))
    return MovieLens(items, users, ratings, files.origin)


def _users_table(rows: list[list[str]]) -> pa.Table:
    return pa.table(
        {
            "userId": [r[0] for r in rows],
            "age": pa.array([int(r[1]) for r in rows], pa.int64()),
            "gender": [r[2] for r in rows],
            "occupation": [r[3] for r in rows],
            "zip": [r[4] for r in rows],
        }
    )


def _ratings_table(rows: list[list[str]]) -> pa.Table:
    """user, item, stars, epoch seconds -> userId, itemId, rating, timestamp."""
    return pa.table(
        {
            "userId": [r[0] for r in rows],
            "itemId": [r[1] for r in rows],
            "rating": pa.array([_stars(r[2]) for r in rows], pa.float64()),
            "timestamp": pa.array([float(r[3]) for r in rows], pa.float64()),
        }
    )
