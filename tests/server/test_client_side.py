"""Client-side integration: Recombee's browser SDK (`recombee-js-api-client`, run in Node)
with a database's public token against a live server, what the public token may not do, and
CORS for the configured origins."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from recombee_api_client.api_requests import (
    AddDetailView,
    AddItemProperty,
    CreatePropertyBasedSegmentation,
    ListItems,
    SetItemValues,
)

from tests.serving import REPO_ROOT, RunningServer

PRIVATE = "client-side-private-0123456789"
PUBLIC = "client-side-public-0123456789"
ORIGIN = "https://shop.example"
SCRIPT = REPO_ROOT / "tests" / "js" / "client_side.js"
SCENARIOS = {
    "top-kinds": {"endpoint": "item-segments-to-user", "segmentation": "kinds"},
    "kind-search": {"endpoint": "search-item-segments", "segmentation": "kinds"},
    "kind-row": {
        "endpoint": "composite",
        "segmentation": "kinds",
        "source": "item-segments",
        "result": "items",
    },
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server on HTTPS, as a page served over HTTPS must call it (the SDK sends a Batch over
    HTTPS whatever its settings)."""
    directory = tmp_path_factory.mktemp("client-side")
    running = RunningServer.over_tls(
        directory,
        {"test": PRIVATE, "closed": "closed-private-0123456789"},
        server_settings={"cors": {"origins": [ORIGIN]}},
        extra={"scenarios": SCENARIOS},
        database_settings={"test": {"public_token": PUBLIC}},
    )
    # The official (server-side) client verifies with requests' CA bundle.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", str(directory / "ca.pem"))
        running.start()
        client = running.client()
        client.send(AddItemProperty("title", "string"))
        client.send(AddItemProperty("kind", "string"))
        titles = ["Star Wars", "Star Trek", "Fargo", *(f"Film {n}" for n in range(4, 13))]
        for number, title in enumerate(titles, start=1):
            values = {"title": title, "kind": "space" if number < 3 else f"kind-{number % 3}"}
            client.send(SetItemValues(f"film-{number}", values, cascade_create=True))
        client.send(CreatePropertyBasedSegmentation("kinds", "items", "kind"))
        for user in range(6):
            for film in range(4, 13):
                if (film + user) % 3:
                    client.send(AddDetailView(f"fan-{user}", f"film-{film}", cascade_create=True))
        trained = running.request("POST", "/-/train", json={})
        assert trained.status_code == 200, trained.text
        yield running
        # Killed, not stopped: a graceful shutdown here waits out uvicorn's 10 s grace for a
        # TLS connection that stays open after the Node client (graceful shutdown has its own
        # tests in test_lifecycle.py).
        running.kill()


def publicly(
    server: RunningServer,
    path: str,
    body: Any = None,
    *,
    method: str = "POST",
    database: str = "test",
    token: str = PUBLIC,
) -> requests.Response:
    """A request signed as the client-side SDKs sign: `frontend_timestamp`, `frontend_sign`."""
    separator = "&" if "?" in path else "?"
    url = f"/{database}{path}{separator}frontend_timestamp={int(time.time())}"
    sign = hmac.new(token.encode(), url.encode(), hashlib.sha1).hexdigest()
    full = f"{server.url}{url}&frontend_sign={sign}"
    return requests.request(method, full, json=body or {}, timeout=30, verify=server.ca_file)


def test_the_browser_sdk_sends_interactions_and_gets_recommendations(shop: RunningServer) -> None:
    assert shop.ca_file is not None
    run = subprocess.run(
        ["node", str(SCRIPT), f"127.0.0.1:{shop.port}", "test", PUBLIC],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO_ROOT / "tests" / "js",
        env={**os.environ, "NODE_EXTRA_CA_CERTS": shop.ca_file},
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    for name in ("view", "purchase", "rating", "portion", "recommend", "next", "similar"):
        assert results[name]["ok"], (name, results[name])
    assert len(results["recommend"]["value"]["recomms"]) == 3
    assert results["next"]["value"]["recommId"] == results["recommend"]["value"]["recommId"]
    assert results["search"]["ok"], results["search"]
    assert {r["id"] for r in results["search"]["value"]["recomms"]} <= {"film-1", "film-2"}
    assert results["batch"]["ok"], results["batch"]
    assert [answer["code"] for answer in results["batch"]["value"]] == [200, 200]
    # The segment recommendations and Composite, as the browser SDK asks for them.
    for name in ("segments", "nextSegments", "searchSegments", "composite"):
        assert results[name]["ok"], (name, results[name])
    segments = [r["id"] for r in results["segments"]["value"]["recomms"]]
    assert len(segments) == 2
    assert set(segments) <= {"space", "kind-0", "kind-1", "kind-2"}
    assert results["nextSegments"]["value"]["recommId"] == results["segments"]["value"]["recommId"]
    assert results["nextSegments"]["value"]["recomms"][0]["id"] not in segments
    assert [r["id"] for r in results["searchSegments"]["value"]["recomms"]][:1] == ["space"]
    composite = results["composite"]["value"]
    assert composite["source"]["id"] in {"space", "kind-0", "kind-1", "kind-2"}
    assert len(composite["recomms"]) == 2
    for film in composite["recomms"]:  # the results come from the source segment
        number = int(film["id"].removeprefix("film-"))
        assert composite["source"]["id"] == ("space" if number < 3 else f"kind-{number % 3}")
    # Merging users takes the private token (as on Recombee, unless support enables it).
    assert results["merge"] == {"ok": False, "status": 403, "message": results["merge"]["message"]}
    # What the page sent is stored.
    views = shop.request("GET", "/users/visitor/detailviews/").json()
    assert [view["itemId"] for view in views] == ["film-1"]


def test_the_public_token_may_not_read_or_change_the_catalog(shop: RunningServer) -> None:
    listing = {"requests": [{"method": "GET", "path": "/items/list/"}]}
    for method, path, body in (
        ("GET", "/items/list/", None),
        ("PUT", "/items/film-99", None),
        ("POST", "/items/film-1", {"title": "Defaced"}),
        ("GET", "/items/properties/list/", None),
        ("POST", "/recomms/items/film-1/users/?count=2", None),
        ("DELETE", "/", None),
        ("POST", "/batch/", listing),
    ):
        response = publicly(shop, path, body, method=method)
        assert response.status_code == 403, (path, response.text)
        assert "private token" in response.json()["error"]
    assert "film-99" not in shop.client().send(ListItems())
    assert shop.request("GET", "/items/film-1").json()["title"] == "Star Wars"


def test_a_bad_public_signature_is_a_401(shop: RunningServer) -> None:
    wrong = publicly(shop, "/detailviews/", {"userId": "u", "itemId": "film-1"}, token="x" * 20)
    assert wrong.status_code == 401
    assert "frontend_sign" in wrong.json()["error"]
    stale = f"/test/detailviews/?frontend_timestamp={int(time.time()) - 3600}"
    sign = hmac.new(PUBLIC.encode(), stale.encode(), hashlib.sha1).hexdigest()
    response = requests.post(
        f"{shop.url}{stale}&frontend_sign={sign}", json={}, timeout=30, verify=shop.ca_file
    )
    assert response.status_code == 401
    assert "frontend_timestamp" in response.json()["error"]
    # A database without a public token takes none.
    closed = publicly(shop, "/detailviews/", {"userId": "u", "itemId": "i"}, database="closed")
    assert closed.status_code == 401
    assert "no public token" in closed.json()["error"]


def test_cors_answers_the_configured_origins_only(shop: RunningServer) -> None:
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    allowed = requests.options(
        shop.url + "/test/detailviews/", headers=preflight, timeout=30, verify=shop.ca_file
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    other = requests.options(
        shop.url + "/test/detailviews/",
        headers={**preflight, "Origin": "https://elsewhere.example"},
        timeout=30,
        verify=shop.ca_file,
    )
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    # The answer to the request itself names the origin, so that the page may read it.
    response = requests.post(
        shop.url + "/test/recomms/users/visitor/items/?count=1",
        headers={"Origin": ORIGIN},
        timeout=30,
        verify=shop.ca_file,
    )
    assert response.headers.get("access-control-allow-origin") == ORIGIN
