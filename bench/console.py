"""How fast the web console's pages load on the MovieLens-100K demo, in Debian's Chromium
driven by Playwright, idle and while clients ask for recommendations (a mixed load).

    .venv/bin/python -m bench.console [--loads N] [--clients C] [--no-report]

Each page's figure is the median (and the slowest) of N loads: from the navigation to the page
marking itself loaded (every request it makes answered and drawn). Beside it, in the same run:
the JSON that the page reads, fetched alone with the admin token (the server's share of the
time), and the recommendation latency that the load's clients saw.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests
import yaml

from bench._report import publish
from server.api.auth import sign

ADMIN = "bench-console-admin-token-0123"
TOKEN = "bench-token"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = {
    "overview": ("overview", "/-/console/api/overview"),
    "scenarios": ("scenarios", "/-/console/api/demo/scenarios?bucket=hour"),
    "preview (two scenarios, user 1)": (
        "preview?user=1&a=homepage&b=discover",
        "/-/console/api/demo/users/1",
    ),
    "data (items, a ReQL filter)": (
        "data?entity=items&filter='release_year' < 1980",
        "/-/console/api/demo/reql?expression='release_year' < 1980&endpoint=list-items",
    ),
    "item (neighbours by 7 models)": ("data/item/50", "/-/console/api/demo/items/50/neighbours"),
    "models": ("models", "/-/console/api/demo/models"),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def demo_server(directory: Path) -> Iterator[str]:
    """The demo database, its models trained, served by `reqo serve` (one server process)."""
    port = _free_port()
    config = {
        "data_dir": "data",
        "admin_token": ADMIN,
        "server": {"host": "127.0.0.1", "port": port},
        "databases": {"demo": {"token": TOKEN}},
        "models": {"ease": {"algorithm": "ease"}},
        "scenarios": {
            "homepage": {"endpoint": "items-to-user", "model": "ease"},
            "discover": {"endpoint": "items-to-user", "model": "popularity"},
            "related": {"endpoint": "items-to-item", "model": "item-knn"},
        },
    }
    path = directory / "reqo.yaml"
    path.write_text(yaml.safe_dump(config))
    reqo = [sys.executable, "-m", "server.cli"]
    load = ["dataset", "load", "ml-100k", "--config", str(path), "--db", "demo", "--no-progress"]
    subprocess.run([*reqo, *load], check=True, capture_output=True)
    subprocess.run([*reqo, "train", "--config", str(path)], check=True, capture_output=True)
    log = (directory / "server.log").open("wb")
    process = subprocess.Popen(
        [*reqo, "serve", "--config", str(path), "--log-level", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/-/ready", timeout=1).ok:
                    break
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


class Load:
    """Clients asking for recommendations back to back (signed, as Recombee's clients do)."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.clients = clients
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _run(self, offset: int) -> None:
        session = requests.Session()
        user = offset
        while not self._stop.is_set():
            user = user % 943 + 1
            path = f"/demo/recomms/users/{user}/items/?count=10&scenario=homepage"
            path += f"&hmac_timestamp={int(time.time())}"
            path += f"&hmac_sign={sign(path, TOKEN)}"
            started = time.perf_counter()
            session.get(self.url + path, timeout=30).raise_for_status()
            self.latencies.append(time.perf_counter() - started)
            user += self.clients

    def __enter__(self) -> Load:
        for index in range(self.clients):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def _timed(measure: Callable[[], None], loads: int) -> list[float]:
    measure()  # warm: the first load fetches the script and the style
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        measure()
        times.append(time.perf_counter() - started)
    return times


def measure_pages(url: str, loads: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per page: the page's load times and its JSON's fetch times."""
    from playwright.sync_api import sync_playwright

    found: dict[str, tuple[list[float], list[float]]] = {}
    bearer = {"Authorization": f"Bearer {ADMIN}"}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/-/console/login")
        page.fill("#token", ADMIN)
        page.click("button[type=submit]")
        page.wait_for_selector("body[data-loaded=overview]")
        for name, (route, json_path) in PAGES.items():
            marker = route.split("?")[0].split("/")[0]

            def load(route: str = route, marker: str = marker) -> None:
                page.goto("about:blank")
                page.goto(f"{url}/-/console/#/{route}")
                page.wait_for_selector(f"body[data-loaded={marker}]", timeout=30_000)

            def fetch(json_path: str = json_path) -> None:
                requests.get(url + json_path, headers=bearer, timeout=30).raise_for_status()

            found[name] = (_timed(load, loads), _timed(fetch, loads))
        browser.close()
    return found


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms (slowest {max(values) * 1000:.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=5, help="loads of each page (5)")
    parser.add_argument("--clients", type=int, default=4, help="clients of the load (4)")
    parser.add_argument("--no-report", action="store_true", help="print, do not append")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary, demo_server(Path(temporary)) as url:
        idle = measure_pages(url, args.loads)
        with Load(url, args.clients) as load:
            busy = measure_pages(url, args.loads)
        latencies = sorted(load.latencies)
    lines = [
        "MovieLens-100K demo (1,682 items, 943 users, 100,000 interactions), one server "
        f"process; median of {args.loads} loads in Debian's Chromium (Playwright), from the "
        "navigation until the page has drawn everything it fetched; beside it, the JSON it reads "
        "fetched alone.",
        "",
        "| page | load, idle | its JSON, idle | load, under load | its JSON, under load |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in PAGES:
        lines.append(
            f"| {name} | {_ms(idle[name][0])} | {_ms(idle[name][1])} | "
            f"{_ms(busy[name][0])} | {_ms(busy[name][1])} |"
        )
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    lines += [
        "",
        f"The load: {args.clients} clients asking for Items to User (signed) back to back, "
        f"{len(latencies):,} requests, p50 {p50:.1f} ms, p99 {p99:.1f} ms.",
    ]
    if args.no_report:
        print("\n".join(lines))
    else:
        publish("Web console: page loads", "bench.console", argv, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
