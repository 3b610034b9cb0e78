"""`reqo role writer|server|trainer`: one role's process, as `reqo serve` starts it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
from collections.abc import Coroutine
from typing import Any

from server.config import Config, ConfigError, load_config

MAX_REQUEST_HEAD_BYTES = 256 * 2**10
SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the GIL while another waits for it (Python's default: 0.005)."""


def add_parser(commands: Any) -> None:
    role = commands.add_parser("role", help="run one role of `reqo serve` (used by reqo serve)")
    role.add_argument("name", choices=["writer", "server", "trainer"])
    role.add_argument("--config", required=True)
    role.add_argument("--log-level", default="info")
    role.add_argument("--fd", type=int, help="the listening socket (server)")
    role.set_defaults(run=run_role)


def run_role(args: argparse.Namespace) -> int:
    from pathlib import Path

    from server.serving.lifecycle import defer_reloads

    # From here a reload asked for (SIGHUP, ignored until now) is done once the role runs: the
    # configuration read next may be older than the reload.
    defer_reloads()
    config = load_config(Path(args.config))
    # The event loop shares the GIL with the database threads (a server's copy applying the
    # change feed, the writer committing): at the default 5 ms switch interval a response
    # could wait that long behind them.
    sys.setswitchinterval(SWITCH_INTERVAL)
    from server.config_telemetry import LogsConfig
    from server.telemetry.logs import configure_logging

    log_format = (config.logs or LogsConfig()).format
    configure_logging(role=args.name, level=args.log_level, log_format=log_format)
    if args.name == "writer":
        return _until_stopped(_writer(config), "writer")
    if args.name == "trainer":
        _writer_listens(config)
        return _until_stopped(_trainer(config), "trainer")
    return _server(config, args.fd, args.log_level)


def _writer_listens(config: Config) -> None:
    """Return once the group's writer listens (the supervisor starts every role at once);
    exit where it never does."""
    from server.cluster.supervisor import STARTUP_WAIT, wait_for_writer

    if not wait_for_writer(config):
        logging.getLogger("reqo").error("reqo: no writer listened within %.0f s", STARTUP_WAIT)
        raise SystemExit(1)


def _until_stopped(work: Coroutine[Any, Any, None], role: str) -> int:
    """Run a role's coroutine until SIGTERM or SIGINT, sampling its process's gauges."""
    from server.telemetry.sampler import Sampler

    async def main() -> None:
        sampling = asyncio.create_task(Sampler(role).run())
        task = asyncio.create_task(work)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sampling.cancel()

    asyncio.run(main())
    return 0


async def _writer(config: Config) -> None:
    import duckdb

    from server.writer.service import WriterService

    service = WriterService(config)
    try:
        service.open()
    except duckdb.IOException as error:
        logging.getLogger("reqo").error(
            "reqo: the writer cannot open a database file, another process has it already "
            "(a `reqo import`, or a server of an older reqo?): %s",
            str(error).splitlines()[0],
        )
        raise SystemExit(3) from None
    try:
        await service.serve()
    finally:
        await asyncio.to_thread(service.close)


async def _trainer(config: Config) -> None:
    from pathlib import Path

    from server.api.app import load_registry
    from server.serving.lifecycle import reload_was_asked
    from server.training.trainer import TrainerService

    service = TrainerService(config, load_registry(config))
    loop = asyncio.get_running_loop()

    def reload() -> None:
        try:
            service.config = load_config(Path(config.source))
        except ConfigError as error:
            logging.getLogger("reqo").error(
                "reload of %s refused: %s",
                config.source,
                error,
                extra={"event": "reload_refused", "reason": str(error)},
            )
            return
        logging.getLogger("reqo").info("reloaded %s", config.source, extra={"event": "reload"})

    loop.add_signal_handler(signal.SIGHUP, reload)
    if reload_was_asked():
        reload()
    await service.run()


def _server(config: Config, fd: int | None, log_level: str) -> int:
    import uvicorn

    from server.api.app import create_app

    if fd is None:
        raise SystemExit("reqo role server: --fd (the listening socket) is required")
    # A batch allocates hundreds of thousands of short-lived objects; with the default
    # thresholds the collector ran often enough to take half of a batch's parsing time.
    gc.set_threshold(100_000, 50, 100)
    tls = {}
    if config.tls is not None:
        tls = {"ssl_certfile": str(config.tls.certfile), "ssl_keyfile": str(config.tls.keyfile)}
    settings = uvicorn.Config(
        create_app(config),
        log_level=log_level,
        # reqo's own access lines (server.telemetry.middleware) and handler: uvicorn's name the
        # query string, signature included.
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
        # A 10,000-character filter percent-encodes to about 30 KB of request line; h11's
        # default of 16 KiB refused such heads when they arrived in several pieces.
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        # Pinned: with Ray installed, uvicorn would pick httptools and uvloop, whose limits and
        # behaviour are not the ones tested here (httptools refuses such long heads).
        http="h11",
        loop="asyncio",
        **tls,  # type: ignore[arg-type]
    )
    listener = socket.socket(fileno=fd)
    _writer_listens(config)
    uvicorn.Server(settings).run(sockets=[listener])
    return 0
