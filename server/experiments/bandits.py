"""Online allocation of a scenario's traffic among its variants: Thompson sampling on each
variant's reward (or a fixed A/B split), sticky per user, with rewards from attributed
interactions.

`Bandit` is the allocation rule of one experiment, over in-memory counters: the server and the
replay simulators (bench/bandit_replay.py, bench/online_weights.py) use the same class.
`Experiments` holds a database's bandits: it rebuilds their counters from the database when the
database opens (so that the posteriors survive a restart), counts recommendations as they are
served, takes the rewards from the database again in the background when interactions have
changed (never on the request path), and keeps users on their variant for `sticky_seconds`,
persisting the assignments.

A scenario with `optimize_online` evolves its ensemble's weights (server/experiments/evolution.py):
its variants are the current generation's, and the background refresh ends a generation once
each candidate has served its recommendations (server/experiments/evolving.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np

from server.experiments.evolving import Evolutions
from server.experiments.generations import Evidence
from server.experiments.variants import Experiment, Variant
from storage.database import Database, WriteContext, WriteJob
from storage.kpi import (
    Assignment,
    Outcomes,
    load_assignments,
    load_states,
    outcomes,
    save_assignments,
    state_generation,
)

if TYPE_CHECKING:
    from server.serving.recommendation_log import RecommendationLog
    from server.serving.scenarios import ScenarioConfig

logger = logging.getLogger("reqo")

REFRESH_INTERVAL = 1.0
"""Seconds between two reads of the rewards from the database (when interactions changed)."""
PRIOR_WEIGHT = 1.0
"""Pseudo-recommendations of the Gaussian prior (revenue, profit): the pooled mean and variance
of all variants, so that an unserved variant looks like an average one, with a wide spread."""
_SHARE_SAMPLES = 4000


class Bandit:
    """Chooses among an experiment's variants from their counters (`stats`, by variant name; the
    caller may share the dict, e.g. to keep counters across a configuration reload).

    Thompson sampling draws each variant's mean reward from its posterior and serves the best;
    with probability K x min_share it serves a uniformly drawn variant instead, so that each of
    the K variants gets at least min_share of the traffic. Not thread-safe: callers lock."""

    def __init__(
        self,
        experiment: Experiment,
        rng: np.random.Generator,
        stats: dict[str, Outcomes] | None = None,
    ) -> None:
        self.experiment = experiment
        self.rng = rng
        self.stats = stats if stats is not None else {}
        for name in experiment.names:
            self.stats.setdefault(name, Outcomes())

    def choose(self) -> Variant:
        """The variant that serves the next request."""
        variants = self.experiment.variants
        if self.experiment.method == "split":
            return variants[int(self.rng.choice(len(variants), p=self.experiment.split))]
        explore = len(variants) * self.experiment.min_share
        if explore > 0 and self.rng.random() < explore:
            return variants[int(self.rng.integers(len(variants)))]
        return variants[int(np.argmax(self.sample(1)[0]))]

    def served(self, name: str, count: int = 1) -> None:
        """Count recommendations served by a variant."""
        self.stats.setdefault(name, Outcomes()).served += count

    def rewarded(
        self, name: str, *, clicked: bool = False, revenue: float = 0.0, profit: float = 0.0
    ) -> None:
        """Add one served recommendation's outcome (the simulator's way; the server reads the
        outcomes from the database instead)."""
        stats = self.stats.setdefault(name, Outcomes())
        stats.clicks += int(clicked)
        if revenue or profit:
            stats.purchases += 1
            stats.converted += 1
        stats.revenue += revenue
        stats.revenue_sq += revenue * revenue
        stats.profit += profit
        stats.profit_sq += profit * profit

    def sample(self, size: int) -> np.ndarray[Any, Any]:
        """`size` draws of every variant's mean reward from its posterior, shape (size, K)."""
        arms = [self.stats[name] for name in self.experiment.names]
        if self.experiment.reward == "ctr":
            clicks = np.array([min(a.clicks, a.served) for a in arms], dtype=np.float64)
            misses = np.array([a.served for a in arms], dtype=np.float64) - clicks
            draws: np.ndarray[Any, Any] = self.rng.beta(
                1.0 + clicks, 1.0 + misses, size=(size, len(arms))
            )
            return draws
        means, sds = self._gaussian(arms)
        return self.rng.normal(means, sds, size=(size, len(arms)))

    def evidence(self) -> dict[str, Evidence]:
        """Each variant's posterior mean reward, its standard deviation and recommendations
        served: the fitness of a weighting in the online weight evolution."""
        return {
            name: Evidence(mean, sd, self.stats[name].served)
            for name, (mean, sd) in self.posterior().items()
        }

    def posterior(self) -> dict[str, tuple[float, float]]:
        """Each variant's posterior mean reward and its standard deviation."""
        arms = [self.stats[name] for name in self.experiment.names]
        if self.experiment.reward == "ctr":
            result = {}
            for name, arm in zip(self.experiment.names, arms, strict=True):
                a = 1.0 + min(arm.clicks, arm.served)
                b = 1.0 + arm.served - min(arm.clicks, arm.served)
                result[name] = (a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))))
            return result
        means, sds = self._gaussian(arms)
        return {
            name: (float(m), float(s))
            for name, m, s in zip(self.experiment.names, means, sds, strict=True)
        }

    def shares(self) -> dict[str, float]:
        """Each variant's expected share of the traffic under the current counters (Thompson:
        estimated by sampling)."""
        names = self.experiment.names
        if self.experiment.method == "split":
            return dict(zip(names, self.experiment.split, strict=True))
        best = np.bincount(np.argmax(self.sample(_SHARE_SAMPLES), axis=1), minlength=len(names))
        explore = len(names) * self.experiment.min_share
        return {
            name: float(explore / len(names) + (1 - explore) * count / _SHARE_SAMPLES)
            for name, count in zip(names, best, strict=True)
        }

    def _gaussian(self, arms: list[Outcomes]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Normal posteriors of the mean reward per recommendation (revenue or profit), each
        with a weak prior at the pooled mean and variance of all variants."""
        revenue = self.experiment.reward == "revenue"
        n = np.array([a.served for a in arms], dtype=np.float64)
        total = np.array([a.revenue if revenue else a.profit for a in arms], dtype=np.float64)
        squares = np.array(
            [a.revenue_sq if revenue else a.profit_sq for a in arms], dtype=np.float64
        )
        pooled_n = max(float(n.sum()), 1.0)
        prior_mean = float(total.sum()) / pooled_n
        prior_var = float(squares.sum()) / pooled_n - prior_mean**2
        if not prior_var > 0:
            prior_var = max(prior_mean**2, 1.0)
        weight = n + PRIOR_WEIGHT
        means = (total + PRIOR_WEIGHT * prior_mean) / weight
        # Sum of squared deviations from the sample mean, plus the prior's pseudo-variance.
        deviations = np.maximum(squares - np.where(n > 0, total**2 / np.maximum(n, 1), 0), 0)
        variance = (deviations + PRIOR_WEIGHT * prior_var) / weight
        return means, np.sqrt(variance / weight)


class Experiments:
    """The bandits of one database's scenarios, their counters and the sticky assignments.

    Thread-safe: requests choose on the event loop, batches on the database's writer thread."""

    def __init__(
        self,
        database: Database,
        log: RecommendationLog | None = None,
        *,
        seed: int | None = None,
        refresh_interval: float = REFRESH_INTERVAL,
        deferred_writes: bool = False,
    ) -> None:
        self.database = database
        self.log = log
        self.deferred_writes = deferred_writes
        """True in a server, whose database is a copy: the caller takes the new assignments
        (`take_pending`) and hands them to the writer itself."""
        self.refresh_interval = refresh_interval
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._stats: dict[str, dict[str, Outcomes]] = {}
        self._bandits: dict[str, Bandit] = {}
        self._assigned: dict[tuple[str, str], tuple[str, float]] = {}
        self._pruned_at = 0
        self._pending: list[Assignment] = []
        self._flush_queued = False
        self._seen_version = -1
        self._last_refresh = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self._evolutions = Evolutions(
            self._lock, self._stats, self._queue, self._flush, deferred_writes
        )
        """The scenarios with `optimize_online` (server/experiments/evolving.py)."""

    # -- start-up -----------------------------------------------------------------------------

    def load(self, horizon: float = 86400.0) -> None:
        """Rebuild the counters and the assignments of the last `horizon` seconds from the
        database (call before serving)."""
        version = self.database.interactions_version
        found = self.database.read_sync(lambda ctx: outcomes(ctx))
        kept = self.database.read_sync(lambda ctx: load_assignments(ctx, time.time() - horizon))
        states = self.database.read_sync(lambda ctx: load_states(ctx))
        with self._lock:
            self._evolutions.stored(states)
            self._stats.clear()
            for (scenario, variant), stats in found.items():
                if scenario is not None and variant is not None:
                    self._stats.setdefault(scenario, {})[variant] = stats
            for a in sorted(kept, key=lambda a: a.assigned):
                self._assigned[(a.scenario, a.user_id)] = (a.variant, a.assigned)
            self._seen_version = version

    # -- the request path ---------------------------------------------------------------------

    def assign(
        self, scenario: ScenarioConfig, user_id: str | None, now: float | None = None
    ) -> Variant | None:
        """The variant that serves this request of the scenario (None: it has no experiment).
        A user keeps the variant for the experiment's `sticky_seconds`."""
        experiment = scenario.experiment
        if experiment is None:
            return None
        now = time.time() if now is None else now
        sticky = experiment.sticky_seconds > 0 and user_id is not None
        key = (scenario.name, user_id or "")
        with self._lock:
            live = self._live(scenario)
            if sticky:
                held = self._assigned.get(key)
                if held is not None and now - held[1] < experiment.sticky_seconds:
                    variant = live.variant(held[0])
                    if variant is not None:
                        return variant
            variant = self._bandit(scenario.name, live).choose()
            if not sticky:
                return variant
            self._assigned[key] = (variant.name, now)
            queue = self._queue(Assignment(scenario.name, key[1], variant.name, now))
            self._prune(now)
        if queue:
            self._flush()
        return variant

    def variant(self, scenario: ScenarioConfig, name: str | None) -> Variant | None:
        """The variant of that name of the scenario's experiment (an evolution's, of any
        generation), where it has one: a next page is served by the first page's."""
        experiment = scenario.experiment
        if experiment is None:
            return None
        with self._lock:
            evolution = self._evolutions.get(scenario.name)
        found = evolution.variant(name) if evolution is not None else None
        return found if found is not None else experiment.variant(name)

    def served(self, scenario: str, variant: str) -> None:
        """Count a recommendation that a variant served."""
        with self._lock:
            self._stats.setdefault(scenario, {}).setdefault(variant, Outcomes()).served += 1

    def maybe_refresh(self) -> None:
        """Read the rewards again in the background where interactions changed since the last
        read (or an evolution's generation is due to end, or another server stored a newer
        one), at most once per `refresh_interval` (call on the event loop)."""
        if (
            self.database.interactions_version == self._seen_version
            and not self._evolutions.changed
            and not self._evolutions.due()
        ):
            return
        if self._refreshing is not None and not self._refreshing.done():
            return
        if time.monotonic() - self._last_refresh < self.refresh_interval:
            return
        self._refreshing = asyncio.get_running_loop().create_task(self.refresh())

    async def refresh(self) -> None:
        """Read the rewards (clicks, purchases, revenue, profit) of every variant again."""
        self._last_refresh = time.monotonic()
        version = self.database.interactions_version
        if self.log is not None:
            # Records of responses already sent must be in the table for their clicks to count.
            await self.log.settled()
        found, states = await self.database.read(lambda ctx: (outcomes(ctx), load_states(ctx)))
        with self._lock:
            for scenario, stored in states.items():
                self._evolutions.learn(scenario, *stored)
            for scenario, arms in self._stats.items():
                for variant, stats in arms.items():
                    fresh = found.get((scenario, variant), Outcomes())
                    # The served counts stay the in-memory ones: they include responses whose
                    # records are still on their way to the table.
                    fresh.served = stats.served
                    arms[variant] = fresh
            for (of, named), stats in found.items():
                if of is not None and named is not None:
                    self._stats.setdefault(of, {}).setdefault(named, stats)
            self._seen_version = version
        await self._evolutions.evolve()

    def state(self, scenario: ScenarioConfig) -> dict[str, Any] | None:
        """The scenario's bandit as the KPI endpoint shows it: each variant's counters,
        posterior and expected share of the traffic."""
        experiment = scenario.experiment
        if experiment is None:
            return None
        with self._lock:
            live = self._live(scenario)
            bandit = self._bandit(scenario.name, live)
            posterior = bandit.posterior()
            shares = bandit.shares()
            variants = {
                variant.name: {
                    "model": variant.model,
                    "served": bandit.stats[variant.name].served,
                    "clicks": bandit.stats[variant.name].clicks,
                    "revenue": bandit.stats[variant.name].revenue,
                    "profit": bandit.stats[variant.name].profit,
                    "posteriorMean": posterior[variant.name][0],
                    "posteriorSd": posterior[variant.name][1],
                    "share": shares[variant.name],
                }
                for variant in live.variants
            }
            if experiment.evolution is not None:
                for variant in live.variants:
                    variants[variant.name]["weights"] = dict(variant.ensemble_weights or {})
            evolution = self._evolutions.get(scenario.name)
        shown = {**experiment.to_json(), "variants": variants}
        if experiment.evolution is not None:
            shown["evolution"] = evolution.summary() if evolution is not None else None
        return shown

    def assignment(self, scenario: str, user_id: str) -> tuple[str, float] | None:
        """The variant a user is held to in a scenario, and since when (None: not held)."""
        with self._lock:
            return self._assigned.get((scenario, user_id))

    # -- internals ----------------------------------------------------------------------------

    def _bandit(self, name: str, experiment: Experiment) -> Bandit:
        bandit = self._bandits.get(name)
        if bandit is None or (
            bandit.experiment is not experiment and bandit.experiment != experiment
        ):
            # New, or the configuration was reloaded: the counters (by variant name) carry over.
            bandit = Bandit(experiment, self._rng, self._stats.setdefault(name, {}))
            self._bandits[name] = bandit
        return bandit

    def take_pending(self) -> list[Assignment]:
        """The assignments made since the last call, for the writer (`deferred_writes`)."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._flush_queued = False
        return pending

    def learn(self, assignments: list[Assignment]) -> None:
        """Assignments that another server made (from the change feed): the user keeps the
        variant here as well. An evolution state takes over where it is the one this server
        proposed; another server's is built at the next refresh (off the event loop)."""
        with self._lock:
            for a in assignments:
                generation = state_generation(a)
                if generation is not None:
                    self._evolutions.learn(a.scenario, generation, a.variant)
                    continue
                held = self._assigned.get((a.scenario, a.user_id))
                if held is None or held[1] <= a.assigned:
                    self._assigned[(a.scenario, a.user_id)] = (a.variant, a.assigned)

    def _queue(self, assignment: Assignment) -> bool:
        """Add an assignment (or state) to write (under the lock); True where the caller must
        `_flush` (no write is queued yet)."""
        self._pending.append(assignment)
        queue = not self._flush_queued
        self._flush_queued = True
        return queue and not self.deferred_writes

    def _flush(self) -> None:
        future = self.database.submit(WriteJob(self._write_pending))
        future.add_done_callback(_log_failure)

    def _live(self, scenario: ScenarioConfig) -> Experiment:
        """The experiment whose variants serve the scenario now (under the lock): its own, or
        its evolution's current generation."""
        experiment = scenario.experiment
        assert experiment is not None
        if experiment.evolution is None:
            return experiment
        return self._evolutions.live(scenario.name, experiment)

    def _write_pending(self, ctx: WriteContext) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            self._flush_queued = False
        save_assignments(ctx, pending)

    def _prune(self, now: float) -> None:
        """Forget expired assignments once the dict has doubled since the last pruning (under
        the lock): they would be drawn again anyway."""
        if len(self._assigned) < max(2 * self._pruned_at, 1024):
            return
        longest = max((b.experiment.sticky_seconds for b in self._bandits.values()), default=0.0)
        self._assigned = {
            key: held for key, held in self._assigned.items() if now - held[1] < longest
        }
        self._pruned_at = len(self._assigned)


def _log_failure(future: Future[Any]) -> None:
    error = None if future.cancelled() else future.exception()
    if error is not None:
        logger.error("variant assignments were not saved: %r", error)
