"""HMAC-SHA1 URL signing: the official client's signatures pass, anything else is 401."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from recombee_api_client.api_client import RecombeeClient
from recombee_api_client.api_requests import AddItem, ListItems

from server.auth import Unauthorized, sign, verify_request
from server.config import ConfigError, parse_config
from tests.serving import RunningServer

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
