"""What changes while the server runs: the scenarios and models of the configuration (reloaded on
SIGHUP or `POST /-/reload`), and models retrained on the `train_every` schedule."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from plugins.manager import Registry
from server.config import Config, ConfigError, load_config
from server.serving.live_models import check_models
from server.serving.store import Store

logger = logging.getLogger("reqo")


class Live:
    """The configuration in force. Requests read `config` once each; a reload replaces it whole,
    so a request sees the old settings or the new ones, never a mix, and none is dropped."""

    def __init__(self, config: Config, registry: Registry, store: Store) -> None:
        self.config = config
        self.registry = registry
        self.store = store
        self._stopping = False

    def stop(self) -> None:
        """Train no further model (at shutdown): a training thread cannot be cancelled, so the
        schedule stops between models rather than starting one the shutdown would wait for."""
        self._stopping = True

    async def reload(self) -> dict[str, Any]:
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
        for served in self.store.all():
            served.models.update(dict(fresh.models))
        self.config = fresh
        logger.info("reloaded %s", fresh.source)
        return {"scenarios": sorted(fresh.scenarios), "models": sorted(fresh.models)}

    async def train_on_schedule(self) -> None:
        """Retrain every model of every database every `train_every` seconds (runs until
        cancelled); a new version replaces the old one atomically."""
        while True:
            interval = self.config.train_every
            await asyncio.sleep(interval if interval else 60.0)
            if not self.config.train_every:
                continue
            for served in self.store.all():
                for name in served.models.training_order():
                    if self._stopping:
                        return
                    try:
                        await asyncio.to_thread(served.models.train, name)
                    except Exception:
                        logger.exception("training %s/%s failed", served.database.name, name)
