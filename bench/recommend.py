"""Items to User on a synthetic catalog: in process and over HTTP, with an item-kNN model.

    .venv/bin/python -m bench.recommend [--items N] [--users N] [--interactions N]
                                        [--requests N] [--clients N] [--seconds S]
                                        [--directory DIR] [--rebuild] [--no-report]

The catalog (items with a category, a price and a stock flag; users who each prefer a category or
two; interactions skewed towards popular items and the users' categories) is built with SQL in a
DuckDB file under `--directory` and reused by later runs while it is complete. Then:

- item-kNN and popularity (the fallback that pads short lists) are trained, and timed;
- in process: `parse_request` + `respond` (the pipeline and the response body, what the server's
  reader thread runs) for random users with a scenario's filter and booster, count 10, after a
  warm-up; latency percentiles and the median of each pipeline stage;
- over HTTP: the real server (`python -m server.cli serve`, a subprocess) under 16 concurrent
  keep-alive clients sending Items to User requests with the scenario, and, in the same run and
  with the same clients, the same server on a copy of the data without metrics and access log
  (their cost), and a bare Starlette endpoint served by uvicorn the same way; requests per
  second, latency and CPU (of the whole process group) of each, and the largest peak resident
  memory (VmHWM) among reqo's processes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import numpy as np
import yaml

from bench._report import publish
from plugins.manager import Registry, collect, get_plugin_manager
from server.api.operations import Params
from server.api.recommendations import parse_request, respond
from server.serving.live_models import LiveModels
from server.serving.pipeline import Pipeline
from server.serving.reql_engine import ExpressionEngine
from server.serving.scenarios import ScenarioConfig, parse_models
from server.training.artifacts import train_model
from storage.catalog import add_property
from storage.database import Database, NeedsDatabase, ReadContext, WriteContext
from storage.schema import Entity, PropertyType

ITEMS = 100_000
USERS = 10_000
INTERACTIONS = 1_000_000
SEED = 20_241_127
GENERATOR = "1"
"""Bump when the generated data changes, so that an old file is rebuilt rather than reused."""
MARKER = "bench_recommend"
DATABASE = "bench"
CATEGORIES = 20

PROPERTIES: tuple[tuple[str, PropertyType], ...] = (
    ("category", PropertyType.STRING),
    ("price", PropertyType.DOUBLE),
    ("in_stock", PropertyType.BOOLEAN),
    ("brand", PropertyType.STRING),
)

SCENARIO = "homepage"
FILTER = "'in_stock' and 'price' < 500"
BOOSTER = "if 'category' == \"c1\" then 1.5 else 1"
COUNT = 10

TARGET_P50_MS = 3.0
TARGET_P99_MS = 10.0
TARGET_RATIO = 0.5
TARGET_MEMORY_GIB = 2.0


# -- the synthetic catalog ------------------------------------------------------------------------


def _uniform_sql(count: int, streams: int, seed: int) -> str:
    """A query of `i` over range(count) and `u0` .. `u{streams - 1}`: deterministic numbers in
    [0, 1), a 32-bit integer hash of `i` per stream (as bench.reql_filter makes them), so the
    values depend neither on DuckDB's own hash or random functions nor on its threads."""
    modulus = 2**32
    seeds = [(seed * (2 * k + 1) * 2654435761) % modulus for k in range(streams)]
    query = (
        "SELECT range AS i, "
        + ", ".join(f"xor(range, {s}) AS h{k}" for k, s in enumerate(seeds))
        + f" FROM range({count})"
    )
    for _ in range(2):
        mixed = ", ".join(
            f"(xor(h{k} >> 16, h{k}) * 73244475) % {modulus} AS h{k}" for k in range(streams)
        )
        query = f"SELECT i, {mixed} FROM ({query})"
    uniform = ", ".join(f"xor(h{k} >> 16, h{k}) / {float(modulus)} AS u{k}" for k in range(streams))
    return f"SELECT i, {uniform} FROM ({query})"


def _items_sql(count: int) -> str:
    # Item i is in category i % CATEGORIES; within a category, a lower i is a more popular item.
    return (
        'INSERT INTO items ("$idx", "$id", category, price, in_stock, brand) '
        f"SELECT i, 'item-' || i, 'c' || (i % {CATEGORIES}), round(1 + u0 * 999, 2), u1 < 0.8, "
        f"'brand-' || CAST(floor(u2 * 500) AS BIGINT) FROM ({_uniform_sql(count, 3, SEED)})"
    )


def _users_sql(count: int) -> str:
    return f'INSERT INTO users ("$idx", "$id") SELECT range, \'user-\' || range FROM range({count})'


def _interactions_sql(count: int, items: int, users: int) -> str:
    """Interactions in time order over 90 days.

    The user is drawn with a mild skew (some users are far more active); each user prefers two
    categories (80 % and 10 % of their interactions, the rest anywhere), and within a category
    the item is drawn from a power law, so that a few items are popular. Mostly detail views,
    with purchases, cart additions and bookmarks.
    """
    per_category = items // CATEGORIES
    # The user's two favourite categories: a hash of the user, per preference.
    favourite = "CAST(((user * 2654435761 + {k} * 40503) % 4294967291) % {n} AS BIGINT)"
    first = favourite.format(k=1, n=CATEGORIES)
    second = favourite.format(k=2, n=CATEGORIES)
    return f"""
        INSERT INTO interactions (kind, user_id, item_id, ts)
        SELECT kind, 'user-' || user, 'item-' || (rank * {CATEGORIES} + category),
               TIMESTAMP '2024-01-01' + to_microseconds(CAST(i * {90 * 86_400_000_000 // count}
                                                             AS BIGINT))
        FROM (
            SELECT i, user,
                   CASE WHEN u2 < 0.8 THEN {first} WHEN u2 < 0.9 THEN {second}
                        ELSE CAST(floor(u3 * {CATEGORIES}) AS BIGINT) END AS category,
                   least(CAST(floor(pow(u4, 3.0) * {per_category}) AS BIGINT),
                         {per_category - 1}) AS rank,
                   CASE WHEN u5 < 0.85 THEN 1 WHEN u5 < 0.9 THEN 2 WHEN u5 < 0.95 THEN 4
                        ELSE 5 END AS kind
            FROM (SELECT *, least(CAST(floor(pow(u1, 1.25) * {users}) AS BIGINT), {users - 1})
                            AS user
                  FROM ({_uniform_sql(count, 6, SEED + 1)}))
        )
    """


@dataclass(frozen=True)
class Sizes:
    items: int
    users: int
    interactions: int

    @property
    def marker(self) -> str:
        return f"{GENERATOR}:{SEED}:{self.items}:{self.users}:{self.interactions}"


def _complete(database: Database, sizes: Sizes) -> bool:
    """Whether the file holds the finished catalog of this generator and these sizes."""
    if {p.name: p.type for p in database.schema.items.properties} != dict(PROPERTIES):
        return False

    def check(ctx: ReadContext) -> bool:
        marker = ctx.conn.execute("SELECT value FROM reqo_meta WHERE key = ?", [MARKER]).fetchone()
        counts = ctx.conn.execute(
            "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM users), "
            "(SELECT count(*) FROM interactions)"
        ).fetchone()
        return (
            marker is not None
            and marker[0] == sizes.marker
            and counts == (sizes.items, sizes.users, sizes.interactions)
        )

    return database.read_sync(check)


def _build(database: Database, sizes: Sizes) -> None:
    """Create the properties, items, users and interactions in one transaction (with a marker)."""

    def job(ctx: WriteContext) -> None:
        for name, ptype in PROPERTIES:
            add_property(ctx, Entity.ITEM, name, ptype.value)
        ctx.conn.execute(_items_sql(sizes.items))
        ctx.conn.execute(_users_sql(sizes.users))
        ctx.conn.execute(_interactions_sql(sizes.interactions, sizes.items, sizes.users))
        # Give out the indexes used, so that an entity added later gets the next one.
        ctx.conn.execute(
            "INSERT OR REPLACE INTO reqo_counters VALUES ('next_item_index', ?), "
            "('next_user_index', ?)",
            [sizes.items, sizes.users],
        )
        ctx.conn.execute("INSERT OR REPLACE INTO reqo_meta VALUES (?, ?)", [MARKER, sizes.marker])
        ctx.touched_catalog()
        ctx.touched_interactions()

    database.write_sync(job)


def open_catalog(path: Path, sizes: Sizes, rebuild: bool) -> float | None:
    """Make sure the file holds the catalog; the build time in seconds (None when reused).

    The recommendation log of earlier runs is emptied, so that every run starts alike."""
    if path.exists() and not rebuild:
        database = Database(DATABASE, path)
        try:
            if _complete(database, sizes):
                database.write_sync(lambda ctx: ctx.conn.execute("DELETE FROM recommendations"))
                return None
        finally:
            database.close()
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    database = Database(DATABASE, path)
    started = time.perf_counter()
    try:
        _build(database, sizes)
    finally:
        database.close()  # checkpoint, so that the measurements read a settled file
    return time.perf_counter() - started


# -- training -------------------------------------------------------------------------------------


def train(database: Database, registry: Registry, directory: Path) -> dict[str, float]:
    """Train item-kNN and popularity (the fallback) as `reqo train` does; seconds per model."""
    configs = parse_models(None)
    seconds = {}
    for name in ("item-knn", "popularity"):
        started = time.perf_counter()
        train_model(database, configs[name], registry, directory)
        seconds[name] = time.perf_counter() - started
    return seconds


# -- in process -----------------------------------------------------------------------------------


def scenario() -> ScenarioConfig:
    return ScenarioConfig(SCENARIO, "items-to-user", filter=FILTER, booster=BOOSTER)


def _percentile_ms(samples: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q)) * 1000


def favourite_category(user: int) -> int:
    """The category a user of the synthetic data makes 80 % of their interactions in."""
    return ((user * 2654435761 + 40503) % 4294967291) % CATEGORIES


STAGES = ("filter", "context", "score", "boost", "relevance", "rank", "ids")


def measure_in_process(
    database: Database, registry: Registry, directory: Path, users: int, requests: int
) -> dict[str, Any]:
    """`parse_request` + `respond` on the reader path for random users, after a warm-up."""
    configs = parse_models(None)
    models = LiveModels(database, dict(configs), registry, directory)
    engine = ExpressionEngine(database, functions=registry.functions)
    pipeline = Pipeline(engine, models)
    scenarios = {SCENARIO: scenario()}
    rng = random.Random(SEED)
    from_memory = [0]

    def recommend(user: int, body: dict[str, Any]) -> tuple[list[int], dict[str, float], float]:
        started = time.perf_counter()
        request = parse_request(
            "items-to-user", {"userId": f"user-{user}"}, Params(body=body), scenarios, configs
        )
        # As the server answers: from memory on the calling thread, else on a reader cursor.
        try:
            response, result = database.read_in_memory(lambda ctx: respond(ctx, pipeline, request))
            from_memory[0] += 1
        except NeedsDatabase:
            response, result = database.read_sync(lambda ctx: respond(ctx, pipeline, request))
        elapsed = time.perf_counter() - started
        items = [int(r["id"].removeprefix("item-")) for r in response["recomms"]]
        if len(items) != COUNT:
            raise RuntimeError(f"user-{user} got {len(items)} recommendations, not {COUNT}")
        return items, result.timings, elapsed

    with_scenario = {"count": COUNT, "scenario": SCENARIO}
    started = time.perf_counter()
    recommend(0, with_scenario)  # loads the models
    first = time.perf_counter() - started
    started = time.perf_counter()
    pipeline.histories.load()  # as the first requests would start it in the background
    history_load = time.perf_counter() - started
    for _ in range(200):
        recommend(rng.randrange(users), with_scenario)
    if not pipeline.histories.ready:
        raise RuntimeError("the history index is not in use")

    latencies: list[float] = []
    from_memory[0] = 0
    stages: dict[str, list[float]] = {}
    favourite = boosted = 0
    for _ in range(requests):
        user = rng.randrange(users)
        items, timings, elapsed = recommend(user, with_scenario)
        latencies.append(elapsed)
        for stage, ms in timings.items():
            stages.setdefault(stage, []).append(ms)
        favourite += sum(1 for item in items if item % CATEGORIES == favourite_category(user))
        boosted += sum(1 for item in items if item % CATEGORIES == 1)
    memory_share = from_memory[0] / requests
    # Does the model follow the users' taste? Without the scenario's filter and booster, the
    # share of recommended items in the user's favourite category (1 in 20 at random).
    plain = [rng.randrange(users) for _ in range(500)]
    taste = sum(
        sum(1 for item in recommend(user, {"count": COUNT})[0] if item % CATEGORIES == favourite)
        for user in plain
        for favourite in [favourite_category(user)]
    )
    total = requests * COUNT
    return {
        "first_ms": first * 1000,
        "history_load_ms": history_load * 1000,
        "p50": _percentile_ms(latencies, 50),
        "p90": _percentile_ms(latencies, 90),
        "p99": _percentile_ms(latencies, 99),
        "stages": {s: statistics.median(stages[s]) for s in STAGES if s in stages},
        "favourite_share": favourite / total,
        "boosted_share": boosted / total,
        "taste": taste / (len(plain) * COUNT),
        "requests": requests,
        "from_memory": memory_share,
    }


# -- over HTTP ------------------------------------------------------------------------------------


def bare_app() -> Any:
    """A bare Starlette application: one endpoint that reads the body and returns a small JSON."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def endpoint(request: Request) -> Response:
        await request.body()
        return JSONResponse({"recommId": "bare", "recomms": [], "numberNextRecommsCalls": 0})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/-/health", health, methods=["GET"]),
            Route("/{databaseId}/recomms/users/{userId}/items/", endpoint, methods=["POST"]),
        ]
    )


def serve_bare(port: int) -> None:
    """Serve the bare application as `reqo serve` serves reqo's (uvicorn.run, same settings)."""
    import uvicorn

    uvicorn.run(
        bare_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=10,
        # As reqo's servers are (server/cli/roles.py): with Ray installed uvicorn would pick
        # httptools and uvloop here, and the baseline would measure another HTTP stack.
        http="h11",
        loop="asyncio",
    )


TELEMETRY_CALLS = 20_000


def measure_telemetry() -> dict[str, float]:
    """Microseconds of a server's CPU that the telemetry of one request takes (its metrics into
    a multiprocess folder, its access line as JSON into a file), each part alone: in a fresh
    interpreter, where prometheus-client sees the folder when it is first imported."""
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=folder)
        done = subprocess.run(
            [sys.executable, "-m", "bench.recommend", "--telemetry-cost"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            check=True,
        )
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def _telemetry_cost() -> None:
    """(In the subprocess of `measure_telemetry`.) Print the figures as JSON."""
    from server.config_telemetry import LogsConfig
    from server.telemetry.logs import configure_logging
    from server.telemetry.middleware import RequestInfo, Telemetry

    class Route:
        path = "/{databaseId}/recomms/users/{userId}/items/"

    scope = {"path": f"/{DATABASE}/recomms/users/u1/items/", "method": "GET", "route": Route()}
    info = RequestInfo("0123456789abcdef", SCENARIO)
    figures = {}
    with tempfile.TemporaryFile("w") as sink:
        sys.stderr = sink
        configure_logging(role="server", level="info", log_format="json")
        for name, access, metrics in (
            ("both", True, True),
            ("metrics", False, True),
            ("access_log", True, False),
            ("neither", False, False),
        ):
            telemetry = Telemetry(
                bare_app(),
                databases=[DATABASE],
                logs=partial(LogsConfig, access=access),
                metrics=partial(bool, metrics),
            )
            began = time.process_time()
            for _ in range(TELEMETRY_CALLS):
                telemetry._report(scope, info, 200, 0.01)
            figures[name] = (time.process_time() - began) / TELEMETRY_CALLS * 1e6
        sys.stderr = sys.__stderr__
    print(json.dumps(figures))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A server subprocess on a localhost port."""

    name: str
    command: list[str]
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text(errors='replace')}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn,
            ):
                conn.sendall(b"GET /-/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                if _read_response(conn.makefile("rb")) == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout} s")

    def pids(self) -> list[int]:
        """The process and its descendants (`reqo serve`'s writer, servers and trainer)."""
        assert self.process is not None
        found, pending = [], [self.process.pid]
        while pending:
            pid = pending.pop()
            found.append(pid)
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                pending.extend(int(child) for child in children)
        return found

    def cpu_seconds(self) -> float:
        """User and system CPU time the process and its descendants have used so far."""
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def peak_memory(self) -> int:
        """The largest peak resident set (VmHWM) among the process and its descendants (in
        `reqo serve`, the server process's), in bytes."""
        peaks = [0]
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) * 1024)
        return max(peaks)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


REPO_ROOT = Path(__file__).resolve().parent.parent


def _read_response(reader: BinaryIO) -> int:
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    reader.read(length)
    return status


@dataclass
class Load:
    """What the clients measured against one server in one round."""

    latencies: list[float]
    elapsed: float
    errors: list[int]
    cpu: float = 0.0
    """The server's CPU seconds over the round."""

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed


def run_load(port: int, clients: int, seconds: float, users: int, seed: int) -> Load:
    """`clients` threads, each with a keep-alive connection, sending Items to User requests for
    random users back to back for `seconds`.

    The requests are written as raw HTTP/1.1 on a socket, because a Python HTTP library costs
    about a millisecond of CPU per request, which on two cores would measure the client.
    """
    body = json.dumps({"count": COUNT, "scenario": SCENARIO}).encode()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[int] = []
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    failures: list[str] = []

    def client(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        out = latencies[number]
        try:
            with socket.create_connection(("127.0.0.1", port)) as conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                reader = conn.makefile("rb")
                start.wait()
                while True:
                    user = rng.randrange(users)
                    request = (
                        f"POST /{DATABASE}/recomms/users/user-{user}/items/ HTTP/1.1\r\n"
                        f"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n"
                    ).encode() + body
                    sent = time.perf_counter()
                    if sent >= deadline[0]:
                        return
                    conn.sendall(request)
                    status = _read_response(reader)
                    out.append(time.perf_counter() - sent)
                    if status != 200:
                        errors.append(status)
        except (OSError, ValueError, IndexError, threading.BrokenBarrierError) as error:
            failures.append(f"client {number}: {error!r}")
            start.abort()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} clients failed: {failures[0]}")
    elapsed = time.perf_counter() - began
    return Load([x for xs in latencies for x in xs], elapsed, errors)


def measure_http(
    directory: Path, users: int, clients: int, seconds: float, rounds: int
) -> dict[str, Any]:
    """reqo (default settings: metrics, and a JSON access line per request into a file), reqo
    without them (a copy of its data) and the bare endpoint under the same load, alternating,
    in `rounds` rounds each."""
    reqo_port, quiet_port, bare_port = free_port(), free_port(), free_port()
    quiet_dir = directory / "without-telemetry"
    shutil.rmtree(quiet_dir, ignore_errors=True)
    shutil.copytree(directory / "data", quiet_dir / "data", ignore=shutil.ignore_patterns(".reqo"))
    serve = [sys.executable, "-m", "server.cli", "serve", "--log-level=info"]
    servers = {}
    for name, home, port, telemetry in (
        ("reqo", directory, reqo_port, {}),
        (
            "quiet",
            quiet_dir,
            quiet_port,
            {"metrics": {"enabled": False}, "logs": {"access": False}},
        ),
    ):
        config = {
            "data_dir": "data",
            "allow_unsigned": True,
            "server": {"host": "127.0.0.1", "port": port, **telemetry},
            "databases": {DATABASE: {"token": "bench-token"}},
            "scenarios": {
                SCENARIO: {"endpoint": "items-to-user", "filter": FILTER, "booster": BOOSTER}
            },
        }
        config_path = home / "reqo.yaml"
        config_path.write_text(yaml.safe_dump(config))
        servers[name] = Server(
            name, [*serve, "--config", str(config_path)], port, home / f"{name}-server.log"
        )
    reqo, quiet = servers["reqo"], servers["quiet"]
    reqo.log.unlink(missing_ok=True)  # its access lines are counted below
    bare = Server(
        "bare Starlette",
        [sys.executable, "-m", "bench.recommend", "--serve-bare", str(bare_port)],
        bare_port,
        directory / "bare-server.log",
    )
    loads: dict[str, list[Load]] = {"reqo": [], "quiet": [], "bare": []}
    try:
        reqo.start()
        quiet.start()
        bare.start()
        # Warm-up: models load on the first request, the history index just after.
        for server in (reqo, quiet):
            warm = run_load(server.port, clients, max(3.0, seconds / 3), users, seed=0)
            if warm.errors:
                raise RuntimeError(f"{server.name} answered {warm.errors[0]} during the warm-up")
        run_load(bare_port, clients, 1.0, users, seed=0)
        for number in range(rounds):
            for name, server in (("bare", bare), ("reqo", reqo), ("quiet", quiet)):
                cpu = server.cpu_seconds()
                load = run_load(server.port, clients, seconds, users, seed=number + 1)
                load.cpu = server.cpu_seconds() - cpu
                loads[name].append(load)
        memory = reqo.peak_memory()
    finally:
        reqo.stop()
        quiet.stop()
        bare.stop()
    figures: dict[str, Any] = {"memory": memory}
    for name, runs in loads.items():
        errors = [e for run in runs for e in run.errors]
        if errors:
            raise RuntimeError(f"{name}: {len(errors)} requests failed (status {errors[0]})")
        latencies = [x for run in runs for x in run.latencies]
        figures[name] = {
            "requests": len(latencies),
            "rate": len(latencies) / sum(run.elapsed for run in runs),
            "rates": [run.rate for run in runs],
            "p50": _percentile_ms(latencies, 50),
            "p99": _percentile_ms(latencies, 99),
            "cpu_us": sum(run.cpu for run in runs) / len(latencies) * 1e6,
            "cores": sum(run.cpu for run in runs) / sum(run.elapsed for run in runs),
        }
    figures["ratio"] = figures["reqo"]["rate"] / figures["bare"]["rate"]
    figures["access_lines"] = sum(
        1
        for line in reqo.log.read_text(errors="replace").splitlines()
        if '"event":"request"' in line
    )
    return figures


# -- the report -----------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=ITEMS)
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--interactions", type=int, default=INTERACTIONS)
    parser.add_argument("--requests", type=int, default=2000, help="in-process requests")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="per HTTP round and server")
    parser.add_argument("--rounds", type=int, default=2, help="HTTP rounds per server")
    parser.add_argument(
        "--directory",
        type=Path,
        default=Path(tempfile.gettempdir()) / "reqo-bench-recommend",
        help="where the catalog's DuckDB file and the models are kept for later runs",
    )
    parser.add_argument("--rebuild", action="store_true", help="build the catalog afresh")
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--telemetry-cost", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare is not None:
        serve_bare(args.serve_bare)
        return 0
    if args.telemetry_cost:
        _telemetry_cost()
        return 0

    sizes = Sizes(args.items, args.users, args.interactions)
    data = args.directory / "data"
    path = data / f"{DATABASE}.duckdb"
    build_seconds = open_catalog(path, sizes, args.rebuild)
    if build_seconds is None:
        print(f"reusing the catalog in {path}")
    else:
        print(f"built the catalog in {build_seconds:.1f} s in {path}")
    registry = collect(get_plugin_manager())
    models_dir = data / "models" / DATABASE
    database = Database(DATABASE, path)
    try:
        training = train(database, registry, models_dir)
        print("trained " + ", ".join(f"{name} in {s:.1f} s" for name, s in training.items()))
        local = measure_in_process(database, registry, models_dir, sizes.users, args.requests)
        print(f"in process: p50 {local['p50']:.2f} ms, p99 {local['p99']:.2f} ms")
    finally:
        database.close()
    http = measure_http(args.directory, sizes.users, args.clients, args.seconds, args.rounds)
    telemetry = measure_telemetry()

    stages = ", ".join(f"{stage} {ms:.3f}" for stage, ms in local["stages"].items())
    reqo, quiet, bare = http["reqo"], http["quiet"], http["bare"]
    memory_gib = http["memory"] / 2**30
    lines = [
        f"- {sizes.items:,} items (category of {CATEGORIES}, price, in_stock, brand), "
        f"{sizes.users:,} users, {sizes.interactions:,} interactions over 90 days (85 % detail "
        "views, the rest purchases, cart additions and bookmarks; power-law item popularity; "
        "each user 80 % in a favourite category), one DuckDB file"
        + ("" if build_seconds is None else f" (built in {build_seconds:.1f} s)"),
        "- training (`train_model`, snapshot included): "
        + ", ".join(f"{name} **{seconds:.1f} s**" for name, seconds in training.items())
        + f"; without a scenario, {local['taste']:.0%} of item-kNN's recommendations are in "
        f"the user's favourite category (1 in {CATEGORIES} at random)",
        f"- Items to User, count {COUNT}, scenario filter `{FILTER}`, booster `{BOOSTER}` "
        f"({local['boosted_share']:.0%} of the recommended items are in the boosted c1, "
        f"{local['favourite_share']:.0%} in the user's favourite category)",
        f"- in process (`parse_request` + `respond`), {local['requests']:,} "
        f"random users after a warm-up: p50 **{local['p50']:.2f} ms** (target <= "
        f"{TARGET_P50_MS:.0f} ms: {_verdict(local['p50'] <= TARGET_P50_MS)}), p90 "
        f"{local['p90']:.2f} ms, p99 **{local['p99']:.2f} ms** (target <= {TARGET_P99_MS:.0f} "
        f"ms: {_verdict(local['p99'] <= TARGET_P99_MS)}); first request (loads the models) "
        f"{local['first_ms']:.0f} ms; {local['from_memory']:.0%} answered from memory "
        "(`read_in_memory`, as the server does on its event loop); the history index of "
        "every user's interactions loads in "
        f"{local['history_load_ms']:.0f} ms",
        f"- pipeline stages (`Result.timings`), median ms: {stages}",
        f"- over HTTP (`reqo serve`, default settings, unsigned requests), {args.clients} "
        f"concurrent keep-alive clients (raw sockets, on the same cores) for random users, "
        f"{args.rounds} rounds of {args.seconds:.0f} s per server, alternating: "
        f"reqo **{reqo['rate']:,.0f} req/s** (p50 {reqo['p50']:.1f} ms, p99 {reqo['p99']:.1f} "
        f"ms; server CPU {reqo['cpu_us']:,.0f} us per request, {reqo['cores']:.2f} cores) vs a "
        f"bare Starlette endpoint under uvicorn **{bare['rate']:,.0f} req/s** (p50 "
        f"{bare['p50']:.1f} ms, p99 {bare['p99']:.1f} ms; {bare['cpu_us']:,.0f} us, "
        f"{bare['cores']:.2f} cores) = **{http['ratio']:.0%}** (target >= "
        f"{TARGET_RATIO:.0%}: {_verdict(http['ratio'] >= TARGET_RATIO)})",
        "- the cost of metrics and logs, in the same rounds: reqo as above (metrics on, a JSON "
        f"access line per request into a file: {http['access_lines']:,} lines) "
        f"**{reqo['rate']:,.0f} req/s**, p50 **{reqo['p50']:.1f} ms**, "
        f"{reqo['cpu_us']:,.0f} us CPU per request vs the same server without them "
        "(`server.metrics.enabled: false`, `server.logs.access: false`) "
        f"**{quiet['rate']:,.0f} req/s**, p50 **{quiet['p50']:.1f} ms**, "
        f"{quiet['cpu_us']:,.0f} us = throughput {reqo['rate'] / quiet['rate'] - 1:+.1%}, "
        f"CPU per request {reqo['cpu_us'] / quiet['cpu_us'] - 1:+.1%}; in process, the "
        f"telemetry of one request (`Telemetry._report`, {TELEMETRY_CALLS:,} calls) takes "
        f"**{telemetry['both']:.1f} us** of CPU: metrics {telemetry['metrics']:.1f} us, the "
        f"access line {telemetry['access_log']:.1f} us, neither {telemetry['neither']:.1f} us",
        f"- reqo server's peak resident memory (VmHWM) at the end: **{memory_gib:.2f} GiB** "
        f"(target <= {TARGET_MEMORY_GIB:.0f} GB: "
        f"{_verdict(http['memory'] <= TARGET_MEMORY_GIB * 1e9)})",
        f"- duckdb {duckdb.__version__}, numpy {np.__version__}",
    ]
    if args.no_report:
        print("\n".join(lines))
    else:
        publish("Recommendations (Items to User)", "bench.recommend", argv, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
