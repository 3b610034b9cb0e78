"""The load generator of bench.soak: concurrent clients sending a fixed mix of requests.

    .venv/bin/python -m bench.soak_load --port PORT --clients N --seconds S --out FILE
                                        [--database DB] [--tag TAG] [--seed K] [--timeout T]
                                        [--server-pid PID]

Runs in its own process (bench.soak starts it once per phase), so that its CPU time is its own
and its event loop does not share a GIL with bench.soak's health prober. Standard library only.

`N` asyncio clients, each with one keep-alive HTTP/1.1 connection (raw streams: an HTTP library
costs far more CPU per request, which on two cores would be taken from the server), all connect
first, then send requests back to back for `S` seconds. Each client draws its requests from a deck
of 100 that holds every kind of `MIX` as often as its share, shuffled afresh each round, so the
shares are exact. A request that gets no complete response (a refused, reset or closed connection,
a timeout, a malformed response) is counted as dropped for its kind and the client reconnects.

Writes one JSON object to `--out`: the window measured (CLOCK_MONOTONIC seconds, the same clock as
the parent's `time.monotonic()`), this process's CPU seconds over it, the server's (from
/proc/<pid>/stat, with `--server-pid`) and, per kind, the requests answered, latency percentiles,
responses by status code, shedding 503s (a 503 with `Retry-After`), the codes inside batch
responses, and dropped requests, with a few samples of what went wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import sys
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# MovieLens-100K's ids, as `reqo dataset load ml-100k` stores them.
ML_USERS = 943
ML_ITEMS = 1682
GENRES = ("Drama", "Comedy", "Action", "Thriller", "Romance", "Sci-Fi")
INTERACTION_KINDS = ("detailviews", "purchases", "ratings", "cartadditions", "bookmarks")
COUNT = 10
BATCH_INTERACTIONS = 20


@dataclass(frozen=True)
class Kind:
    name: str
    group: str
    share: int
    """Requests of this kind in every 100."""
    what: str


MIX: tuple[Kind, ...] = (
    Kind("get_item", "read", 10, "`GET /items/{id}`, an ML-100K item"),
    Kind(
        "user_interactions",
        "read",
        10,
        "`GET /users/{id}/{kind}/` (ratings, detail views, purchases in turn), an ML-100K user",
    ),
    Kind(
        "items_list_filter",
        "read",
        5,
        "`GET /items/list/?count=20&filter='release_year' >= Y and \"G\" in 'genres'` (54 filters)",
    ),
    Kind(
        "detail_view",
        "write",
        12,
        "`POST /detailviews/` with `cascadeCreate`; a new user 1 in 4, a new item 1 in 10",
    ),
    Kind("purchase", "write", 7, "`POST /purchases/` with `cascadeCreate`, the same draw, a price"),
    Kind(
        "set_item_values",
        "write",
        8,
        "`POST /items/{id}` with `!cascadeCreate`: half new items (title, year, genres), half "
        "ML-100K items (`imdb_url`)",
    ),
    Kind(
        "batch_interactions",
        "batch",
        5,
        f"`POST /batch/` of {BATCH_INTERACTIONS} interactions (5 kinds, `cascadeCreate`, "
        "new users and items as above)",
    ),
    Kind(
        "batch_recomms",
        "batch",
        3,
        "`POST /batch/`: Items to User (homepage), Items to Item (related), Get Item Values",
    ),
    Kind(
        "recomm_homepage",
        "recommendation",
        9,
        f"Items to User, scenario homepage (EASE), count {COUNT}; a new user "
        "(`cascadeCreate`) 1 in 5",
    ),
    Kind("recomm_discover", "recommendation", 5, "Items to User, scenario discover (Mult-VAE)"),
    Kind(
        "recomm_filtered",
        "recommendation",
        8,
        "Items to User, homepage or discover in turn, with a request `filter` as above",
    ),
    Kind(
        "items_to_item",
        "recommendation",
        10,
        "Items to Item, scenario related (item-kNN); `targetUserId` half the time",
    ),
    Kind("users_to_user", "recommendation", 8, f"Users to User, no scenario, count {COUNT}"),
)
assert sum(kind.share for kind in MIX) == 100
KINDS = tuple(kind.name for kind in MIX)


# -- the requests ---------------------------------------------------------------------------------


@dataclass
class Ids:
    """Ids for one client: ML-100K's, and fresh ones that no other client or phase makes."""

    rng: random.Random
    prefix: str
    made: int = 0

    def new(self, what: str) -> str:
        self.made += 1
        return f"{self.prefix}-{what}{self.made}"

    def user(self, new_share: float = 0.25) -> str:
        if self.rng.random() < new_share:
            return self.new("u")
        return str(self.rng.randint(1, ML_USERS))

    def item(self, new_share: float = 0.1) -> str:
        if self.rng.random() < new_share:
            return self.new("i")
        return str(self.rng.randint(1, ML_ITEMS))

    def filter(self) -> str:
        year = self.rng.randint(1990, 1998)
        genre = self.rng.choice(GENRES)
        return f"'release_year' >= {year} and \"{genre}\" in 'genres'"


def _interaction(ids: Ids, kind: str) -> dict[str, Any]:
    params: dict[str, Any] = {"userId": ids.user(), "itemId": ids.item(), "cascadeCreate": True}
    if kind == "ratings":
        params["rating"] = ids.rng.choice((-1.0, -0.5, 0.0, 0.5, 1.0))
    elif kind == "purchases":
        params["price"] = round(ids.rng.uniform(1, 20), 2)
    return params


Built = tuple[str, str, Any]
"""Method, path under /{database}, JSON body (None: no body)."""


def build(kind: str, ids: Ids, turn: int) -> Built:
    """One request of `kind`; `turn` counts this client's requests of the kind so far."""
    rng = ids.rng
    if kind == "get_item":
        return "GET", f"/items/{ids.item(0)}", None
    if kind == "user_interactions":
        listed = ("ratings", "detailviews", "purchases")[turn % 3]
        return "GET", f"/users/{ids.user(0)}/{listed}/", None
    if kind == "items_list_filter":
        query = urllib.parse.urlencode({"filter": ids.filter(), "count": 20})
        return "GET", f"/items/list/?{query}", None
    if kind == "detail_view":
        return "POST", "/detailviews/", _interaction(ids, "detailviews")
    if kind == "purchase":
        return "POST", "/purchases/", _interaction(ids, "purchases")
    if kind == "set_item_values":
        if turn % 2 == 0:
            values: dict[str, Any] = {
                "title": f"Soak film {ids.made}",
                "release_year": rng.randint(1990, 2026),
                "genres": rng.sample(GENRES, 2),
            }
            item = ids.new("i")
        else:
            values = {"imdb_url": f"https://example.org/soak/{ids.made}-{turn}"}
            item = ids.item(0)
        return "POST", f"/items/{item}", {**values, "!cascadeCreate": True}
    if kind == "batch_interactions":
        requests = []
        for _ in range(BATCH_INTERACTIONS):
            listed = rng.choice(INTERACTION_KINDS)
            requests.append(
                {"method": "POST", "path": f"/{listed}/", "params": _interaction(ids, listed)}
            )
        return "POST", "/batch/", {"requests": requests}
    if kind == "batch_recomms":
        user, item = ids.user(0), ids.item(0)
        requests = [
            {
                "method": "POST",
                "path": f"/recomms/users/{user}/items/",
                "params": {"count": COUNT, "scenario": "homepage"},
            },
            {
                "method": "POST",
                "path": f"/recomms/items/{item}/items/",
                "params": {"count": COUNT, "scenario": "related", "targetUserId": user},
            },
            {"method": "GET", "path": f"/items/{ids.item(0)}"},
        ]
        return "POST", "/batch/", {"requests": requests}
    if kind in ("recomm_homepage", "recomm_discover", "recomm_filtered"):
        body: dict[str, Any] = {"count": COUNT}
        if kind == "recomm_homepage":
            user = ids.user(0.2)
            body.update(scenario="homepage", cascadeCreate=not user.isdigit())
        else:
            user = ids.user(0)
            if kind == "recomm_discover":
                body["scenario"] = "discover"
            else:
                body.update(scenario=("homepage", "discover")[turn % 2], filter=ids.filter())
        return "POST", f"/recomms/users/{user}/items/", body
    if kind == "items_to_item":
        body = {"count": COUNT, "scenario": "related"}
        if turn % 2 == 0:
            body["targetUserId"] = ids.user(0)
        return "POST", f"/recomms/items/{ids.item(0)}/items/", body
    if kind == "users_to_user":
        return "POST", f"/recomms/users/{ids.user(0)}/users/", {"count": COUNT}
    raise ValueError(f"unknown kind {kind!r}")


# -- HTTP/1.1 on a stream -------------------------------------------------------------------------


class Malformed(Exception):
    """A response that is not HTTP/1.1 as this client reads it."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


def encode(method: str, path: str, body: Any, host: str) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if body is None:
        return (head + "\r\n").encode()
    data = json.dumps(body, separators=(",", ":")).encode()
    head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


async def read_response(reader: asyncio.StreamReader) -> Response:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise Malformed(f"status line {lines[0][:80]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        while (await reader.readuntil(b"\r\n")) != b"\r\n":
            pass  # trailers
        body = b"".join(chunks)
    elif status in (204, 304) or status < 200:
        body = b""
    else:  # delimited by the end of the connection
        body = await reader.read()
        headers["connection"] = "close"
    return Response(status, headers, body)


DROPS = (OSError, EOFError, asyncio.LimitOverrunError, Malformed, ValueError)
"""What a request can raise instead of answering (OSError includes refused and reset connections
and TimeoutError; EOFError includes asyncio.IncompleteReadError)."""


# -- the clients ----------------------------------------------------------------------------------


@dataclass
class KindStats:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    shed: int = 0
    """503s with a Retry-After header (load shedding); also counted in `statuses`."""
    batch_codes: Counter[int] = field(default_factory=Counter)
    dropped: int = 0


@dataclass
class Run:
    port: int
    database: str
    timeout: float
    stats: dict[str, KindStats] = field(default_factory=lambda: {k: KindStats() for k in KINDS})
    samples: list[str] = field(default_factory=list)
    """A few descriptions of dropped requests and 5xx responses."""
    connect_failures: int = 0
    reconnects: int = 0
    server_closes: int = 0
    clients: int = 0
    ready: int = 0
    all_ready: asyncio.Event = field(default_factory=asyncio.Event)

    def arrive(self) -> None:
        self.ready += 1
        if self.ready >= self.clients:
            self.all_ready.set()

    def note(self, text: str) -> None:
        if len(self.samples) < 20:
            self.samples.append(text)


async def _connect(run: Run) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", run.port), run.timeout)


def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()


async def client(
    run: Run, number: int, seed: int, tag: str, start: asyncio.Event, deadline: list[float]
) -> None:
    rng = random.Random(seed * 100_003 + number)
    ids = Ids(rng, f"soak-{tag}-{number}")
    host = f"127.0.0.1:{run.port}"
    turns: Counter[str] = Counter()
    deck = [kind.name for kind in MIX for _ in range(kind.share)]
    position = len(deck)
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        connection = await _connect(run)
    except OSError as error:
        run.connect_failures += 1
        run.note(f"client {number}: connect: {error!r}")
    run.arrive()
    await start.wait()
    while time.monotonic() < deadline[0]:
        if connection is None:
            try:
                connection = await _connect(run)
                run.reconnects += 1
            except OSError as error:
                run.connect_failures += 1
                run.note(f"client {number}: connect: {error!r}")
                await asyncio.sleep(0.05)
                continue
        if position == len(deck):
            rng.shuffle(deck)
            position = 0
        kind = deck[position]
        position += 1
        method, path, body = build(kind, ids, turns[kind])
        turns[kind] += 1
        data = encode(method, f"/{run.database}{path}", body, host)
        reader, writer = connection
        stats = run.stats[kind]
        sent = time.perf_counter()
        try:
            async with asyncio.timeout(run.timeout):
                writer.write(data)
                await writer.drain()
                response = await read_response(reader)
        except DROPS as error:
            stats.dropped += 1
            run.note(f"{kind} {method} {path[:120]}: no response: {error!r}")
            _close(writer)
            connection = None
            continue
        stats.latencies.append(time.perf_counter() - sent)
        stats.statuses[response.status] += 1
        if response.status == 503 and "retry-after" in response.headers:
            stats.shed += 1
        elif response.status >= 500:
            text = response.body[:300].decode(errors="replace")
            run.note(f"{kind} {method} {path[:120]}: {response.status} {text}")
        if path == "/batch/" and response.status == 200:
            _count_outcomes(run, kind, response.body)
        if response.closes:
            run.server_closes += 1
            _close(writer)
            connection = None
    if connection is not None:
        _close(connection[1])


def _count_outcomes(run: Run, kind: str, body: bytes) -> None:
    """Count the codes of a batch's outcomes, and note the 5xx ones."""
    try:
        codes = [(int(outcome["code"]), outcome) for outcome in json.loads(body)]
    except (ValueError, TypeError, KeyError) as error:
        run.note(f"{kind}: unreadable batch response: {error!r}")
        return
    for code, outcome in codes:
        run.stats[kind].batch_codes[code] += 1
        if code >= 500:
            run.note(f"{kind}: batch outcome {json.dumps(outcome)[:300]}")


def _percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000


def _cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    run = Run(args.port, args.database, args.timeout, clients=args.clients)
    start = asyncio.Event()
    deadline = [math.inf]
    tasks = [
        asyncio.create_task(client(run, n, args.seed, args.tag, start, deadline))
        for n in range(args.clients)
    ]
    # Every client connects (or fails to) before the clock starts.
    await asyncio.wait_for(run.all_ready.wait(), args.timeout + 5)
    began = time.monotonic()
    cpu, server_cpu = _own_cpu(), _cpu_seconds(args.server_pid)
    deadline[0] = began + args.seconds
    start.set()
    await asyncio.gather(*tasks)
    ended = time.monotonic()
    cpu, server_cpu_end = _own_cpu() - cpu, _cpu_seconds(args.server_pid)
    kinds: dict[str, Any] = {}
    everything: list[float] = []
    for name, stats in run.stats.items():
        everything += stats.latencies
        kinds[name] = {
            "answered": len(stats.latencies),
            "p50_ms": _percentile(stats.latencies, 50),
            "p99_ms": _percentile(stats.latencies, 99),
            "max_ms": _percentile(stats.latencies, 100),
            "statuses": {str(code): n for code, n in sorted(stats.statuses.items())},
            "shed": stats.shed,
            "batch_codes": {str(code): n for code, n in sorted(stats.batch_codes.items())},
            "dropped": stats.dropped,
        }
    return {
        "clients": args.clients,
        "seconds": args.seconds,
        "began": began,
        "ended": ended,
        "elapsed": ended - began,
        "cpu_seconds": cpu,
        "server_cpu_seconds": (
            None if server_cpu is None or server_cpu_end is None else server_cpu_end - server_cpu
        ),
        "p50_ms": _percentile(everything, 50),
        "p99_ms": _percentile(everything, 99),
        "kinds": kinds,
        "connect_failures": run.connect_failures,
        "reconnects": run.reconnects,
        "server_closes": run.server_closes,
        "samples": run.samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--database", default="demo")
    parser.add_argument("--tag", default="x", help="part of every new id, unique per phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--server-pid", type=int, help="measure this process's CPU time too")
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(run_load(args))
    except KeyboardInterrupt:
        return 130
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
