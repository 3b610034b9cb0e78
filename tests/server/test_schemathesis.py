"""Schemathesis against a real server: no request that an OpenAPI document describes gets a 5xx.

Two documents: reqo's own (server/openapi.yaml, the file `GET /-/openapi.yaml` serves, which one
test checks) and Recombee's API v4 (`shared/reference/recombee-openapi-4.1.0.yaml`, read where it
lies, beside the repository, and never copied; the tests of it are skipped where it is not
there). The server is unsigned on 127.0.0.1 and its `test` database holds a small catalog (every
property type, a few items, users and interactions; see tests/fuzzing/catalog.py), rebuilt before
any operation that follows one that may have destroyed it, so that paths with ids hit real data:
ids, property names and the recommId are drawn from what exists half of the time.

The only check is `not_a_server_error`, and a failure lists the request (a curl line) and the
exception in the server's log. reqo does not claim to meet Recombee's response schemas and
status codes to the letter, and deliberately differs from the document in places:

- Authentication: the document declares a Bearer token; Recombee's API (and reqo) sign the URL
  with `hmac_timestamp` / `hmac_sign`. The server here allows unsigned requests, so the
  generated `Authorization` header is ignored.
- Every operation of the document is served (tests/server/test_operation_count.py counts them);
  an id that names nothing is a 404 with Recombee's error JSON, not the document's 2xx.
- reqo refuses unknown parameters with 400, where the document allows additional properties;
  it answers 405 (with the error JSON) for a method a path does not take.

Recombee's document is refined in memory (`refine_recombee_document`): what its own prose says
(ids match ^[a-zA-Z0-9_\\-:@.]+$, `count` is positive, `diversity` and `rotationRate` lie in
[0, 1]) becomes schema keywords, and the parameters get valid examples, so that the coverage
phase's base request is valid and each of its variations reaches the check of the parameter it
varies. It gets links too (`workflow_links`: create, set values, interact, recommend, page on,
attribute, merge, delete), which the stateful test follows.

Generation is deterministic (a fixed seed, derandomized Hypothesis), with a few examples per
operation (the coverage phase of boundary and invalid values, then positive and negative
fuzzing), sized to run in well under a minute and a half on two cores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
import yaml
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

from tests import fuzzing
from tests.serving import REPO_ROOT, RunningServer

RECOMBEE_DOC = REPO_ROOT.parent / "shared" / "reference" / "recombee-openapi-4.1.0.yaml"
MAX_EXAMPLES = 10
"""Fuzzing examples per operation (the coverage and explicit-example phases add their own)."""
REQUEST_TIMEOUT = 30.0
WORKFLOWS = 25
WORKFLOW_STEPS = 10
"""Stateful scenarios, and steps in each."""
RECOMM_PLACEHOLDER = "recomm-placeholder"
"""Stands for the current catalog's recommId, which changes whenever the catalog is rebuilt."""

pytestmark = pytest.mark.timeout(240)


@dataclass
class Target:
    """The server under test and the state of its catalog."""

    server: RunningServer
    session: requests.Session = field(default_factory=requests.Session)
    recomm_id: str = ""
    last_operation: str | None = None
    dirty: bool = True
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)
    """Per operation: how many answers of each status (printed at the end, to see the reach)."""

    @property
    def url(self) -> str:
        return self.server.url

    def prepare(self, case: Case[Any]) -> None:
        """Rebuild the catalog when the previous operation may have destroyed it, and put the
        current recommId where the generator put the placeholder."""
        label = case.operation.label
        if label != self.last_operation:
            if self.dirty:
                self.recomm_id = fuzzing.seed_catalog(self.url, self.session).recomm_id
            self.last_operation = label
            method = case.operation.method.upper()
            path = case.operation.path
            self.dirty = method in ("DELETE", "PUT", "POST") and not path.startswith(
                ("/{databaseId}/recomms/", "/{databaseId}/search/")
            )
        self.substitute(case)

    def substitute(self, case: Case[Any]) -> None:
        for container in (case.path_parameters, case.query, case.body):
            if isinstance(container, dict):
                for key, value in container.items():
                    if value == RECOMM_PLACEHOLDER:
                        container[key] = self.recomm_id

    def count(self, case: Case[Any], status: int) -> None:
        counts = self.statuses.setdefault(case.operation.label, {})
        counts[status] = counts.get(status, 0) + 1

    def call(self, case: Case[Any]) -> None:
        self.prepare(case)
        offset = self.log_size()
        response = case.call(base_url=self.url, session=self.session, timeout=REQUEST_TIMEOUT)
        self.validate(case, response, offset)

    def log_size(self) -> int:
        return self.server.log.stat().st_size if self.server.log.exists() else 0

    def validate(self, case: Case[Any], response: Any, offset: int) -> None:
        """Only `not_a_server_error`; a failure carries the server log's exception."""
        self.count(case, response.status_code)
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except FailureGroup as failure:
            errors = self.logged_errors(offset)
            if not errors:
                raise
            lines = "\n".join(f"    {error}" for error in errors)
            message = f"{failure.message}In the server's log:\n\n{lines}\n"
            raise FailureGroup(list(failure.exceptions), message) from None

    def logged_errors(self, offset: int) -> list[fuzzing.ServerError]:
        """The exceptions the server logged after `offset` (it may log just after answering)."""
        deadline = time.monotonic() + 2
        while True:
            with self.server.log.open("rb") as log:
                log.seek(offset)
                text = log.read().decode("utf-8", errors="replace")
            errors = fuzzing.server_errors(text)
            if errors or time.monotonic() > deadline:
                return errors
            time.sleep(0.05)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    server = fuzzing.start_server(tmp_path_factory.mktemp("schemathesis"))
    target = Target(server)
    try:
        yield target
    finally:
        target.session.close()
        server.stop()
        for label, counts in target.statuses.items():
            print(f"{label}: {dict(sorted(counts.items()))}")
        errors = fuzzing.server_errors(server.output())
        if errors:
            print("server exceptions:\n  " + "\n  ".join(sorted({str(e) for e in errors})))


def config(**dictionaries: list[str]) -> schemathesis.Config:
    """Deterministic generation of a few examples per operation, with dictionaries of the
    catalog's real names bound to the parameters that take them (half of the draws)."""
    bindings: dict[str, Any] = {}
    names = {
        "items": list(fuzzing.ITEMS),
        "users": list(fuzzing.USERS),
        "item_properties": list(fuzzing.ITEM_PROPERTIES),
        "user_properties": list(fuzzing.USER_PROPERTIES),
        "recomms": [RECOMM_PLACEHOLDER],
        **dictionaries,
    }
    for parameter, dictionary in (
        ("path.itemId", "items"),
        ("path.userId", "users"),
        ("path.targetUserId", "users"),
        ("path.sourceUserId", "users"),
        ("path.recommId", "recomms"),
        ("query.itemId", "items"),
        ("query.userId", "users"),
        ("body.itemId", "items"),
        ("body.userId", "users"),
        ("body.targetUserId", "users"),
        ("body.recommId", "recomms"),
    ):
        bindings[parameter] = {"dictionary": dictionary, "probability": 0.5}
    return schemathesis.Config.from_dict(
        {
            "seed": 20_240_601,
            "suppress-health-check": ["all"],
            "dictionaries": {name: {"values": values} for name, values in names.items()},
            "parameters": {"databaseId": fuzzing.DATABASE, **bindings},
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "no-shrink": True,
                "database": "none",
                "unique-inputs": True,
            },
            # Workflows follow links with valid requests: invalid ones are the other tests'.
            "phases": {"stateful": {"generation": {"mode": "positive"}}},
        }
    )


REQO_DOC = REPO_ROOT / "server" / "openapi.yaml"
"""reqo's own document: the file that `GET /-/openapi.yaml` serves (test_served_document)."""

reqo_api = schemathesis.openapi.from_path(REQO_DOC, config=config())


def test_served_document_is_the_one_tested(target: Target) -> None:
    served = requests.get(f"{target.url}/-/openapi.yaml", timeout=REQUEST_TIMEOUT)
    assert served.status_code == 200
    assert served.content == REQO_DOC.read_bytes()


@reqo_api.parametrize()
def test_reqo_extensions_never_answer_5xx(case: Case[Any], target: Target) -> None:
    target.call(case)


ID_PATTERN = r"^[a-zA-Z0-9_\-:@.]+$"
ID_EXAMPLES = {
    "itemId": fuzzing.ITEMS[1],
    "userId": fuzzing.USERS[1],
    "targetUserId": fuzzing.USERS[2],
    "sourceUserId": fuzzing.USERS[3],
    "recommId": RECOMM_PLACEHOLDER,
}


def refine_recombee_document(document: dict[str, Any]) -> dict[str, Any]:
    """Recombee's document, with what its own 400 descriptions say turned into schema keywords.

    The document types ids as plain strings and `count` as any integer, and says in prose that
    an id not matching ^[a-zA-Z0-9_\\-:@.]+$ or a count that is not positive is a 400.
    Schemathesis's coverage phase varies one parameter at a time around a valid request; with
    the constraints (and a seeded id as each id's example) that request is valid, so the
    variations reach past the id and count checks to the other parameters. Negative generation
    still sends ids and counts outside them.
    """
    refined: dict[str, Any] = json.loads(json.dumps(document))

    def id_schema(schema: dict[str, Any], name: str) -> None:
        if schema.get("type") == "string" and "example" not in schema:
            schema.update(example=ID_EXAMPLES[name], pattern=ID_PATTERN, maxLength=256)

    for path, item in refined["paths"].items():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                name = parameter.get("name")
                if name in ID_EXAMPLES:
                    id_schema(parameter["schema"], name)
                elif name == "propertyName":
                    example = "age" if "/users/" in path else "price"
                    parameter["schema"].setdefault("example", example)
    for name, schema in refined["components"]["schemas"].items():
        properties = schema.get("properties", {})
        for key, value in properties.items():
            if key in ID_EXAMPLES and isinstance(value, dict):
                id_schema(value, key)
        if name.startswith("Recommend") and "count" in properties:
            refine_recommendation(name, properties)
    # A logic is a string or an object naming one; its example names one that exists.
    logic = refined["components"]["schemas"].get("Logic")
    if isinstance(logic, dict):
        logic.setdefault("example", "recombee:default")
        logic.get("properties", {}).get("name", {}).setdefault("example", "recombee:default")
    return refined


def refine_recommendation(name: str, properties: dict[str, Any]) -> None:
    """A recommendation's parameters: the ranges the document gives in prose, and a valid
    example of each (for the candidates' kind: items or users), so that the coverage phase's
    base request is valid and each variation is checked on its own."""
    users = name.startswith("RecommendUsers")
    prop = "age" if users else "price"
    examples: dict[str, Any] = {
        "count": 3,
        "scenario": "any-scenario",
        "cascadeCreate": True,
        "returnProperties": True,
        "includedProperties": [prop],
        "filter": f"'{prop}' >= 0",
        "booster": f"if '{prop}' > 1 then 2 else 1",
        "reqlExpressions": {"value": f"'{prop}'"},
        "diversity": 0.5,
        "minRelevance": "low",
        "rotationRate": 0.2,
        "rotationTime": 7200,
        "userImpact": 0.3,
        "expertSettings": {},
        "returnAbGroup": True,
    }
    for key, example in examples.items():
        schema = properties.get(key)
        if isinstance(schema, dict) and "$ref" not in schema:
            schema.setdefault("example", example)
    properties["count"].update(minimum=1)
    for key in ("diversity", "rotationRate", "userImpact"):  # "from [0.0, 1.0]"
        if isinstance(properties.get(key), dict):
            properties[key].update(minimum=0, maximum=1)


def ref(path: str, method: str) -> str:
    """An OpenAPI operationRef to one of the document's operations."""
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


DB = "/{databaseId}"
ITEM = f"{DB}/items/{{itemId}}"
USER = f"{DB}/users/{{userId}}"
RECOMMS = (
    f"{DB}/recomms/users/{{userId}}/items/",
    f"{DB}/recomms/items/{{itemId}}/items/",
    f"{DB}/recomms/users/{{userId}}/users/",
    f"{DB}/recomms/items/{{itemId}}/users/",
)
NEXT = f"{DB}/recomms/next/items/{{recommId}}"
INTERACTIONS = tuple(f"{DB}/{kind}/" for kind in fuzzing.INTERACTION_KINDS)


def workflow_links() -> dict[tuple[str, str, str], dict[str, dict[str, Any]]]:
    """(path, method, status) -> links: what one answer lets the next request name.

    Recombee's document has no links; these are the workflows of its API: an item or a user
    that was just created is given values, interacted with, recommended from, merged, deleted;
    a recommendation's recommId pages on and is attributed by an interaction.
    """
    links: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    item = {"itemId": "$request.path.itemId"}
    user = {"userId": "$request.path.userId"}
    for source in ((ITEM, "put", "201"), (ITEM, "post", "200")):
        links[source] = {
            "GetItem": {"operationRef": ref(ITEM, "get"), "parameters": item},
            "SetItem": {"operationRef": ref(ITEM, "post"), "parameters": item},
            "DeleteItem": {"operationRef": ref(ITEM, "delete"), "parameters": item},
            "ItemViews": {"operationRef": ref(f"{ITEM}/detailviews/", "get"), "parameters": item},
            "Related": {"operationRef": ref(RECOMMS[1], "post"), "parameters": item},
            "Audience": {"operationRef": ref(RECOMMS[3], "post"), "parameters": item},
            **{
                f"Interact{n}": {"operationRef": ref(path, "post"), "requestBody": item}
                for n, path in enumerate(INTERACTIONS)
            },
        }
    for source in ((USER, "put", "201"), (USER, "post", "200")):
        links[source] = {
            "GetUser": {"operationRef": ref(USER, "get"), "parameters": user},
            "DeleteUser": {"operationRef": ref(USER, "delete"), "parameters": user},
            "ForUser": {"operationRef": ref(RECOMMS[0], "post"), "parameters": user},
            "Similar": {"operationRef": ref(RECOMMS[2], "post"), "parameters": user},
            "Merge": {
                "operationRef": ref(f"{DB}/users/{{targetUserId}}/merge/{{sourceUserId}}", "put"),
                "parameters": {"sourceUserId": "$request.path.userId"},
            },
            **{
                f"Interact{n}": {
                    "operationRef": ref(path, "post"),
                    "requestBody": {"userId": "$request.path.userId"},
                }
                for n, path in enumerate(INTERACTIONS)
            },
        }
    for path in (*RECOMMS, NEXT):
        links[(path, "post", "200")] = {
            "Next": {
                "operationRef": ref(NEXT, "post"),
                "parameters": {"recommId": "$response.body#/recommId"},
            },
            "Click": {
                "operationRef": ref(f"{DB}/detailviews/", "post"),
                "requestBody": {
                    "itemId": "$response.body#/recomms/0/id",
                    "recommId": "$response.body#/recommId",
                },
            },
        }
    for path in INTERACTIONS:
        kind = path.rstrip("/").rsplit("/", 1)[1]
        body = {"userId": "$request.body#/userId", "itemId": "$request.body#/itemId"}
        links[(path, "post", "200")] = {
            "UserHistory": {
                "operationRef": ref(f"{USER}/{kind}/", "get"),
                "parameters": {"userId": "$request.body#/userId"},
            },
            "Undo": {"operationRef": ref(path, "delete"), "parameters": body},
            "Recommend": {
                "operationRef": ref(RECOMMS[0], "post"),
                "parameters": {"userId": "$request.body#/userId"},
            },
        }
    return links


def add_links(document: dict[str, Any]) -> dict[str, Any]:
    for (path, method, status), links in workflow_links().items():
        responses = document["paths"][path][method]["responses"]
        responses.setdefault(status, {"description": "Successful operation."})["links"] = links
    return document


if RECOMBEE_DOC.exists():
    # The document names no server: requests go to the test server's root (`base_url`).
    recombee_api = schemathesis.openapi.from_dict(
        add_links(
            refine_recombee_document(yaml.safe_load(RECOMBEE_DOC.read_text(encoding="utf-8")))
        ),
        config=config(),
    )

    @recombee_api.parametrize()
    def test_recombee_api_never_answers_5xx(case: Case[Any], target: Target) -> None:
        target.call(case)

    def test_recombee_workflows_never_answer_5xx(target: Target) -> None:
        """Stateful: sequences that follow the links (create, set, interact, recommend, page on,
        attribute, merge, delete), each from a freshly built catalog."""
        workflows = recombee_api.include(
            path_regex=r"^/\{databaseId\}/(items|users|recomms/(users|items|next)/(items|users)?|"
            r"detailviews|purchases|ratings|cartadditions|bookmarks|viewportions)/"
        ).as_state_machine()

        # Hypothesis finds no rules on a subclass of the generated machine: patch it instead.
        def setup(machine: Any) -> None:
            target.recomm_id = fuzzing.seed_catalog(target.url, target.session).recomm_id

        offsets: list[int] = []

        def before_call(machine: Any, case: Case[Any]) -> None:
            offsets[:] = [target.log_size()]
            # The configured parameters do not reach the state machine's cases.
            case.path_parameters = {**(case.path_parameters or {}), "databaseId": fuzzing.DATABASE}
            target.substitute(case)

        def get_call_kwargs(machine: Any, case: Case[Any]) -> dict[str, Any]:
            return {"base_url": target.url, "session": target.session, "timeout": REQUEST_TIMEOUT}

        def validate_response(
            machine: Any, response: Any, case: Case[Any], *_: Any, **__: Any
        ) -> None:
            target.validate(case, response, offsets.pop() if offsets else 0)

        for method in (setup, before_call, get_call_kwargs, validate_response):
            setattr(workflows, method.__name__, method)
        workflows.run(
            settings=hypothesis.settings(
                max_examples=WORKFLOWS,
                stateful_step_count=WORKFLOW_STEPS,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                suppress_health_check=list(hypothesis.HealthCheck),
            )
        )
        target.dirty = True

else:
    MISSING = f"Recombee's OpenAPI document is not at {RECOMBEE_DOC}"

    @pytest.mark.skip(reason=MISSING)
    def test_recombee_api_never_answers_5xx(case: Case[Any], target: Target) -> None:
        target.call(case)

    @pytest.mark.skip(reason=MISSING)
    def test_recombee_workflows_never_answer_5xx(target: Target) -> None:
        pass
