"""HMAC-SHA1 URL signing: the official client's signatures pass, anything else is 401."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from recombee_api_client.api_client import RecombeeClient
from recombee_api_client.api_requests import AddItem, ListItems

from server.api.auth import Unauthorized, sign, sign_strict, verify_request
from server.config import ConfigError, parse_config
from tests.serving import RunningServer, free_port

TOKEN = "secret-token"


def scope_for(url: str) -> dict[str, Any]:
    path, _, query = url.partition("?")
    return {"path": path, "raw_path": path.encode(), "query_string": query.encode()}


def client_signed_url(path_and_query: str) -> str:
    """The URL exactly as the official client signs it (its private signing method)."""
    client = RecombeeClient("db", TOKEN)
    signed: str = client._RecombeeClient__sign_url(path_and_query)
    return signed


def test_the_official_clients_signature_is_accepted() -> None:
    url = client_signed_url("/items/list/?count=5")
    assert url.startswith("/db/items/list/?count=5&hmac_timestamp=")
    verify_request(scope_for(url), TOKEN, allow_unsigned=False)


def test_a_signature_with_another_token_is_refused() -> None:
    url = client_signed_url("/items/x")
    with pytest.raises(Unauthorized, match="hmac_sign"):
        verify_request(scope_for(url), "another-token", allow_unsigned=False)


def test_a_changed_url_is_refused() -> None:
    url = client_signed_url("/items/list/?count=5").replace("count=5", "count=500")
    with pytest.raises(Unauthorized):
        verify_request(scope_for(url), TOKEN, allow_unsigned=False)


@pytest.mark.parametrize(("age", "accepted"), [(0, True), (29, True), (31, False), (-31, False)])
def test_the_thirty_second_window(age: int, accepted: bool) -> None:
    stamp = int(time.time()) - age
    path = f"/db/items/x?hmac_timestamp={stamp}"
    url = f"{path}&hmac_sign={sign(path, TOKEN)}"
    if accepted:
        verify_request(scope_for(url), TOKEN, allow_unsigned=False)
    else:
        with pytest.raises(Unauthorized, match="30 s"):
            verify_request(scope_for(url), TOKEN, allow_unsigned=False)


def test_unsigned_requests_need_the_development_switch() -> None:
    with pytest.raises(Unauthorized, match="must be signed"):
        verify_request(scope_for("/db/items/x"), TOKEN, allow_unsigned=False)
    verify_request(scope_for("/db/items/x"), TOKEN, allow_unsigned=True)
    # a signature that is present is still checked
    bad = f"/db/items/x?hmac_timestamp={int(time.time())}&hmac_sign=00"
    with pytest.raises(Unauthorized):
        verify_request(scope_for(bad), TOKEN, allow_unsigned=True)


def test_unsigned_mode_is_loopback_only(tmp_path: Any) -> None:
    config = parse_config(
        {"allow_unsigned": True, "databases": {"d": {"token": "t"}}},
        source="reqo.yaml",
        base_dir=tmp_path,
    )
    config.check_serving("127.0.0.1")
    config.check_serving("localhost")
    with pytest.raises(ConfigError, match="allow_unsigned"):
        config.check_serving("0.0.0.0")


def test_over_http_signed_and_unsigned(live: RunningServer) -> None:
    unsigned = requests.get(f"{live.url}/test/items/list/", timeout=10)
    assert unsigned.status_code == 401
    assert unsigned.json()["statusCode"] == 401
    assert live.client().send(ListItems()) == []


def test_unsigned_development_server(unsigned_server: RunningServer) -> None:
    response = requests.put(f"{unsigned_server.url}/test/items/free", timeout=10)
    assert response.status_code == 201
    assert unsigned_server.client().send(ListItems()) == ["free"]
    with pytest.raises(Exception, match="401"):
        unsigned_server.client(token="wrong").send(AddItem("x"))


@pytest.mark.parametrize(
    "stamp", ["nan", "NaN", "inf", "-inf", "infinity", "1e9", "{now}.5", "+{now}", " {now}", ""]
)
def test_only_whole_epoch_seconds_are_a_timestamp(stamp: str) -> None:
    # `hmac_timestamp=nan` once passed the freshness check for ever: abs(now - nan) > 30 is false.
    text = stamp.format(now=int(time.time()))
    path = f"/db/items/x?hmac_timestamp={text}"
    url = f"{path}&hmac_sign={sign(path, TOKEN)}"
    with pytest.raises(Unauthorized, match="hmac_timestamp"):
        verify_request(scope_for(url), TOKEN, allow_unsigned=False)


def strict_server(tmp_path: Path) -> RunningServer:
    server = RunningServer(
        tmp_path,
        free_port(),
        {"test": STRICT_TOKEN},
        admin_token="strict-admin-token-0123456789",
        extra={"databases": {"test": {"token": STRICT_TOKEN, "signatures": "strict"}}},
    )
    server.start()
    return server


STRICT_TOKEN = "strict-token-0123456789"


def strict_request(
    server: RunningServer,
    method: str,
    path: str,
    body: bytes,
    *,
    sent_method: str | None = None,
    sent_body: bytes | None = None,
) -> requests.Response:
    url, headers = sign_strict(method, f"/test{path}", body, STRICT_TOKEN)
    return requests.request(
        sent_method or method,
        f"{server.url}{url}",
        data=body if sent_body is None else sent_body,
        headers={**headers, "Content-Type": "application/json"},
        timeout=30,
    )


def test_strict_signing_binds_the_method_and_the_body(tmp_path: Path) -> None:
    server = strict_server(tmp_path)
    try:
        assert strict_request(server, "PUT", "/items/victim-1", b"").status_code == 201
        # Recombee's scheme alone is not enough for this database.
        plain = server.request("GET", "/items/victim-1")
        assert plain.status_code == 401
        assert "Content-Digest" in plain.json()["error"]
        # A signed GET replayed as DELETE: refused, and the item stays.
        replayed = strict_request(server, "GET", "/items/victim-1", b"", sent_method="DELETE")
        assert replayed.status_code == 401
        assert strict_request(server, "GET", "/items/victim-1", b"").status_code == 200
        # A signed body swapped for another: refused, and nothing stored.
        view = json.dumps({"userId": "u", "itemId": "victim-1", "cascadeCreate": True})
        other = json.dumps({"userId": "u", "itemId": "attacker", "cascadeCreate": True})
        swapped = strict_request(
            server, "POST", "/detailviews/", view.encode(), sent_body=other.encode()
        )
        assert swapped.status_code == 401
        assert "Content-Digest" in swapped.json()["error"]
        assert strict_request(server, "POST", "/detailviews/", view.encode()).status_code == 200
        listed = strict_request(server, "GET", "/items/list/", b"")
        assert listed.json() == ["victim-1"]
    finally:
        server.stop()


def test_recombee_signing_still_takes_a_replay_within_the_window(live: RunningServer) -> None:
    # Documented exposure of Recombee's scheme (which the official clients use): identical
    # requests within a second carry identical signatures, so a repeated signature is never
    # refused; TLS keeps the URL from being captured.
    path = f"/test/items/list/?hmac_timestamp={int(time.time())}"
    url = f"{live.url}{path}&hmac_sign={sign(path, live.tokens['test'])}"
    assert requests.get(url, timeout=10).status_code == 200
    assert requests.get(url, timeout=10).status_code == 200


def test_the_admin_token_guards_reqos_own_operations(live: RunningServer) -> None:
    bare = requests.get(f"{live.url}/-/health", timeout=10)
    assert bare.status_code == 200
    # Without the admin token the probe says how the server is, and nothing about what it holds.
    assert bare.json() == {"status": "ok"}
    detailed = live.admin("GET", "health").json()
    assert set(detailed["databases"]) == {"test", "other"}
    assert "serverErrors" in detailed["traffic"]
    ready = requests.get(f"{live.url}/-/ready", timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
    assert set(live.admin("GET", "ready").json()["databases"]) == {"test", "other"}
    for method, path in (("GET", "plugins"), ("POST", "reload")):
        assert requests.request(method, f"{live.url}/-/{path}", timeout=10).status_code == 401
        # A database's token is not the admin's.
        as_database = live.admin(method, path, token=live.tokens["test"])
        assert as_database.status_code == 401
        assert live.admin(method, path, token="admin-token-abcdef012345678X").status_code == 401
    assert live.admin("GET", "plugins").status_code == 200
    assert live.admin("POST", "reload").status_code == 200
