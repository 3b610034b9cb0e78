"""The YAML configuration: where the data lives, the databases and their tokens, how to serve.

```yaml
data_dir: data              # relative to this file; `reqo serve` creates it (must be writable)
allow_unsigned: false       # true accepts requests without HMAC signatures (loopback only)
server: {host: 127.0.0.1, port: 8000, workers: 1,  # server processes sharing the port
         tls: {certfile: cert.pem, keyfile: key.pem},
         metrics: {public: false}, logs: {format: auto}}  # see server/config_telemetry.py
databases:
  shop: {token: "a long random secret"}       # or {token_env: SHOP_TOKEN}
  blog: {token_env: BLOG_TOKEN, signatures: strict}
        # signatures: recombee (the default: Recombee's scheme, as its official clients sign)
        # or strict (requests must also carry a digest of their body)
admin_token_env: REQO_ADMIN_TOKEN   # or admin_token: "..."; 16 characters at least, not a
                                    # database's token
limits:
  max_queued: 256           # requests waiting or running per database before answering 503
  query_timeout: 2          # seconds (or 2s, 1m ...) one ReQL-evaluating query may take, <= 600
  retry_after: 1            # the Retry-After (whole seconds) of a 503
train_every: 6h             # retrain the models on this schedule (at least 1 s; default: never)
train_in_shards_over: 20000000  # interactions beyond which Mult-VAE/DAE and GRU4Rec train from
                            # the snapshot's files in shards (0: always)
overlays: [optimized.yaml]  # YAML files merged over this one, in order (`reqo optimize` writes one)
```

`load_config` checks what the file alone decides; `reqo serve` then checks, before it opens
anything, what depends on the machine: `Config.check_address`, `check_tls` and `check_data_dir`.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from server.serving.scenarios import (
    ModelConfig,
    ScenarioConfig,
    ScenarioError,
    parse_models,
    parse_scenarios,
)

if TYPE_CHECKING:
    from server.config_ray import RayConfig
    from server.config_telemetry import LogsConfig, MetricsConfig

CONFIG_EXIT = 78
"""A server's exit status when the configuration does not fit its databases (EX_CONFIG): the
supervisor stops the group instead of restarting it."""

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
    "train_in_shards_over",
    "overlays",
    "admin_token",
    "admin_token_env",
    "limits",
}
_SERVER_KEYS = {"host", "port", "workers", "tls", "ray", "metrics", "logs", "cors"}
_TLS_KEYS = {"certfile", "keyfile"}
_DATABASE_KEYS = {"token", "token_env", "signatures", "public_token"}
_LIMITS_KEYS = {"max_queued", "query_timeout", "retry_after"}
_SIGNATURES = ("recombee", "strict")
# An admin token guards every database at once; shorter ones can be guessed.
ADMIN_TOKEN_MIN_LENGTH = 16


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the file, key and problem."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class DatabaseConfig:
    """One database: its name, its secret token and how strictly requests must be signed."""

    name: str
    token: str
    strict_signatures: bool = False
    """`signatures: strict`: a request must also carry a digest of its body (False: Recombee's
    scheme, which the official clients use)."""
    public_token: str | None = None
    """What Recombee's client-side SDKs sign with: interactions, recommendations and search
    only (server/config_client.py)."""


@dataclass(frozen=True)
class Limits:
    """How much work the server takes on before it answers 503 (`limits:`)."""

    max_queued: int = 256
    """Requests waiting or running per database beyond which the server answers 503."""
    query_timeout: float = 2.0
    """Seconds one ReQL-evaluating query may run."""
    retry_after: int = 1
    """The Retry-After header (seconds) of a 503."""


@dataclass(frozen=True)
class TlsConfig:
    certfile: Path
    keyfile: Path


@dataclass(frozen=True)
class Config:
    """A validated configuration; the `check_*` methods are the start-up checks of `reqo serve`
    that depend on the machine rather than on the file."""

    data_dir: Path
    databases: Mapping[str, DatabaseConfig]
    allow_unsigned: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    """Server processes that `reqo serve` runs (besides the writer and the trainer)."""
    tls: TlsConfig | None = None
    read_threads: int = 4
    source: str = "<config>"
    plugins: tuple[str, ...] = ()
    models: Mapping[str, ModelConfig] = field(default_factory=lambda: parse_models(None))
    scenarios: Mapping[str, ScenarioConfig] = field(default_factory=dict)
    train_every: float | None = None
    train_in_shards_over: int = 20_000_000
    """Interactions beyond which the models that learn from mini-batches train from the
    snapshot's files in shards rather than from all interactions in memory."""
    admin_token: str | None = None
    limits: Limits = field(default_factory=Limits)
    ray: RayConfig | None = None
    """`server.ray:`, how `reqo serve --ray` runs on a cluster."""
    metrics: MetricsConfig | None = None
    """`server.metrics:` (None: the defaults)."""
    logs: LogsConfig | None = None
    """`server.logs:` (None: the defaults)."""
    cors_origins: tuple[str, ...] = ()
    """`server.cors.origins`: the web origins that browsers may call from (none: no CORS)."""
    written: Mapping[str, Any] = field(default_factory=dict)
    """`scenarios:` and `models:` as the YAML wrote them (overlays merged), for the console."""

    def models_dir(self, database: str) -> Path:
        """Where the trained models of a database are kept (one versioned directory each): on a
        Ray cluster, in its shared directory."""
        if self.ray is not None and self.ray.shared_dir is not None:
            return self.ray.shared_dir / "models" / database
        return self.data_dir / "models" / database

    def database_path(self, name: str) -> Path:
        return self.data_dir / f"{name}.duckdb"

    @property
    def evaluations_dir(self) -> Path:
        """Where `reqo evaluate` writes its records by default (the console reads them)."""
        return self.data_dir / "evaluation"

    def maps_dir(self, database: str) -> Path:
        """Where `reqo plot embeddings` writes a database's maps by default (the console shows
        them)."""
        return self.data_dir / "maps" / database

    def check_serving(self, host: str) -> None:
        """Unsigned requests are for local development: refuse them on a non-loopback address."""
        if self.allow_unsigned and not is_loopback(host):
            raise ConfigError(
                self.source,
                "allow_unsigned",
                f"is for local development only; the server would listen on {host!r}, "
                "which is not a loopback address",
            )

    def check_address(self, host: str, port: int) -> None:
        """The address to listen on (the config's or the command line's) must be a port number
        and a host name that resolves."""
        if not 0 <= port <= 65535:
            raise ConfigError(self.source, "server.port", f"must be a port number, got {port!r}")
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except (socket.gaierror, UnicodeError) as error:
            # UnicodeError: a name that IDNA cannot encode (an empty label, say).
            reason = error.strerror if isinstance(error, socket.gaierror) else str(error)
            raise ConfigError(
                self.source, "server.host", f"{host!r} cannot be resolved: {reason}"
            ) from None

    def check_tls(self) -> None:
        """Both TLS files exist and hold a certificate and its unencrypted private key (the
        errors of the server's own start would not say which file is wrong)."""
        if self.tls is not None:
            _check_tls_files(self.source, self.tls)

    def check_data_dir(self) -> None:
        """Create `data_dir` if it is missing, and check that it is a directory this process can
        write in (the databases and the trained models go there)."""
        path = self.data_dir
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # what exist_ok lets through: something else than a directory
            raise ConfigError(
                self.source, "data_dir", f"{path} is a file, not a directory"
            ) from None
        except OSError as error:
            raise ConfigError(
                self.source, "data_dir", f"{path} cannot be created: {error.strerror}"
            ) from None
        problem = _write_problem(path)
        if problem is not None:
            raise ConfigError(self.source, "data_dir", f"{path} is not writable: {problem}")


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
    data = _read_yaml(source, "(file)", path, "")
    return parse_config(data if data is not None else {}, source=source, base_dir=path.parent)


def _read_yaml(source: str, key: str, path: Path, subject: str) -> object:
    """The YAML document of `path`; problems are ConfigErrors of `key`, `subject` (the path, or
    "" for the configuration file itself) followed by what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(source, key, f"{subject}cannot be read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            source, key, f"{subject}is not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(source, key, f"{subject}is not valid YAML: {error}") from None


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
    read_threads = _positive_int(source, "read_threads", data.get("read_threads", 4))
    server = data.get("server", {}) or {}
    if not isinstance(server, Mapping):
        raise ConfigError(source, "server", "must be a mapping")
    _check_keys(source, "server.", server, _SERVER_KEYS)
    host = _string(source, "server.host", server.get("host", "127.0.0.1"))
    port = server.get("port", 8000)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(source, "server.port", f"must be a port number, got {port!r}")
    tls = _tls(source, server.get("tls"), base_dir)
    workers = _positive_int(source, "server.workers", server.get("workers", 1))
    from server.config_ray import parse_ray  # it builds on this module's errors

    ray = parse_ray(source, server.get("ray"), base_dir, workers)
    from server.config_telemetry import parse_logs, parse_metrics

    metrics = parse_metrics(source, server.get("metrics"))
    logs = parse_logs(source, server.get("logs"))
    from server.config_client import parse_cors

    cors_origins = parse_cors(source, server.get("cors"))
    databases = _databases(source, data.get("databases"))
    admin_token = _admin_token(source, data, databases)
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
        workers=workers,
        tls=tls,
        read_threads=read_threads,
        source=source,
        plugins=_plugins(source, data.get("plugins"), base_dir),
        models=models,
        scenarios=scenarios,
        # Under a second the schedule would retrain back to back and never let go.
        train_every=_duration(source, "train_every", data.get("train_every"), at_least=1.0),
        train_in_shards_over=_count_at_least_zero(
            source, "train_in_shards_over", data.get("train_in_shards_over", 20_000_000)
        ),
        admin_token=admin_token,
        limits=_limits(source, data.get("limits")),
        ray=ray,
        metrics=metrics,
        logs=logs,
        cors_origins=cors_origins,
        written={key: data.get(key) or {} for key in ("scenarios", "models")},
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
        overlay = _read_yaml(source, key, path, f"{path} ")
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


def _duration(
    source: str, key: str, value: object, *, at_least: float = 0.0, at_most: float = math.inf
) -> float | None:
    """Seconds (more than 0, finite, from `at_least` to `at_most`) from a number or text such as
    `30m`, `6h`, `1d`; None for None."""
    if value is None:
        return None
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):  # YAML's true is an int
        seconds = float(value)
    elif isinstance(value, str) and (found := _DURATION.fullmatch(value.strip())):
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
    # `not seconds > 0` also catches NaN; a number too long for a float reads as inf.
    if seconds is None or not seconds > 0 or math.isinf(seconds):
        raise ConfigError(source, key, f"must be a duration such as 30m, 6h or 1d, not {value!r}")
    if seconds < at_least:
        raise ConfigError(source, key, f"must be at least {at_least:g} s, not {seconds:g} s")
    if seconds > at_most:
        raise ConfigError(source, key, f"must be at most {at_most:g} s, not {seconds:g} s")
    return seconds


def _count_at_least_zero(source: str, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(source, key, f"must be an integer >= 0, got {value!r}")
    return value


def _positive_int(source: str, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(source, key, f"must be a positive integer, got {value!r}")
    return value


def _limits(source: str, value: object) -> Limits:
    """`limits:`; a key left out keeps its default."""
    if value is None:
        return Limits()
    if not isinstance(value, Mapping):
        raise ConfigError(source, "limits", "must be a mapping")
    _check_keys(source, "limits.", value, _LIMITS_KEYS)
    default = Limits()
    timeout = value.get("query_timeout", default.query_timeout)
    query_timeout = _duration(source, "limits.query_timeout", timeout, at_most=600.0)
    if query_timeout is None:  # `query_timeout:` with no value
        raise ConfigError(source, "limits.query_timeout", "must be a duration, not null")
    return Limits(
        max_queued=_positive_int(
            source, "limits.max_queued", value.get("max_queued", default.max_queued)
        ),
        query_timeout=query_timeout,
        retry_after=_positive_int(
            source, "limits.retry_after", value.get("retry_after", default.retry_after)
        ),
    )


def _from_env(source: str, key: str, value: object) -> str:
    """The value of the environment variable that `key` names; unset or empty is an error."""
    name = _string(source, key, value)
    secret = os.environ.get(name, "")
    if not secret:
        raise ConfigError(source, key, f"environment variable {name} is unset or empty")
    return secret


def _admin_token(
    source: str, data: Mapping[str, Any], databases: Mapping[str, DatabaseConfig]
) -> str | None:
    """`admin_token` or `admin_token_env` (not both): a secret of its own, long enough."""
    if "admin_token" in data and "admin_token_env" in data:
        raise ConfigError(source, "admin_token", "give admin_token or admin_token_env, not both")
    if "admin_token_env" in data:
        key = "admin_token_env"
        token = _from_env(source, key, data[key])
    elif "admin_token" in data:
        key = "admin_token"
        token = _string(source, key, data[key])
    else:
        return None
    if len(token) < ADMIN_TOKEN_MIN_LENGTH:
        problem = "must not be empty" if not token else "is too short to be secret"
        raise ConfigError(source, key, f"{problem} (at least {ADMIN_TOKEN_MIN_LENGTH} characters)")
    for database in databases.values():
        # Whoever holds a database's token would be an administrator too.
        if token == database.token:
            raise ConfigError(
                source, key, f"must differ from the token of database {database.name!r}"
            )
    return token


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
            token = _from_env(source, key + ".token_env", settings["token_env"])
        else:
            token = _string(source, key + ".token", settings.get("token"))
        if not token:
            raise ConfigError(source, key + ".token", "must not be empty")
        signatures = settings.get("signatures", "recombee")
        if signatures not in _SIGNATURES:
            raise ConfigError(
                source,
                key + ".signatures",
                "must be recombee (Recombee's scheme, as its official clients sign) or strict "
                f"(requests carry a digest of their body too), not {signatures!r}",
            )
        from server.config_client import parse_public_token  # it builds on this module's errors

        public = parse_public_token(
            source, key + ".public_token", settings.get("public_token"), token
        )
        databases[name] = DatabaseConfig(
            name, token, strict_signatures=signatures == "strict", public_token=public
        )
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


class _Passphrase(Exception):
    """Raised from load_cert_chain's password callback: the key file is encrypted."""


def _no_passphrase() -> str:
    # Without a callback OpenSSL would prompt on the terminal, and a service would hang.
    raise _Passphrase


def _check_tls_files(source: str, tls: TlsConfig) -> None:
    """The certificate, then the key, then the pair, so that an error names the file at fault."""
    for key, path in (("server.tls.certfile", tls.certfile), ("server.tls.keyfile", tls.keyfile)):
        problem = _file_problem(path)
        if problem is not None:
            raise ConfigError(source, key, f"{path} {problem}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # Read as trusted certificates, this fails on a file that holds no certificate.
        context.load_verify_locations(cafile=tls.certfile)
    except ssl.SSLError as error:
        raise ConfigError(
            source, "server.tls.certfile", f"{tls.certfile} holds no PEM certificate ({error})"
        ) from None
    try:
        context.load_cert_chain(tls.certfile, tls.keyfile, password=_no_passphrase)
    except _Passphrase:
        raise ConfigError(
            source,
            "server.tls.keyfile",
            f"{tls.keyfile} is encrypted with a passphrase; reqo needs an unencrypted key",
        ) from None
    except (ssl.SSLError, OSError) as error:
        raise ConfigError(source, "server.tls.keyfile", _key_problem(tls, error)) from None


def _key_problem(tls: TlsConfig, error: OSError) -> str:
    if isinstance(error, ssl.SSLError) and error.reason == "KEY_VALUES_MISMATCH":
        return f"{tls.keyfile} is not the private key of the certificate in {tls.certfile}"
    return f"{tls.keyfile} holds no usable PEM private key ({error})"


def _file_problem(path: Path) -> str | None:
    """What keeps `path` from being read as a file, or None."""
    try:
        with path.open("rb"):
            return None
    except FileNotFoundError:
        return "does not exist"
    except IsADirectoryError:
        return "is a directory, not a file"
    except OSError as error:
        return f"cannot be read: {error.strerror}"


def _write_problem(directory: Path) -> str | None:
    """Why a file cannot be created in `directory`, or None. Creating one is the test that
    holds for root, ACLs and read-only mounts alike, where permission bits mislead."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".reqo-write-check-"):
            return None
    except OSError as error:
        return error.strerror or str(error)


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
