"""Batch ingestion over HTTP: interactions stored per second, 10,000 per batch.

Two figures: raw signed POSTs of pre-encoded batches over plain HTTP (the server's rate), and the
official Recombee client sending the same batches over HTTPS (what a user's script gets,
including the client's own encoding and TLS).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import trustme
from recombee_api_client.api_requests import (
    AddCartAddition,
    AddDetailView,
    AddPurchase,
    AddRating,
    Batch,
)

from bench._report import publish
from tests.serving import RunningServer, free_port

KINDS = ("detailviews", "purchases", "ratings", "cartadditions")


def synthetic_batches(batches: int, size: int, seed: int) -> list[list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 10_000, batches * size)
    items = rng.integers(0, 5_000, batches * size)
    kinds = rng.integers(0, len(KINDS), batches * size)
    out = []
    for b in range(batches):
        requests = []
        for n in range(b * size, (b + 1) * size):
            params: dict[str, Any] = {
                "userId": f"user-{users[n]}",
                "itemId": f"item-{items[n]}",
                "timestamp": 1_600_000_000 + n,
                "cascadeCreate": True,
            }
            kind = KINDS[kinds[n]]
            if kind == "ratings":
                params["rating"] = 0.5
            requests.append({"method": "POST", "path": f"/{kind}/", "params": params})
        out.append(requests)
    return out


def as_client_request(request: dict[str, Any]) -> Any:
    p = request["params"]
    common = {"timestamp": p["timestamp"], "cascade_create": True}
    kind = request["path"].strip("/")
    if kind == "ratings":
        return AddRating(p["userId"], p["itemId"], p["rating"], **common)
    cls = {"detailviews": AddDetailView, "purchases": AddPurchase, "cartadditions": AddCartAddition}
    return cls[kind](p["userId"], p["itemId"], **common)


def raw_http_rate(directory: Path, batches: list[list[dict[str, Any]]]) -> float:
    server = RunningServer(directory, free_port(), {"bench": "bench-token"})
    server.start()
    try:
        bodies = [json.dumps({"requests": b}).encode() for b in batches]
        server.request("POST", "/batch/", database="bench", data=bodies[0])  # warm-up
        server.request("DELETE", "/", database="bench")
        started = time.perf_counter()
        for body in bodies:
            response = server.request("POST", "/batch/", database="bench", data=body)
            codes = {r["code"] for r in response.json()}
            if codes != {200}:
                raise RuntimeError(f"unexpected codes {codes}")
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
    return sum(len(b) for b in batches) / elapsed


def official_client_rate(directory: Path, batches: list[list[dict[str, Any]]]) -> float:
    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(directory / "server.pem"))
    authority.cert_pem.write_to_path(str(directory / "ca.pem"))
    server = RunningServer(
        directory,
        free_port(),
        {"bench": "bench-token"},
        scheme="https",
        tls={"certfile": "server.pem", "keyfile": "server.pem"},
        ca_file=str(directory / "ca.pem"),
    )
    import os

    os.environ["REQUESTS_CA_BUNDLE"] = str(directory / "ca.pem")
    server.start()
    try:
        client = server.client("bench")
        prepared = [Batch([as_client_request(r) for r in b]) for b in batches]
        started = time.perf_counter()
        for batch in prepared:
            responses = client.send(batch)
            if {r["code"] for r in responses} != {200}:
                raise RuntimeError("unexpected codes")
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
    return sum(len(b) for b in batches) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    batches = synthetic_batches(args.batches, args.batch_size, args.seed)
    total = args.batches * args.batch_size
    with tempfile.TemporaryDirectory() as raw_dir, tempfile.TemporaryDirectory() as tls_dir:
        raw = raw_http_rate(Path(raw_dir), batches)
        client = official_client_rate(Path(tls_dir), batches)
    lines = [
        f"- {total:,} interactions (4 kinds, cascade-created users and items) in batches of "
        f"{args.batch_size:,}, one client, sequential batches",
        f"- raw signed POST /batch/ over HTTP: **{raw:,.0f} interactions/s** (target >= 20,000)",
        f"- official `recombee-api-client` Batch over HTTPS: **{client:,.0f} interactions/s**",
    ]
    publish("Batch ingestion over HTTP", "bench.ingest_http", argv, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
