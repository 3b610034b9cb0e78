"""Mixed-load soak: a real reqo server under 16, 32, then 64 concurrent clients.

    .venv/bin/python -m bench.soak [--clients 16,32,64] [--seconds 60] [--warmup 5]
                                   [--timeout 30] [--seed 1] [--directory DIR] [--no-write]

Prepares the MovieLens-100K demo as `make serve` does, in a fresh data directory (a temporary one,
or `--directory`): `reqo dataset load ml-100k --db demo` and `reqo train --db demo` with the
models and scenarios of reqo.yaml, then starts `reqo serve` (a subprocess on a free 127.0.0.1
port, reqo.yaml's settings otherwise, unsigned requests).

Then, one phase per client count (after a short warm-up phase of 2 clients, which is reported and
checked too): the clients of bench/soak_load.py (a separate process: asyncio, one keep-alive
connection per client) send the mix of `bench.soak_load.MIX` (reads, writes with
`cascadeCreate`, batches, recommendations, each kind at a fixed share) back to back for
`--seconds`. Meanwhile, in this process, one thread probes `GET /-/health` every 100 ms on its own
keep-alive connection and another samples the server's resident memory (VmRSS in
/proc/<pid>/status) every second.

Reported per phase: requests per second overall and per kind, p50 and p99 latency per kind, the
responses by status code (503s with a `Retry-After` header, load shedding, apart from other 5xx),
the codes inside batch responses, dropped requests (no complete response) and failed connects,
the health probe's p50 and p99, the server's RSS (start, max, end), and the CPU that the server
and the load generator used. Appended to BENCHMARKS.md unless `--no-write`.

The run fails (exit code 1, after its report) on any 5xx that is not a shedding 503 (inside
batches too), any dropped request or failed connect (the health probe's included), any shedding at
64 clients or fewer, or a server that exits or has to be killed; the server log's tracebacks are
printed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from bench._report import append_section
from bench.soak_load import MIX
from tests.serving import REPO_ROOT, RunningServer, free_port

DATABASE = "demo"
CONFIG = REPO_ROOT / "reqo.yaml"
WARMUP_CLIENTS = 2
SHED_FREE_CLIENTS = 64
"""Up to this many clients the server must shed nothing."""
PROBE_EVERY = 0.1
RSS_EVERY = 1.0
MIB = 2**20


# -- the health prober and the memory sampler ------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    at: float
    """time.monotonic() when the probe was sent."""
    latency: float
    status: int | None
    """None: no response (the error is in `error`)."""
    error: str = ""


@dataclass
class Monitor:
    """The health prober and the RSS sampler: two threads, against the server's process."""

    port: int
    pid: int
    probes: list[Probe] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    """(time.monotonic(), VmRSS in bytes)."""
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.sample()
        for target in (self._probe, self._sample):
            thread = threading.Thread(target=target, name=target.__name__, daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=15)

    def sample(self) -> int | None:
        """Record the server's VmRSS now (None once the process is gone)."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                value = int(line.split()[1]) * 1024
                with self.lock:
                    self.rss.append((time.monotonic(), value))
                return value
        return None

    def _sample(self) -> None:
        while not self.stopping.wait(RSS_EVERY):
            self.sample()

    def _probe(self) -> None:
        connection: http.client.HTTPConnection | None = None
        next_at = time.monotonic()
        while not self.stopping.is_set():
            current = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            connection = current
            sent = time.monotonic()
            try:
                current.request("GET", "/-/health")
                response = current.getresponse()
                response.read()
                probe = Probe(sent, time.monotonic() - sent, response.status)
                if response.will_close:
                    current.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                probe = Probe(sent, time.monotonic() - sent, None, repr(error))
                current.close()
                connection = None
            with self.lock:
                self.probes.append(probe)
            # Every PROBE_EVERY seconds on a fixed grid; a slot missed by a slow probe is skipped.
            next_at += PROBE_EVERY * max(1, math.ceil((time.monotonic() - next_at) / PROBE_EVERY))
            self.stopping.wait(max(0.0, next_at - time.monotonic()))
        if connection is not None:
            connection.close()

    def probes_between(self, began: float, ended: float) -> list[Probe]:
        with self.lock:
            return [p for p in self.probes if began <= p.at < ended]

    def rss_between(self, began: float, ended: float) -> list[int]:
        with self.lock:
            return [value for at, value in self.rss if began <= at <= ended]


# -- the phases -----------------------------------------------------------------------------------


@dataclass
class Phase:
    label: str
    clients: int
    load: dict[str, Any] | None
    """bench.soak_load's JSON; None when it did not finish."""
    probes: list[Probe]
    rss: list[int]
    failure: str = ""
    """Why the load generator gave no result, if it did not."""

    @property
    def kinds(self) -> dict[str, dict[str, Any]]:
        return {} if self.load is None else dict(self.load["kinds"])

    def statuses(self) -> Counter[int]:
        total: Counter[int] = Counter()
        for kind in self.kinds.values():
            total.update({int(code): n for code, n in kind["statuses"].items()})
        return total

    def batch_codes(self) -> Counter[int]:
        total: Counter[int] = Counter()
        for kind in self.kinds.values():
            total.update({int(code): n for code, n in kind["batch_codes"].items()})
        return total

    @property
    def answered(self) -> int:
        return sum(int(kind["answered"]) for kind in self.kinds.values())

    @property
    def shed(self) -> int:
        return sum(int(kind["shed"]) for kind in self.kinds.values())

    @property
    def other_5xx(self) -> int:
        codes = self.statuses()
        http_5xx = sum(n for code, n in codes.items() if code >= 500) - self.shed
        return http_5xx + sum(n for code, n in self.batch_codes().items() if code >= 500)

    @property
    def dropped(self) -> int:
        if self.load is None:
            return 0
        return sum(int(k["dropped"]) for k in self.kinds.values()) + int(
            self.load["connect_failures"]
        )

    @property
    def probe_failures(self) -> int:
        return sum(1 for p in self.probes if p.status is None)

    @property
    def probe_not_ok(self) -> int:
        return sum(1 for p in self.probes if p.status is not None and p.status != 200)

    @property
    def rate(self) -> float:
        return 0.0 if self.load is None else self.answered / float(self.load["elapsed"])

    def problems(self) -> list[str]:
        """What makes this phase fail the run."""
        found = []
        if self.failure:
            found.append(f"{self.label}: {self.failure}")
        if self.other_5xx:
            found.append(f"{self.label}: {self.other_5xx} 5xx responses other than shedding 503s")
        if self.dropped:
            found.append(f"{self.label}: {self.dropped} dropped requests or failed connects")
        if self.probe_failures:
            found.append(f"{self.label}: {self.probe_failures} health probes got no response")
        if self.probe_not_ok:
            found.append(f"{self.label}: {self.probe_not_ok} health probes answered other than 200")
        if self.shed and self.clients <= SHED_FREE_CLIENTS:
            found.append(f"{self.label}: {self.shed} requests shed at {self.clients} clients")
        return found


def run_phase(
    label: str,
    tag: str,
    clients: int,
    seconds: float,
    server: RunningServer,
    monitor: Monitor,
    args: argparse.Namespace,
    directory: Path,
) -> Phase:
    """One load generator run of `clients` clients for `seconds`, with what was seen meanwhile."""
    assert server.process is not None
    out = directory / f"load-{tag}.json"
    command = [
        *(sys.executable, "-m", "bench.soak_load", "--port", str(server.port)),
        *("--clients", str(clients), "--seconds", str(seconds), "--out", str(out)),
        *("--database", DATABASE, "--tag", tag, "--seed", str(args.seed)),
        *("--timeout", str(args.timeout), "--server-pid", str(server.process.pid)),
    ]
    print(f"{label}: {clients} clients for {seconds:g} s", flush=True)
    launched = time.monotonic()
    monitor.sample()
    failure = ""
    load: dict[str, Any] | None = None
    with _process(command) as process:
        try:
            code = process.wait(timeout=seconds + 2 * args.timeout + 60)
        except subprocess.TimeoutExpired:
            code = None
            failure = "the load generator did not finish in time (killed)"
    if code is not None and code != 0:
        failure = f"the load generator exited with {code}"
    elif code == 0:
        load = json.loads(out.read_text())
    exited = time.monotonic()
    monitor.sample()
    began, ended = (launched, exited) if load is None else (load["began"], load["ended"])
    if server.process.poll() is not None:
        failure = (failure + "; " if failure else "") + (
            f"the server exited with {server.process.returncode}"
        )
    phase = Phase(
        label,
        clients,
        load,
        monitor.probes_between(began, ended),
        monitor.rss_between(launched, exited),
        failure,
    )
    print("  " + summary_row(phase, nproc()), flush=True)
    return phase


@contextlib.contextmanager
def _process(command: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess that is killed when the block is left early (an error, Ctrl-C)."""
    process = subprocess.Popen(command, cwd=REPO_ROOT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- the server -----------------------------------------------------------------------------------


def demo_config() -> tuple[str, dict[str, Any]]:
    """The demo database's token and the rest of reqo.yaml that RunningServer does not write."""
    config = yaml.safe_load(CONFIG.read_text())
    token = str(config["databases"][DATABASE]["token"])
    own = {"data_dir", "allow_unsigned", "server", "databases"}
    return token, {key: value for key, value in config.items() if key not in own}


def reqo_command() -> list[str]:
    """The `reqo` command of this environment."""
    script = Path(sys.executable).parent / "reqo"
    return [str(script)] if script.exists() else [sys.executable, "-m", "server.cli"]


def prepare(server: RunningServer) -> dict[str, float]:
    """Load MovieLens-100K and train the demo's models, as `make serve` does; seconds of each."""
    server.write_config()
    config = str(server.config_path)
    timings = {}
    for name, arguments in (
        ("load", ["dataset", "load", "ml-100k", "--db", DATABASE, "--no-progress"]),
        ("train", ["train", "--db", DATABASE]),
    ):
        started = time.perf_counter()
        subprocess.run(
            [*reqo_command(), *arguments, "--config", config],
            cwd=REPO_ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
        timings[name] = time.perf_counter() - started
    return timings


def tracebacks(log: str) -> list[str]:
    """The distinct tracebacks of the server log (with the log line before each)."""
    found: list[str] = []
    lines = log.splitlines()
    for number, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last)"):
            continue
        end = number + 1
        while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end]):
            end += 1
        block = "\n".join(lines[max(0, number - 1) : end + 1])
        if block not in found:
            found.append(block)
    return found


def last_line(traceback: str) -> str:
    return traceback.strip().splitlines()[-1]


# -- the report -----------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _percentile_ms(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000


def _codes(counts: Counter[int]) -> str:
    return ", ".join(f"{code} x{n:,}" for code, n in sorted(counts.items())) or "none"


def _mib(values: list[int], pick: str) -> str:
    if not values:
        return "-"
    value = {"start": values[0], "max": max(values), "end": values[-1]}[pick]
    return f"{value / MIB:,.0f}"


def _cores(seconds: float | None, elapsed: float) -> str:
    return "-" if seconds is None or elapsed <= 0 else f"{seconds / elapsed:.2f}"


def nproc() -> int:
    """The CPUs this process may run on, as `nproc` counts them."""
    return len(os.sched_getaffinity(0))


def summary_row(phase: Phase, cpus: int) -> str:
    load = phase.load
    latencies = [p.latency for p in phase.probes if p.status is not None]
    if load is None:
        return f"| {phase.label} | {phase.clients} | failed: {phase.failure} |"
    elapsed = float(load["elapsed"])
    statuses = phase.statuses()
    ok = sum(n for code, n in statuses.items() if 200 <= code < 300)
    client_4xx = sum(n for code, n in statuses.items() if 400 <= code < 500)
    generator = load["cpu_seconds"] / elapsed
    return (
        f"| {phase.label} | {phase.clients} | {phase.rate:,.0f} | {_ms(load['p50_ms'])} | "
        f"{_ms(load['p99_ms'])} | {ok:,} | {client_4xx:,} | {phase.shed:,} | {phase.other_5xx:,} "
        f"| {phase.dropped:,} | {_ms(_percentile_ms(latencies, 50))} / "
        f"{_ms(_percentile_ms(latencies, 99))} ({len(phase.probes)}) | "
        f"{_mib(phase.rss, 'start')} / {_mib(phase.rss, 'max')} / {_mib(phase.rss, 'end')} | "
        f"{_cores(load['server_cpu_seconds'], elapsed)} | "
        f"{generator:.2f} ({generator / cpus:.0%}) |"
    )


SUMMARY_HEADER = [
    "| phase | clients | req/s | p50 ms | p99 ms | 2xx | 4xx | shed 503 | other 5xx | dropped "
    "| health p50 / p99 ms (probes) | server RSS MiB start / max / end | server cores "
    "| load generator cores (share of CPUs) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def kind_table(phases: list[Phase]) -> list[str]:
    """Per kind and phase: requests per second, p50 / p99 ms."""
    shown = [p for p in phases if p.load is not None]
    lines = [
        "| kind | share | "
        + " | ".join(f"{p.clients} clients: req/s, p50 / p99 ms" for p in shown)
        + " |",
        "|---|---:|" + "---:|" * len(shown),
    ]
    for kind in MIX:
        cells = []
        for phase in shown:
            assert phase.load is not None
            figures = phase.kinds[kind.name]
            rate = figures["answered"] / float(phase.load["elapsed"])
            cells.append(f"{rate:,.1f}, {_ms(figures['p50_ms'])} / {_ms(figures['p99_ms'])}")
        lines.append(f"| {kind.name} | {kind.share} % | " + " | ".join(cells) + " |")
    return lines


def _unusual(phase: Phase) -> str:
    """Per kind, what was not a 2xx (inside batches too), and what was dropped."""
    parts = []
    for name, figures in phase.kinds.items():
        odd = [f"{code} x{n:,}" for code, n in figures["statuses"].items() if code[0] != "2"]
        odd += [
            f"{code} x{n:,} in batches"
            for code, n in figures["batch_codes"].items()
            if code[0] != "2"
        ]
        if figures["dropped"]:
            odd.append(f"{figures['dropped']:,} dropped")
        if odd:
            parts.append(f"{name} " + ", ".join(odd))
    return "; not 2xx: " + "; ".join(parts) if parts else ""


def report(
    args: argparse.Namespace,
    phases: list[Phase],
    timings: dict[str, float],
    problems: list[str],
    found: list[str],
    server_exit: str,
) -> list[str]:
    cpus = nproc()
    measured = [p for p in phases if p.label != "warm-up"]
    lines = [
        "- the MovieLens-100K demo as `make serve` prepares it, in a fresh data directory: "
        f"`reqo dataset load ml-100k --db demo` ({timings['load']:.1f} s), `reqo train --db demo` "
        f"with reqo.yaml's models and scenarios ({timings['train']:.1f} s); `reqo serve` on a "
        "free 127.0.0.1 port with reqo.yaml's settings (unsigned requests)",
        f"- load: bench/soak_load.py in its own process, asyncio, one keep-alive HTTP/1.1 "
        f"connection per client (raw streams), requests back to back; "
        f"{args.warmup:g} s warm-up with {WARMUP_CLIENTS} clients, then "
        + ", ".join(f"{p.clients}" for p in measured)
        + f" clients for {args.seconds:g} s each, request timeout {args.timeout:g} s; "
        "each client draws from a shuffled deck of 100 requests with these shares "
        "(ids: ML-100K's, or new ones that `cascadeCreate` makes):",
        "",
        "| kind | group | share | request |",
        "|---|---|---:|---|",
        *(f"| {k.name} | {k.group} | {k.share} % | {k.what} |" for k in MIX),
        "",
        "- meanwhile: `GET /-/health` every 100 ms from a thread of bench/soak.py (its own "
        "keep-alive connection), and the server's VmRSS every second; latencies are from "
        "sending the request to reading the whole response, responses of any status; "
        "load generator cores = its CPU seconds / wall seconds (of "
        f"the {cpus} CPUs that `nproc` counts: the server and the load share them)",
        "",
        *SUMMARY_HEADER,
        *(summary_row(p, cpus) for p in phases),
        "",
        *kind_table(measured),
        "",
    ]
    for phase in phases:
        if phase.load is None:
            continue
        load = phase.load
        label = (
            f"{phase.label} ({phase.clients} clients)"
            if phase.label == "warm-up"
            else (phase.label)
        )
        lines.append(
            f"- {label}: status codes {_codes(phase.statuses())}; inside batches "
            f"{_codes(phase.batch_codes())}; {load['connect_failures']} failed connects, "
            f"{load['reconnects']} reconnects, {load['server_closes']} connections closed by the "
            f"server; health probes: {len(phase.probes)}, max "
            f"{_ms(_percentile_ms([p.latency for p in phase.probes], 100))} ms, "
            f"{phase.probe_not_ok} not 200, {phase.probe_failures} without a response"
            + _unusual(phase)
        )
    lines.append(f"- server: {server_exit}")
    samples = [s for p in phases if p.load is not None for s in p.load["samples"]]
    samples += [f"health probe: {p.error}" for phase in phases for p in phase.probes if p.error]
    if samples:
        lines.append(
            "- what failed, as the clients saw it (the first 3 of up to 20 noted per phase): "
            + "; ".join(f"`{s[:200]}`" for s in samples[:3])
        )
    if found:
        lines.append(
            f"- server log: {len(found)} distinct tracebacks, ending: "
            + "; ".join(f"`{last_line(t)}`" for t in found[:5])
        )
    verdict = "met" if not problems else "**missed**: " + "; ".join(problems)
    lines.append(
        "- required: 0 5xx other than shedding 503s (batch outcomes included), 0 dropped "
        f"requests or failed connects, no shedding at {SHED_FREE_CLIENTS} clients or fewer: "
        + verdict
    )
    return lines


# -- main -----------------------------------------------------------------------------------------


def _client_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive client counts")
    return counts


def soak(args: argparse.Namespace, directory: Path) -> tuple[list[str], list[str], list[str]]:
    """Prepare, serve, run the phases; the report's lines, the problems and the tracebacks."""
    token, extra = demo_config()
    server = RunningServer(
        directory, free_port(), {DATABASE: token}, allow_unsigned=True, extra=extra
    )
    print(f"preparing the demo in {directory}", flush=True)
    timings = prepare(server)
    phases: list[Phase] = []
    monitor: Monitor | None = None
    try:
        server.start(timeout=120)
        assert server.process is not None
        monitor = Monitor(server.port, server.process.pid)
        monitor.start()
        plan = [("warm-up", "w", WARMUP_CLIENTS, args.warmup)] + [
            (f"{n} clients", f"c{n}", n, args.seconds) for n in args.clients
        ]
        for label, tag, clients, seconds in plan:
            phases.append(run_phase(label, tag, clients, seconds, server, monitor, args, directory))
    finally:
        if monitor is not None:
            monitor.stop()
        alive = server.process is not None and server.process.poll() is None
        started = time.monotonic()
        server.stop()
    assert server.process is not None
    stopped = time.monotonic() - started
    code = server.process.returncode
    problems = [problem for phase in phases for problem in phase.problems()]
    if not alive:
        server_exit = f"exited by itself during the run, with {code}"
        problems.append(f"the server exited during the run ({code})")
    elif code in (0, -signal.SIGTERM):
        # uvicorn re-raises the SIGTERM it caught once it has shut down gracefully.
        server_exit = f"stopped gracefully on SIGTERM in {stopped:.1f} s (exit status {code})"
    else:
        server_exit = f"stopped with SIGTERM: exit code {code} after {stopped:.1f} s"
        problems.append(f"the server's exit code after SIGTERM was {code}")
    found = tracebacks(server.output())
    lines = report(args, phases, timings, problems, found, server_exit)
    return lines, problems, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=_client_counts, default=[16, 32, 64])
    parser.add_argument("--seconds", type=float, default=60.0, help="per client count")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--directory", type=Path, help="keep the data, the server log and the loads here"
    )
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    # SIGTERM stops the run as Ctrl-C does: the load generator is killed, the server stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _main(args, argv, parser)
    except KeyboardInterrupt:
        print("\ninterrupted: the load generator and the server are stopped", file=sys.stderr)
        return 130


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _main(args: argparse.Namespace, argv: list[str] | None, parser: argparse.ArgumentParser) -> int:
    with contextlib.ExitStack() as stack:
        if args.directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reqo-soak-")))
        else:
            directory = args.directory.resolve()
            directory.mkdir(parents=True, exist_ok=True)
            if any(directory.iterdir()):
                parser.error(f"{directory} is not empty")
        lines, problems, found = soak(args, directory)
    print()
    if args.no_write:
        print("\n".join(lines))
    else:
        arguments = sys.argv[1:] if argv is None else list(argv)
        print("\n".join(lines))
        append_section(
            "Mixed-load soak (ML-100K demo)",
            shlex.join(["python", "-m", "bench.soak", *arguments]),
            lines,
        )
    for traceback in found:
        print("\nserver traceback:\n" + traceback, file=sys.stderr)
    if problems:
        print("\nFAILED:\n" + "\n".join(f"- {p}" for p in problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
