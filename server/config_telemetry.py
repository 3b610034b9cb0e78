"""`server.metrics:` and `server.logs:` in the YAML configuration: what reqo tells its operator.

```yaml
server:
  metrics:
    enabled: true           # GET /-/metrics (and /metrics) in Prometheus' text format
    public: false           # true: scraped without the admin token (a private network only)
    history_interval: 10s   # the console's last hour of traffic: one point per interval
  logs:
    format: auto            # json, text, or auto: JSON lines unless stderr is a terminal
    access: true            # one line per request (never its query string or signature)
    slow_request: 1s        # a request slower than this is logged as a warning (0: never)
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from server.config import ConfigError

_METRICS_KEYS = {"enabled", "public", "history_interval"}
_LOGS_KEYS = {"format", "access", "slow_request"}
LOG_FORMATS = ("auto", "json", "text")


@dataclass(frozen=True)
class MetricsConfig:
    """A validated `server.metrics:`."""

    enabled: bool = True
    public: bool = False
    """Whether a scrape needs no admin token."""
    history_interval: float = 10.0
    """Seconds between two points of the console's traffic history."""


@dataclass(frozen=True)
class LogsConfig:
    """A validated `server.logs:`."""

    format: str = "auto"
    access: bool = True
    slow_request: float = 1.0
    """Seconds past which a request is logged as slow (0: never)."""


def parse_metrics(source: str, value: object) -> MetricsConfig:
    """Validate `server.metrics:`."""
    from server.config import _duration

    mapping = _mapping(source, "server.metrics", value, _METRICS_KEYS)
    interval = _duration(
        source,
        "server.metrics.history_interval",
        mapping.get("history_interval", 10.0),
        at_least=0.1,
        at_most=600,
    )
    return MetricsConfig(
        enabled=_flag(source, "server.metrics.enabled", mapping.get("enabled", True)),
        public=_flag(source, "server.metrics.public", mapping.get("public", False)),
        history_interval=interval or 10.0,
    )


def parse_logs(source: str, value: object) -> LogsConfig:
    """Validate `server.logs:`."""
    from server.config import _duration

    mapping = _mapping(source, "server.logs", value, _LOGS_KEYS)
    log_format = mapping.get("format", "auto")
    if log_format not in LOG_FORMATS:
        raise ConfigError(
            source, "server.logs.format", f"must be auto, json or text, not {log_format!r}"
        )
    slow = mapping.get("slow_request", 1.0)
    slow_request = 0.0 if slow == 0 else _duration(source, "server.logs.slow_request", slow)
    return LogsConfig(
        format=log_format,
        access=_flag(source, "server.logs.access", mapping.get("access", True)),
        slow_request=slow_request or 0.0,
    )


def _mapping(source: str, key: str, value: object, known: set[str]) -> Mapping[str, object]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(source, key, "must be a mapping")
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(
            source, f"{key}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(known))})"
        )
    return value


def _flag(source: str, key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(source, key, f"must be true or false, not {value!r}")
    return value
