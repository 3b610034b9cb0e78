"""Fuzzing at scale: the generators of tests/server/test_fuzz.py on 100,000 inputs.

    .venv/bin/python -m bench.fuzz [--count N] [--clients N] [--seed N] [--chunk N]
                                   [--directory DIR] [--show N] [--no-write]

A reqo server is started (unsigned, on a free 127.0.0.1 port, its data in a temporary directory)
with the small catalog of tests/fuzzing/catalog.py. The hostile inputs named in
tests/fuzzing/hostile.py go first, then `--count` inputs drawn by Hypothesis from a separate
process: a third raw bytes, a third hostile JSON in every field of writes, recommendations and
batches, a third ReQL filters and boosters, in chunks of `--chunk` inputs, each family's share of a
chunk under its own seed derived from `--seed`, so a run draws the same inputs again. `--clients`
threads send each chunk, each over its own keep-alive connection; the catalog is rebuilt between
chunks (no request is in flight then), so that ids keep hitting data. Exit status 1 when any input
got a 5xx (load shedding apart), a dropped connection or no answer.

Reported: answers by status code and by input family, every 5xx grouped by family and error
with its first reproducers (curl lines), the server log's exceptions grouped by where they were
raised, dropped connections (the server closed a keep-alive connection after answering),
requests that failed or timed out, answers slower than 10 s, and the wall time. A run of at
least 100,000 inputs appends its figures to BENCHMARKS.md unless `--no-write`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._report import publish
from tests import fuzzing
from tests.fuzzing import Checker, FuzzRequest, Problem, ServerError

FULL_RUN = 100_000
"""Runs of at least this many inputs are worth a section in BENCHMARKS.md."""


def draw_chunk(strategy: Any, seed: int, size: int) -> list[FuzzRequest]:
    """`size` inputs drawn by Hypothesis from `strategy` under `seed`."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as use_seed

    drawn: list[FuzzRequest] = []

    @use_seed(seed)
    @settings(
        max_examples=size,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(request: FuzzRequest) -> None:
        drawn.append(request)

    draw()
    # Hypothesis may stop short on a small space, or run a few more: keep the chunk's size.
    while drawn and len(drawn) < size:
        drawn += drawn[: size - len(drawn)]
    return drawn[:size]


def produce(seed: int, chunk: int, count: int, out: Any) -> None:
    """Draw `count` inputs, `chunk` at a time, a third from each family (raw bytes, JSON,
    ReQL), each family's share under its own seed, shuffled; put each chunk (a list) on `out`,
    then None. Runs in its own process: drawing costs a few ms per input."""
    families = list(fuzzing.FAMILIES.values())
    left, number = count, 0
    while left > 0:
        size = min(chunk, left)
        drawn: list[FuzzRequest] = []
        for index, family in enumerate(families):
            share = size // len(families) + (1 if index < size % len(families) else 0)
            if share:
                family_seed = (seed * 1_000_003 + number) * len(families) + index
                drawn += draw_chunk(family(), family_seed, share)
        random.Random(seed * 1_000_003 + number).shuffle(drawn)
        out.put(drawn)
        left -= size
        number += 1
    out.put(None)


@dataclass
class Tally:
    """What the clients saw, merged under a lock."""

    statuses: Counter[int] = field(default_factory=Counter)
    by_family: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    problems: list[Problem] = field(default_factory=list)
    slow: list[Problem] = field(default_factory=list)
    sent: int = 0
    shed: int = 0
    """503 with Retry-After: load shedding, which many clients may meet; not a failure."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: FuzzRequest, status: int | None) -> None:
        label = str(status) if status is not None else "no answer"
        with self.lock:
            self.sent += 1
            if status is not None:
                self.statuses[status] += 1
            self.by_family[request.family][label] += 1


def client(work: queue.Queue[FuzzRequest | None], base_url: str, tally: Tally) -> None:
    checker = Checker(base_url, allow_shedding=True)
    try:
        while True:
            request = work.get()
            try:
                if request is None:
                    return
                response = checker.send(request)
                tally.add(request, response.status_code if response is not None else None)
            finally:
                work.task_done()
    finally:
        checker.probe()
        with tally.lock:
            tally.problems += checker.problems
            tally.slow += checker.slow
            tally.shed += checker.shed
        checker.session.close()


def chunks(args: argparse.Namespace) -> Iterator[list[FuzzRequest]]:
    """The named hostile inputs, then the drawn chunks as the producer process delivers them."""
    yield list(fuzzing.KNOWN_HOSTILE)
    context = multiprocessing.get_context("spawn")
    out = context.Queue(maxsize=4)
    producer = context.Process(
        target=produce, args=(args.seed, args.chunk, args.count, out), daemon=True
    )
    producer.start()
    try:
        while (drawn := out.get()) is not None:
            yield drawn
    finally:
        producer.join(timeout=10)
        if producer.is_alive():
            producer.terminate()


def run(args: argparse.Namespace, directory: Path) -> tuple[Tally, float, list[ServerError]]:
    server = fuzzing.start_server(directory)
    tally = Tally()
    work: queue.Queue[FuzzRequest | None] = queue.Queue(maxsize=args.clients * 4)
    threads = [
        threading.Thread(target=client, args=(work, server.url, tally), daemon=True)
        for _ in range(args.clients)
    ]
    started = time.monotonic()
    try:
        fuzzing.seed_catalog(server.url)
        for thread in threads:
            thread.start()
        for number, chunk in enumerate(chunks(args)):
            for request in chunk:
                work.put(request)
            work.join()  # nothing in flight: the catalog can be rebuilt
            fuzzing.seed_catalog(server.url)
            done = tally.sent
            rate = done / (time.monotonic() - started)
            errors = sum(n for status, n in tally.statuses.items() if status >= 500)
            print(
                f"chunk {number}: {done:,} inputs, {rate:,.0f}/s, {errors:,} 5xx so far",
                flush=True,
            )
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.join(timeout=120)
        wall = time.monotonic() - started
    finally:
        server.stop()
    return tally, wall, fuzzing.server_errors(server.output())


def summarise(
    args: argparse.Namespace, tally: Tally, wall: float, exceptions: list[ServerError]
) -> list[str]:
    problems = tally.problems
    by_kind = Counter(p.kind for p in problems)
    lines = [
        f"- inputs: {tally.sent:,} ({len(fuzzing.KNOWN_HOSTILE)} named hostile ones, then "
        f"{args.count:,} drawn by Hypothesis, a third from each family, in chunks of "
        f"{args.chunk:,} with seeds derived from {args.seed}), {args.clients} concurrent "
        "keep-alive clients, catalog rebuilt between chunks",
        f"- wall time: {wall:,.0f} s ({tally.sent / wall:,.0f} inputs/s)",
        f"- reqo: {git_revision()}",
        "- answers by status: "
        + ", ".join(f"{code}: {n:,}" for code, n in sorted(tally.statuses.items())),
        f"- **5xx: {by_kind['5xx']:,}**, of which the server then dropped the connection: "
        f"{sum(1 for p in problems if p.kind == '5xx' and p.dropped):,}; "
        f"other dropped connections: {by_kind['dropped-connection']:,}; "
        f"4xx bodies not Recombee's error JSON: {by_kind['bad-4xx-body']:,}; "
        f"2xx bodies not JSON: {by_kind['bad-2xx-body']:,}; "
        f"no answer (connection error or timeout): {by_kind['error']:,}; "
        f"answers slower than 10 s: {len(tally.slow):,}; "
        f"shed (503 with Retry-After, not counted as 5xx): {tally.shed:,}",
        "",
        "| family | inputs | 2xx | 4xx | 5xx | no answer |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for family, counts in sorted(tally.by_family.items()):
        classes: Counter[str] = Counter()
        for label, n in counts.items():
            classes[label[0] + "xx" if label[0].isdigit() else "none"] += n
        lines.append(
            f"| {family} | {sum(counts.values()):,} | {classes['2xx']:,} | {classes['4xx']:,} "
            f"| {classes['5xx']:,} | {classes['none']:,} |"
        )
    groups: dict[tuple[str, str], list[Problem]] = defaultdict(list)
    for problem in problems:
        detail = problem.detail.split(" (and the connection", 1)[0]
        if problem.kind == "5xx":
            detail = f"{problem.request.family}: {detail}"
        groups[(problem.kind, detail[:100])].append(problem)
    if groups:
        lines += ["", "Problems, grouped (first reproducers of each):", ""]
        for (kind, key), members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"- {kind} x {len(members):,}: `{key}`")
            for member in members[: args.show]:
                lines.append(f"  - `{member.request.reproducer(limit=160)}`")
    if exceptions:
        lines += ["", "Server exceptions (its log), grouped by kind and place:", ""]
        kinds: dict[tuple[str, str], list[ServerError]] = defaultdict(list)
        for error in exceptions:
            kinds[(exception_kind(error.exception), error.where)].append(error)
        for (kind, where), errors in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
            paths = sorted({e.request for e in errors})
            shown = ", ".join(paths[:4]) + (", …" if len(paths) > 4 else "")
            lines.append(f"- {len(errors):,} x `{kind}` at `{where}` ({shown})")
    if tally.slow:
        lines += ["", "Slow answers (first ones):", ""]
        lines += [f"- `{p.describe()}`" for p in tally.slow[: args.show]]
    return lines


def exception_kind(text: str) -> str:
    """An exception line without what varies between occurrences (characters, positions)."""
    text = re.sub(r"'[^']*'", "'…'", text)
    return re.sub(r"\d+", "N", text)[:160]


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown revision"
    return f"commit {head}" + (" with local changes" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=FULL_RUN, help="inputs drawn")
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first chunk")
    parser.add_argument("--chunk", type=int, default=2000, help="inputs per seed and rebuild")
    parser.add_argument("--show", type=int, default=5, help="reproducers per group")
    parser.add_argument("--directory", type=Path, help="keep the server's data and log here")
    parser.add_argument("--no-write", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.directory is not None:
        args.directory.mkdir(parents=True, exist_ok=True)
        tally, wall, exceptions = run(args, args.directory)
    else:
        with tempfile.TemporaryDirectory(prefix="reqo-fuzz-") as temporary:
            tally, wall, exceptions = run(args, Path(temporary))
    lines = summarise(args, tally, wall, exceptions)
    if args.count >= FULL_RUN and not args.no_write:
        publish("Fuzzing: no input gives a 5xx", "bench.fuzz", argv, lines)
    else:
        print("\n".join(lines))
        print(f"\n(not written to BENCHMARKS.md: fewer than {FULL_RUN:,} inputs, or --no-write)")
    failed = any(p.kind in ("5xx", "dropped-connection", "error") for p in tally.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
