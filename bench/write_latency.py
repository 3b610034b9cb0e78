"""Latency of single Add Detail View requests over HTTP under 16 concurrent clients.

Each client is a thread with its own keep-alive connection sending signed requests one after
another; latencies are measured by the clients, so they include HTTP, JSON and the commit. The
clients run on the same two cores as the server.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bench._report import publish
from server.api.auth import sign
from tests.serving import RunningServer, free_port


def run_client(
    server: RunningServer, client: int, count: int, out: list[float], errors: list[int]
) -> None:
    """One client: a keep-alive connection sending requests back to back.

    The requests are written as raw HTTP/1.1 on a socket, because a Python HTTP library costs
    about a millisecond of CPU per request, which on two cores would measure the client.
    """
    token = server.tokens["bench"]
    with socket.create_connection(("127.0.0.1", server.port)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = conn.makefile("rb")
        for n in range(count):
            path = f"/bench/detailviews/?hmac_timestamp={int(time.time())}"
            path += f"&hmac_sign={sign(path, token)}"
            body = json.dumps(
                {
                    "userId": f"user-{client}",
                    "itemId": f"item-{n % 500}",
                    "timestamp": 1_600_000_000 + n,
                    "cascadeCreate": True,
                }
            ).encode()
            request = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            started = time.perf_counter()
            conn.sendall(request)
            status = _read_response(reader)
            out.append(time.perf_counter() - started)
            if status != 200:
                errors.append(status)


def _read_response(reader: BinaryIO) -> int:
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    reader.read(length)
    return status


def measure(directory: Path, clients: int, per_client: int) -> tuple[np.ndarray, float, int]:
    server = RunningServer(directory, free_port(), {"bench": "bench-token"})
    server.start()
    try:
        latencies: list[list[float]] = [[] for _ in range(clients)]
        errors: list[int] = []
        threads = [
            threading.Thread(target=run_client, args=(server, c, per_client, latencies[c], errors))
            for c in range(clients)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
    return np.array([x for xs in latencies for x in xs]), elapsed, len(errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=500)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        samples, elapsed, errors = measure(Path(directory), args.clients, args.per_client)
    if errors:
        print(f"{errors} requests failed", file=sys.stderr)
        return 1
    p50, p90, p99 = (float(np.percentile(samples, q)) * 1000 for q in (50, 90, 99))
    lines = [
        f"- {args.clients} concurrent clients x {args.per_client} single detail views each "
        f"({samples.size:,} requests, keep-alive, signed)",
        f"- p50 **{p50:.2f} ms**, p90 {p90:.2f} ms, p99 **{p99:.2f} ms**; "
        f"throughput {samples.size / elapsed:,.0f} requests/s",
    ]
    publish("Single Add Detail View latency over HTTP", "bench.write_latency", argv, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
