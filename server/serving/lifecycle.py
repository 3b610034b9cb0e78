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
        """Read the configuration file again and apply its scenarios and models."""
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
        for served in self.store.all():
            served.models.update(dict(fresh.models))
            # A `current` pointed at another version by hand (a rollback) serves at once.
            changed = await asyncio.to_thread(served.models.refresh)
            if changed:
                logger.info("database %r: now serving other versions of %s", served.name, changed)
        self.config = fresh
        logger.info("reloaded %s", fresh.source)
        if notify:
            notify_supervisor()
        return {"scenarios": sorted(fresh.scenarios), "models": sorted(fresh.models)}


SUPERVISOR_ENV = "REQO_SUPERVISOR_PID"
"""Set by `reqo serve` in its processes' environment: the process to ask for a reload of all."""


def notify_supervisor() -> None:
    """Have the supervisor reload every process of the group (servers and trainer)."""
    pid = os.environ.get(SUPERVISOR_ENV, "")
    if pid.isdigit():
        with contextlib.suppress(OSError):
            os.kill(int(pid), signal.SIGHUP)
