"""Moving a database from Recombee to reqo, as the README's walk-through does it: `reqo recombee
export` reads a database through Recombee's API with the official client, `reqo import` loads
the files, `reqo recombee recreate` sends the series, synonyms and segmentations, and the
scenarios come as a configuration overlay.

The source is a reqo server: it answers Recombee's API as Recombee does, which is what the
export relies on (the same client calls, the same answers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from recombee_api_client.api_client import RecombeeClient
from recombee_api_client.api_requests import (
    AddBookmark,
    AddCartAddition,
    AddDetailView,
    AddItemProperty,
    AddManualReqlSegment,
    AddPurchase,
    AddRating,
    AddSearchSynonym,
    AddSeries,
    AddUserProperty,
    CreateAutoReqlSegmentation,
    CreateManualReqlSegmentation,
    CreatePropertyBasedSegmentation,
    GetSegmentation,
    InsertToSeries,
    ListItems,
    ListScenarios,
    ListSearchSynonyms,
    ListSegmentations,
    ListSeries,
    ListSeriesItems,
    ListUserDetailViews,
    ListUserPurchases,
    ListUserRatings,
    ListUsers,
    ListUserViewPortions,
    SetItemValues,
    SetUserValues,
    SetViewPortion,
)

from server.cli.main import main
from tests.serving import RunningServer, free_port

SOURCE_TOKEN = "recombee-source-token-0123"
TARGET_TOKEN = "reqo-target-token-0123456"
SCENARIOS = {
    "homepage": {"endpoint": "items-to-user"},
    "related": {"endpoint": "items-to-item"},
    "search": {"endpoint": "search-items"},
}
GENRES = ["drama", "comedy", "thriller"]


def fill(client: RecombeeClient) -> None:
    """A small shop with every kind of data the export moves."""
    for name, kind in (
        ("title", "string"),
        ("genres", "set"),
        ("year", "int"),
        ("price", "double"),
        ("available", "boolean"),
    ):
        client.send(AddItemProperty(name, kind))
    client.send(AddUserProperty("country", "string"))
    for n in range(1, 13):
        values: dict[str, Any] = {
            "title": f"Film {n}",
            "genres": [GENRES[n % 3], *(["family"] if n % 4 == 0 else [])],
            "year": 1990 + n,
            "available": n % 5 != 0,
        }
        if n % 2:
            values["price"] = n + 0.5  # the others keep a null
        client.send(SetItemValues(f"film-{n}", values, cascade_create=True))
    for u in range(5):
        client.send(
            SetUserValues(f"user-{u}", {"country": ["CZ", "DE"][u % 2]}, cascade_create=True)
        )
        for n in range(1, 13):
            if (n + u) % 3 == 0:
                client.send(AddDetailView(f"user-{u}", f"film-{n}", timestamp=1_700_000_000 + n))
        client.send(AddPurchase(f"user-{u}", f"film-{u + 1}", amount=2, price=9.5))
        client.send(AddRating(f"user-{u}", f"film-{u + 2}", 0.5, recomm_id=None))
        client.send(SetViewPortion(f"user-{u}", f"film-{u + 3}", 0.25 * (u % 4), session_id="s1"))
    client.send(AddCartAddition("user-1", "film-7"))
    client.send(AddBookmark("user-2", "film-8"))
    client.send(AddSeries("saga", cascade_create=True))
    for n in (3, 1, 2):
        client.send(InsertToSeries("saga", "item", f"film-{n}", float(n)))
    client.send(AddSearchSynonym("movie", "film"))
    client.send(AddSearchSynonym("flick", "film", one_way=True))
    client.send(CreatePropertyBasedSegmentation("by-genre", "items", "genres", title="Genres"))
    client.send(
        CreateAutoReqlSegmentation(
            "by-decade", "items", "{string(floor('year' / 10) * 10)}", description="Decades"
        )
    )
    client.send(CreateManualReqlSegmentation("offers", "items", title="Offers"))
    client.send(AddManualReqlSegment("offers", "cheap", "'price' < 6", title="Cheap"))
    client.send(AddManualReqlSegment("offers", "recent", "'year' >= 2000"))


def snapshot(client: RecombeeClient) -> dict[str, Any]:
    """What a user of the database sees through the API, in a comparable form."""
    users = client.send(ListUsers(return_properties=True))
    user_ids = sorted(u["userId"] for u in users)

    def interactions(request: Any) -> list[tuple[Any, ...]]:
        rows = [row for user in user_ids for row in client.send(request(user))]
        return sorted(
            tuple((k, round(v, 3) if isinstance(v, float) else v) for k, v in sorted(r.items()))
            for r in rows
        )

    segmentations = client.send(ListSegmentations("items"))["segmentations"]
    return {
        "items": sorted(
            client.send(ListItems(return_properties=True, count=1000)),
            key=lambda row: row["itemId"],
        ),
        "users": sorted(users, key=lambda row: row["userId"]),
        "views": interactions(ListUserDetailViews),
        "purchases": interactions(ListUserPurchases),
        "ratings": interactions(ListUserRatings),
        "portions": interactions(ListUserViewPortions),
        "series": {s: client.send(ListSeriesItems(s)) for s in client.send(ListSeries())},
        "synonyms": sorted(
            (s["term"], s["synonym"], s["oneWay"])
            for s in client.send(ListSearchSynonyms())["synonyms"]
        ),
        "segmentations": sorted(
            (
                json.dumps(client.send(GetSegmentation(s["segmentationId"])), sort_keys=True)
                for s in segmentations
            ),
        ),
        "scenarios": sorted((s["id"], s["endpoint"]) for s in client.send(ListScenarios())),
    }


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = RunningServer(
        tmp_path_factory.mktemp("recombee"),
        free_port(),
        {"shop": SOURCE_TOKEN},
        extra={"scenarios": SCENARIOS},
    )
    server.start()
    fill(server.client("shop"))
    yield server
    server.stop()


def test_a_database_moves_with_its_data_and_definitions(
    source: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    exported = main(
        [
            "recombee",
            "export",
            "--database-id",
            "shop",
            "--token",
            SOURCE_TOKEN,
            "--base-uri",
            source.base_uri,
            "--protocol",
            "http",
            str(out),
        ]
    )
    assert exported == 0, capsys.readouterr().err
    report = capsys.readouterr().out
    assert "13 items, 5 users" in report  # twelve films and the series's own item
    assert yaml.safe_load((out / "scenarios.yaml").read_text()) == {"scenarios": SCENARIOS}
    assert yaml.safe_load((out / "item-schema.yaml").read_text())["genres"] == "set"

    # The walk-through: import the files into a new database, start it with the scenarios as an
    # overlay, recreate the definitions.
    target = RunningServer(
        tmp_path / "reqo", free_port(), {"shop": TARGET_TOKEN}, extra={"overlays": []}
    )
    target.directory.mkdir()
    overlay = target.directory / "recombee-scenarios.yaml"
    overlay.write_text((out / "scenarios.yaml").read_text())
    target.extra = {"overlays": [overlay.name]}
    target.write_config()
    config = str(target.config_path)
    for entity in ("items", "users"):
        schema = str(out / f"{entity[:-1]}-schema.yaml")
        imported = [str(out / f"{entity}.ndjson"), "--schema", schema, "--no-progress"]
        assert main(["import", "--config", config, "--db", "shop", entity, *imported]) == 0
    kinds = sorted(
        path.stem for path in out.glob("*.ndjson") if path.stem not in ("items", "users")
    )
    assert kinds == sorted(
        ["detail_views", "purchases", "ratings", "cart_additions", "bookmarks", "view_portions"]
    )
    for kind in kinds:
        args = [str(out / f"{kind}.ndjson"), "--kind", kind, "--no-progress"]
        assert main(["import", "--config", config, "--db", "shop", "interactions", *args]) == 0
    target.start()
    try:
        recreated = main(["recombee", "recreate", "--config", config, "--db", "shop", str(out)])
        assert recreated == 0, capsys.readouterr().err
        # Running it again changes nothing (what exists is left as it is).
        assert main(["recombee", "recreate", "--config", config, "--db", "shop", str(out)]) == 0
        moved = snapshot(target.client("shop"))
    finally:
        target.stop()
    original = snapshot(source.client("shop"))
    for part, value in original.items():
        assert moved[part] == value, part
    assert len(original["segmentations"]) == 3
    assert len(original["views"]) > 10


def test_a_segmentation_without_its_definition_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Recombee's Get Segmentation documents no definition (property, expression, segments):
    recreate names what must be filled in rather than sending half a segmentation."""
    out = tmp_path / "export"
    out.mkdir()
    definitions = {
        "series": [],
        "synonyms": [],
        "segmentations": [
            {"segmentationId": "cats", "sourceType": "items", "segmentationType": "property"}
        ],
    }
    (out / "definitions.json").write_text(json.dumps(definitions))
    config = tmp_path / "reqo.yaml"
    config.write_text(yaml.safe_dump({"databases": {"shop": {"token": TARGET_TOKEN}}}))
    assert main(["recombee", "recreate", "--config", str(config), "--db", "shop", str(out)]) == 1
    error = capsys.readouterr().err
    assert "cats" in error
    assert "propertyName" in error


def test_an_export_into_an_existing_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["recombee", "export", "--database-id", "d", "--token", "t", str(tmp_path)]
    assert main(args) == 1
    assert str(tmp_path) in capsys.readouterr().err
