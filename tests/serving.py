"""Start a real reqo server (uvicorn, in a subprocess) on a free localhost port, for tests."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from recombee_api_client.api_client import RecombeeClient

from server.api.auth import sign

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_STARTED: list[subprocess.Popen[bytes]] = []
"""Every server group a test started: what a failed fixture never stopped is killed at exit,
so that no role outlives the test run (a supervisor would restart its roles forever)."""


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@atexit.register
def _kill_leftovers() -> None:
    for process in _STARTED:
        if process.poll() is None:
            _kill_group(process)


@dataclass
class RunningServer:
    """A reqo server process and what a test needs to talk to it."""

    directory: Path
    port: int
    tokens: Mapping[str, str]
    scheme: str = "http"
    allow_unsigned: bool = False
    tls: Mapping[str, str] | None = None
    ca_file: str | None = None
    process: subprocess.Popen[bytes] | None = None
    admin_token: str | None = None
    """The server's admin token (`Authorization: Bearer`), if it has one."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """More configuration keys (plugins, models, scenarios, train_every)."""
    workers: int = 1
    """Server processes (`server.workers`)."""
    ray_address: str | None = None
    """Run on this Ray cluster (`reqo serve --ray ADDRESS`), with `ray` as `server.ray`."""
    ray: Mapping[str, Any] = field(default_factory=dict)
    server_settings: Mapping[str, Any] = field(default_factory=dict)
    """More `server:` keys (cors, logs, metrics)."""
    database_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """More keys per database (public_token, signatures), by name."""
    log_level: str = "warning"
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.directory / f"server-{self.port}.log"

    @classmethod
    def over_tls(cls, directory: Path, tokens: Mapping[str, str], **settings: Any) -> RunningServer:
        """A server on HTTPS with a certificate for 127.0.0.1 from a test authority, whose
        certificate (`ca_file`) clients verify it with."""
        import trustme

        authority = trustme.CA()
        certificate = authority.issue_cert("127.0.0.1", "localhost")
        authority.cert_pem.write_to_path(str(directory / "ca.pem"))
        certificate.private_key_and_cert_chain_pem.write_to_path(str(directory / "cert.pem"))
        return cls(
            directory,
            free_port(),
            tokens,
            scheme="https",
            tls={"certfile": "cert.pem", "keyfile": "cert.pem"},
            ca_file=str(directory / "ca.pem"),
            **settings,
        )

    @property
    def config_path(self) -> Path:
        return self.directory / "reqo.yaml"

    @property
    def base_uri(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.base_uri}"

    def client(self, database: str = "test", token: str | None = None) -> RecombeeClient:
        """The official Recombee client, pointed at this server."""
        return RecombeeClient(
            database,
            token if token is not None else self.tokens[database],
            protocol=self.scheme,
            options={"base_uri": self.base_uri},
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        database: str = "test",
        json: Any = None,
        data: bytes | None = None,
        signed: bool = True,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """A raw HTTP request to `/{database}{path}`, HMAC-signed as Recombee's clients do (with
        the database's token, or `token`)."""
        url_path = f"/{database}{path}"
        if signed:
            url_path += ("&" if "?" in url_path else "?") + f"hmac_timestamp={int(time.time())}"
            key = token if token is not None else self.tokens[database]
            url_path += f"&hmac_sign={sign(url_path, key)}"
        return requests.request(
            method,
            self.url + url_path,
            json=json,
            data=data,
            headers={"Content-Type": "application/json", **(headers or {})},
            timeout=60,
            verify=self.ca_file or True,
        )

    def admin(
        self, method: str, path: str, *, token: str | None = None, json: Any = None
    ) -> requests.Response:
        """A request to reqo's own `/-/` operations with the admin token (or `token`)."""
        bearer = token if token is not None else self.admin_token
        headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
        return requests.request(
            method,
            f"{self.url}/-/{path}",
            json=json,
            headers=headers,
            timeout=60,
            verify=self.ca_file or True,
        )

    def write_config(self) -> None:
        server: dict[str, Any] = {"host": "127.0.0.1", "port": self.port, "workers": self.workers}
        if self.tls is not None:
            server["tls"] = dict(self.tls)
        if self.ray_address is not None:
            server["ray"] = dict(self.ray)
        server.update(self.server_settings)
        databases = {
            name: {"token": token, **self.database_settings.get(name, {})}
            for name, token in self.tokens.items()
        }
        config = {
            "data_dir": "data",
            "allow_unsigned": self.allow_unsigned,
            "server": server,
            "databases": databases,
            **self.extra,
        }
        if self.admin_token is not None:
            config["admin_token"] = self.admin_token
        self.config_path.write_text(yaml.safe_dump(config))

    def start(self, timeout: float = 30.0) -> None:
        self.write_config()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "server.cli", "serve"),
                    *("--config", str(self.config_path), "--log-level", self.log_level),
                    *(("--ray", self.ray_address) if self.ray_address is not None else ()),
                ],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Its own process group: `kill` takes every role down at once, as a crash of
                # the machine would.
                start_new_session=True,
            )
        _STARTED.append(self.process)
        deadline = time.monotonic() + timeout
        verify: str | bool = self.ca_file or True
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"reqo exited with {self.process.returncode}:\n{self.output()}")
            try:
                if requests.get(f"{self.url}/-/health", timeout=1, verify=verify).ok:
                    return
            except requests.RequestException:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"reqo did not answer within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """A graceful shutdown (SIGTERM), as an operator would do it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _kill_group(self.process)

    def kill(self) -> None:
        """SIGKILL to every process of the group: no shutdown code runs, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            _kill_group(self.process)

    def role_pids(self, role: str) -> list[int]:
        """The processes of a role (`writer`, `server`, `trainer`) that the supervisor runs."""
        assert self.process is not None
        found = []
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        for pid in children.read_text().split():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"role" in argv and argv[argv.index(b"role") + 1].decode() == role:
                    found.append(int(pid))
        return sorted(found)
