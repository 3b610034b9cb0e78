"""Metrics and logs over a real group of two servers (with a writer and a trainer): one scrape
covers every process of the machine, parsed with prometheus-client's own parser; the JSON log
lines carry request ids, the events an operator needs, and never a signature or a token."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from recombee_api_client.api_requests import AddDetailView, RecommendItemsToUser

from server.config import ConfigError, load_config
from server.distributed.metrics import merge
from server.telemetry.logs import JsonFormatter, TextFormatter, use_json
from tests.serving import RunningServer, free_port

ADMIN = "admin-token-of-the-telemetry-test"
TOKENS = {"shop": "shop-token-never-logged", "metrics": "metrics-db-token-never-logged"}
Samples = dict[str, list[tuple[dict[str, str], float]]]


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(
        tmp_path_factory.mktemp("telemetry"),
        free_port(),
        TOKENS,
        admin_token=ADMIN,
        workers=2,
        log_level="info",
        extra={
            "models": {"popularity": {"algorithm": "popularity"}},
            "scenarios": {"home": {"endpoint": "items-to-user", "model": "popularity"}},
        },
    )
    running.start()
    yield running
    running.stop()


def scrape(server: RunningServer, path: str = "/metrics", **headers: str) -> Samples:
    reply = requests.get(
        server.url + path, headers={"Authorization": f"Bearer {ADMIN}", **headers}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    found: Samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    return sum(v for got, v in samples.get(name, []) if labels.items() <= got.items())


def log_lines(server: RunningServer) -> list[dict[str, Any]]:
    lines = []
    for line in server.output().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def reload_everywhere(group: RunningServer, status: int = 200) -> None:
    """POST /-/reload, then wait until every server process has logged its reload (the
    supervisor passes it on to the others)."""
    lines = log_lines(group)
    before = len(lines)
    # Servers still starting read the file afresh (a reload asked for before they could
    # remember it is not theirs to log): wait for those that had started.
    started = {e["pid"] for e in lines if e.get("event") == "startup"}
    assert group.admin("POST", "reload").status_code == status
    # A refused reload stays with the server that refused it.
    running = {int(pid) for pid in group.role_pids("server")} & started
    servers = running if status == 200 else set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done = {
            e["pid"]
            for e in log_lines(group)[before:]
            if e.get("event") in ("reload", "reload_refused")
        }
        if servers <= done and done:
            return
        time.sleep(0.05)
    raise AssertionError(f"not every server reloaded: {servers - done}")


def exercise(group: RunningServer) -> None:
    """Writes, a batch and recommendations of a scenario (with a filter), then a training."""
    client = group.client("shop")
    for user in range(3):
        for item in range(user, 6):
            client.send(AddDetailView(f"u{user}", f"i{item}", cascade_create=True))
    views = [{"userId": u, "itemId": i} for u, i in (("u0", "i5"), ("u1", "i0"))]
    body = {"requests": [{"method": "POST", "path": "/detailviews/", "params": v} for v in views]}
    # Raw: Recombee's client sends a batch over HTTPS only.
    batch = group.request("POST", "/batch/", database="shop", json=body)
    assert batch.status_code == 200
    assert [r["code"] for r in batch.json()] == [200, 200]
    trained = group.request("POST", "/-/train?model=popularity", database="shop")
    assert trained.status_code == 200, trained.text
    for _ in range(3):
        client.send(RecommendItemsToUser("u0", 3, scenario="home", filter="'itemId' != \"i1\""))


def test_one_scrape_covers_every_process_of_the_group(group: RunningServer) -> None:
    exercise(group)
    time.sleep(1.2)  # the other server's gauges are sampled every second
    samples = scrape(group)
    endpoint = "/{databaseId}/recomms/users/{userId}/items/"
    labels = {"db": "shop", "endpoint": endpoint, "scenario": "home", "status": "200"}
    assert value(samples, "reqo_requests_total", **labels) == 3
    assert value(samples, "reqo_request_duration_seconds_count", **labels) == 3
    assert value(samples, "reqo_request_duration_seconds_bucket", le="+Inf", **labels) == 3
    # Writes are counted where they are applied: in the writer's process.
    assert value(samples, "reqo_writes_total", db="shop", kind="add detail views") == 17
    assert value(samples, "reqo_batch_requests_count", db="shop") == 1
    assert value(samples, "reqo_batch_requests_sum", db="shop") == 2
    # The trainer's process, and the version that the servers serve.
    assert value(samples, "reqo_trainings_total", db="shop", model="popularity", outcome="ok") == 1
    trained_at = value(samples, "reqo_model_last_training_timestamp_seconds", model="popularity")
    assert abs(trained_at - time.time()) < 120
    assert value(samples, "reqo_model_last_training_duration_seconds", model="popularity") > 0
    assert value(samples, "reqo_model_version_timestamp_seconds", model="popularity") > 0
    assert value(samples, "reqo_reql_cache_lookups_total", db="shop") >= 3
    assert "reqo_feed_lag_seconds" in samples
    assert "reqo_feed_entries_behind" in samples
    # Every process's memory, each with its pid; every role up.
    roles = sorted(labels["role"] for labels, _ in samples["reqo_process_resident_memory_bytes"])
    assert roles == ["server", "server", "trainer", "writer"]
    for role in ("writer", "server-1", "server-2", "trainer"):
        assert value(samples, "reqo_role_up", role=role) == 1
    # /-/metrics is the same exposition.
    assert "reqo_writes_total" in scrape(group, "/-/metrics")


def test_metrics_need_the_admin_token_unless_public(group: RunningServer) -> None:
    for path in ("/metrics", "/-/metrics"):
        assert requests.get(group.url + path, timeout=30).status_code == 401
        wrong = {"Authorization": "Bearer not-the-admin-token-at-all"}
        assert requests.get(group.url + path, headers=wrong, timeout=30).status_code == 401
    config = yaml.safe_load(group.config_path.read_text())
    try:
        config["server"]["metrics"] = {"public": True}
        group.config_path.write_text(yaml.safe_dump(config))
        reload_everywhere(group)
        assert requests.get(group.url + "/metrics", timeout=30).status_code == 200
        config["server"]["metrics"] = {"enabled": False}
        group.config_path.write_text(yaml.safe_dump(config))
        reload_everywhere(group)
        off = requests.get(group.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
        assert off.status_code == 404
        assert "server.metrics.enabled" in off.json()["error"]
    finally:
        config["server"].pop("metrics")
        group.config_path.write_text(yaml.safe_dump(config))
        reload_everywhere(group)


def test_a_database_named_metrics_does_not_shadow_the_scrape(group: RunningServer) -> None:
    assert "reqo_requests_total" in scrape(group)
    listed = group.request("GET", "/items/list/", database="metrics")
    assert listed.status_code == 200
    assert listed.json() == []


def test_a_dead_process_leaves_the_live_gauges_and_its_restart_is_counted(
    group: RunningServer,
) -> None:
    victim = group.role_pids("server")[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            samples = scrape(group)
        except requests.RequestException:
            continue
        pids = {labels["pid"] for labels, _ in samples["reqo_process_resident_memory_bytes"]}
        if value(samples, "reqo_role_restarts_total") >= 1 and str(victim) not in pids:
            break
        time.sleep(0.2)
    assert value(samples, "reqo_role_restarts_total") == 1
    assert str(victim) not in pids
    # The next tests find both servers started.
    eventually_started = time.monotonic() + 60
    while time.monotonic() < eventually_started:
        started = {e["pid"] for e in log_lines(group) if e.get("event") == "startup"}
        if set(map(int, group.role_pids("server"))) <= started:
            break
        time.sleep(0.1)
    # Counters keep what the dead process counted.
    assert value(samples, "reqo_writes_total", db="shop", kind="add detail views") >= 17


def test_request_ids_travel_to_the_response_and_the_log(group: RunningServer) -> None:
    path = "/recomms/users/u0/items/?count=2&scenario=home"
    mine = group.request("GET", path, database="shop", headers={"X-Request-ID": "trace-42.a:b"})
    assert mine.status_code == 200
    assert mine.headers["x-request-id"] == "trace-42.a:b"
    made = group.request("GET", "/items/list/", database="shop")
    assert len(made.headers["x-request-id"]) == 16
    # A hostile id (a newline, spaces, too long) is replaced, never echoed or logged.
    for hostile in ("a b", "x" * 129, "evil\u00e9"):
        reply = group.request(
            "GET", "/items/list/", database="shop", headers={"X-Request-ID": hostile}
        )
        assert reply.headers["x-request-id"] != hostile
    time.sleep(0.3)
    lines = log_lines(group)
    line = next(entry for entry in lines if entry.get("request_id") == "trace-42.a:b")
    assert line["event"] == "request"
    assert line["level"] == "info"
    assert line["db"] == "shop"
    assert line["scenario"] == "home"
    assert line["status"] == 200
    assert line["endpoint"] == "/{databaseId}/recomms/users/{userId}/items/"
    assert line["path"] == "/shop/recomms/users/u0/items/"
    assert line["latency_ms"] > 0
    assert line["time"].endswith("Z")
    assert line["role"] == "server"


def test_the_log_never_holds_a_signature_or_a_token(group: RunningServer) -> None:
    group.request("GET", "/items/list/?count=1", database="shop")
    time.sleep(0.3)
    text = group.output()
    assert "hmac_sign" not in text
    assert "hmac_timestamp" not in text
    for secret in (ADMIN, *TOKENS.values()):
        assert secret not in text


def test_operational_events_are_logged(group: RunningServer) -> None:
    exercise(group)
    config = yaml.safe_load(group.config_path.read_text())
    home = {"endpoint": "items-to-user", "filter": "'itemId' =="}  # a syntax error
    broken = {**config, "scenarios": {"home": home}}
    group.config_path.write_text(yaml.safe_dump(broken))
    reload_everywhere(group, 400)
    group.config_path.write_text(yaml.safe_dump(config))
    reload_everywhere(group)
    time.sleep(0.5)
    lines = log_lines(group)
    events: dict[str, list[dict[str, Any]]] = {}
    for entry in lines:
        events.setdefault(str(entry.get("event")), []).append(entry)
    startup = events["startup"]
    assert {entry["pid"] for entry in startup} >= set(map(int, group.role_pids("server")))
    assert set(startup[0]["databases"]) == {"shop", "metrics"}
    assert startup[0]["scenarios"]["home"]["model"] == "popularity"
    assert "popularity" in startup[0]["databases"]["shop"]["models"]
    start = events["training_start"][-1]
    end = events["training_end"][-1]
    assert (start["role"], end["role"]) == ("trainer", "trainer")
    assert end["model"] == "popularity"
    assert end["seconds"] >= 0
    assert end["version"]
    swaps = [e for e in events["model_swap"] if e["model"] == "popularity"]
    assert swaps
    assert swaps[-1]["version"] == end["version"]
    reason = events["reload_refused"][-1]["reason"]
    assert "scenarios.home.filter" in reason
    assert "^" in reason
    assert events["reload"][-1]["level"] == "info"


def test_slow_requests_are_warnings_and_the_access_log_can_be_off(group: RunningServer) -> None:
    config = yaml.safe_load(group.config_path.read_text())
    try:
        config["server"]["logs"] = {"access": False, "slow_request": 0.000001}
        group.config_path.write_text(yaml.safe_dump(config))
        reload_everywhere(group)
        reply = group.request("GET", "/items/list/", database="shop")
        config["server"]["logs"] = {"access": False, "slow_request": "1h"}
        group.config_path.write_text(yaml.safe_dump(config))
        reload_everywhere(group)
        quiet = group.request("GET", "/items/list/", database="shop")
    finally:
        config["server"].pop("logs")
        group.config_path.write_text(yaml.safe_dump(config))
        reload_everywhere(group)
    time.sleep(0.3)
    lines = log_lines(group)
    slow = [e for e in lines if e.get("request_id") == reply.headers["x-request-id"]]
    assert [(e["event"], e["level"]) for e in slow] == [("slow_request", "warning")]
    assert not [e for e in lines if e.get("request_id") == quiet.headers["x-request-id"]]


def test_formats_and_their_configuration(tmp_path: Path) -> None:
    import logging

    record = logging.LogRecord("reqo", logging.INFO, __file__, 1, "GET %s", ("/a\nb",), None)
    record.__dict__.update({"event": "request", "db": "shop", "status": 200})
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "GET /a\nb"
    assert entry["db"] == "shop"
    assert entry["status"] == 200
    assert entry["level"] == "info"
    assert entry["time"].endswith("Z")
    text = TextFormatter().format(record)  # status is in the request's message already
    assert "\n" not in text
    assert "GET /a\\nb" in text
    assert text.endswith("  db=shop")
    assert use_json("json")
    assert not use_json("text")

    def config_with(server: dict[str, Any]) -> None:
        path = tmp_path / "reqo.yaml"
        path.write_text(yaml.safe_dump({"databases": {"shop": {"token": "t"}}, "server": server}))
        load_config(path)

    for server, key in (
        ({"logs": {"format": "xml"}}, "server.logs.format"),
        ({"logs": {"slow_request": "soon"}}, "server.logs.slow_request"),
        ({"logs": {"acess": True}}, "server.logs.acess"),
        ({"metrics": {"public": "yes"}}, "server.metrics.public"),
        ({"metrics": []}, "server.metrics"),
    ):
        with pytest.raises(ConfigError) as caught:
            config_with(server)
        assert caught.value.key == key


def test_a_cluster_scrape_merges_its_sources_with_their_labels() -> None:
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    texts = []
    for count in (1, 2):
        registry = CollectorRegistry()
        counter = Counter("reqo_writes", "Writes", ("db",), registry=registry)
        counter.labels("shop").inc(count)
        Histogram("reqo_latency", "Latency", registry=registry).observe(0.01 * count)
        texts.append(generate_latest(registry).decode())
    merged = merge(
        [
            ({"ray_actor": "replica-a", "node": "10.0.0.1"}, texts[0]),
            ({"ray_actor": "replica-b", "node": "10.0.0.2"}, texts[1]),
        ]
    )
    found: Samples = {}
    for family in text_string_to_metric_families(merged):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    assert value(found, "reqo_writes_total", ray_actor="replica-a", db="shop") == 1
    assert value(found, "reqo_writes_total", ray_actor="replica-b", node="10.0.0.2") == 2
    assert value(found, "reqo_latency_count") == 2
    assert merged.count("# TYPE reqo_writes_total counter") == 1
