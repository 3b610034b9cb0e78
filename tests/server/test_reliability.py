"""No acknowledged write is lost: not under concurrent clients, not when the process is killed."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from recombee_api_client.api_requests import AddDetailView, ListItemDetailViews, ListUsers

from tests.serving import RunningServer, free_port


def test_twenty_concurrent_clients_store_exactly_five_thousand(live: RunningServer) -> None:
    clients, per_client = 20, 250

    def write_all(client_index: int) -> int:
        client = live.client()
        for n in range(per_client):
            client.send(
                AddDetailView(
                    f"user-{client_index}",
                    f"item-{n % 50}",
                    timestamp=1_600_000_000 + n,
                    cascade_create=True,
                )
            )
        return per_client

    with ThreadPoolExecutor(clients) as pool:
        acknowledged = sum(pool.map(write_all, range(clients)))
    assert acknowledged == clients * per_client

    client = live.client()
    assert len(client.send(ListUsers())) == clients
    stored = sum(len(client.send(ListItemDetailViews(f"item-{k}"))) for k in range(50))
    assert stored == clients * per_client


def test_sigkill_loses_no_acknowledged_write(tmp_path: Path) -> None:
    server = RunningServer(tmp_path, free_port(), {"test": "kill-token"})
    server.start()
    acknowledged: list[tuple[str, int]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def stream(writer: int) -> None:
        n = 0
        while not stop.is_set():
            item = f"item-{writer}"
            timestamp = 1_700_000_000 + n
            try:
                response = server.request(
                    "POST",
                    "/detailviews/",
                    json={
                        "userId": "u",
                        "itemId": item,
                        "timestamp": timestamp,
                        "cascadeCreate": True,
                    },
                )
            except requests.RequestException:
                return  # the server is gone; this write was never acknowledged
            if response.status_code == 200:
                with lock:
                    acknowledged.append((item, timestamp))
            n += 1

    writers = [threading.Thread(target=stream, args=(w,)) for w in range(4)]
    for thread in writers:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 400 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # mid-stream: the writers are still sending
    stop.set()
    for thread in writers:
        thread.join()
    assert len(acknowledged) >= 400

    server.start()
    try:
        client = server.client()
        stored = {
            (view["itemId"], int(view["timestamp"]))
            for writer in range(4)
            for view in client.send(ListItemDetailViews(f"item-{writer}"))
        }
    finally:
        server.stop()
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged writes were lost"
