"""What the fuzz tests and `bench.fuzz` share: a seeded server, input generators, response checks.

Every input is a `FuzzRequest`: a method, a path under `/test`, and a body as raw bytes (JSON text
is built as text, so that it can hold what Python's `json` would never write: 5,000 levels of
nesting, integers of 5,000 digits, `1e400`, lone surrogates as `\\ud800` escapes). The generators
are Hypothesis strategies: the tests draw from them under `derandomize=True`, the benchmark under a
fixed seed, so a run is reproducible.

`Checker` sends them over one `requests.Session` (one keep-alive connection) to 127.0.0.1 only and
says what went wrong: a 5xx, a 4xx whose body is not Recombee's `{"statusCode": N, "error": "…"}`,
a connection the server dropped (the session had to open another), a request that failed or hung.

The modules: `catalog` (the seeded catalog, the server, its log's exceptions), `endpoints`
(`FuzzRequest`, the endpoints, raw bytes), `json_text` (hostile JSON values as text),
`json_inputs` (JSON bodies), `reql_inputs` (ReQL), `hostile` (the named hostile inputs and the
families), `checker` (sending and judging). The names the callers use are re-exported here.
"""

from __future__ import annotations

from tests.fuzzing.catalog import (
    DATABASE,
    INTERACTION_KINDS,
    ITEM_PROPERTIES,
    ITEMS,
    SCENARIO,
    TOKEN,
    USER_PROPERTIES,
    USERS,
    Catalog,
    ServerError,
    seed_catalog,
    server_errors,
    start_server,
)
from tests.fuzzing.checker import Checker, Problem, error_body_problem
from tests.fuzzing.endpoints import (
    ENDPOINTS,
    WRITE_ENDPOINTS,
    Endpoint,
    FuzzRequest,
    encode_query,
    raw_requests,
)
from tests.fuzzing.hostile import FAMILIES, KNOWN_HOSTILE, all_requests
from tests.fuzzing.json_inputs import (
    batch_bodies,
    interaction_bodies,
    item_value_bodies,
    json_requests,
)
from tests.fuzzing.reql_inputs import reql_requests

__all__ = [
    "DATABASE",
    "ENDPOINTS",
    "FAMILIES",
    "INTERACTION_KINDS",
    "ITEMS",
    "ITEM_PROPERTIES",
    "KNOWN_HOSTILE",
    "SCENARIO",
    "TOKEN",
    "USERS",
    "USER_PROPERTIES",
    "WRITE_ENDPOINTS",
    "Catalog",
    "Checker",
    "Endpoint",
    "FuzzRequest",
    "Problem",
    "ServerError",
    "all_requests",
    "batch_bodies",
    "encode_query",
    "error_body_problem",
    "interaction_bodies",
    "item_value_bodies",
    "json_requests",
    "raw_requests",
    "reql_requests",
    "seed_catalog",
    "server_errors",
    "start_server",
]
