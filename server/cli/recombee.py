"""`reqo recombee export` and `reqo recombee recreate`: moving a database from Recombee to reqo.

`export` reads a Recombee database through Recombee's own API with the official client (its
private token), and writes a directory that `reqo import` and `reqo recombee recreate` take:

- `item-schema.yaml`, `user-schema.yaml`: the property types (`--schema` of `reqo import`);
- `items.ndjson`, `users.ndjson`: every item and user with its values;
- `<kind>.ndjson`: the interactions of each kind (`--kind` of `reqo import`), read per user;
- `definitions.json`: series with their members, search synonyms and segmentations;
- `scenarios.yaml`: the scenarios as reqo's configuration names them (an overlay).

`recreate` sends the definitions to a running reqo through the same official client, so
they pass the same checks as any other write (a segment's ReQL against the schema).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from recombee_api_client.api_client import RecombeeClient
from recombee_api_client.api_requests import (
    AddManualReqlSegment,
    AddSearchSynonym,
    AddSeries,
    CreateAutoReqlSegmentation,
    CreateManualReqlSegmentation,
    CreatePropertyBasedSegmentation,
    GetSegmentation,
    InsertToSeries,
    ListItemProperties,
    ListItems,
    ListScenarios,
    ListSearchSynonyms,
    ListSegmentations,
    ListSeries,
    ListSeriesItems,
    ListUserBookmarks,
    ListUserCartAdditions,
    ListUserDetailViews,
    ListUserProperties,
    ListUserPurchases,
    ListUserRatings,
    ListUsers,
    ListUserViewPortions,
    Request,
)
from recombee_api_client.exceptions import APIException, ResponseException

from server.config import ConfigError, load_config
from server.serving.scenarios import RECOMBEE_ENDPOINTS

PAGE = 1000
"""Items, users and synonyms read per request."""

INTERACTION_LISTS: dict[str, Callable[[str], Request]] = {
    "detail_views": ListUserDetailViews,
    "purchases": ListUserPurchases,
    "ratings": ListUserRatings,
    "cart_additions": ListUserCartAdditions,
    "bookmarks": ListUserBookmarks,
    "view_portions": ListUserViewPortions,
}
_ENDPOINTS = {recombee: reqo for reqo, recombee in RECOMBEE_ENDPOINTS.items()}
_KINDS = {
    "property": "property",
    "autoReQL": "auto-reql",
    "manualReQL": "manual-reql",
    "auto-reql": "auto-reql",
    "manual-reql": "manual-reql",
}
"""Each `segmentationType` as reqo answers it (and the spelling of Recombee's paths)."""
_DEFINITION_KEYS = {
    "property": ("propertyName",),
    "auto-reql": ("expression",),
    "manual-reql": ("segments",),
}


class MigrationError(Exception):
    """A step of a migration that cannot go on; the message says what to do."""


def add_parser(commands: Any) -> None:
    recombee = commands.add_parser(
        "recombee", help="move a database from Recombee: export it, then recreate its definitions"
    )
    steps = recombee.add_subparsers(dest="recombee_command", required=True)
    export = steps.add_parser("export", help="read a Recombee database into a directory")
    export.add_argument("--database-id", required=True, help="the Recombee database id")
    export.add_argument("--token", required=True, help="its private token")
    export.add_argument(
        "--base-uri", help="the API host (default: the official client's, or RAPI_URI)"
    )
    export.add_argument("--protocol", choices=["https", "http"], default="https")
    export.add_argument("out", type=Path, help="a new directory")
    export.set_defaults(run=_export)
    recreate = steps.add_parser(
        "recreate", help="send an export's series, synonyms and segmentations to a running reqo"
    )
    recreate.add_argument("--config", type=Path, default=Path("reqo.yaml"))
    recreate.add_argument("--db", required=True, help="database name from the config")
    recreate.add_argument(
        "--base-uri", help="the server's host:port (default: server.host and server.port)"
    )
    recreate.add_argument("export", type=Path, help="a directory that `reqo recombee export` wrote")
    recreate.set_defaults(run=_recreate)


def _export(args: argparse.Namespace) -> int:
    options = {"base_uri": args.base_uri} if args.base_uri else {}
    client = RecombeeClient(args.database_id, args.token, protocol=args.protocol, options=options)
    try:
        counts = export(client, args.out)
    except (APIException, MigrationError, OSError) as error:
        print(f"reqo recombee export: {error}", file=sys.stderr)
        return 1
    print(f"exported to {args.out}: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    return 0


def _recreate(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        if args.db not in config.databases:
            raise ConfigError(config.source, f"databases.{args.db}", "no such database")
        protocol = "https" if config.tls is not None else "http"
        base_uri = args.base_uri or f"{config.host}:{config.port}"
        token = config.databases[args.db].token
        client = RecombeeClient(args.db, token, protocol=protocol, options={"base_uri": base_uri})
        counts = recreate(client, args.export)
    except (ConfigError, APIException, MigrationError, OSError) as error:
        print(f"reqo recombee recreate: {error}", file=sys.stderr)
        return 1
    print("recreated: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    return 0


# -- export ---------------------------------------------------------------------------------------


def export(client: RecombeeClient, out: Path) -> dict[str, int]:
    """Write a Recombee database into the new directory `out`; the counts of what it holds."""
    out.mkdir(parents=True, exist_ok=False)
    counts: dict[str, int] = {}
    for entity, list_properties, list_entities in (
        ("item", ListItemProperties, ListItems),
        ("user", ListUserProperties, ListUsers),
    ):
        schema = {p["name"]: p["type"] for p in client.send(list_properties())}
        (out / f"{entity}-schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
        rows = _paged(client, list_entities, f"{entity}Id", schema)
        counts[f"{entity}s"] = _write_ndjson(out / f"{entity}s.ndjson", rows)
    users = [json.loads(line)["userId"] for line in (out / "users.ndjson").open()]
    for kind, list_kind in INTERACTION_LISTS.items():
        rows = (row for user in users for row in client.send(list_kind(user)))
        written = _write_ndjson(out / f"{kind}.ndjson", (_without_nulls(r) for r in rows))
        if written:
            counts[kind] = written
        else:
            (out / f"{kind}.ndjson").unlink()
    definitions = {
        "series": [
            {"seriesId": series, "items": client.send(ListSeriesItems(series))}
            for series in client.send(ListSeries())
        ],
        "synonyms": list(_synonyms(client)),
        "segmentations": [
            client.send(GetSegmentation(s["segmentationId"]))
            for s in client.send(ListSegmentations("items"))["segmentations"]
        ],
    }
    (out / "definitions.json").write_text(json.dumps(definitions, indent=1))
    for what, listed in definitions.items():
        counts[what] = len(listed)
    scenarios = _scenarios(client.send(ListScenarios()))
    (out / "scenarios.yaml").write_text(yaml.safe_dump({"scenarios": scenarios}, sort_keys=False))
    counts["scenarios"] = len(scenarios)
    return counts


def _paged(
    client: RecombeeClient,
    list_entities: Callable[..., Request],
    id_field: str,
    schema: dict[str, str],
) -> Iterator[dict[str, Any]]:
    offset = 0
    while True:
        page = client.send(list_entities(count=PAGE, offset=offset, return_properties=True))
        for row in page:
            # Every property, null where unset: the file's columns are the schema's.
            yield {key: row.get(key) for key in (id_field, *schema)}
        if len(page) < PAGE:
            return
        offset += PAGE


def _synonyms(client: RecombeeClient) -> Iterator[dict[str, Any]]:
    offset = 0
    while True:
        page = client.send(ListSearchSynonyms(count=PAGE, offset=offset))["synonyms"]
        for synonym in page:
            yield {k: synonym[k] for k in ("term", "synonym", "oneWay")}
        if len(page) < PAGE:
            return
        offset += PAGE


def _without_nulls(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if value is not None}


def _write_ndjson(path: Path, rows: Iterator[dict[str, Any]]) -> int:
    written = 0
    with path.open("w") as file:
        for row in rows:
            file.write(json.dumps(row) + "\n")
            written += 1
    return written


def _scenarios(listed: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    scenarios: dict[str, dict[str, Any]] = {}
    for scenario in listed:
        endpoint = _ENDPOINTS.get(scenario["endpoint"])
        if endpoint is None:
            raise MigrationError(
                f"scenario '{scenario['id']}' has endpoint {scenario['endpoint']!r}, "
                "which reqo does not serve"
            )
        scenarios[scenario["id"]] = {"endpoint": endpoint}
    return scenarios


# -- recreate -------------------------------------------------------------------------------------


def recreate(client: RecombeeClient, export_dir: Path) -> dict[str, int]:
    """Send an export's series, synonyms and segmentations to a reqo database (after its items
    were imported); what exists already is left as it is. The counts of what was sent."""
    definitions = json.loads((export_dir / "definitions.json").read_text())
    incomplete = [
        s["segmentationId"]
        for s in definitions["segmentations"]
        if any(
            s.get(key) is None
            for key in _DEFINITION_KEYS.get(_KINDS.get(s["segmentationType"], ""), ())
        )
    ]
    if incomplete:
        raise MigrationError(
            "Recombee's API does not give the definition of segmentations "
            + ", ".join(incomplete)
            + f": fill in their propertyName, expression or segments in {export_dir}/"
            "definitions.json (as the Admin UI shows them) and run recreate again"
        )
    requests: list[Request] = []
    for series in definitions["series"]:
        requests.append(AddSeries(series["seriesId"], cascade_create=False))
    for series in definitions["series"]:
        for member in series["items"]:
            requests.append(
                InsertToSeries(
                    series["seriesId"], member["itemType"], member["itemId"], member["time"]
                )
            )
    for synonym in definitions["synonyms"]:
        requests.append(
            AddSearchSynonym(synonym["term"], synonym["synonym"], one_way=synonym["oneWay"])
        )
    for segmentation in definitions["segmentations"]:
        requests.extend(_segmentation_requests(segmentation))
    _send_all(client, requests)
    return {what: len(listed) for what, listed in definitions.items()}


def _segmentation_requests(segmentation: dict[str, Any]) -> list[Request]:
    identity = segmentation["segmentationId"]
    common = {"title": segmentation.get("title"), "description": segmentation.get("description")}
    kind = _KINDS.get(segmentation["segmentationType"])
    if kind == "property":
        return [
            CreatePropertyBasedSegmentation(
                identity, segmentation["sourceType"], segmentation["propertyName"], **common
            )
        ]
    if kind == "auto-reql":
        return [
            CreateAutoReqlSegmentation(
                identity, segmentation["sourceType"], segmentation["expression"], **common
            )
        ]
    if kind == "manual-reql":
        return [
            CreateManualReqlSegmentation(identity, segmentation["sourceType"], **common),
            *(
                AddManualReqlSegment(
                    identity, segment["segmentId"], segment["filter"], title=segment.get("title")
                )
                for segment in segmentation["segments"]
            ),
        ]
    raise MigrationError(
        f"segmentation '{identity}' has an unknown type {segmentation['segmentationType']!r}"
    )


def _send_all(client: RecombeeClient, requests: list[Request]) -> None:
    """Send one by one, in order (the official client sends a Batch over HTTPS only, and a
    local reqo may serve HTTP); 409 (it exists already) is not an error, anything else is."""
    for request in requests:
        try:
            client.send(request)
        except ResponseException as error:
            if error.status_code != 409:
                raise MigrationError(
                    f"{type(request).__name__} {request.path}: {error.status_code} "
                    f"{error.description}"
                ) from None
