"""The console's parts without a browser: its sessions, its traffic history's arithmetic, and
the records and maps its models page reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from server.config import Config, ConfigError, parse_config
from server.console.api import evaluations, maps
from server.console.history import Reading, TrafficHistory, difference, quantile
from server.console.session import (
    COOKIE,
    SESSION_SECONDS,
    console_admin,
    cookie_of,
    new_session,
    session_opens,
    set_cookie_header,
    valid_session,
)

TOKEN = "admin-token-0123456789"


def _scope(
    cookie: str | None = None, header: bool = False, bearer: str | None = None
) -> dict[str, object]:
    headers = []
    if cookie is not None:
        headers.append((b"cookie", f"other=1; {COOKIE}={cookie}".encode()))
    if header:
        headers.append((b"x-reqo-console", b"1"))
    if bearer is not None:
        headers.append((b"authorization", f"Bearer {bearer}".encode()))
    return {"headers": headers}


def test_a_session_is_valid_only_for_its_token_and_until_it_expires() -> None:
    session = new_session(TOKEN, now=1_000_000)
    assert valid_session(session, TOKEN, now=1_000_000 + SESSION_SECONDS - 1)
    assert not valid_session(session, TOKEN, now=1_000_000 + SESSION_SECONDS)
    assert not valid_session(session, "another-admin-token-000", now=1_000_000)
    expiry, nonce, signature = session.split(".")
    # A later expiry (or any other edit) breaks the signature.
    assert not valid_session(f"{int(expiry) + 3600}.{nonce}.{signature}", TOKEN, now=1_000_000)
    flipped = signature[:-1] + ("1" if signature[-1] == "0" else "0")
    assert not valid_session(f"{expiry}.{nonce}.{flipped}", TOKEN, now=1_000_000)
    for broken in ("", "abc", "1.2", "x.y.z", f"{expiry}.{nonce}"):
        assert not valid_session(broken, TOKEN, now=1_000_000)
    assert new_session(TOKEN) != new_session(TOKEN)  # each login its own nonce


def test_a_session_opens_requests_only_with_the_console_header() -> None:
    session = new_session(TOKEN)
    assert cookie_of(_scope(session)) == session
    assert session_opens(_scope(session, header=True), TOKEN)
    # A cross-site form sends the cookie (were it not SameSite) but never the header.
    assert not session_opens(_scope(session), TOKEN)
    assert not session_opens(_scope(session, header=True), None)
    assert console_admin(_scope(session, header=True), TOKEN, allow_unsigned=False)
    assert not console_admin(_scope(session), TOKEN, allow_unsigned=False)
    assert console_admin(_scope(bearer=TOKEN), TOKEN, allow_unsigned=False)
    assert not console_admin(_scope(bearer="wrong"), TOKEN, allow_unsigned=False)
    # Without an admin token only a development server opens the admin surface.
    assert console_admin(_scope(), None, allow_unsigned=True)
    assert not console_admin(_scope(), None, allow_unsigned=False)


def test_the_cookie_is_http_only_same_site_and_secure_over_tls() -> None:
    plain = set_cookie_header("v", secure=False)
    assert "HttpOnly" in plain
    assert "SameSite=Strict" in plain
    assert "Secure" not in plain
    assert "; Secure" in set_cookie_header("v", secure=True)
    assert "Max-Age=0" in set_cookie_header("", secure=False, max_age=0)


def test_quantiles_of_a_histogram_match_the_samples_they_bin() -> None:
    rng = np.random.default_rng(0)
    samples = rng.uniform(0.0, 0.1, size=20_000)
    bounds = [0.01 * i for i in range(1, 11)] + [float("inf")]
    buckets = {b: float(np.sum(samples <= b)) for b in bounds}
    for q in (0.5, 0.95, 0.99):
        assert quantile(buckets, q) == pytest.approx(np.quantile(samples, q), abs=0.002)
    assert quantile({0.1: 0.0, float("inf"): 0.0}, 0.5) is None
    # Beyond the last finite bound, that bound is the answer.
    assert quantile({0.1: 0.0, float("inf"): 10.0}, 0.5) == pytest.approx(0.1)


def test_a_point_is_the_difference_of_two_readings_and_survives_a_restart() -> None:
    before = Reading(100, 2, 5, {0.01: 50, 0.1: 90, float("inf"): 100})
    now = Reading(160, 2, 11, {0.01: 80, 0.1: 150, float("inf"): 160})
    point = difference(now, before, at=20.0, seconds=10.0)
    shown = point.to_json()
    assert (shown["requests"], shown["rate"]) == (60, 6.0)
    assert shown["serverErrorRate"] == 0.0
    assert shown["clientErrorRate"] == pytest.approx(6 / 60)
    # 30 of the 60 took at most 10 ms, the other 30 up to 100 ms: interpolated inside the bucket.
    assert shown["p50"] == pytest.approx(10.0)
    assert shown["p95"] == pytest.approx(10.0 + 90.0 * (57 - 30) / 30)
    # A counter that went down (a restarted server) counts from zero.
    restarted = Reading(7, 1, 0, {0.01: 7, float("inf"): 7})
    assert difference(restarted, now, at=30.0, seconds=10.0).requests == 7


def test_the_history_keeps_an_hour_of_points_per_database() -> None:
    history = TrafficHistory(["a", "b"], interval=600.0)
    for step in range(10):
        history.take({"a": Reading(requests=10.0 * step)}, at=600.0 * step)
    shown = history.to_json("a")
    assert shown["interval"] == 600.0
    assert len(shown["points"]) == 6  # an hour of 10-minute points, the oldest dropped
    assert [p["requests"] for p in shown["points"]] == [10] * 6
    assert all(p["requests"] == 0 for p in history.to_json("b")["points"])


def test_evaluation_records_and_maps_are_listed_newest_first(tmp_path: Path) -> None:
    records = tmp_path / "evaluation"
    records.mkdir()
    for index, protocol in enumerate(("random", "loo")):
        body = {
            "database": "demo",
            "created": f"2026-12-0{index + 1}T00:00:00+00:00",
            "protocol": {"name": protocol},
            "seeds": [1],
            "summary": {"ease": {"ndcg@10": {"mean": 0.3, "std": 0.0}}},
        }
        path = records / f"demo-{protocol}.json"
        path.write_text(json.dumps(body))
        stamp = 1_000_000 + index

        os.utime(path, (stamp, stamp))
    (records / "demo-broken.json").write_text("{")
    (records / "other-random.json").write_text(json.dumps({"database": "other"}))
    listed = evaluations(records, "demo")
    assert [r["protocol"] for r in listed] == ["loo", "random"]
    assert listed[0]["summary"]["ease"]["ndcg@10"]["mean"] == 0.3
    folder = tmp_path / "maps"
    assert maps(folder) == []
    folder.mkdir()
    (folder / "visual-category.png").write_bytes(b"\x89PNG")
    (folder / "notes.txt").write_text("x")
    assert [(m["file"], m["model"]) for m in maps(folder)] == [("visual-category.png", "visual")]


def _config(tmp_path: Path, metrics: object) -> Config:
    data = {"databases": {"demo": {"token": "t"}}, "server": {"metrics": metrics}}
    return parse_config(data, source="reqo.yaml", base_dir=tmp_path)


def test_the_history_interval_is_checked_at_load(tmp_path: Path) -> None:
    for given, seconds in (({"history_interval": "30s"}, 30.0), (None, 10.0)):
        settings = _config(tmp_path, given).metrics
        assert settings is not None
        assert settings.history_interval == seconds
    for wrong in ("often", 0, "1h", 0.01):
        with pytest.raises(ConfigError, match=r"server\.metrics\.history_interval"):
            _config(tmp_path, {"history_interval": wrong})


def test_the_scenarios_yaml_is_kept_as_written(tmp_path: Path) -> None:
    data = {
        "databases": {"demo": {"token": "t"}},
        "models": {"ease": {"algorithm": "ease", "params": {"l2": 200}}},
        "scenarios": {"home": {"endpoint": "items-to-user", "model": "ease", "filter": "'x' > 1"}},
    }
    config = parse_config(data, source="reqo.yaml", base_dir=tmp_path)
    assert config.written["scenarios"]["home"]["filter"] == "'x' > 1"
    assert config.written["models"]["ease"]["params"] == {"l2": 200}
