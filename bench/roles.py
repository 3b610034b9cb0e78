"""reqo as a group of roles (`reqo serve --workers N`) on the synthetic catalog of
bench.recommend: 100,000 items, 10,000 users, 1,000,000 interactions, Items to User with the
scenario's filter and booster.

    .venv/bin/python -m bench.roles [--seconds S] [--directory DIR] [--baseline REF]
                                    [--rebuild] [--no-report]

Each figure is measured in this one run, beside its peer:
- throughput with 1 and 2 server processes (16 keep-alive clients): requests per second, the CPU
  of each server process per request, the writer's, and the CPU the load generator used;
- a bare Starlette endpoint under uvicorn with 2 workers, the same clients;
- p50/p99 at 8 clients, idle and while the trainer refits item-kNN and popularity, and the
  retrain's time idle and under that load;
- the change feed's lag, from a write's commit to its application on each server (the servers'
  own measurement, `feedLagMs` of /-/health), under a mixed load;
- a mixed load (recommendations, reads, writes with cascadeCreate, batches) at 16 and 64 clients,
  per request kind, against the single process of `--baseline` (a commit before the roles,
  checked out in a temporary worktree) on a copy of the same data;
- kill -9 of a server, the trainer and the writer under a mixed write/read load: acknowledged
  writes lost, and the requests that failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import yaml

from bench._report import publish
from bench.recommend import (
    BOOSTER,
    COUNT,
    DATABASE,
    FILTER,
    SCENARIO,
    Sizes,
    _percentile_ms,
    free_port,
    open_catalog,
    train,
)
from plugins.manager import collect, get_plugin_manager
from storage.database import Database

REPO_ROOT = Path(__file__).resolve().parent.parent
BASELINE = "0e58096"
"""The last commit of the single-process server (before the roles)."""

KINDS = ("recommend", "read", "write", "batch")
MIXED = {"recommend": 0.5, "read": 0.2, "write": 0.2, "batch": 0.1}


# -- processes ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        return [int(p) for p in path.read_text().split()]
    return []


def role_of(pid: int) -> str:
    with contextlib.suppress(OSError):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"role" in argv:
            return argv[argv.index(b"role") + 1].decode()
    return "worker"


@dataclass
class Group:
    """A server on a localhost port: `reqo serve` (a process group of roles), the baseline's
    single process, or uvicorn with workers; in a session of its own."""

    name: str
    command: list[str]
    port: int
    log: Path
    cwd: Path = REPO_ROOT
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 300.0) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text(errors='replace')}")
            with contextlib.suppress(OSError, ValueError, IndexError):
                if get(self.port, "/-/health")[0] == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout} s")

    def pids(self) -> dict[int, str]:
        """Every process of the group by pid, with its role (the top one is `main`)."""
        assert self.process is not None
        found = {self.process.pid: "main"}
        for child in children(self.process.pid):
            found[child] = role_of(child)
        return found

    def cpu(self) -> dict[int, float]:
        found = {}
        for pid in self.pids():
            with contextlib.suppress(OSError):
                found[pid] = cpu_seconds(pid)
        return found

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def reqo_group(directory: Path, workers: int, *, cwd: Path = REPO_ROOT) -> Group:
    """`reqo serve` over `directory/data` with the scenario (`cwd`: which checkout runs)."""
    port = free_port()
    config = {
        "data_dir": "data",
        "allow_unsigned": True,
        "server": {"host": "127.0.0.1", "port": port, "workers": workers},
        "databases": {DATABASE: {"token": "bench-token"}},
        "scenarios": {
            SCENARIO: {"endpoint": "items-to-user", "filter": FILTER, "booster": BOOSTER}
        },
    }
    if cwd != REPO_ROOT:
        del config["server"]["workers"]  # type: ignore[attr-defined]
    path = directory / f"reqo-{workers}.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "server.cli", "serve", "--config", str(path)]
    name = f"reqo ({workers} server{'s' if workers > 1 else ''})"
    return Group(name, [*command, "--log-level=warning"], port, directory / f"{name}.log", cwd)


def bare_group(directory: Path, workers: int) -> Group:
    port = free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", "bench.recommend:bare_app", "--factory"),
        *("--port", str(port), "--workers", str(workers), "--log-level", "warning"),
    ]
    return Group(f"bare Starlette ({workers} workers)", command, port, directory / "bare.log")


# -- HTTP on raw sockets (a Python HTTP library would measure the client on two cores) -----------


def _read_response(reader: BinaryIO) -> tuple[int, bytes]:
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, reader.read(length)


def request_bytes(method: str, path: str, body: Any = None) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def get(port: int, path: str) -> tuple[int, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request_bytes("GET", path))
        status, body = _read_response(conn.makefile("rb"))
    return status, json.loads(body) if body else None


def send(port: int, method: str, path: str, body: Any = None, timeout: float = 3600) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(request_bytes(method, path, body))
        return _read_response(conn.makefile("rb"))[0]


@dataclass
class Load:
    """What the clients of one round measured."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: int = 0
    """Requests that got no answer (a connection refused or reset)."""
    elapsed: float = 0.0
    generator_cpu: float = 0.0

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def errors(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status >= 500)


def _next_request(kind: str, rng: random.Random, users: int, items: int, tag: str) -> bytes:
    user = f"user-{rng.randrange(users)}"
    base = f"/{DATABASE}"
    if kind == "recommend":
        body = {"count": COUNT, "scenario": SCENARIO}
        return request_bytes("POST", f"{base}/recomms/users/{user}/items/", body)
    if kind == "read":
        return request_bytes("GET", f"{base}/items/item-{rng.randrange(items)}")
    if kind == "write":
        # Now and then a user the database has not seen: cascadeCreate creates it.
        who = f"new-{tag}-{rng.randrange(10**9)}" if rng.random() < 0.2 else user
        view = {"userId": who, "itemId": f"item-{rng.randrange(items)}", "cascadeCreate": True}
        return request_bytes("POST", f"{base}/detailviews/", view)
    views = [
        {
            "method": "POST",
            "path": "/detailviews/",
            "params": {"userId": user, "itemId": f"item-{rng.randrange(items)}"},
        }
        for _ in range(5)
    ]
    recommend = {
        "method": "POST",
        "path": f"/recomms/users/{user}/items/",
        "params": {"count": COUNT, "scenario": SCENARIO},
    }
    return request_bytes("POST", f"{base}/batch/", {"requests": [*views, recommend]})


def run_load(
    port: int,
    clients: int,
    seconds: float,
    mix: dict[str, float],
    seed: int,
    sizes: Sizes,
    *,
    until: threading.Event | None = None,
    per_client: float | None = None,
) -> Load:
    """`clients` threads on keep-alive connections, each request's kind drawn from `mix`, for
    `seconds` (or until `until` is set); a client whose connection fails reconnects. With
    `per_client` (requests per second), each client sends on a fixed schedule (an open load
    below saturation) rather than back to back."""
    load = Load()
    lock = threading.Lock()
    kinds, weights = list(mix), list(mix.values())
    stop_at = [0.0]
    barrier = threading.Barrier(clients + 1)

    def client(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        own: dict[str, list[float]] = {k: [] for k in KINDS}
        statuses: Counter[tuple[str, int]] = Counter()
        failures = 0
        conn: socket.socket | None = None
        reader: BinaryIO | None = None
        barrier.wait()
        next_at = time.perf_counter() + rng.random() / per_client if per_client else 0.0
        while time.perf_counter() < stop_at[0] and not (until is not None and until.is_set()):
            if per_client:
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                next_at += 1.0 / per_client
            kind = rng.choices(kinds, weights)[0]
            payload = _next_request(kind, rng, sizes.users, sizes.items, f"{seed}-{number}")
            try:
                if conn is None:
                    conn = socket.create_connection(("127.0.0.1", port), timeout=60)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    reader = conn.makefile("rb")
                assert reader is not None
                sent = time.perf_counter()
                conn.sendall(payload)
                status, _ = _read_response(reader)
                own[kind].append(time.perf_counter() - sent)
                statuses[(kind, status)] += 1
            except (OSError, ValueError, IndexError):
                failures += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()
        with lock:
            for kind, values in own.items():
                load.latencies[kind].extend(values)
            load.statuses.update(statuses)
            load.failures += failures

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for thread in threads:
        thread.start()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    stop_at[0] = began + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    load.elapsed = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    load.generator_cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    return load


# -- the measurements -----------------------------------------------------------------------------


RECOMMEND_ONLY = {"recommend": 1.0}
PACED = 40.0
"""Requests per second of each of the 8 clients of the latency figures: 320 in all, about a
third of what two servers answer here, so that the latency is not the queue's."""


def throughput(group: Group, sizes: Sizes, clients: int, seconds: float) -> dict[str, Any]:
    """Recommendations only: rate, CPU per request of each process, the generator's CPU."""
    run_load(group.port, clients, min(5.0, seconds), RECOMMEND_ONLY, 0, sizes)  # warm-up
    before = group.cpu()
    load = run_load(group.port, clients, seconds, RECOMMEND_ONLY, 1, sizes)
    after = group.cpu()
    if load.errors() or load.failures:
        raise RuntimeError(f"{group.name}: {load.errors()} errors, {load.failures} failures")
    pids = group.pids()
    per_process = {
        pid: (pids.get(pid, "?"), (after[pid] - before.get(pid, 0.0)) / load.requests * 1e6)
        for pid in after
    }
    servers = [us for role, us in per_process.values() if role in ("server", "worker")]
    latencies = load.latencies["recommend"]
    return {
        "rate": load.rate,
        "p50": _percentile_ms(latencies, 50),
        "p99": _percentile_ms(latencies, 99),
        "server_us": servers,
        "server_total_us": sum(servers),
        "writer_us": sum(us for role, us in per_process.values() if role == "writer"),
        "other_us": sum(us for role, us in per_process.values() if role in ("main", "trainer")),
        "generator_us": load.generator_cpu / load.requests * 1e6,
    }


def retrain_latency(group: Group, sizes: Sizes, seconds: float) -> dict[str, Any]:
    """p50/p99 at 8 clients idle and during a retrain of item-kNN and popularity; the retrain's
    time idle and under that load."""
    path = f"/{DATABASE}/-/train?model=item-knn"

    def retrain() -> float:
        started = time.perf_counter()
        for model in ("item-knn", "popularity"):
            status = send(group.port, "POST", path.replace("item-knn", model), {})
            if status != 200:
                raise RuntimeError(f"training {model} answered {status}")
        return time.perf_counter() - started

    run_load(group.port, 8, min(5.0, seconds), RECOMMEND_ONLY, 10, sizes)
    idle = run_load(group.port, 8, seconds, RECOMMEND_ONLY, 11, sizes, per_client=PACED)
    retrain_idle = retrain()
    done = threading.Event()
    took: list[float] = []

    def train_then_stop() -> None:
        time.sleep(1.0)
        try:
            took.append(retrain())
        finally:
            done.set()

    trainer = threading.Thread(target=train_then_stop)
    trainer.start()
    during = run_load(group.port, 8, 3600, RECOMMEND_ONLY, 12, sizes, until=done, per_client=PACED)
    trainer.join()
    if not took:
        raise RuntimeError("the retrain under load failed")
    return {
        "idle_p50": _percentile_ms(idle.latencies["recommend"], 50),
        "idle_p99": _percentile_ms(idle.latencies["recommend"], 99),
        "during_p50": _percentile_ms(during.latencies["recommend"], 50),
        "during_p99": _percentile_ms(during.latencies["recommend"], 99),
        "during_requests": during.requests,
        "during_errors": during.errors() + during.failures,
        "retrain_idle": retrain_idle,
        "retrain_loaded": took[0],
    }


def feed_lag(group: Group, sizes: Sizes, seconds: float, servers: int) -> dict[str, Any]:
    """Each server's own feed lag figures (from /-/health) after a mixed load below saturation
    (8 clients at `PACED` requests per second each), then after one at 16 clients back to back
    (a restarted group for each, so that the figures are the load's alone)."""
    run_load(group.port, 8, seconds, MIXED, 20, sizes, per_client=PACED / 2)
    light = _lags(group, servers)
    return {"light": light}


def _lags(group: Group, servers: int) -> dict[int, Any]:
    found: dict[int, Any] = {}
    deadline = time.monotonic() + 60
    while len(found) < servers and time.monotonic() < deadline:
        status, health = get(group.port, "/-/health")
        if status == 200:
            found[health["process"]] = health["databases"][DATABASE]["feedLagMs"]
    return found


def feed_lag_saturated(group: Group, sizes: Sizes, seconds: float, servers: int) -> Any:
    run_load(group.port, 16, seconds, MIXED, 21, sizes)
    return _lags(group, servers)


def mixed(group: Group, sizes: Sizes, clients: int, seconds: float) -> dict[str, Any]:
    run_load(group.port, clients, min(5.0, seconds), MIXED, 30, sizes)
    load = run_load(group.port, clients, seconds, MIXED, 31 + clients, sizes)
    figures: dict[str, Any] = {"rate": load.rate, "errors": load.errors() + load.failures}
    for kind in KINDS:
        values = load.latencies[kind]
        figures[kind] = {
            "rate": len(values) / load.elapsed,
            "p99": _percentile_ms(values, 99) if values else None,
        }
    return figures


def kill_rounds(group: Group, seconds: float) -> list[dict[str, Any]]:
    """kill -9 one process of each role under writes (items with unique ids) and reads."""
    return [kill_round(group, role, seconds) for role in ("server", "trainer", "writer")]


@dataclass
class WritesAndReads:
    """Clients that each write new items (PUT, unique ids) and read one, until stopped: what
    was acknowledged (with the time) and what failed."""

    port: int
    tag: str
    acked: list[tuple[float, str]] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self, number: int) -> None:
        n = 0
        while not self.stop.is_set():
            item = f"kill-{self.tag}-{number}-{n}"
            n += 1
            try:
                status = send(self.port, "PUT", f"/{DATABASE}/items/{item}", timeout=60)
                read = send(self.port, "GET", f"/{DATABASE}/items/item-{n % 1000}")
            except (OSError, ValueError, IndexError):
                with self.lock:
                    self.failed["no answer"] += 1
                time.sleep(0.05)
                continue
            with self.lock:
                if status == 201:
                    self.acked.append((time.monotonic(), item))
                else:
                    self.failed[f"write {status}"] += 1
                if read != 200:
                    self.failed[f"read {read}"] += 1

    def start(self, clients: int = 8) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self.client, args=(c,), daemon=True) for c in range(clients)
        ]
        for thread in threads:
            thread.start()
        return threads

    def lost(self) -> int:
        """Acknowledged items that cannot be read back."""
        stored = {
            item
            for _, item in self.acked
            if send(self.port, "GET", f"/{DATABASE}/items/{item}") == 200
        }
        return len(self.acked) - len(stored)


def kill_round(group: Group, role: str, seconds: float) -> dict[str, Any]:
    load = WritesAndReads(group.port, role)
    threads = load.start()
    time.sleep(seconds / 2)
    victims = [pid for pid, name in group.pids().items() if name == role]
    os.kill(victims[0], signal.SIGKILL)
    killed = time.monotonic()
    deadline = killed + 120
    while time.monotonic() < deadline:
        current = [pid for pid, name in group.pids().items() if name == role]
        if len(current) == len(victims) and victims[0] not in current:
            break
        time.sleep(0.1)
    restarted = time.monotonic() - killed
    time.sleep(seconds / 2)
    load.stop.set()
    for thread in threads:
        thread.join()
    return {
        "role": role,
        "acked": len(load.acked),
        "lost": load.lost(),
        "failed": dict(load.failed),
        "restarted_s": restarted,
    }


# -- set-up ---------------------------------------------------------------------------------------


def prepare(directory: Path, sizes: Sizes, rebuild: bool) -> Path:
    """The catalog and its trained models in `directory/source`."""
    source = directory / "source"
    path = source / "data" / f"{DATABASE}.duckdb"
    built = open_catalog(path, sizes, rebuild)
    models = source / "data" / "models" / DATABASE
    if built is not None or not (models / "item-knn" / "current").exists():
        database = Database(DATABASE, path)
        try:
            train(database, collect(get_plugin_manager()), models)
        finally:
            database.close()
    return source


def copy_of(source: Path, target: Path, *, baseline: bool = False) -> Path:
    """A fresh copy of the data for one group (writes change it)."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source / "data", target / "data")
    if baseline:
        # The single process numbers new items and users with DuckDB sequences.
        conn = duckdb.connect(str(target / "data" / f"{DATABASE}.duckdb"))
        for entity in ("item", "user"):
            table = f"{entity}s"
            (count,) = conn.execute(f'SELECT max("$idx") + 1 FROM {table}').fetchone() or (0,)
            conn.execute(f"SELECT max(nextval('{entity}_index_seq')) FROM range({count})")
        conn.close()
    return target


@contextlib.contextmanager
def worktree(ref: str) -> Any:
    """A checkout of `ref` in a temporary directory."""
    path = Path(tempfile.mkdtemp(prefix="reqo-baseline-"))
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(path), ref],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(path)], cwd=REPO_ROOT, check=False
        )


def running(group: Group, work: Callable[[Group], Any]) -> Any:
    group.start()
    try:
        return work(group)
    finally:
        group.stop()


# -- the report -----------------------------------------------------------------------------------


def _lag_text(lags: dict[int, Any]) -> str:
    return "; ".join(
        f"server {n + 1}: p50 {f['p50']} ms, p99 **{f['p99']} ms** over {f['samples']:,} frames"
        for n, f in enumerate(lags.values())
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=15.0, help="per measured round")
    parser.add_argument("--baseline", default=BASELINE, help="the single-process commit")
    parser.add_argument(
        "--directory",
        type=Path,
        default=Path(tempfile.gettempdir()) / "reqo-bench-roles",
        help="where the catalog and the groups' copies of it are kept",
    )
    parser.add_argument("--rebuild", action="store_true", help="build the catalog afresh")
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    sizes = Sizes(100_000, 10_000, 1_000_000)
    seconds = args.seconds
    directory = args.directory
    directory.mkdir(parents=True, exist_ok=True)
    source = prepare(directory, sizes, args.rebuild)
    print("catalog and models ready", flush=True)

    def fresh(name: str, workers: int) -> Group:
        return reqo_group(copy_of(source, directory / name), workers)

    one = running(fresh("one", 1), lambda g: throughput(g, sizes, 16, seconds))
    print("1 server:", one, flush=True)
    two = running(fresh("two", 2), lambda g: throughput(g, sizes, 16, seconds))
    print("2 servers:", two, flush=True)
    bare = running(bare_group(directory, 2), lambda g: throughput(g, sizes, 16, seconds))
    print("bare:", bare, flush=True)
    retrain = running(fresh("retrain", 2), lambda g: retrain_latency(g, sizes, seconds))
    print("retrain:", retrain, flush=True)
    lag = running(fresh("lag", 2), lambda g: feed_lag(g, sizes, seconds, 2))
    lag["saturated"] = running(
        fresh("lag-16", 2), lambda g: feed_lag_saturated(g, sizes, seconds, 2)
    )
    print("feed lag:", lag, flush=True)
    loads: dict[str, dict[int, Any]] = {"roles": {}, "baseline": {}}
    with worktree(args.baseline) as checkout:
        for clients in (16, 64):
            roles = fresh(f"mixed-{clients}", 2)
            loads["roles"][clients] = running(
                roles, partial(mixed, sizes=sizes, clients=clients, seconds=seconds)
            )
            old_copy = copy_of(source, directory / f"baseline-{clients}", baseline=True)
            old = reqo_group(old_copy, 1, cwd=checkout)
            old.name = f"single process ({args.baseline})"
            loads["baseline"][clients] = running(
                old, partial(mixed, sizes=sizes, clients=clients, seconds=seconds)
            )
            print(clients, "clients:", loads["roles"][clients], loads["baseline"][clients])
    kills = running(fresh("kill", 2), lambda g: kill_rounds(g, seconds))
    print("kill rounds:", kills, flush=True)

    lines = report(sizes, seconds, args.baseline, one, two, bare, retrain, lag, loads, kills)
    if args.no_report:
        print("\n".join(lines))
    else:
        publish("Roles: one writer, many servers, a trainer", "bench.roles", argv, lines)
    return 0


def report(
    sizes: Sizes,
    seconds: float,
    baseline: str,
    one: dict[str, Any],
    two: dict[str, Any],
    bare: dict[str, Any],
    retrain: dict[str, Any],
    lag: dict[str, Any],
    loads: dict[str, dict[int, Any]],
    kills: list[dict[str, Any]],
) -> list[str]:
    ratio = two["rate"] / one["rate"]
    per_request = [two["server_total_us"] / 2, one["server_total_us"]]

    def servers_us(figures: dict[str, Any]) -> str:
        return " + ".join(f"{us:,.0f}" for us in figures["server_us"])

    lines = [
        f"- data: {sizes.items:,} items, {sizes.users:,} users, {sizes.interactions:,} "
        f"interactions (bench.recommend's catalog); Items to User, count {COUNT}, filter "
        f"`{FILTER}`, booster `{BOOSTER}`; item-kNN and popularity trained; {seconds:.0f} s "
        "rounds after a warm-up; clients on raw keep-alive sockets on the same 2 cores",
        f"- **throughput, 16 clients**: 1 server **{one['rate']:,.0f} req/s** (p50 "
        f"{one['p50']:.1f} ms, p99 {one['p99']:.1f} ms), 2 servers **{two['rate']:,.0f} req/s** "
        f"(p50 {two['p50']:.1f} ms, p99 {two['p99']:.1f} ms) = **{ratio:.2f}x** (target >= "
        f"1.5x: {'met' if ratio >= 1.5 else '**missed**'})",
        f"- CPU per request (us): server processes {servers_us(one)} (1 server) and "
        f"{servers_us(two)} (2 servers; per request each serves: "
        f"{two['server_total_us']:,.0f} in all); the writer {one['writer_us']:,.0f} and "
        f"{two['writer_us']:,.0f} (the recommendations' records, in batches); "
        f"the supervisor and the trainer {one['other_us']:,.0f} and "
        f"{two['other_us']:,.0f}; the load generator {one['generator_us']:,.0f} and "
        f"{two['generator_us']:,.0f}. Server CPU per request with 2 processes against 1: "
        f"{per_request[0] * 2 / per_request[1]:.2f}x",
        f"- **bare Starlette, 2 uvicorn workers**, same clients: **{bare['rate']:,.0f} req/s** "
        f"({servers_us(bare)} us per request per worker); reqo with 2 servers = "
        f"**{two['rate'] / bare['rate']:.0%}** of it (goal 50 %)",
        f"- **latency at 8 clients** ({PACED:.0f} req/s each, {8 * PACED:.0f} in all): "
        f"idle p50 {retrain['idle_p50']:.1f} ms, p99 "
        f"**{retrain['idle_p99']:.1f} ms**; during a retrain of item-kNN and popularity "
        f"(by the trainer, {retrain['during_requests']:,} requests, "
        f"{retrain['during_errors']} failed) p50 {retrain['during_p50']:.1f} ms, p99 "
        f"**{retrain['during_p99']:.1f} ms** = {retrain['during_p99'] / retrain['idle_p99']:.2f}x "
        f"idle (target <= 1.2x: "
        f"{'met' if retrain['during_p99'] <= 1.2 * retrain['idle_p99'] else '**missed**'}); the "
        f"retrain took {retrain['retrain_idle']:.1f} s idle and {retrain['retrain_loaded']:.1f} "
        f"s under the load = {retrain['retrain_loaded'] / retrain['retrain_idle']:.2f}x (target "
        f"<= 3x: "
        f"{'met' if retrain['retrain_loaded'] <= 3 * retrain['retrain_idle'] else '**missed**'})",
        "- **feed lag** (commit to applied, each server's own figures, `feedLagMs` of /-/health): "
        f"under the mixed load below saturation (8 clients at {PACED / 2:.0f} req/s each) "
        + _lag_text(lag["light"])
        + " (target p99 <= 50 ms); saturated (16 clients back to back) "
        + _lag_text(lag["saturated"]),
        f"- **mixed load** (50 % Items to User, 20 % Get Item Values, 20 % detail views with "
        f"cascadeCreate, 20 % of them new users, 10 % batches of 5 views and a recommendation): "
        f"2 servers against the single process of {baseline} on a copy of the same data:",
        "",
        "| clients | server | all req/s | recommend req/s, p99 ms | read | write | batch "
        "| 5xx or no answer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for clients in (16, 64):
        for name, label in (("roles", "2 servers"), ("baseline", "single process")):
            f = loads[name][clients]
            cells = " | ".join(f"{f[kind]['rate']:,.0f}, {_ms(f[kind]['p99'])}" for kind in KINDS)
            lines.append(f"| {clients} | {label} | {f['rate']:,.0f} | {cells} | {f['errors']} |")
    lines.append("")
    rounds = []
    for k in kills:
        causes = ", ".join(f"{n} {what}" for what, n in k["failed"].items()) or "none"
        rounds.append(
            f"{k['role']}: {k['acked']:,} writes acknowledged, **{k['lost']} lost**, "
            f"restarted in {k['restarted_s']:.1f} s, failed requests "
            f"{sum(k['failed'].values())} ({causes})"
        )
    lines.append(
        "- **kill -9** under 8 clients writing items (PUT, each id new) and reading: "
        + "; ".join(rounds)
    )
    return lines


if __name__ == "__main__":
    sys.exit(main())
