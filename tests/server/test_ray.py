"""reqo on a Ray cluster (`reqo serve --ray ADDRESS`): a local cluster of three nodes
(`ray.cluster_utils.Cluster`), the servers as Ray Serve replicas, the writer an actor, training
Ray tasks. Kills a replica and the writer mid-load, and a training task mid-fit."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families
from ray import serve
from ray.cluster_utils import Cluster
from recombee_api_client.api_requests import (
    AddDetailView,
    AddItemProperty,
    ListItems,
    RecommendItemsToUser,
    SetItemValues,
)

from server.config import ConfigError, load_config
from server.distributed.names import APPLICATION, NAMESPACE, writer_actor
from tests.serving import RunningServer, free_port

TOKENS = {"test": "ray-token-0123456789"}
FILMS = 30


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head and two worker nodes, each a raylet of its own (on this machine)."""
    local = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False}
    )
    for _ in range(2):
        local.add_node(num_cpus=2)
    local.wait_for_nodes()
    ray.init(address=local.address, namespace=NAMESPACE, log_to_driver=False)
    yield local
    ray.shutdown()
    local.shutdown()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def on_ray(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """reqo on the cluster: two replicas, with 30 films and 12 users who watched some."""
    running = RunningServer(
        tmp_path_factory.mktemp("ray"),
        free_port(),
        TOKENS,
        ray_address=cluster.address,
        ray={"replicas": 2, "writer_cpus": 0.5, "replica_cpus": 1},
        admin_token="admin-token-of-the-ray-tests",
        extra={"models": {"dae": {"algorithm": "mult-dae", "params": {"epochs": 200}}}},
    )
    running.start(timeout=180)
    client = running.client()
    client.send(AddItemProperty("genre", "string"))
    for i in range(FILMS):
        client.send(SetItemValues(f"film-{i:02d}", {"genre": "g"}, cascade_create=True))
    for user in range(12):
        for film in range(user % 3, FILMS, 3):
            client.send(AddDetailView(f"user-{user}", f"film-{film:02d}", cascade_create=True))
    # The models the tests' recommendations use (dae trains in the retry test).
    for model in ("item-knn", "popularity"):
        trained = running.request("POST", f"/-/train?model={model}")
        assert trained.status_code == 200, trained.text
    yield running
    running.stop()


def actor_table() -> list[dict[str, Any]]:
    """The cluster's live actors (name, pid, node)."""
    table = ray._private.state.state.actor_table(None)
    return [
        {"name": a.get("Name", ""), "pid": a.get("Pid"), "node": a["Address"]["NodeID"]}
        for a in table.values()
        if a.get("State") == "ALIVE"
    ]


def replicas() -> list[dict[str, Any]]:
    prefix = f"SERVE_REPLICA::{APPLICATION}#{APPLICATION}#"
    return [a for a in actor_table() if a["name"].startswith(prefix)]


def running_replicas() -> int:
    status = serve.status().applications[APPLICATION].deployments[APPLICATION]
    states: dict[Any, int] = dict(status.replica_states)
    return sum(count for state, count in states.items() if str(state).endswith("RUNNING"))


def wait_for(condition: Any, what: str, wait: float = 90.0) -> float:
    """Seconds until `condition()` holds."""
    started = time.monotonic()
    while time.monotonic() - started < wait:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {wait} s")


class Load:
    """Writers (each its own user's detail views, numbered) and readers (recommendations) over
    new connections; what was acknowledged, and every other answer."""

    def __init__(
        self, server: RunningServer, name: str, writers: int = 3, readers: int = 2
    ) -> None:
        self.server = server
        self.acknowledged: dict[str, list[int]] = {}
        self.failures: Counter[str] = Counter()
        self.wrong: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._write, args=(f"{name}-{k}",)) for k in range(writers)
        ] + [threading.Thread(target=self._read) for _ in range(readers)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _write(self, user: str) -> None:
        done = self.acknowledged.setdefault(user, [])
        n = 0
        while not self._stop.is_set():
            n += 1
            body = {"userId": user, "itemId": f"film-{n % FILMS:02d}", "timestamp": n}
            try:
                reply = self.server.request(
                    "POST", "/detailviews/", json=body | {"cascadeCreate": True}
                )
            except Exception as error:
                self.failures[type(error).__name__] += 1
                continue
            if reply.status_code == 200:
                done.append(n)
            else:
                self.failures[f"{reply.status_code} {reply.text[:120]}"] += 1

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                reply = self.server.request("GET", "/recomms/users/user-1/items/?count=5")
            except Exception as error:
                self.failures[type(error).__name__] += 1
                continue
            if reply.status_code != 200:
                self.failures[f"{reply.status_code} {reply.text[:120]}"] += 1
                continue
            ids = [r["id"] for r in reply.json()["recomms"]]
            # user-1 watched films 1, 4, 7...: a right answer never recommends one of them.
            if len(ids) != 5 or any(int(i[-2:]) % 3 == 1 for i in ids):
                self.wrong.append(str(ids))

    def check_stored(self) -> None:
        """Every acknowledged write is there, read back through the cluster."""
        for user, numbers in self.acknowledged.items():
            reply = self.server.request("GET", f"/users/{user}/detailviews/")
            assert reply.status_code == 200, reply.text
            stored = {int(view["timestamp"]) for view in reply.json()}
            assert set(numbers) <= stored, f"{user}: lost {sorted(set(numbers) - stored)[:10]}"


def clear_errors(failures: Counter[str]) -> list[str]:
    """Failures that do not say what happened (every failure must)."""
    clear = ("went away", "not reachable", "replica", "unavailable", "try again")
    return [f for f in failures if not any(word in f.lower() for word in clear)]


def test_the_official_client_works_over_ray_serve(on_ray: RunningServer) -> None:
    client = on_ray.client()
    assert len(client.send(ListItems())) == FILMS
    recommended = client.send(RecommendItemsToUser("user-0", 5))["recomms"]
    assert len(recommended) == 5
    # Read-your-writes whichever replica answers: each write is seen by the next request.
    for n in range(15):
        client.send(SetItemValues(f"fresh-{n}", {"genre": "new"}, cascade_create=True))
        listed = client.send(ListItems(filter="'genre' == \"new\""))
        assert f"fresh-{n}" in listed


def test_replicas_spread_over_nodes_and_the_writer_stays_on_its_node(
    on_ray: RunningServer, cluster: Cluster
) -> None:
    nodes = {replica["node"] for replica in replicas()}
    assert len(replicas()) == 2
    assert len(nodes) == 2, replicas()
    writer = next(a for a in actor_table() if a["name"] == writer_actor("test"))
    assert cluster.head_node is not None
    assert writer["node"] == cluster.head_node.node_id


def test_a_scrape_covers_each_replica_and_the_writer_with_their_labels(
    on_ray: RunningServer,
) -> None:
    samples: list[Any] = []

    def every_source_published() -> bool:
        reply = on_ray.admin("GET", "metrics")
        assert reply.status_code == 200, reply.text
        samples[:] = [s for f in text_string_to_metric_families(reply.text) for s in f.samples]
        sources = {s.labels.get("ray_actor", "") for s in samples}
        published = {s for s in sources if s.startswith("replica-")}
        return len(published) == 2 and writer_actor("test").removeprefix("reqo-") in sources

    wait_for(every_source_published, "every replica's and the writer's metrics", wait=30)
    requests_by_replica = Counter(
        s.labels["ray_actor"] for s in samples if s.name == "reqo_requests_total"
    )
    assert len(requests_by_replica) == 2  # both replicas answered requests
    writes = [s for s in samples if s.name == "reqo_writes_total"]
    assert {s.labels["ray_actor"] for s in writes} == {"writer-test"}
    assert sum(s.value for s in writes if s.labels["kind"] == "add detail views") >= 12
    assert all(s.labels["node"] for s in samples)
    assert on_ray.admin("GET", "metrics", token="not-the-admin-token").status_code == 401


def test_a_replica_killed_mid_load_is_replaced_without_a_wrong_answer(
    on_ray: RunningServer,
) -> None:
    victim = replicas()[0]
    with Load(on_ray, "replica-kill") as load:
        time.sleep(1.5)
        os.kill(victim["pid"], signal.SIGKILL)
        recovery = wait_for(
            lambda: running_replicas() == 2 and victim["pid"] not in [r["pid"] for r in replicas()],
            "a new replica",
        )
        time.sleep(1.0)
    assert recovery < 60
    assert load.wrong == []
    assert clear_errors(load.failures) == []
    assert sum(map(len, load.acknowledged.values())) > 20
    load.check_stored()


def test_the_writer_actor_killed_mid_load_restarts_and_loses_no_acknowledged_write(
    on_ray: RunningServer,
) -> None:
    handle = ray.get_actor(writer_actor("test"), namespace=NAMESPACE)
    reference: Any = handle.pid.remote()
    pid = int(ray.get(reference))
    with Load(on_ray, "writer-kill") as load:
        time.sleep(1.5)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: ray.get(handle.pid.remote()) != pid, "a restarted writer")
        before = sum(map(len, load.acknowledged.values()))
        wait_for(lambda: sum(map(len, load.acknowledged.values())) > before + 10, "writes again")
    assert load.wrong == []
    assert clear_errors(load.failures) == []
    load.check_stored()


def test_a_training_task_that_dies_is_retried(on_ray: RunningServer) -> None:
    marker = on_ray.directory / "data" / "models" / "test" / ".training.pid"
    marker.unlink(missing_ok=True)
    answers: list[Any] = []
    asked = threading.Thread(
        target=lambda: answers.append(on_ray.request("POST", "/-/train?model=dae"))
    )
    asked.start()
    wait_for(marker.exists, "a training task")
    first = int(marker.read_text())
    os.kill(first, signal.SIGKILL)
    asked.join(timeout=240)
    assert answers, "the training request did not finish"
    assert answers[0].status_code == 200, answers[0].text
    assert "dae" in answers[0].json()["trained"]
    assert int(marker.read_text()) != first  # a second attempt ran it
    assert (marker.parent / "dae" / "current").exists()


def test_server_ray_settings_are_checked_at_load(tmp_path: Path) -> None:
    path = tmp_path / "reqo.yaml"
    cases = {
        "replicas: 0": "server.ray.replicas",
        "replicas: {min: 3, max: 2}": "server.ray.replicas.max",
        "proxy: everywhere": "server.ray.proxy",
        "replica_cpu: 1": "server.ray.replica_cpu",
        "train_gpus: -1": "server.ray.train_gpus",
    }
    for line, key in cases.items():
        path.write_text(f"databases: {{a: {{token: t}}}}\nserver:\n  ray: {{{line}}}\n")
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(path)
    path.write_text(
        "databases: {a: {token: t}}\nserver:\n  ray: {replicas: {min: 1, max: 4}, "
        "shared_dir: shared}\n"
    )
    config = load_config(path)
    assert config.ray is not None
    assert config.ray.autoscaled
    assert config.models_dir("a") == tmp_path / "shared" / "models" / "a"
