"""What the fuzz tests and `bench.fuzz` share: a seeded server, input generators, response checks.

Every input is a `FuzzRequest`: a method, a path under `/test`, and a body as raw bytes (JSON text
is built as text, so that it can hold what Python's `json` would never write: 5,000 levels of
nesting, integers of 5,000 digits, `1e400`, lone surrogates as `\\ud800` escapes). The generators
are Hypothesis strategies: the tests draw from them under `derandomize=True`, the benchmark under a
fixed seed, so a run is reproducible.

`Checker` sends them over one `requests.Session` (one keep-alive connection) to 127.0.0.1 only and
says what went wrong: a 5xx, a 4xx whose body is not Recombee's `{"statusCode": N, "error": "…"}`,
a connection the server dropped (the session had to open another), a request that failed or hung.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
import urllib3
from hypothesis import strategies as st

from tests.serving import RunningServer, free_port

DATABASE = "test"
TOKEN = "fuzz-token-0123456789"

# The seeded catalog: every property type of items and users, a few of each entity, every kind
# of interaction. Paths and ReQL that name these hit real data.
ITEM_PROPERTIES = {
    "price": "double",
    "stock": "int",
    "title": "string",
    "in_stock": "boolean",
    "released": "timestamp",
    "tags": "set",
    "photo": "image",
    "gallery": "imageList",
}
USER_PROPERTIES = {
    "age": "int",
    "score": "double",
    "name": "string",
    "vip": "boolean",
    "joined": "timestamp",
    "interests": "set",
}
ITEMS = tuple(f"item-{n}" for n in range(1, 7))
USERS = tuple(f"user-{n}" for n in range(1, 5))
INTERACTION_KINDS = (
    "detailviews",
    "purchases",
    "ratings",
    "cartadditions",
    "bookmarks",
    "viewportions",
)
SCENARIO = "fuzz-scenario"


def item_values(n: int) -> dict[str, Any]:
    return {
        "price": 9.5 * n,
        "stock": n,
        "title": f"Item number {n}",
        "in_stock": n % 2 == 0,
        "released": 1_600_000_000 + 86_400 * n,
        "tags": ["red", "blue"][: n % 3],
        "photo": f"http://127.0.0.1/img/{n}.png",
        "gallery": [f"http://127.0.0.1/img/{n}-a.png"],
    }


def user_values(n: int) -> dict[str, Any]:
    return {
        "age": 20 + n,
        "score": n / 3,
        "name": f"User {n}",
        "vip": n == 1,
        "joined": "2021-05-0{n}T10:00:00Z".replace("{n}", str(n)),
        "interests": ["music", "books"][: n % 3],
    }


def seed_requests() -> list[dict[str, Any]]:
    """The batch sub-requests that build the catalog (the interactions carry no recommId)."""
    out: list[dict[str, Any]] = []
    for name, kind in ITEM_PROPERTIES.items():
        out.append({"method": "PUT", "path": f"/items/properties/{name}", "params": {"type": kind}})
    for name, kind in USER_PROPERTIES.items():
        out.append({"method": "PUT", "path": f"/users/properties/{name}", "params": {"type": kind}})
    for n, item in enumerate(ITEMS, 1):
        values = {**item_values(n), "!cascadeCreate": True}
        out.append({"method": "POST", "path": f"/items/{item}", "params": values})
    for n, user in enumerate(USERS, 1):
        values = {**user_values(n), "!cascadeCreate": True}
        out.append({"method": "POST", "path": f"/users/{user}", "params": values})
    timestamp = 1_650_000_000
    for u, user in enumerate(USERS):
        for i, item in enumerate(ITEMS):
            if (u + i) % 2:
                continue
            timestamp += 60
            common = {"userId": user, "itemId": item, "timestamp": timestamp}
            kind = INTERACTION_KINDS[(u * 7 + i) % len(INTERACTION_KINDS)]
            params: dict[str, Any] = dict(common)
            if kind == "ratings":
                params["rating"] = 0.5
            elif kind == "viewportions":
                params["portion"] = 0.5
                params["sessionId"] = "s-1"
            elif kind == "purchases":
                params.update(amount=2, price=3.5, profit=1.0)
            out.append({"method": "POST", "path": f"/{kind}/", "params": params})
            # Every user has a detail view of the item too, so every model has history to use.
            if kind != "detailviews":
                view = {**common, "timestamp": timestamp + 1}
                out.append({"method": "POST", "path": "/detailviews/", "params": view})
    return out


@dataclass(frozen=True)
class Catalog:
    """What the seeding produced that paths can name: a real recommId."""

    recomm_id: str


def seed_catalog(base_url: str, session: requests.Session | None = None) -> Catalog:
    """Reset the `test` database and fill it with the small catalog (unsigned requests)."""
    if session is None:
        with requests.Session() as own:
            return seed_catalog(base_url, own)
    http = session
    root = f"{base_url}/{DATABASE}"
    reset = http.delete(f"{root}/", timeout=60)
    if reset.status_code != 200:
        raise RuntimeError(f"reset failed: {reset.status_code} {reset.text}")
    answer = http.post(f"{root}/batch/", json={"requests": seed_requests()}, timeout=60)
    codes = [r["code"] for r in answer.json()] if answer.status_code == 200 else []
    if answer.status_code != 200 or set(codes) - {200, 201}:
        raise RuntimeError(f"seeding failed: {answer.status_code} {answer.text[:2000]}")
    recomm = http.post(
        f"{root}/recomms/users/{USERS[0]}/items/", json={"count": 2}, timeout=60
    ).json()
    recomm_id = recomm["recommId"]
    # An interaction attributed to that recommendation.
    http.post(
        f"{root}/detailviews/",
        json={"userId": USERS[1], "itemId": ITEMS[1], "recommId": recomm_id, "timestamp": 1.7e9},
        timeout=60,
    ).raise_for_status()
    return Catalog(recomm_id=recomm_id)


def start_server(directory: Path, extra: dict[str, Any] | None = None) -> RunningServer:
    """An unsigned reqo server on a free loopback port, with the `test` database."""
    config: dict[str, Any] = {
        "scenarios": {
            SCENARIO: {
                "endpoint": "items-to-user",
                "filter": "'price' >= 0 or 'price' == null",
                "booster": "if 'in_stock' then 1.5 else 1",
                "diversity": 0.1,
            }
        },
        **(extra or {}),
    }
    running = RunningServer(
        directory, free_port(), {DATABASE: TOKEN}, allow_unsigned=True, extra=config
    )
    running.start()
    return running


@dataclass(frozen=True)
class ServerError:
    """One exception in the server's log: the request, the exception, the project's frame."""

    request: str
    exception: str
    where: str

    def __str__(self) -> str:
        return f"{self.exception}  (at {self.where}; {self.request})"


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b")
"""The line that names an exception (a message may run over more lines after it)."""


def is_message(line: str) -> bool:
    return bool(line) and not line.startswith((" ", "Traceback", "During", "The above"))


def server_errors(log: str) -> list[ServerError]:
    """The internal errors that reqo logged (`internal error on METHOD PATH` + traceback), each
    with its last exception line and the innermost frame in the project's own code."""
    found: list[ServerError] = []
    lines = log.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("internal error on "):
            continue
        where, exception = "?", "?"
        for follow in lines[index + 1 :]:
            if follow.startswith(("internal error on ", "ERROR:", "INFO:", "WARNING:")):
                break
            stripped = follow.strip()
            if stripped.startswith('File "') and "site-packages" not in stripped:
                path, _, rest = stripped[len('File "') :].partition('", line ')
                where = f"{Path(path).parent.name}/{Path(path).name}:{rest.split(',')[0]}"
            elif EXCEPTION_LINE.match(follow) or (exception == "?" and is_message(follow)):
                exception = follow
        found.append(ServerError(line.removeprefix("internal error on "), exception, where))
    return found


# --------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class FuzzRequest:
    """One input: a request to `/test{path}` with a raw body (None: no body)."""

    family: str
    method: str
    path: str
    body: bytes | None = None

    def reproducer(self, base_url: str = "http://127.0.0.1:PORT", limit: int = 300) -> str:
        """A curl command line (the body cut at `limit` characters, with its full length)."""
        line = f"curl -X {self.method} '{base_url}/{DATABASE}{self.path}'"
        if self.body is not None:
            text = self.body.decode("utf-8", errors="backslashreplace")
            shown = text if len(text) <= limit else text[:limit] + f"…[{len(text)} chars]"
            line += " -H 'Content-Type: application/json' --data-binary " + repr(shown)
        return line


@dataclass(frozen=True)
class Endpoint:
    """A place to send a body: its method, its path, and what kind of endpoint it is."""

    kind: str  # write | read | recommend | batch
    method: str
    path: str


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("write", "POST", "/detailviews/"),
    Endpoint("write", "POST", "/purchases/"),
    Endpoint("write", "POST", "/ratings/"),
    Endpoint("write", "POST", "/cartadditions/"),
    Endpoint("write", "POST", "/bookmarks/"),
    Endpoint("write", "POST", "/viewportions/"),
    Endpoint("write", "DELETE", "/detailviews/"),
    Endpoint("write", "POST", f"/items/{ITEMS[0]}"),
    Endpoint("write", "POST", f"/users/{USERS[0]}"),
    Endpoint("write", "PUT", "/items/properties/fuzzprop"),
    Endpoint("write", "PUT", f"/users/{USERS[1]}/merge/{USERS[2]}"),
    Endpoint("write", "POST", "/more-items/"),
    Endpoint("write", "DELETE", "/more-items/"),
    Endpoint("read", "GET", "/items/list/"),
    Endpoint("read", "GET", "/users/list/"),
    Endpoint("read", "GET", f"/items/{ITEMS[0]}"),
    Endpoint("read", "GET", f"/users/{USERS[0]}/purchases/"),
    Endpoint("read", "GET", "/items/properties/list/"),
    Endpoint("read", "GET", "/scenarios/"),
    Endpoint("recommend", "POST", f"/recomms/users/{USERS[0]}/items/"),
    Endpoint("recommend", "POST", f"/recomms/items/{ITEMS[0]}/items/"),
    Endpoint("recommend", "POST", f"/recomms/items/{ITEMS[0]}/users/"),
    Endpoint("recommend", "POST", f"/recomms/users/{USERS[0]}/users/"),
    Endpoint("recommend", "POST", "/recomms/next/items/no-such-recomm"),
    Endpoint("batch", "POST", "/batch/"),
)
WRITE_ENDPOINTS = tuple(e for e in ENDPOINTS if e.kind == "write")


@functools.cache
def endpoints() -> st.SearchStrategy[Endpoint]:
    return st.sampled_from(ENDPOINTS)


# ---- raw bytes

SPECIAL_BYTES = (
    b"",
    b" ",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf{}",
    b"\xed\xa0\x80",  # a surrogate encoded in UTF-8 (invalid UTF-8)
    b"{",
    b"}",
    b"[]",
    b"null",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b'{"a": NaN}',
    b"1e400",
    b'"\\ud800"',
    b'{"\\udfff": 1}',
    b"{" * 10_000,
    b"[" * 100_000,
)


@functools.cache
def raw_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=512),
        st.sampled_from(SPECIAL_BYTES),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", errors="surrogatepass")),
    )


@functools.cache
@st.composite
def raw_requests(draw: st.DrawFn) -> FuzzRequest:
    endpoint = draw(endpoints())
    return FuzzRequest("raw-bytes", endpoint.method, endpoint.path, draw(raw_bodies()))


# ---- JSON text


def jstr(value: str) -> str:
    """A JSON string literal; lone surrogates come out as `\\udxxx` escapes."""
    return json.dumps(value)


def huge_int_text(digits: int, negative: bool = False) -> str:
    text = "9" + "8" * (digits - 1)
    return ("-" if negative else "") + text


@functools.cache
@st.composite
def nasty_scalars(draw: st.DrawFn, tame: bool = False) -> str:
    """JSON text of one hostile scalar value. `tame`: only values that a body check on depth,
    surrogates, 64-bit integers and finite numbers lets through, odd as they are, so that the
    handlers behind it get them."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        if tame:
            return draw(st.sampled_from(INT64_EDGES))
        return huge_int_text(draw(st.integers(300, 5000)), draw(st.booleans()))
    if choice == 1:
        return draw(st.sampled_from(FINITE_EXTREMES if tame else HUGE_NUMBERS))
    if choice == 2:
        return draw(st.sampled_from(INT64_EDGES if tame else EDGE_NUMBERS))
    if choice == 3:
        return jstr(draw(st.text(max_size=12) if tame else surrogate_text()))
    if choice == 4:
        return draw(st.sampled_from(ODD_STRINGS if tame else SURROGATE_STRINGS))
    if choice == 5:
        bound = 2**63 - 1 if tame else 2**70
        return json.dumps(draw(st.integers(-bound, bound)))
    if choice == 6:
        return json.dumps(draw(st.floats(allow_nan=False, allow_infinity=False)))
    if choice == 7:
        return jstr("x" * draw(st.sampled_from([257, 10_001, 100_000])))
    if choice == 8:
        return jstr(draw(st.text(max_size=30)))
    return draw(st.sampled_from(ODD_TIMES))


HUGE_NUMBERS = ("1e400", "-1e400", "1e-400", "1E+999", "-0.0", "0e0", "1e308", "-1e308")
EDGE_NUMBERS = (
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "4294967296",
    "2147483648",
    "1.7976931348623157e308",
    "5e-324",
    "1e20",
    "-1e20",
    "253402300800",
    "-62135596801",
)
FINITE_EXTREMES = ("1e308", "-1e308", "1e-400", "-0.0", "0e0", "5e-324", "-5e-324", "1e300")
INT64_EDGES = (
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775806",
    "4294967296",
    "2147483648",
    "-2147483649",
    "253402300800",
    "-62135596801",
    "0",
    "-1",
)
SURROGATE_STRINGS = ('"\\ud800"', '"\\udfff"', '"a\\ud83d"', '"\\ud83d\\ude00\\udc00"')
ODD_STRINGS = (
    '"\\u0000"',
    '"\\ud83d\\ude00"',
    '"\\u202e"',
    '"e\\u0301"',
    '"\\ufeff"',
    '"\\uffff"',
    '"%00"',
    '"../../etc/passwd"',
    '"\'; DROP TABLE items; --"',
    '"\\"\\\\"',
)
ODD_TIMES = (
    '"2021-01-01T00:00:00Z"',
    '"9999-12-31T23:59:59"',
    '"0000-01-01"',
    '"0001-01-01T00:00:00"',
    '"+275760-09-13"',
    '"2021-02-30"',
    '"2021-01-01T00:00:00+99:00"',
    '"1e400"',
)


@functools.cache
def surrogate_text() -> st.SearchStrategy[str]:
    """Short text with lone surrogates mixed in (json.dumps writes them as escapes)."""
    return st.lists(
        st.one_of(
            st.sampled_from(["\ud800", "\udfff", "\udbff", "\udc00", "a", "é", "\U0001f600"]),
            st.characters(codec=None, categories=["Cs", "Lu", "Nd"]),
        ),
        min_size=1,
        max_size=6,
    ).map("".join)


def deep_json(depth: int, opener: str = "[") -> str:
    if opener == "{":
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth + "1" + "]" * depth


@functools.cache
@st.composite
def json_values(draw: st.DrawFn, depth: int = 0, tame: bool = False) -> str:
    """JSON text of a random value: hostile scalars, plain ones, small containers, deep nests
    (`tame`: at most 60 levels, and every scalar tame)."""
    choice = draw(st.integers(0, 19 if depth < 3 else 11))
    if choice <= 7:
        return draw(nasty_scalars(tame))
    if choice <= 11:
        return draw(st.sampled_from(PLAIN_VALUES))
    if choice <= 14:
        values = draw(st.lists(json_values(depth + 1, tame), max_size=3))
        return "[" + ",".join(values) + "]"
    if choice <= 17:
        key_text = st.text(max_size=8) if tame else st.one_of(st.text(max_size=8), surrogate_text())
        keys = draw(st.lists(key_text, max_size=3))
        values = [draw(json_values(depth + 1, tame)) for _ in keys]
        return "{" + ",".join(f"{jstr(k)}:{v}" for k, v in zip(keys, values, strict=True)) + "}"
    if choice == 18:
        deepest = 60 if tame else 5000
        return deep_json(draw(st.integers(2, deepest)), draw(st.sampled_from("[{")))
    return draw(st.sampled_from(PLAIN_VALUES))


PLAIN_VALUES = ("true", "false", "null", '""', "[]", "{}", '"x"', "0", "-1", "1", "0.5", '["a"]')


def json_object(fields: Sequence[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{jstr(k)}:{v}" for k, v in fields) + "}"


INTERACTION_FIELDS = {
    "detailviews": (
        "timestamp",
        "duration",
        "cascadeCreate",
        "recommId",
        "additionalData",
        "autoPresented",
    ),
    "purchases": (
        "timestamp",
        "cascadeCreate",
        "amount",
        "price",
        "profit",
        "recommId",
        "additionalData",
    ),
    "ratings": ("timestamp", "rating", "cascadeCreate", "recommId", "additionalData"),
    "cartadditions": (
        "timestamp",
        "cascadeCreate",
        "amount",
        "price",
        "recommId",
        "additionalData",
    ),
    "bookmarks": ("timestamp", "cascadeCreate", "recommId", "additionalData"),
    "viewportions": (
        "portion",
        "sessionId",
        "timestamp",
        "cascadeCreate",
        "recommId",
        "additionalData",
        "autoPresented",
        "timeSpent",
    ),
}
RECOMMEND_FIELDS = (
    "count",
    "scenario",
    "cascadeCreate",
    "returnProperties",
    "includedProperties",
    "filter",
    "booster",
    "logic",
    "reqlExpressions",
    "diversity",
    "minRelevance",
    "rotationRate",
    "rotationTime",
    "expertSettings",
    "returnAbGroup",
    "targetUserId",
    "userImpact",
)
GOOD_RECOMMEND = {
    "count": "3",
    "scenario": jstr(SCENARIO),
    "cascadeCreate": "true",
    "returnProperties": "true",
    "includedProperties": '["price", "tags"]',
    "filter": jstr("'price' > 1"),
    "booster": jstr("if 'in_stock' then 2 else 1"),
    "logic": jstr("recombee:popular"),
    "reqlExpressions": '{"p": "\'price\'"}',
    "diversity": "0.5",
    "minRelevance": '"medium"',
    "rotationRate": "0.2",
    "rotationTime": "3600",
    "returnAbGroup": "true",
    "targetUserId": jstr(USERS[1]),
    "userImpact": "0.3",
    "expertSettings": "{}",
}


@functools.cache
def ids() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([*ITEMS, *USERS]),
        st.from_regex(r"[a-zA-Z0-9_\-:@.]{1,12}", fullmatch=True),
    )


@functools.cache
@st.composite
def field_value(draw: st.DrawFn, good: str | None = None, tame: bool = False) -> str:
    """A field's value: usually hostile, sometimes the good one (so the rest gets checked)."""
    if good is not None and draw(st.integers(0, 3)) == 0:
        return good
    return draw(json_values(0, tame))


def tameness() -> st.SearchStrategy[bool]:
    """Whether a body's values all pass the body checks (half of the bodies): one hostile value
    refuses a whole body before any handler sees the rest."""
    return st.booleans()


GOOD_INTERACTION = {
    "timestamp": "1700000000",
    "rating": "0.5",
    "portion": "0.5",
    "amount": "1",
    "price": "1.5",
    "profit": "0.5",
    "duration": "10",
    "sessionId": '"s"',
    "cascadeCreate": "true",
    "timeSpent": "5",
    "recommId": '"no-such-recomm"',
    "additionalData": '{"a": 1}',
    "autoPresented": "true",
}


def mutated(
    draw: st.DrawFn, names: Sequence[str], good: Mapping[str, str], tame: bool
) -> list[tuple[str, str]]:
    """Values for `names`: usually good ones with one or two odd or hostile (a request one
    mistake away from valid gets past the first check), sometimes odd or hostile throughout."""
    if not names:
        return []
    if draw(st.integers(0, 3)) == 0:
        return [(name, draw(field_value(good.get(name), tame))) for name in names]
    odd = set(draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True)))
    out = []
    for name in names:
        if name in odd or name not in good:
            shaped = SHAPED.get(name)
            if shaped is not None and draw(st.booleans()):
                out.append((name, draw(shaped(tame))))
            else:
                out.append((name, draw(json_values(0, tame))))
        else:
            out.append((name, good[name]))
    return out


@functools.cache
@st.composite
def logic_values(draw: st.DrawFn, tame: bool = False) -> str:
    """A logic object of the right shape with odd parts: its name, its settings."""
    name = draw(st.one_of(st.sampled_from(LOGICS), json_values(1, tame)))
    fields = [("name", name)]
    if draw(st.booleans()):
        fields.append(("settings", draw(json_values(1, tame))))
    return json_object(fields)


LOGICS = tuple(
    jstr(name)
    for name in (
        "recombee:default",
        "recombee:personal",
        "recombee:similar",
        "recombee:popular",
        "recombee:recently-viewed",
        "item-knn",
        "popularity",
        "reqo:visually-similar",
        "",
    )
)


@functools.cache
@st.composite
def expression_maps(draw: st.DrawFn, tame: bool = False) -> str:
    """reqlExpressions: names (odd ones too) to ReQL text or to other values."""
    keys = draw(st.lists(st.text(max_size=6), max_size=3))
    values = [draw(st.one_of(reql_texts().map(jstr), json_values(1, tame))) for _ in keys]
    return json_object(list(zip(keys, values, strict=True)))


@functools.cache
@st.composite
def string_lists(draw: st.DrawFn, tame: bool = False) -> str:
    """includedProperties: property names, odd ones, other values."""
    names = st.one_of(
        st.sampled_from([*ITEM_PROPERTIES, *USER_PROPERTIES, "nosuch", "", "itemId"]),
        st.text(max_size=6),
    )
    items = draw(st.lists(st.one_of(names.map(jstr), json_values(1, tame)), max_size=4))
    return "[" + ",".join(items) + "]"


SHAPED: dict[str, Callable[[bool], st.SearchStrategy[str]]] = {
    "logic": logic_values,
    "reqlExpressions": expression_maps,
    "includedProperties": string_lists,
    "expertSettings": lambda tame: json_values(1, tame),
    "additionalData": lambda tame: json_values(1, tame),
}
"""Fields whose value has a shape: a mutation keeps the shape half of the time."""


@functools.cache
@st.composite
def interaction_bodies(draw: st.DrawFn) -> FuzzRequest:
    kind = draw(st.sampled_from(INTERACTION_KINDS))
    tame = draw(tameness())
    good = {
        **GOOD_INTERACTION,
        "userId": jstr(draw(st.sampled_from(USERS))),
        "itemId": jstr(draw(st.sampled_from(ITEMS))),
    }
    present = [key for key in ("userId", "itemId") if draw(st.integers(0, 7))]
    method = "DELETE" if draw(st.integers(0, 7)) == 0 else "POST"
    if method == "DELETE":
        # Delete takes the ids and the timestamp (view portions: the sessionId).
        key = "sessionId" if kind == "viewportions" else "timestamp"
        optional = [key] if draw(st.booleans()) else []
    else:
        optional = draw(st.lists(st.sampled_from(INTERACTION_FIELDS[kind]), unique=True))
        if kind == "ratings" and "rating" not in optional:
            optional.append("rating")
        if kind == "viewportions" and "portion" not in optional:
            optional.append("portion")
    fields = mutated(draw, [*present, *optional], good, tame)
    if draw(st.integers(0, 9)) == 0:
        fields.append((draw(st.text(max_size=8) if tame else surrogate_text()), "1"))
    return FuzzRequest("json-interaction", method, f"/{kind}/", json_object(fields).encode())


@functools.cache
@st.composite
def item_value_bodies(draw: st.DrawFn) -> FuzzRequest:
    entity, props, names = draw(
        st.sampled_from([("items", ITEM_PROPERTIES, ITEMS), ("users", USER_PROPERTIES, USERS)])
    )
    target = draw(st.one_of(st.sampled_from(names), st.just("new-one")))
    tame = draw(tameness())
    sample = item_values(3) if entity == "items" else user_values(3)
    good = {name: json.dumps(value) for name, value in sample.items()}
    odd_names = st.sampled_from(["!cascadeCreate", "nosuch", "!x", "PRICE", "itemId", "id", ""])
    keys = draw(
        st.lists(
            st.one_of(
                st.sampled_from(sorted(props)),
                odd_names,
                st.text(max_size=8) if tame else surrogate_text(),
            ),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    fields = mutated(draw, keys, good, tame)
    if draw(st.booleans()):
        fields.append(("!cascadeCreate", "true"))
    body = json_object(fields).encode()
    return FuzzRequest("json-values", "POST", f"/{entity}/{target}", body)


RECOMMEND_PATHS = tuple(e.path for e in ENDPOINTS if e.kind == "recommend")


@functools.cache
@st.composite
def recommend_bodies(draw: st.DrawFn) -> FuzzRequest:
    path = draw(st.sampled_from(RECOMMEND_PATHS))
    tame = draw(tameness())
    if "/next/" in path:
        allowed: Sequence[str] = ("count",)
    elif "/recomms/items/" in path and path.endswith("/items/"):
        allowed = RECOMMEND_FIELDS
    else:  # targetUserId and userImpact are Items to Item's
        allowed = RECOMMEND_FIELDS[:-2]
    names = draw(st.lists(st.sampled_from(allowed), min_size=1, max_size=6, unique=True))
    if "count" not in names and draw(st.integers(0, 5)):
        names.insert(0, "count")
    if draw(st.integers(0, 19)) == 0:
        names.append(draw(st.sampled_from(RECOMMEND_FIELDS)))  # perhaps not this endpoint's
    fields = mutated(draw, names, GOOD_RECOMMEND, tame)
    return FuzzRequest("json-recommend", "POST", path, json_object(fields).encode())


@functools.cache
@st.composite
def list_queries(draw: st.DrawFn) -> FuzzRequest:
    """GET list endpoints with hostile query-string parameters."""
    path = draw(st.sampled_from(["/items/list/", "/users/list/"]))
    params: list[tuple[str, str]] = []
    for name in draw(
        st.lists(
            st.sampled_from(["count", "offset", "returnProperties", "includedProperties"]),
            min_size=1,
            unique=True,
        )
    ):
        value = draw(
            st.one_of(
                st.sampled_from(["1", "0", "-1", "1e400", "NaN", "true", "", "price,tags"]),
                st.sampled_from(INT64_EDGES),
                st.integers(300, 5000).map(huge_int_text),
                surrogate_text(),
            )
        )
        params.append((name, value))
    return FuzzRequest("query-list", "GET", path + "?" + encode_query(params))


def encode_query(params: Sequence[tuple[str, str]]) -> str:
    return "&".join(
        f"{quote(k, safe='')}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}"
        for k, v in params
    )


@functools.cache
@st.composite
def sub_requests(draw: st.DrawFn) -> str:
    """One batch sub-request as JSON text, well-formed or not."""
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(json_values(0, draw(tameness())))
    if choice == 1:
        inner = draw(st.one_of(interaction_bodies(), item_value_bodies(), recommend_bodies()))
        assert inner.body is not None
        return json_object(
            [
                ("method", jstr(inner.method)),
                ("path", jstr(inner.path)),
                ("params", inner.body.decode()),
            ]
        )
    tame = draw(tameness())
    fields = [
        ("method", draw(field_value('"POST"', tame))),
        ("path", draw(field_value(jstr(draw(st.sampled_from(ENDPOINTS)).path), tame))),
    ]
    if draw(st.booleans()):
        fields.append(("params", draw(field_value("{}", tame))))
    return json_object(fields)


@functools.cache
@st.composite
def batch_bodies(draw: st.DrawFn) -> FuzzRequest:
    subs = draw(st.lists(sub_requests(), max_size=4))
    fields = [("requests", "[" + ",".join(subs) + "]")]
    if draw(st.booleans()):
        fields.append(("distinctRecomms", draw(field_value("true", draw(tameness())))))
    return FuzzRequest("json-batch", "POST", "/batch/", json_object(fields).encode())


@functools.cache
@st.composite
def generic_json(draw: st.DrawFn) -> FuzzRequest:
    """Any JSON value as the body of any endpoint."""
    endpoint = draw(endpoints())
    body = draw(json_values(0, draw(tameness()))).encode()
    return FuzzRequest("json-any", endpoint.method, endpoint.path, body)


@functools.cache
def json_requests() -> st.SearchStrategy[FuzzRequest]:
    return st.one_of(
        interaction_bodies(),
        item_value_bodies(),
        recommend_bodies(),
        batch_bodies(),
        generic_json(),
        list_queries(),
    )


# ---- ReQL

VALID_REQL = (
    "'price' > 1",
    "'price' < 100 and 'in_stock'",
    "'stock' + 1 >= 2 * 3",
    "\"red\" in 'tags'",
    '\'tags\' & {"red"} == {"red"}',
    "'title' in \"Item number 1\"",
    "'released' > now() - 7*24*3600",
    "if 'in_stock' then 2 else 0.5",
    "size('tags') > 0",
    "'itemId' != \"item-1\"",
    "'price' / 0 > 1",
    "'stock' % 0 == 0",
    "matches('title', \"^Item\")",
    "lower('title') == \"item number 2\"",
    "round('price' * 2) > 3",
    "pow('price', 2) > 10",
    "sqrt(-1) > 0",
    "log(0) < 1",
    "coalesce('price', 0) > 1",
    "exists('tags', lambda 'x': 'x' == \"red\")",
    'map(lambda \'i\': \'i\'["itemId"], user_interactions(context_user["userId"], {"purchases"}))'
    " != []",
    "'itemId' not in map(lambda 'i': 'i'[\"itemId\"], "
    'user_interactions(context_user["userId"], {"detail_views"}))',
    "num_item_purchases('itemId') >= 0",
    "earth_distance(1.0, 2.0, 3.0, 4.0) > 0",
    "'price' > context_item[\"price\"]",
    'context_user["age"] > 18',
    'item_values("item-1")["price"] > 0',
    "reduce(lambda 'a', 'b': 'a' + 'b', 0, [1, 2, 3]) == 6",
    'string(\'stock\') + "x" == "1x"',
    "timestamp(\"2021-01-01\") < 'released'",
    'boolean(1) and number("3") == 3',
    "select('tags', lambda 'x': true) == 'tags'",
    'split("a,b", ",") == ["a", "b"]',
    "starts_with('title', \"I\") or ends_with('title', \"2\") or contains('title', \"m\")",
    "avg([1, 2]) + max(1, 2) + min(3, 4) + abs(-1) + floor(1.5) + ceil(1.5) + exp(1) + ln(2) > 0",
    "random() < 2",
    "length('title') > 3",
    "{1} < {1, 2}",
    "[1, 2][0] == 1",
    "null == 'price'",
    "1 < 'stock' < 10",
    "-'price' < 0",
    "!('in_stock')",
    "'in_stock' && 'stock' > 0 || 'price' == null",
    "// a comment\n'price' > 1",
    '{"a": 1}["a"] == 1',
)
TOKENS = (
    "'price'",
    "'stock'",
    "'title'",
    "'tags'",
    "'released'",
    "'in_stock'",
    "'nosuch'",
    "'itemId'",
    '"s"',
    "1",
    "1.5",
    "-3",
    "true",
    "null",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "+",
    "-",
    "*",
    "/",
    "%",
    "&",
    "==",
    "!=",
    "<",
    ">=",
    "and",
    "or",
    "not",
    "in",
    "if",
    "then",
    "else",
    "lambda",
    "now()",
    "size(",
    "context_item[",
    "context_user[",
    "user_interactions(",
    "map(",
    "'",
    '"',
    "//",
    "\\",
    "\\ud800",
    '"\\ud800"',
    '"\\uDFFF"',
    '"\\x"',
    "\ud800",
    "\x00",
)


def huge_reql_literal(digits: int) -> str:
    return huge_int_text(digits)


@functools.cache
@st.composite
def reql_texts(draw: st.DrawFn) -> str:
    """ReQL text: valid expressions, mutations of them, token soup, deep nests, huge literals."""
    choice = draw(st.integers(0, 9))
    if choice <= 1:
        return draw(st.sampled_from(VALID_REQL))
    if choice == 2:  # a mutation: delete, insert or replace a slice of a valid expression
        text = draw(st.sampled_from(VALID_REQL))
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 8)))
        insert = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=3)))
        return text[:start] + insert + text[end:]
    if choice == 3:  # token soup
        return " ".join(draw(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=20)))
    if choice == 4:  # deep nesting
        depth = draw(st.integers(50, 5000))
        shape = draw(st.integers(0, 5))
        if shape == 0:
            return "(" * depth + "'price'" + ")" * depth + " > 1"
        if shape == 1:
            return "not " * depth + "'in_stock'"
        if shape == 2:
            return "-" * depth + "'price' > 1"
        if shape == 3:
            return "[" * depth + "1" + "]" * depth + " != null"
        if shape == 4:
            return "'price' + " * depth + "1 > 0"
        return "if true then " * depth + "true" + " else false" * depth
    if choice == 5:  # huge literals
        digits = draw(st.integers(19, 5000))
        literal = draw(
            st.sampled_from(
                [
                    huge_reql_literal(digits),
                    "-" + huge_reql_literal(digits),
                    "1e400",
                    "1" + "0" * digits + ".5",
                    "0." + "0" * digits + "1",
                    "9223372036854775807",
                    "9223372036854775808",
                ]
            )
        )
        template = draw(
            st.sampled_from(
                [
                    "'price' > {}",
                    "'stock' == {}",
                    "'stock' * {} > 1",
                    "{} * {} > 0",
                    "'stock' + {} > 0",
                    "if 'in_stock' then {} else 1",
                    "'released' > {}",
                    "{{{}}} != {{}}",
                    "pow('stock', {}) > 1",
                ]
            )
        )
        return template.replace("{}", literal).replace("{{", "{").replace("}}", "}")
    if choice == 6:  # long and surrogate strings
        inner = draw(
            st.sampled_from(
                [
                    "\\ud800",
                    "\\udfff",
                    "a\\ud83d",
                    "\\ud83d\\ude00",
                    "\\u0000",
                    "x" * 10_001,
                    "y" * 9_980,
                    "\\" * 7,
                ]
            )
        )
        template = draw(
            st.sampled_from(
                [
                    "'title' == \"{}\"",
                    "\"{}\" in 'tags'",
                    "matches('title', \"{}\")",
                    "'{}' > 1",
                    'context_item["{}"] == 1',
                    '{{"{}": 1}}["{}"] == 1',
                ]
            )
        )
        return template.replace("{}", inner).replace("{{", "{").replace("}}", "}")
    if choice == 7:  # random text
        return draw(st.one_of(st.text(max_size=40), surrogate_text()))
    if choice == 8:  # combinations of valid expressions
        parts = draw(st.lists(st.sampled_from(VALID_REQL), min_size=2, max_size=5))
        glue = draw(st.sampled_from([" and ", " or ", " + ", " == ", " in ", " < "]))
        return glue.join(f"({p})" for p in parts)
    # a long flat chain (and/or stays flat in reqo), or many function calls
    n = draw(st.integers(10, 2000))
    return draw(
        st.sampled_from(
            [
                " and ".join(["'price' > 1"] * n),
                " or ".join(["'in_stock'"] * n),
                "size(" * min(n, 200) + "'tags'" + ")" * min(n, 200) + " > 0",
                "matches('title', \"" + "(a*)*" * min(n, 50) + 'b")',
            ]
        )
    )


@functools.cache
@st.composite
def reql_requests(draw: st.DrawFn) -> FuzzRequest:
    """A ReQL text as `filter` / `booster` / a reqlExpression of a recommendation or a list."""
    text = draw(reql_texts())
    where = draw(st.integers(0, 6))
    if where <= 3:
        path = draw(st.sampled_from(RECOMMEND_PATHS[:4]))
        param = draw(st.sampled_from(["filter", "booster", "filter", "reqlExpressions"]))
        value = json.dumps({"e": text}) if param == "reqlExpressions" else jstr(text)
        fields = [("count", "3"), (param, value)]
        if where == 3:
            fields.append(("returnProperties", "true"))
        return FuzzRequest("reql-recommend", "POST", path, json_object(fields).encode())
    if where == 4:
        path = draw(st.sampled_from(["/items/list/", "/users/list/"]))
        return FuzzRequest("reql-list", "GET", path + "?" + encode_query([("filter", text)]))
    if where == 5:
        path = draw(st.sampled_from(["/items/list/", "/users/list/"]))
        body = json_object([("filter", jstr(text)), ("count", "5")]).encode()
        return FuzzRequest("reql-list", "GET", path, body)
    # Update More Items with changes that set nothing real is harmless; Delete More Items
    # would empty the catalog, so its filter matches nothing that exists.
    if draw(st.booleans()):
        body = json_object([("filter", jstr(text)), ("changes", '{"nosuch": 1}')]).encode()
        return FuzzRequest("reql-more-items", "POST", "/more-items/", body)
    guarded = f"({text}) and 'itemId' == \"no-such-item\""
    body = json_object([("filter", jstr(guarded))]).encode()
    return FuzzRequest("reql-more-items", "DELETE", "/more-items/", body)


# Inputs every run sends first, whatever Hypothesis draws: the hostile cases by name.
KNOWN_HOSTILE = [
    FuzzRequest("known", "POST", "/detailviews/", deep_json(5000).encode()),
    FuzzRequest("known", "POST", "/batch/", b'{"requests": ' + deep_json(5000).encode() + b"}"),
    FuzzRequest(
        "known",
        "POST",
        "/purchases/",
        b'{"userId": "user-1", "itemId": "item-1", "amount": ' + b"9" * 400 + b"}",
    ),
    FuzzRequest(
        "known",
        "POST",
        "/ratings/",
        b'{"userId": "user-1", "itemId": "item-1", "rating": 1e400}',
    ),
    FuzzRequest(
        "known",
        "POST",
        "/detailviews/",
        b'{"userId": "user-1", "itemId": "item-1", "timestamp": ' + b"9" * 5000 + b"}",
    ),
    FuzzRequest("known", "POST", "/detailviews/", b'{"userId": "\\ud800", "itemId": "item-1"}'),
    FuzzRequest("known", "POST", "/items/item-1", b'{"\\ud800": 1}'),
    FuzzRequest("known", "POST", "/items/item-1", b'{"title": "\\ud800"}'),
    FuzzRequest("known", "POST", "/items/item-1", b'{"stock": ' + b"9" * 300 + b"}"),
    FuzzRequest("known", "POST", "/items/item-1", b'{"price": 1e400}'),
    FuzzRequest("known", "POST", "/items/item-1", b'{"released": 1e400}'),
    FuzzRequest("known", "POST", "/recomms/users/user-1/items/", b'{"count": ' + b"9" * 400 + b"}"),
    FuzzRequest(
        "known", "POST", "/recomms/users/user-1/items/", b'{"count": 2, "rotationTime": 1e400}'
    ),
    FuzzRequest(
        "known", "POST", "/recomms/users/user-1/items/", b'{"count": 2, "diversity": 1e400}'
    ),
    FuzzRequest(
        "known",
        "POST",
        "/recomms/items/item-1/items/",
        b'{"count": 2, "userImpact": ' + b"9" * 400 + b"}",
    ),
    FuzzRequest(
        "known",
        "POST",
        "/recomms/users/user-1/items/",
        b'{"count": 2, "filter": "\\"\\\\ud800\\" in \'tags\'"}',
    ),
    FuzzRequest(
        "known", "POST", "/recomms/users/user-1/items/", b'{"count": 2, "scenario": "\\ud800"}'
    ),
    FuzzRequest(
        "known",
        "POST",
        "/recomms/users/user-1/items/",
        json_object(
            [("count", "2"), ("filter", jstr("(" * 5000 + "'price'" + ")" * 5000))]
        ).encode(),
    ),
    FuzzRequest(
        "known",
        "POST",
        "/recomms/users/user-1/items/",
        json_object([("count", "2"), ("booster", jstr("'stock' * " + "9" * 5000))]).encode(),
    ),
    FuzzRequest(
        "known",
        "POST",
        "/recomms/users/user-1/items/",
        b'{"count": 2, "logic": {"name": "recombee:default", "settings": [1]}}',
    ),
    FuzzRequest(
        "known",
        "POST",
        "/recomms/users/user-1/items/",
        b'{"count": 2, "rotationRate": 0.5, "rotationTime": 1e15}',
    ),
    FuzzRequest("known", "GET", "/items/list/?" + encode_query([("count", "9" * 400)])),
    FuzzRequest(
        "known", "GET", "/items/list/?" + encode_query([("filter", "'title' == \"\ud800\"")])
    ),
    FuzzRequest(
        "known",
        "POST",
        "/batch/",
        b'{"requests": [{"method": "POST", "path": "/ratings/", "params": '
        b'{"userId": "user-1", "itemId": "item-1", "rating": 1e400}}]}',
    ),
]


FAMILIES: dict[str, Callable[[], st.SearchStrategy[FuzzRequest]]] = {
    "raw-bytes": raw_requests,
    "json": json_requests,
    "reql": reql_requests,
}


@functools.cache
def all_requests() -> st.SearchStrategy[FuzzRequest]:
    return st.one_of(raw_requests(), json_requests(), reql_requests())


# --------------------------------------------------------------------------------------------
# Sending and checking


@dataclass
class Problem:
    """Something wrong with the answer to one input."""

    kind: str  # 5xx | bad-4xx-body | bad-2xx-body | dropped-connection | error | slow
    request: FuzzRequest
    detail: str
    dropped: bool = False
    """For a 5xx: the server closed the connection after it, too."""

    def describe(self, base_url: str = "http://127.0.0.1:PORT") -> str:
        return f"[{self.kind}] {self.detail}\n    {self.request.reproducer(base_url)}"


def error_body_problem(status: int, body: bytes) -> str | None:
    """Why a 4xx body is not Recombee's error JSON, or None when it is."""
    try:
        payload = json.loads(body)
    except ValueError:
        return f"the {status} body is not JSON: {body[:200]!r}"
    if not isinstance(payload, dict):
        return f"the {status} body is not an object: {body[:200]!r}"
    if payload.get("statusCode") != status:
        return f"statusCode {payload.get('statusCode')!r} in a {status} body"
    message = payload.get("error")
    if not isinstance(message, str) or not message.strip():
        return f"no error message in the {status} body: {body[:200]!r}"
    return None


class CountingAdapter(requests.adapters.HTTPAdapter):
    """An adapter of one pooled connection that counts the sockets it had to open.

    urllib3 reuses a pooled connection object when the server closed its socket (it reconnects
    silently), so the pool's connection count says nothing: the count of `connect()` calls does.
    """

    def __init__(self) -> None:
        super().__init__(pool_connections=1, pool_maxsize=1)
        self.opened = 0
        adapter = self

        class Connection(urllib3.connection.HTTPConnection):
            def connect(self) -> None:
                adapter.opened += 1
                super().connect()

        class Pool(urllib3.HTTPConnectionPool):
            ConnectionCls = Connection

        self.poolmanager.pool_classes_by_scheme = {
            **self.poolmanager.pool_classes_by_scheme,
            "http": Pool,
        }


@dataclass
class Checker:
    """Sends inputs over one keep-alive connection and collects what went wrong."""

    base_url: str
    timeout: float = 60.0
    slow_after: float = 10.0
    session: requests.Session = field(default_factory=requests.Session)
    problems: list[Problem] = field(default_factory=list)
    slow: list[Problem] = field(default_factory=list)
    """Answers slower than `slow_after`: reported, not failures (the machine may be busy)."""
    statuses: dict[int, int] = field(default_factory=dict)
    last_answer: float = 0.0
    previous: FuzzRequest | None = None
    log: Path | None = None
    """The server's log: its exceptions are listed with the problems."""
    allow_shedding: bool = False
    """Whether a 503 with Retry-After (load shedding, many clients at once) is no problem: it
    never is for one connection, which is all the tests use."""
    shed: int = 0
    log_offset: int = 0

    def __post_init__(self) -> None:
        if not self.base_url.startswith("http://127.0.0.1:"):
            raise ValueError("the fuzzer talks to 127.0.0.1 only")
        # One connection in the pool: a second one means the server dropped the first.
        self.adapter = CountingAdapter()
        self.session.mount("http://", self.adapter)
        if self.log is not None and self.log.exists():
            self.log_offset = self.log.stat().st_size

    def connections(self) -> int:
        return self.adapter.opened

    def send(self, request: FuzzRequest) -> requests.Response | None:
        """Send one input; record a problem where the answer is wrong. None: no answer."""
        idle = time.monotonic() - self.last_answer
        before = self.connections()
        started = time.monotonic()
        try:
            response = self._request(request)
        except requests.ConnectionError as error:
            if before == 0 or self.connections() != before or self.previous is None:
                self._failed(request, error)
                return None
            # The kept-alive connection was closed under this request: the server dropped it
            # after answering the previous one (unless it was idle long enough for uvicorn's
            # keep-alive timeout). Try this one again on a new connection.
            if idle < 2.0:
                self._dropped(self.previous, f"the next request failed: {error}")
            self.session.close()
            started = time.monotonic()
            try:
                response = self._request(request)
            except requests.RequestException as again:
                self._failed(request, again)
                return None
        except requests.RequestException as error:
            self._failed(request, error)
            return None
        else:
            # A connection opened for this request while the previous one was fresh (well
            # within uvicorn's 5 s keep-alive): the server closed it after the previous answer.
            if self.connections() > before > 0 and idle < 2.0 and self.previous is not None:
                self._dropped(self.previous, "the server closed the connection after answering")
        self.last_answer = time.monotonic()
        elapsed = self.last_answer - started
        self.previous = request
        self.check(request, response, elapsed)
        return response

    def _request(self, request: FuzzRequest) -> requests.Response:
        url = f"{self.base_url}/{DATABASE}{request.path}"
        headers = {"Content-Type": "application/json"} if request.body is not None else {}
        return self.session.request(
            request.method, url, data=request.body, headers=headers, timeout=self.timeout
        )

    def _failed(self, request: FuzzRequest, error: Exception) -> None:
        self.problems.append(Problem("error", request, f"{type(error).__name__}: {error}"))
        self.session.close()
        self.previous = None
        self.last_answer = time.monotonic()

    def _dropped(self, request: FuzzRequest, why: str) -> None:
        for problem in reversed(self.problems):
            if problem.request is request and problem.kind == "5xx":
                # uvicorn closes the connection after an exception escaped the application:
                # one cause, one entry.
                problem.detail += " (and the connection was dropped)"
                problem.dropped = True
                return
        self.problems.append(Problem("dropped-connection", request, why))

    def check(self, request: FuzzRequest, response: requests.Response, elapsed: float) -> None:
        status = response.status_code
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if elapsed > self.slow_after:
            self.slow.append(Problem("slow", request, f"answered in {elapsed:.1f} s"))
        self._check_status(request, response)
        if response.headers.get("connection", "").lower() == "close":
            self._dropped(request, "answered with Connection: close")

    def _check_status(self, request: FuzzRequest, response: requests.Response) -> None:
        status = response.status_code
        if status == 503 and self.allow_shedding and "retry-after" in response.headers:
            self.shed += 1
        elif status >= 500:
            self.problems.append(Problem("5xx", request, f"{status} {response.text[:300]}"))
        elif status >= 400:
            why = error_body_problem(status, response.content)
            if why is not None:
                self.problems.append(Problem("bad-4xx-body", request, why))
        else:
            try:
                response.json()
            except ValueError:
                self.problems.append(Problem("bad-2xx-body", request, f"{status}: not JSON"))

    def probe(self) -> None:
        """One last request: the connection must still answer."""
        self.send(FuzzRequest("probe", "GET", f"/items/{ITEMS[1]}"))

    def server_errors(self) -> list[ServerError]:
        if self.log is None or not self.log.exists():
            return []
        with self.log.open("rb") as handle:
            handle.seek(self.log_offset)
            return server_errors(handle.read().decode("utf-8", errors="replace"))

    def report(self, limit: int = 20) -> str:
        """The problems (the first `limit`), then the server's exceptions, grouped."""
        total = sum(self.statuses.values())
        lines = [f"{len(self.problems)} problems over {total} requests (statuses {self.statuses})"]
        lines += [p.describe(self.base_url) for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"… and {len(self.problems) - limit} more")
        errors: dict[tuple[str, str], int] = {}
        for error in self.server_errors():
            key = (error.exception[:200], error.where)
            errors[key] = errors.get(key, 0) + 1
        if errors:
            lines.append("server exceptions (count, exception, innermost frame of reqo):")
            lines += [f"  {n} x {exc}  at {where}" for (exc, where), n in errors.items()]
        return "\n".join(lines)

    def assert_clean(self) -> None:
        """Fail the test (listing every problem) unless every answer was right; the connection
        must still answer one more request."""
        self.probe()
        if self.problems:
            pytest.fail(self.report(), pytrace=False)
