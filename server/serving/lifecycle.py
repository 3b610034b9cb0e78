"""What changes while the server runs: the scenarios and models of the configuration, reloaded on
SIGHUP or `POST /-/reload` (which has the supervisor reload the other processes too). Models are
retrained by the trainer role, never here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

from plugins.manager import Registry
from server.config import Config, ConfigError, load_config
from server.serving.live_models import check_models
from server.serving.scenario_check import check_scenarios
from server.serving.store import Store

logger = logging.getLogger("reqo")


class Live:
    """The configuration in force. Requests read `config` once each; a reload replaces it whole,
    so a request sees the old settings or the new ones, never a mix, and none is dropped."""

    def __init__(self, config: Config, registry: Registry, store: Store) -> None:
        self.config = config
        self.registry = registry
        self.store = store

    async def reload(self, *, notify: bool = False) -> dict[str, Any]:
        """Read the configuration file again and apply its scenarios and models; a refusal
        (ConfigError) leaves everything as it was. Either outcome is logged."""
        try:
            fresh = await self._checked()
        except ConfigError as error:
            logger.error(
                "reload of %s refused: %s",
                self.config.source,
                error,
                extra={"event": "reload_refused", "reason": str(error)},
            )
            raise
        from server.serving.store import semantic_embedders

        for served in self.store.all():
            await served.search.prepare(semantic_embedders(fresh))
            served.models.update(dict(fresh.models))
            # A `current` pointed at another version by hand (a rollback) serves at once.
            await asyncio.to_thread(served.models.refresh)
        self.config = fresh
        logger.info(
            "reloaded %s: scenarios %s",
            fresh.source,
            ", ".join(sorted(fresh.scenarios)) or "none",
            extra={"event": "reload", "scenarios": sorted(fresh.scenarios)},
        )
        if notify:
            notify_supervisor()
        return {"scenarios": sorted(fresh.scenarios), "models": sorted(fresh.models)}

    async def _checked(self) -> Config:
        """The configuration file as it is now, checked against the running server."""
        fresh = await asyncio.to_thread(load_config, Path(self.config.source))
        for key, old, new in (
            ("databases", self.config.databases, fresh.databases),
            ("plugins", self.config.plugins, fresh.plugins),
            ("data_dir", self.config.data_dir, fresh.data_dir),
        ):
            if old != new:
                raise ConfigError(fresh.source, key, "changed: that takes a restart, not a reload")
        check_models(fresh, self.registry)
        check_scenarios(fresh, self.store.schemas(), self.registry.functions)
        return fresh


class _EarlyReload:
    asked = False


def defer_reloads() -> None:
    """Until the process handles SIGHUP itself (once started), remember a reload asked for:
    SIGHUP's default action would kill a process that is still starting."""

    def remember(signum: int, frame: object) -> None:
        _EarlyReload.asked = True

    signal.signal(signal.SIGHUP, remember)


def reload_was_asked() -> bool:
    """Whether a reload was asked for while the process was starting."""
    return _EarlyReload.asked


SUPERVISOR_ENV = "REQO_SUPERVISOR_PID"
"""Set by `reqo serve` in its processes' environment: the process to ask for a reload of all."""


def notify_supervisor() -> None:
    """Have the supervisor reload every process of the group (servers and trainer)."""
    pid = os.environ.get(SUPERVISOR_ENV, "")
    if pid.isdigit():
        with contextlib.suppress(OSError):
            os.kill(int(pid), signal.SIGHUP)
