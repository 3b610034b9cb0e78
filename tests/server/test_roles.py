"""reqo as a group of roles (`reqo serve --workers N`): one writer, several servers, a trainer.
Real processes on a free localhost port; every request a new connection, so that the kernel
spreads them over the servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from recombee_api_client.api_requests import (
    AddDetailView,
    AddItemProperty,
    AddPurchase,
    ListItems,
    RecommendItemsToUser,
    RecommendNextItems,
    SetItemValues,
)

from storage.catalog import add_entity
from storage.database import Database
from storage.schema import Entity
from tests.serving import REPO_ROOT, RunningServer, free_port

TOKENS = {"test": "roles-token-0123456789"}
FILMS = 30


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Two servers over one writer, with 30 films and 12 users who watched some."""
    running = RunningServer(tmp_path_factory.mktemp("roles"), free_port(), TOKENS, workers=2)
    running.start()
    client = running.client()
    client.send(AddItemProperty("genre", "string"))
    for i in range(FILMS):
        client.send(SetItemValues(f"film-{i:02d}", {"genre": "g"}, cascade_create=True))
    for user in range(12):
        for film in range(user % 3, FILMS, 3):
            client.send(AddDetailView(f"user-{user}", f"film-{film:02d}", cascade_create=True))
    assert running.request("POST", "/-/train", json={}).status_code == 200
    yield running
    running.stop()


def pids_of(
    group: RunningServer, role: str, count: int, wait: float = 60.0, gone: int | None = None
) -> list[int]:
    """The processes of a role once there are `count` of them (and `gone` is not one)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        found = group.role_pids(role)
        if len(found) == count and gone not in found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"expected {count} {role} process(es), found {group.role_pids(role)}")


def test_serve_runs_a_writer_two_servers_and_a_trainer(group: RunningServer) -> None:
    assert len(pids_of(group, "writer", 1)) == 1
    assert len(pids_of(group, "server", 2)) == 2
    assert len(pids_of(group, "trainer", 1)) == 1


def test_a_write_is_read_back_on_whichever_server_answers(group: RunningServer) -> None:
    """Read-your-writes across servers: each read is a new connection (either server), right
    after the write's acknowledgement (taken by either server)."""
    for n in range(40):
        item = f"ryw-{n}"
        put = group.request("PUT", f"/items/{item}")
        assert put.status_code == 201, put.text
        got = group.request("GET", f"/items/{item}")
        assert got.status_code == 200, got.text
        values = group.request("POST", f"/items/{item}", json={"genre": f"g{n}"})
        assert values.status_code == 200, values.text
        assert group.request("GET", f"/items/{item}").json()["genre"] == f"g{n}"


def test_a_new_interaction_changes_the_next_recommendation_on_any_server(
    group: RunningServer,
) -> None:
    client = group.client()
    for film in range(0, FILMS, 4):
        item = f"film-{film:02d}"
        user = "watcher"
        before = client.send(RecommendItemsToUser(user, FILMS, cascade_create=True))
        assert item in [r["id"] for r in before["recomms"]]
        client.send(AddDetailView(user, item, cascade_create=True))
        after = client.send(RecommendItemsToUser(user, FILMS))
        assert item not in [r["id"] for r in after["recomms"]], "a seen film is filtered out"


def test_a_recomm_id_works_on_every_server_at_once(group: RunningServer) -> None:
    client = group.client()
    for _ in range(10):
        first = client.send(RecommendItemsToUser("user-1", 2))
        shown = [r["id"] for r in first["recomms"]]
        for page in range(1, 4):
            following = client.send(RecommendNextItems(first["recommId"], 2))
            assert following["numberNextRecommsCalls"] == page
            ids = [r["id"] for r in following["recomms"]]
            assert not set(ids) & set(shown)
            shown += ids


def test_an_interaction_carrying_a_recomm_id_counts_for_it(group: RunningServer) -> None:
    client = group.client()
    first = client.send(RecommendItemsToUser("user-2", 3, scenario="roles"))
    clicked = first["recomms"][0]["id"]
    client.send(AddPurchase("user-2", clicked, recomm_id=first["recommId"]))
    kpi = group.request("GET", "/-/kpi?scenario=roles")
    assert kpi.status_code == 200, kpi.text
    (entry,) = kpi.json()["scenarios"]
    assert entry["recommendations"] == 1, kpi.text
    assert entry["purchases"] == 1, kpi.text


def _writes_while(
    group: RunningServer, stop: threading.Event, acked: list[str], failed: list[str]
) -> None:
    n = 0
    while not stop.is_set():
        item = f"load-{os.getpid()}-{time.monotonic_ns()}-{n}"
        n += 1
        try:
            response = group.request("PUT", f"/items/{item}")
        except requests.RequestException:
            failed.append(item)
            continue
        if response.status_code == 201:
            acked.append(item)
        else:
            failed.append(item)


@pytest.mark.parametrize("role", ["server", "trainer", "writer"])
def test_kill_9_of_a_role_loses_no_acknowledged_write(group: RunningServer, role: str) -> None:
    """kill -9 one process of the role under a write load: the supervisor restarts it, and every
    write acknowledged before, during and after is stored."""
    count = 2 if role == "server" else 1
    victim = pids_of(group, role, count)[0]
    acked: list[str] = []
    failed: list[str] = []
    stop = threading.Event()
    writers = [
        threading.Thread(target=_writes_while, args=(group, stop, acked, failed), daemon=True)
        for _ in range(4)
    ]
    for thread in writers:
        thread.start()
    try:
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        restarted = pids_of(group, role, count, gone=victim)
        assert victim not in restarted
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in writers:
            thread.join()
    # The group takes writes again, and reads see every acknowledged one.
    assert group.request("PUT", f"/items/after-{role}").status_code == 201
    stored = set(group.client().send(ListItems(count=100_000)))
    lost = [item for item in acked if item not in stored]
    assert acked, "the load wrote something"
    assert lost == [], f"{len(lost)} acknowledged writes were lost ({len(failed)} failed)"


def test_a_model_without_a_version_is_served_by_the_fallback_while_the_trainer_fits_it(
    tmp_path: Path,
) -> None:
    running = RunningServer(tmp_path, free_port(), TOKENS, admin_token="roles-admin-0123456789")
    running.start()
    try:
        client = running.client()
        for user in range(20):
            client.send(AddDetailView(f"u{user}", f"i{user % 7}", cascade_create=True))
        # A model added while the server runs has no version: it must not be trained in the
        # request (which answers at once, from the fallback) but by the trainer.
        running.extra = {"models": {"ease": {"algorithm": "ease"}}}
        running.write_config()
        os.kill(running.process.pid, signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        answered = None
        while time.monotonic() < deadline:
            response = running.request("GET", "/recomms/users/u1/items/?count=3&logic=ease")
            if response.status_code == 200:
                answered = response
                break
            time.sleep(0.2)
        assert answered is not None, "the reloaded model is never served"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            health = running.admin("GET", "health").json()
            if not health["databases"]["test"]["modelsAwaitingTraining"]:
                break
            time.sleep(0.2)
        assert (tmp_path / "data" / "models" / "test" / "ease" / "current").exists()
        assert "model 'ease' has no trained version" in running.output()
    finally:
        running.stop()


def test_offline_commands_and_import_work_while_the_server_runs(group: RunningServer) -> None:
    env = dict(os.environ)
    reqo = [sys.executable, "-m", "server.cli"]
    kpi = subprocess.run(
        [*reqo, "kpi", "--config", str(group.config_path), "--db", "test"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert kpi.returncode == 0, kpi.stderr
    csv = group.directory / "imported.csv"
    csv.write_text("itemId,genre\nimported-1,x\nimported-2,y\n")
    imported = subprocess.run(
        [*reqo, "import", "--config", str(group.config_path), "--db", "test", "items", str(csv)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stderr
    assert "writer" in imported.stdout
    for _ in range(5):  # any server: each has loaded the import
        assert group.request("GET", "/items/imported-2").json()["genre"] == "y"


def test_a_second_serve_on_the_same_data_fails_with_a_clear_message(group: RunningServer) -> None:
    second = subprocess.run(
        [
            *(sys.executable, "-m", "server.cli", "serve"),
            *("--config", str(group.config_path), "--port", str(free_port())),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode != 0
    message = second.stderr + second.stdout
    assert "already" in message, message
    assert "Traceback" not in message, message
    assert group.request("GET", "/items/film-01").status_code == 200


def test_a_file_changed_offline_is_served_as_it_is_now(tmp_path: Path) -> None:
    """Snapshots are named by the change feed's sequence number, which a write made without the
    writer (the server stopped) does not move: a writer that starts forgets the snapshots it
    finds, so that no server loads the file as it was before."""
    running = RunningServer(tmp_path, free_port(), {"test": "offline-token-0123456789"})
    running.start()
    try:
        assert running.request("PUT", "/items/before").status_code == 201
        # A server that starts again loads a snapshot at the sequence number now.
        victim = pids_of(running, "server", 1)[0]
        os.kill(victim, signal.SIGKILL)
        pids_of(running, "server", 1, gone=victim)
        assert running.request("GET", "/items/list/").json() == ["before"]
    finally:
        running.stop()
    database = Database("test", tmp_path / "data" / "test.duckdb")
    try:
        database.write_sync(lambda ctx: add_entity(ctx, Entity.ITEM, "offline"))
    finally:
        database.close()
    running.start()
    try:
        assert sorted(running.request("GET", "/items/list/").json()) == ["before", "offline"]
    finally:
        running.stop()
