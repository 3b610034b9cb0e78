"""`server.ray:` in the YAML configuration: how `reqo serve --ray` runs the roles on a Ray cluster.

```yaml
server:
  ray:
    address: auto             # the cluster to join (`reqo serve --ray ADDRESS` overrides it);
                              # left out: a Ray instance of this machine's own
    replicas: 2               # server replicas (Ray Serve), or {min: 1, max: 8} to autoscale
    target_ongoing_requests: 16   # what the autoscaler aims at per replica
    replica_cpus: 1           # CPUs Ray reserves for each replica
    writer_cpus: 1            # ... for each database's writer actor
    writer_node: 10.0.0.5     # the node that holds the database files (default: this one)
    shared_dir: /mnt/reqo     # models and training artifacts, at this path on every node
                              # (default: data_dir, enough for a cluster of one machine)
    proxy: head               # Ray Serve's HTTP proxy on the head node, or every-node
    train_gpus: auto          # GPUs a training task takes: auto (1 where the cluster has one), or
                              # a number
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from server.config import ConfigError

_KEYS = {
    "address",
    "replicas",
    "target_ongoing_requests",
    "replica_cpus",
    "writer_cpus",
    "writer_node",
    "shared_dir",
    "proxy",
    "train_gpus",
}
PROXIES = {"head": "HeadOnly", "every-node": "EveryNode"}


@dataclass(frozen=True)
class RayConfig:
    """A validated `server.ray:`."""

    address: str | None = None
    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: int = 16
    replica_cpus: float = 1.0
    writer_cpus: float = 1.0
    writer_node: str | None = None
    shared_dir: Path | None = None
    proxy: str = "head"
    train_gpus: float | None = None
    """None: one GPU where the cluster has any, else none."""

    @property
    def autoscaled(self) -> bool:
        return self.min_replicas != self.max_replicas


def parse_ray(source: str, value: object, base_dir: Path, workers: int) -> RayConfig:
    """Validate `server.ray:`; `workers` (server.workers) is the replica count by default."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(source, "server.ray", "must be a mapping")
    unknown = sorted(set(value) - _KEYS)
    if unknown:
        raise ConfigError(
            source, f"server.ray.{unknown[0]}", f"unknown key (known: {', '.join(sorted(_KEYS))})"
        )
    low, high = _replicas(source, value.get("replicas", workers))
    proxy = value.get("proxy", "head")
    if proxy not in PROXIES:
        raise ConfigError(source, "server.ray.proxy", f"must be head or every-node, not {proxy!r}")
    gpus = value.get("train_gpus", "auto")
    train_gpus = None if gpus == "auto" else _number(source, "server.ray.train_gpus", gpus)
    shared = value.get("shared_dir")
    return RayConfig(
        address=_text(source, "server.ray.address", value.get("address")),
        min_replicas=low,
        max_replicas=high,
        target_ongoing_requests=_count(
            source, "server.ray.target_ongoing_requests", value.get("target_ongoing_requests", 16)
        ),
        replica_cpus=_number(source, "server.ray.replica_cpus", value.get("replica_cpus", 1)),
        writer_cpus=_number(source, "server.ray.writer_cpus", value.get("writer_cpus", 1)),
        writer_node=_text(source, "server.ray.writer_node", value.get("writer_node")),
        shared_dir=None
        if shared is None
        else base_dir / str(_text(source, "server.ray.shared_dir", shared)),
        proxy=str(proxy),
        train_gpus=train_gpus,
    )


def _replicas(source: str, value: object) -> tuple[int, int]:
    key = "server.ray.replicas"
    if isinstance(value, Mapping):
        if set(value) - {"min", "max"} or not value:
            raise ConfigError(source, key, "must be a count or {min: N, max: M}")
        low = _count(source, f"{key}.min", value.get("min", 1))
        high = _count(source, f"{key}.max", value.get("max", low))
        if high < low:
            raise ConfigError(source, f"{key}.max", f"must be at least min ({low}), not {high}")
        return low, high
    count = _count(source, key, value)
    return count, count


def _count(source: str, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(source, key, f"must be a positive integer, got {value!r}")
    return value


def _number(source: str, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(source, key, f"must be a number >= 0, got {value!r}")
    return float(value)


def _text(source: str, key: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(source, key, f"must be a non-empty string, got {value!r}")
    return value
