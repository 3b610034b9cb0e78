"""How much of Recombee's API v4 reqo serves: every operation (a method on a path) of Recombee's
OpenAPI document, sent correctly signed to a live server, must reach an endpoint.

Recombee's document (`shared/reference/recombee-openapi-4.1.0.yaml`) lies beside the repository,
as tests/server/test_schemathesis.py reads it; CI copies `shared/` beside its clone, so a missing
document is a failure here, not a skip: the count is the acceptance test of the compatibility
issue.

An operation is *served* when the answer is anything but reqo's answer for a request that routes
nowhere: a 404 whose error is `no endpoint METHOD PATH` (see `http_error` in server/api/app.py) or
a 405. A 404 for a missing item, a 400 for a missing parameter or a 409 all mean that an endpoint
took the request and judged it, which is all this test counts; what each endpoint answers is the
business of the tests of its area. A 401 or 403 (the signing went wrong, so routing is unproven)
and a 5xx (an endpoint that failed) are not served either.

The server's own document (`GET /-/openapi.yaml`, reqo's additions) is checked against the same
server: it redefines none of Recombee's operations and each operation it describes is served.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests
import yaml

from tests.serving import REPO_ROOT, RunningServer, free_port

RECOMBEE_DOC = REPO_ROOT.parent / "shared" / "reference" / "recombee-openapi-4.1.0.yaml"
OPERATIONS = 82
"""Recombee's API v4.1.0 has 82 operations; a document with another number is another version."""
DATABASE = "count"
TOKEN = "count-token-0123456789"
ADMIN_TOKEN = "count-admin-0123456789"
METHODS = ("get", "put", "post", "delete", "patch")
NO_ENDPOINT = re.compile(r"^no endpoint [A-Z]+ /")


@dataclass(frozen=True)
class Operation:
    """One method on a path of an OpenAPI document, with what a request to it needs."""

    method: str
    path: str
    """The path template, `/{databaseId}/items/{itemId}`."""
    required_query: Mapping[str, str]
    """Required query parameters and the placeholder sent for each."""

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.path}"


def placeholder(parameter: Mapping[str, Any]) -> str:
    """A value for a parameter: the first of its enum, else its example, else a plain word
    (which the server may well refuse with a 400: that still proves an endpoint took it)."""
    schema: Mapping[str, Any] = parameter.get("schema", {})
    for candidate in (
        schema.get("enum", [None])[0],
        parameter.get("example"),
        schema.get("example"),
    ):
        if candidate is not None:
            return str(candidate)
    return "placeholder"


def operations(document: Mapping[str, Any]) -> list[Operation]:
    """Every method on every path of an OpenAPI document, in the document's order."""
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
            query = {
                p["name"]: placeholder(p)
                for p in parameters
                if p.get("in") == "query" and p.get("required")
            }
            found.append(Operation(method, path, query))
    return found


def concrete(path: str) -> str:
    """The path with each parameter replaced by a placeholder value (the database by ours)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "databaseId":
            return DATABASE
        if name == "recommId":
            # Recommend Next Items takes a UUID (a malformed one is also a 400, from the endpoint).
            return "00000000-0000-4000-8000-000000000000"
        return quote(f"placeholder-{name}", safe="")

    return re.sub(r"\{([^}]+)\}", value, path)


def signed_url(server: RunningServer, path: str, query: Mapping[str, str]) -> str:
    """The URL of a request signed as Recombee's clients sign it: HMAC-SHA1 with the database's
    token over the path and query, `hmac_timestamp` last before `hmac_sign`. Written out here
    rather than taken from the server's code, so that the signing is checked too."""
    url = path + "?" + urlencode({**query, "hmac_timestamp": str(int(time.time()))})
    signature = hmac.new(TOKEN.encode(), url.encode(), hashlib.sha1).hexdigest()
    return f"{server.url}{url}&hmac_sign={signature}"


@dataclass(frozen=True)
class Answer:
    status: int
    error: str

    @property
    def served(self) -> bool:
        """Whether an endpoint took the request (see the module's docstring)."""
        if self.status in (401, 403, 405) or self.status >= 500:
            # A 401 or 403 to a request signed with the private token means the signing went
            # wrong and proves nothing about routing; a 5xx is an endpoint that failed.
            return False
        return not (self.status == 404 and NO_ENDPOINT.match(self.error))


def send(server: RunningServer, operation: Operation) -> Answer:
    """One correctly signed request to an operation, with placeholder parameters and, for the
    methods that carry one, an empty JSON body."""
    url = signed_url(server, concrete(operation.path), operation.required_query)
    body: dict[str, Any] | None = {} if operation.method in ("put", "post") else None
    # reqo's own operations outside any database take the admin token (Recombee's take none).
    admin = operation.path.startswith("/-/")
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if admin else {}
    response = requests.request(
        operation.method.upper(), url, json=body, headers=headers, timeout=60
    )
    try:
        content = response.json()
    except ValueError:
        content = None
    error = content.get("error", "") if isinstance(content, dict) else ""
    return Answer(response.status_code, str(error))


def recombee_document() -> dict[str, Any]:
    assert RECOMBEE_DOC.exists(), (
        f"Recombee's OpenAPI document is not at {RECOMBEE_DOC} (CI copies shared/ beside the "
        "repository)"
    )
    document: dict[str, Any] = yaml.safe_load(RECOMBEE_DOC.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of its own with an empty database: the requests include Reset Database and
    placeholder writes, which no other test should see."""
    running = RunningServer(
        tmp_path_factory.mktemp("operation-count"),
        free_port(),
        {DATABASE: TOKEN},
        admin_token=ADMIN_TOKEN,
    )
    running.start()
    yield running
    running.stop()


def test_every_operation_of_recombees_api_is_served(counted: RunningServer) -> None:
    listed = operations(recombee_document())
    assert len(listed) == OPERATIONS, f"{len(listed)} operations in {RECOMBEE_DOC.name}"
    # Reset Database (DELETE /{databaseId}/) goes last, so that it cannot hide the others' data.
    listed.sort(key=lambda operation: operation.path == "/{databaseId}/")
    answers = {operation.name: send(counted, operation) for operation in listed}
    missing = [f"{name} ({a.status}: {a.error})" for name, a in answers.items() if not a.served]
    served = len(answers) - len(missing)
    assert not missing, f"{served} of {OPERATIONS} operations served; missing:\n" + "\n".join(
        missing
    )


def test_the_servers_own_document_is_not_contradicted(counted: RunningServer) -> None:
    """`GET /-/openapi.yaml` describes what reqo adds to Recombee's API: it must not describe one
    of Recombee's operations (two descriptions of one operation would disagree sooner or later),
    and every operation it describes must be served."""
    response = requests.get(f"{counted.url}/-/openapi.yaml", timeout=30)
    assert response.status_code == 200, response.text
    own = operations(yaml.safe_load(response.text))
    assert own, "the server's document describes no operation"
    recombee = {operation.name for operation in operations(recombee_document())}
    assert not [o.name for o in own if o.name in recombee]
    # `/-/reload` rereads an unchanged configuration; training an empty database is quick.
    unserved = [
        f"{o.name} ({a.status}: {a.error})" for o in own if not (a := send(counted, o)).served
    ]
    assert not unserved, unserved
