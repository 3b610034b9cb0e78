"""`reqo serve --ray [ADDRESS]`: the roles of a configuration on a Ray cluster.

It joins the cluster (or starts a Ray instance of this machine's own), starts each database's
writer actor on the node that holds its file, the trainer actor, then the servers as a Ray
Serve deployment behind Serve's HTTP proxy on `server.host:server.port`; and runs until SIGTERM
or SIGINT, when it stops the servers first and the writers last.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from server.config import Config, ConfigError
from server.config_ray import PROXIES
from server.distributed.actors import TrainerActor, WriterActor
from server.distributed.deployment import application
from server.distributed.metrics import MetricsBoard
from server.distributed.names import APPLICATION, METRICS, NAMESPACE, TRAINER, writer_actor

logger = logging.getLogger("reqo")

STARTUP_WAIT = 300.0
"""Seconds the writers may take to open their databases."""


def writer_node(config: Config) -> str:
    """The id of the node that holds the database files: `server.ray.writer_node` (an IP
    address or a node id), or the node this command runs on."""
    wanted = config.ray.writer_node if config.ray is not None else None
    if wanted is None:
        return str(ray.get_runtime_context().get_node_id())
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        if node.get("Alive") and wanted in (node.get("NodeManagerAddress"), node.get("NodeID")):
            return str(node["NodeID"])
    raise ConfigError(config.source, "server.ray.writer_node", f"no live node {wanted!r}")


def start_roles(config: Config, config_path: Path) -> dict[str, Any]:
    """Start the writers, the trainer and the servers on the connected cluster; returns the
    actors' handles by name (the Serve application runs detached from them)."""
    settings = config.ray
    assert settings is not None
    path = str(config_path.resolve())
    token = secrets.token_hex(32)
    node = writer_node(config)
    handles: dict[str, Any] = {}
    for database in config.databases:
        name = writer_actor(database)
        handles[name] = (
            ray.remote(WriterActor)
            .options(
                name=name,
                namespace=NAMESPACE,
                num_cpus=settings.writer_cpus,
                # Restarted where its file is, however often it dies; a call that was in
                # flight is answered by the restarted writer (writes are acknowledged only
                # after they commit, so a retried one was not acknowledged before).
                max_restarts=-1,
                max_task_retries=-1,
                max_concurrency=1000,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            )
            .remote(path, database, token)
        )
    ray.get([handle.address.remote() for handle in handles.values()], timeout=STARTUP_WAIT)
    # Where the replicas and writers publish their metrics for a scrape.
    handles[METRICS] = (
        ray.remote(MetricsBoard)
        .options(name=METRICS, namespace=NAMESPACE, num_cpus=0, max_restarts=-1)
        .remote()
    )
    handles[TRAINER] = (
        ray.remote(TrainerActor)
        .options(
            name=TRAINER,
            namespace=NAMESPACE,
            num_cpus=0,
            max_restarts=-1,
            max_task_retries=-1,
            max_concurrency=100,
        )
        .remote(path, token)
    )
    ray.get(handles[TRAINER].ping.remote(), timeout=STARTUP_WAIT)
    serve.start(
        http_options={
            "host": config.host,
            "port": config.port,
            "location": PROXIES[settings.proxy],
        }
    )
    serve.run(
        application(config, config_path, token),
        name=APPLICATION,
        route_prefix="/",
        blocking=False,
    )
    return handles


def stop_roles(handles: dict[str, Any]) -> None:
    """Stop the servers, then the trainer, then the writers (closing their files)."""
    try:
        serve.delete(APPLICATION)
    except Exception as error:
        logger.warning("reqo: stopping the servers: %s", error)
    for name in (TRAINER, METRICS):
        helper = handles.pop(name, None)
        if helper is not None:
            ray.kill(helper, no_restart=True)
    for handle in handles.values():
        try:
            ray.get(handle.stop.remote(), timeout=30)
        except Exception as error:
            logger.warning("reqo: stopping a writer: %s", error)
        ray.kill(handle, no_restart=True)


def serve_on_ray(config: Config, config_path: Path, address: str | None) -> int:
    """Run the roles on a Ray cluster until SIGTERM or SIGINT; returns the exit code."""
    settings = config.ray
    assert settings is not None
    address = address or settings.address
    ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    handles: dict[str, Any] = {}
    try:
        handles = start_roles(config, config_path)
        logger.info(
            "reqo: on Ray (%s): %d writer(s), a trainer and %s server replica(s) behind "
            "http://%s:%d",
            ray.get_runtime_context().gcs_address,
            len(config.databases),
            settings.min_replicas
            if not settings.autoscaled
            else f"{settings.min_replicas}-{settings.max_replicas}",
            config.host,
            config.port,
        )
        stopping.wait()
        return 0
    finally:
        stop_roles(handles)
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
