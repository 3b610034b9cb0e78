"""The seeded catalog the fuzzers aim at, the server that holds it, its log's exceptions."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

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


_LOG_LINE = re.compile(r"^(\{|\d\d:\d\d:\d\d\.\d{3} |ERROR:|INFO:|WARNING:)")
"""The start of the next log record (JSON, reqo's text lines, uvicorn's own)."""


def server_errors(log: str) -> list[ServerError]:
    """The internal errors that reqo logged (`internal error on METHOD PATH` + traceback), each
    with its last exception line and the innermost frame in the project's own code; from JSON
    lines (the traceback in `exception`) or text lines."""
    found: list[ServerError] = []
    lines = log.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            message = str(entry.get("message", ""))
            if message.startswith("internal error on "):
                trace = str(entry.get("exception", "")).splitlines()
                found.append(_server_error(message, trace))
            continue
        at = line.find("internal error on ")
        if at < 0:
            continue
        following = []
        for follow in lines[index + 1 :]:
            if "internal error on " in follow or _LOG_LINE.match(follow):
                break
            following.append(follow)
        found.append(_server_error(line[at:], following))
    return found


def _server_error(message: str, trace: list[str]) -> ServerError:
    where, exception = "?", "?"
    for follow in trace:
        stripped = follow.strip()
        if stripped.startswith('File "') and "site-packages" not in stripped:
            path, _, rest = stripped[len('File "') :].partition('", line ')
            where = f"{Path(path).parent.name}/{Path(path).name}:{rest.split(',')[0]}"
        elif EXCEPTION_LINE.match(follow) or (exception == "?" and is_message(follow)):
            exception = follow
    return ServerError(message.removeprefix("internal error on "), exception, where)
