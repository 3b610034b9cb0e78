"""`reqo serve`: the roles of one machine as one process group.

The supervisor starts the writer, waits for its socket, binds the HTTP port once and starts N
server processes that share it (the kernel spreads connections over them), then the trainer.
It restarts any process that dies (a server or trainer catches up from the writer's change
feed; a restarted writer reopens the file, whose WAL holds every acknowledged write), forwards
SIGHUP (a configuration reload) to the servers and the trainer, and on SIGTERM or SIGINT stops
the servers first, then the trainer, and the writer last.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from server.cluster.paths import socket_path
from server.config import CONFIG_EXIT, Config
from server.telemetry.multiprocess import (
    metrics_folder,
    prepare_multiprocess,
    process_died,
    remove_multiprocess,
)

logger = logging.getLogger("reqo")

STARTUP_WAIT = 120.0
"""Seconds the writer may take to open the databases and listen."""

STOP_WAIT = 15.0
"""Seconds a process may take to stop before it is killed."""

CRASH_WINDOW = 10.0
"""A process that dies within this many seconds of its start counts as a crash loop..."""

MAX_QUICK_CRASHES = 5
"""...and after this many in a row the supervisor gives up (and stops the group)."""

SUPERVISOR_ENV = "REQO_SUPERVISOR_PID"

_PR_SET_PDEATHSIG = 1


@dataclass
class Role:
    """One process of the group and how to start it again."""

    name: str
    argv: list[str]
    pass_fds: tuple[int, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_crashes: int = 0
    restarts: int = 0


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the supervisor dies (even by kill -9), and
    ignore SIGHUP (a reload) until the role handles it: its default action would kill a process
    that is still starting, and a role that has not read the configuration yet reads it new."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    def __init__(
        self,
        config: Config,
        config_path: Path,
        *,
        host: str,
        port: int,
        workers: int,
        log_level: str,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.host = host
        self.port = port
        self.workers = workers
        self.log_level = log_level
        self.roles: list[Role] = []
        self._stopping = False
        self._reload = False
        self._listener: socket.socket | None = None

    def _argv(self, role: str, *extra: str) -> list[str]:
        return [
            *(sys.executable, "-m", "server.cli", "role", role),
            *("--config", str(self.config_path), "--log-level", self.log_level),
            *extra,
        ]

    def _start(self, role: Role) -> None:
        env = dict(os.environ, **{SUPERVISOR_ENV: str(os.getpid())})
        role.process = subprocess.Popen(
            role.argv,
            pass_fds=role.pass_fds,
            env=env,
            preexec_fn=_die_with_parent,
        )
        role.started = time.monotonic()
        _role_up(role.name, 1)

    def run(self) -> int:
        """Run the group until SIGTERM or SIGINT; returns the exit code."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        if writer_answers(self.config):
            logger.error(
                "reqo serve: a reqo server is already running on %s (its writer answers at "
                "%s); stop it first, or give this one another data_dir",
                self.config.data_dir,
                socket_path(self.config.data_dir, "writer"),
            )
            return 1
        # Every process of the group records its metrics there; any server's scrape reads all.
        metrics = metrics_folder(self.config.data_dir)
        prepare_multiprocess(metrics)
        try:
            return self._run_group()
        finally:
            remove_multiprocess(metrics)

    def _run_group(self) -> int:
        writer = Role("writer", self._argv("writer"))
        self._start(writer)
        self.roles.append(writer)
        # The servers and the trainer start now, and wait for the writer once they have
        # imported and checked what they serve (a second or more saved on every start).
        listener = socket.create_server((self.host, self.port), backlog=2048)
        listener.set_inheritable(True)
        self._listener = listener
        fd = listener.fileno()
        for index in range(self.workers):
            server = Role(
                f"server-{index + 1}",
                self._argv("server", "--fd", str(fd)),
                pass_fds=(fd,),
            )
            self._start(server)
            self.roles.append(server)
        trainer = Role("trainer", self._argv("trainer"))
        self._start(trainer)
        self.roles.append(trainer)
        if not self._wait_for_writer(writer):
            self._stop_all()
            return 1
        logger.info(
            "reqo: writer, %d server(s) on %s:%d and a trainer started",
            self.workers,
            self.host,
            self.port,
        )
        code = self._watch()
        self._stop_all()
        return code

    def _wait_for_writer(self, writer: Role) -> bool:
        deadline = time.monotonic() + STARTUP_WAIT
        assert writer.process is not None
        while time.monotonic() < deadline and not self._stopping:
            if writer.process.poll() is not None:
                logger.error("reqo: the writer exited with %s", writer.process.returncode)
                return False
            if writer_answers(self.config):
                return True
            time.sleep(0.05)
        return False

    def _watch(self) -> int:
        while not self._stopping:
            if self._reload:
                self._reload = False
                for role in self.roles:
                    if role.name != "writer" and role.process is not None:
                        with contextlib.suppress(OSError):
                            role.process.send_signal(signal.SIGHUP)
            for role in self.roles:
                process = role.process
                if process is None or process.poll() is None:
                    continue
                lived = time.monotonic() - role.started
                process_died(process.pid)
                _role_up(role.name, 0)
                if process.returncode == CONFIG_EXIT:
                    logger.error("reqo: %s refused the configuration; stopping", role.name)
                    return 2
                logger.error(
                    "reqo: %s exited with %s after %.1f s; restarting it",
                    role.name,
                    process.returncode,
                    lived,
                )
                role.quick_crashes = role.quick_crashes + 1 if lived < CRASH_WINDOW else 0
                if role.quick_crashes >= MAX_QUICK_CRASHES:
                    logger.error("reqo: %s keeps failing; stopping", role.name)
                    return 1
                role.restarts += 1
                _role_restarted(role.name)
                self._start(role)
            time.sleep(0.1)
        return 0

    def _on_stop(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _on_hup(self, signum: int, frame: object) -> None:
        self._reload = True

    def _stop_all(self) -> None:
        """Servers first (they finish their requests), then the trainer, the writer last."""
        if self._listener is not None:
            self._listener.close()
        order = [r for r in self.roles if r.name.startswith("server")]
        order += [r for r in self.roles if r.name == "trainer"]
        order += [r for r in self.roles if r.name == "writer"]
        for group in (order[:-1], order[-1:]):
            for role in group:
                if role.process is not None and role.process.poll() is None:
                    with contextlib.suppress(OSError):
                        role.process.terminate()
            for role in group:
                if role.process is None:
                    continue
                try:
                    role.process.wait(STOP_WAIT)
                except subprocess.TimeoutExpired:
                    role.process.kill()
                    role.process.wait()


def _role_up(name: str, up: int) -> None:
    """`reqo_role_up{role="writer"|"server-1"|…|"trainer"}`."""
    from server.telemetry.metrics import ROLE_UP

    ROLE_UP.labels(name).set(up)


def _role_restarted(name: str) -> None:
    from server.telemetry.metrics import ROLE_RESTARTS

    ROLE_RESTARTS.labels(name).inc()


def wait_for_writer(config: Config, timeout: float = STARTUP_WAIT) -> bool:
    """Wait until the writer listens (True), or `timeout` seconds (False): a server or a
    trainer starts beside the writer, and reads the data directory once the writer has it."""
    deadline = time.monotonic() + timeout
    while not writer_answers(config):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def writer_answers(config: Config) -> bool:
    """Whether a writer listens for this configuration's data directory."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(socket_path(config.data_dir, "writer")))
        except OSError:
            return False
    return True
