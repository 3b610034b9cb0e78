"""The databases a server holds open, by name, with what serves each: the ReQL engine, the live
models and the recommendation pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from plugins.manager import Registry
from server.config import Config, DatabaseConfig
from server.experiments.bandits import Experiments
from server.serving.live_models import LiveModels
from server.serving.pipeline import Pipeline
from server.serving.reql_engine import ExpressionEngine
from storage.database import Database
from storage.recommendation_log import RecommendationLog


@dataclass(frozen=True)
class Served:
    """One open database and its services."""

    database: Database
    settings: DatabaseConfig
    engine: ExpressionEngine
    models: LiveModels
    pipeline: Pipeline
    log: RecommendationLog
    experiments: Experiments
    """The scenarios' variant allocation (bandits, A/B splits) and their counters."""


class Store:
    """Opens every configured database at start-up and closes them at shutdown."""

    def __init__(self, config: Config, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self._served: dict[str, Served] = {}

    def open(self) -> None:
        for name, settings in self.config.databases.items():
            if name in self._served:
                continue
            database = Database(
                name, self.config.database_path(name), read_threads=self.config.read_threads
            )
            engine = ExpressionEngine(database, functions=self.registry.functions)
            models = LiveModels(
                database, dict(self.config.models), self.registry, self.config.models_dir(name)
            )
            log = RecommendationLog(database)
            experiments = Experiments(database, log)
            # The posteriors and sticky assignments survive a restart: they are rebuilt from
            # the recommendation log, the interactions and the assignments table.
            experiments.load(horizon=self._longest_sticky())
            self._served[name] = Served(
                database, settings, engine, models, Pipeline(engine, models), log, experiments
            )

    def _longest_sticky(self) -> float:
        """The longest time a configured experiment keeps a user on a variant (seconds)."""
        return max(
            (
                s.experiment.sticky_seconds
                for s in self.config.scenarios.values()
                if s.experiment is not None
            ),
            default=0.0,
        )

    def get(self, name: str) -> Served | None:
        return self._served.get(name)

    def names(self) -> list[str]:
        return sorted(self._served)

    def all(self) -> list[Served]:
        return list(self._served.values())

    async def settle(self) -> None:
        """Wait until the recommendation logs are written (before `close`)."""
        for served in self._served.values():
            await served.log.settled()

    def close(self) -> None:
        for served in self._served.values():
            served.database.close()
        self._served.clear()
