"""The databases a server holds, by name, with what serves each: its copy of the database (kept
current from the writer's change feed), the ReQL engine, the live models and the pipeline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from plugins.manager import Registry
from server.cluster.client import WriterClient
from server.cluster.links import Links, LocalLinks
from server.config import Config, DatabaseConfig
from server.experiments.bandits import Experiments
from server.search.following import SearchFollower
from server.serving.live_models import LiveModels
from server.serving.pipeline import Pipeline
from server.serving.recommendation_log import RecommendationLog
from server.serving.replica import Replica
from server.serving.reql_engine import ExpressionEngine
from storage.database import Database
from storage.kpi import Assignment
from storage.recommendations import Recommendation, record_to_json
from storage.schema import Schema

if TYPE_CHECKING:
    from server.api.operations import Operation, Params

logger = logging.getLogger("reqo")

MODEL_POLL_INTERVAL = 1.0
"""Seconds between two looks for model versions that a trainer published."""


@dataclass(frozen=True)
class Served:
    """One database and its services."""

    name: str
    database: Database
    """This server's copy (read it; writes go to `writer`)."""
    settings: DatabaseConfig
    engine: ExpressionEngine
    models: LiveModels
    pipeline: Pipeline
    experiments: Experiments
    """The scenarios' variant allocation (bandits, A/B splits) and their counters."""
    replica: Replica
    writer: WriterClient
    log: RecommendationLog
    search: SearchFollower
    """The full-text index of the copy's items (Search Items)."""

    async def write(self, cmd: str, payload: dict[str, Any]) -> Any:
        """Hand a write to the writer; returns once it is committed (its result)."""
        result, _ = await self.writer.write(self.name, cmd, payload)
        return result

    async def select_then_write(
        self, operation: Operation, args: Mapping[str, str], params: Params
    ) -> tuple[Any, int]:
        """Delete/Update More Items: the filter runs here, on this server's copy (under the
        query time limit; the writer never evaluates an expression), and the writer writes
        what it selected. Returns the result and the sequence number of the write."""
        steps = operation.read_then_write
        assert steps is not None
        selected = await self.database.read(lambda ctx: steps.select(ctx, args, params))
        payload = {"op": operation.name, "selected": orjson.loads(orjson.dumps(selected))}
        result, seq = await self.writer.write(self.name, "selected", payload)
        return result, seq

    async def write_and_see(self, cmd: str, payload: dict[str, Any]) -> Any:
        """Hand a write to the writer and wait until this server's copy holds it."""
        result, seq = await self.writer.write(self.name, cmd, payload)
        await self.replica.caught_up(seq)
        return result


class Store:
    """Loads every configured database's copy at start-up, follows the writer's change feed,
    and closes them at shutdown."""

    def __init__(self, config: Config, registry: Registry, links: Links | None = None) -> None:
        self.config = config
        self.registry = registry
        self.links: Links = links if links is not None else LocalLinks(config)
        self.trainer = self.links.trainer
        self._served: dict[str, Served] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._polling: asyncio.Task[None] | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for name, settings in self.config.databases.items():
            if name in self._served:
                continue
            writer = self.links.writer(name)
            replica = Replica(
                name,
                writer,
                await self.links.committed(name),
                read_threads=self.config.read_threads,
            )
            await replica.start()
            database = replica.database
            engine = ExpressionEngine(database, functions=self.registry.functions)

            def ask_trainer(model: str, name: str = name) -> None:
                loop.call_soon_threadsafe(self._ask_trainer, name, model)

            models = LiveModels(
                database,
                dict(self.config.models),
                self.registry,
                self.config.models_dir(name),
                on_missing=ask_trainer,
            )
            log = RecommendationLog(
                partial(_send_log, writer, name, replica), stored=replica.flush_log
            )
            experiments = Experiments(database, log, deferred_writes=True)
            # The posteriors and sticky assignments survive a restart: they are rebuilt from
            # the recommendation log, the interactions and the assignments table.
            await asyncio.to_thread(experiments.load, self._longest_sticky())
            replica.listeners.append(_assignments_to(experiments))
            replica.preparers.append(partial(_load_published, models, name))
            search = SearchFollower(
                database, self.registry, partial(writer.write, name, "text-vectors")
            )
            await search.rebuild()
            await search.prepare(semantic_embedders(self.config))
            replica.preparers.append(search.follow)
            replica.reloaded.append(search.rebuild)
            self._served[name] = Served(
                name,
                database,
                settings,
                engine,
                models,
                Pipeline(engine, models, recent=partial(_shown, log, replica)),
                experiments,
                replica,
                writer,
                log,
                search,
            )
        self._polling = asyncio.create_task(self._poll_models())

    def _ask_trainer(self, database: str, model: str) -> None:
        message = {"op": "train", "db": database, "models": [model], "wait": False}
        task = asyncio.create_task(self.trainer.request(message))
        self._tasks.add(task)
        task.add_done_callback(self._asked)

    def _asked(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("the trainer could not be asked for a model: %s", task.exception())

    async def _poll_models(self) -> None:
        # The first round loads the trained models at start-up, before requests ask for them.
        while True:
            for served in list(self._served.values()):
                try:
                    await asyncio.to_thread(served.models.refresh)
                except Exception:
                    logger.exception("database %r: loading a new model version failed", served.name)
            await asyncio.sleep(MODEL_POLL_INTERVAL)

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

    def schemas(self) -> dict[str, Schema]:
        """Each database's property schema as its copy holds it now."""
        return {name: served.database.schema for name, served in self._served.items()}

    async def close(self) -> None:
        if self._polling is not None:
            self._polling.cancel()
        for task in list(self._tasks):
            task.cancel()
        for served in self._served.values():
            served.search.close()
            await served.log.settled()
            await served.replica.stop()
        self._served.clear()
        await self.links.close()


async def _send_log(
    writer: WriterClient, name: str, replica: Replica, records: list[Recommendation]
) -> None:
    """Store a batch of recommendation records; returns once this server's copy has them."""
    payload = {"records": [record_to_json(record) for record in records]}
    _, seq = await writer.write(name, "log", payload)
    await replica.caught_up(seq)


def _shown(log: RecommendationLog, replica: Replica, user_id: str, since: float) -> dict[str, int]:
    """What was recommended to a user since a time and is not in the copy's table yet: this
    server's records on their way, and the records the feed brought that wait in memory."""
    counts = log.recent(user_id, since)
    for item, count in replica.recent.shown(user_id, since).items():
        counts[item] = counts.get(item, 0) + count
    return counts


async def _load_published(models: LiveModels, name: str, entries: list[dict[str, Any]]) -> None:
    """Swap in the model versions that a trainer published (a `models` entry of the feed)."""
    if any(entry.get("cmd") == "models" for entry in entries):
        await asyncio.to_thread(models.refresh)


def _assignments_to(experiments: Experiments) -> Any:
    def learn(entries: list[dict[str, Any]]) -> None:
        rows = [row for e in entries if e.get("cmd") == "assign" for row in e["assignments"]]
        if rows:
            experiments.learn([Assignment(*row) for row in rows])

    return learn


def semantic_embedders(config: Config) -> set[str]:
    """The text embedders that the configured search scenarios use."""
    return {
        scenario.text_embedder
        for scenario in config.scenarios.values()
        if scenario.search_mode != "full-text"
    }
