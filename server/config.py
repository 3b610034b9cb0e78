"""The YAML configuration: where the data lives, the databases and their tokens, how to serve.

```yaml
data_dir: data              # relative to this file
allow_unsigned: false       # true accepts requests without HMAC signatures (loopback only)
server: {host: 127.0.0.1, port: 8000, tls: {certfile: cert.pem, keyfile: key.pem}}
databases:
  shop: {token: "a long random secret"}       # or {token_env: SHOP_TOKEN}
overlays: [optimized.yaml]  # YAML files merged over this one, in order (`reqo optimize` writes one)
```
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from server.scenarios import (
    ModelConfig,
    ScenarioConfig,
    ScenarioError,
    parse_models,
    parse_scenarios,
)

DATABASE_NAME = re.compile(r"[a-zA-Z0-9_\-]{1,64}")
_TOP_KEYS = {
    "data_dir",
    "allow_unsigned",
    "server",
    "databases",
    "read_threads",
    "plugins",
    "models",
    "scenarios",
    "train_every",
    "overlays",
}
_SERVER_KEYS = {"host", "port", "tls"}
_TLS_KEYS = {"certfile", "keyfile"}
_DATABASE_KEYS = {"token", "token_env"}


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the file, key and problem."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class DatabaseConfig:
    name: str
    token: str


@dataclass(frozen=True)
class TlsConfig:
    certfile: Path
    keyfile: Path


@dataclass(frozen=True)
class Config:
    data_dir: Path
    databases: Mapping[str, DatabaseConfig]
    allow_unsigned: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    tls: TlsConfig | None = None
    read_threads: int = 4
    source: str = "<config>"
    plugins: tuple[str, ...] = ()
    models: Mapping[str, ModelConfig] = field(default_factory=lambda: parse_models(None))
    scenarios: Mapping[str, ScenarioConfig] = field(default_factory=dict)
    train_every: float | None = None

    def models_dir(self, database: str) -> Path:
        """Where the trained models of a database are kept (one versioned directory each)."""
        return self.data_dir / "models" / database

    def database_path(self, name: str) -> Path:
        return self.data_dir / f"{name}.duckdb"

    def check_serving(self, host: str) -> None:
        """Unsigned requests are for local development: refuse them on a non-loopback address."""
        if self.allow_unsigned and not is_loopback(host):
            raise ConfigError(
                self.source,
                "allow_unsigned",
                f"is for local development only; the server would listen on {host!r}, "
                "which is not a loopback address",
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_config(path: Path) -> Config:
    """Read and validate a YAML configuration file."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(source, "(file)", f"cannot be read: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(source, "(file)", f"is not valid YAML: {error}") from None
    return parse_config(data if data is not None else {}, source=source, base_dir=path.parent)


def parse_config(data: object, *, source: str, base_dir: Path) -> Config:
    """Validate a configuration mapping; relative paths are taken from `base_dir`."""
    if not isinstance(data, Mapping):
        raise ConfigError(source, "(top level)", "must be a mapping")
    _check_keys(source, "", data, _TOP_KEYS)
    data = _overlaid(source, data, base_dir)
    data_dir = base_dir / _string(source, "data_dir", data.get("data_dir", "data"))
    allow_unsigned = data.get("allow_unsigned", False)
    if not isinstance(allow_unsigned, bool):
        raise ConfigError(source, "allow_unsigned", "must be true or false")
    read_threads = data.get("read_threads", 4)
    if isinstance(read_threads, bool) or not isinstance(read_threads, int) or read_threads < 1:
        raise ConfigError(source, "read_threads", "must be a positive integer")
    server = data.get("server", {}) or {}
    if not isinstance(server, Mapping):
        raise ConfigError(source, "server", "must be a mapping")
    _check_keys(source, "server.", server, _SERVER_KEYS)
    host = _string(source, "server.host", server.get("host", "127.0.0.1"))
    port = server.get("port", 8000)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(source, "server.port", f"must be a port number, got {port!r}")
    tls = _tls(source, server.get("tls"), base_dir)
    databases = _databases(source, data.get("databases"))
    try:
        models = parse_models(data.get("models"))
        scenarios = parse_scenarios(data.get("scenarios"), models)
    except ScenarioError as error:
        raise ConfigError(source, error.key, error.problem) from None
    return Config(
        data_dir=data_dir,
        databases=databases,
        allow_unsigned=allow_unsigned,
        host=host,
        port=port,
        tls=tls,
        read_threads=read_threads,
        source=source,
        plugins=_plugins(source, data.get("plugins"), base_dir),
        models=models,
        scenarios=scenarios,
        train_every=_duration(source, "train_every", data.get("train_every")),
    )


def _overlaid(source: str, data: Mapping[str, Any], base_dir: Path) -> Mapping[str, Any]:
    """The configuration with its `overlays` (YAML files, relative to `base_dir`) merged over it
    in order: mappings key by key, any other value replaced."""
    value = data.get("overlays")
    if value is None:
        return data
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(source, "overlays", "must be a list of YAML file paths")
    merged: Mapping[str, Any] = {k: v for k, v in data.items() if k != "overlays"}
    for position, name in enumerate(value):
        key, path = f"overlays[{position}]", base_dir / name
        try:
            overlay = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError(source, key, f"{path} cannot be read: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise ConfigError(source, key, f"{path} is not valid YAML: {error}") from None
        if overlay is None:
            continue
        if not isinstance(overlay, Mapping):
            raise ConfigError(source, key, f"{path} must hold a mapping")
        if "overlays" in overlay:
            raise ConfigError(source, key, f"{path}: an overlay cannot list overlays")
        _check_keys(f"{source} ({path})", "", overlay, _TOP_KEYS)
        merged = _merge(merged, overlay)
    return merged


def _merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overlay.items():
        below = out.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            out[key] = _merge(below, value)
        else:
            out[key] = value
    return out


def _plugins(source: str, value: object, base_dir: Path) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(source, "plugins", "must be a list of module names or .py file paths")
    # Paths are relative to the configuration file; module names stay as they are.
    return tuple(str(base_dir / v) if v.endswith(".py") or "/" in v else v for v in value)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)?")
_UNITS = {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(source: str, key: str, value: object) -> float | None:
    """Seconds from a number or text such as `30m`, `6h`, `1d`."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    found = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    if found is None or float(found.group(1)) <= 0:
        raise ConfigError(source, key, f"must be a duration such as 30m, 6h or 1d, not {value!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def _databases(source: str, value: object) -> dict[str, DatabaseConfig]:
    if value is None:
        raise ConfigError(source, "databases", "is required: name at least one database")
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(source, "databases", "must be a non-empty mapping of name -> {token}")
    databases = {}
    for name, settings in value.items():
        key = f"databases.{name}"
        if not isinstance(name, str) or not DATABASE_NAME.fullmatch(name):
            raise ConfigError(source, key, "a database name must match ^[a-zA-Z0-9_\\-]{1,64}$")
        if not isinstance(settings, Mapping):
            raise ConfigError(source, key, "must be a mapping with a token")
        _check_keys(source, key + ".", settings, _DATABASE_KEYS)
        if "token_env" in settings:
            env = _string(source, key + ".token_env", settings["token_env"])
            token = os.environ.get(env, "")
            if not token:
                raise ConfigError(
                    source, key + ".token_env", f"environment variable {env} is unset"
                )
        else:
            token = _string(source, key + ".token", settings.get("token"))
        if not token:
            raise ConfigError(source, key + ".token", "must not be empty")
        databases[name] = DatabaseConfig(name, token)
    return databases


def _tls(source: str, value: object, base_dir: Path) -> TlsConfig | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(source, "server.tls", "must be a mapping with certfile and keyfile")
    _check_keys(source, "server.tls.", value, _TLS_KEYS)
    certfile = base_dir / _string(source, "server.tls.certfile", value.get("certfile"))
    keyfile = base_dir / _string(source, "server.tls.keyfile", value.get("keyfile"))
    return TlsConfig(certfile, keyfile)


def _string(source: str, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(source, key, f"must be a string, got {value!r}")
    return value


def _check_keys(source: str, prefix: str, mapping: Mapping[Any, Any], allowed: set[str]) -> None:
    for key in mapping:
        if key not in allowed:
            raise ConfigError(
                source,
                f"{prefix}{key}",
                f"unknown key (expected one of {', '.join(sorted(allowed))})",
            )
