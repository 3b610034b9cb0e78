"""The online weight evolutions of one database's scenarios, as a server runs them (the part of
server.experiments.bandits.Experiments for scenarios with `optimize_online`).

- What serves: the evolution's current generation. A new evolution, or one restored from its
  stored state, is built in a thread (importing and replaying CMA-ES takes a while); meanwhile
  the stored state's incumbent serves (or, for a new one, the starting weights).
- The background refresh ends a generation once each candidate has served its
  recommendations: the successor is computed in a thread and stored with the assignments
  (storage/kpi.py's state rows). A server that writes through the writer proposes it and
  switches when the change feed brings it back, so that servers that end a generation at once
  all take the one the writer stored first; a newer generation that another server stored is
  restored and taken at the next refresh.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.experiments.evolution import WeightEvolution, stored_incumbent
from server.experiments.generations import StateMismatch
from server.experiments.variants import EvolutionSettings, Experiment
from storage.kpi import Assignment, Outcomes, state_assignment

logger = logging.getLogger("reqo")

PROPOSAL_TIMEOUT = 60.0
"""Seconds a server waits for the change feed to bring back the generation it proposed before
it proposes again (the write that carried it may have failed)."""


@dataclass(frozen=True)
class _Proposal:
    """A generation this server wrote, waiting for the change feed to confirm it."""

    evolution: WeightEvolution
    state: str
    at: float  # monotonic seconds


class Evolutions:
    """The scenarios' evolutions, under the lock of the Experiments that holds them (`lock`),
    over its counters (`stats`, by scenario and variant). `queue` adds a state row to write
    (under the lock; True where `flush` must then be called, outside it); `deferred`: the
    writer stores it and the change feed brings it back (a server)."""

    def __init__(
        self,
        lock: threading.Lock,
        stats: dict[str, dict[str, Outcomes]],
        queue: Callable[[Assignment], bool],
        flush: Callable[[], None],
        deferred: bool,
    ) -> None:
        self._lock = lock
        self._stats = stats
        self._queue = queue
        self._flush = flush
        self._deferred = deferred
        self._evolutions: dict[str, WeightEvolution] = {}
        self._states: dict[str, tuple[int, str]] = {}
        """Each scenario's latest stored state (generation, JSON), from the database or the
        change feed."""
        self._proposed: dict[str, _Proposal] = {}
        self._busy: set[str] = set()
        """Scenarios whose evolution is being built or advanced in a thread."""
        self._interim: dict[str, Experiment] = {}
        """What serves a scenario while its stored evolution is restored."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.changed = False
        """Another server stored a newer generation: the next refresh takes it."""

    # -- under the lock -------------------------------------------------------------------------

    def stored(self, states: dict[str, tuple[int, str]]) -> None:
        """The states read from the database as it opens."""
        self._states = dict(states)

    def get(self, name: str) -> WeightEvolution | None:
        """The scenario's evolution where it is built."""
        return self._evolutions.get(name)

    def live(self, name: str, experiment: Experiment) -> Experiment:
        """The experiment whose variants serve the scenario now: its evolution's current
        generation; while that is built, the stored incumbent or the starting weights."""
        assert experiment.evolution is not None
        evolution = self._evolution(name, experiment.evolution)
        if evolution is not None:
            return evolution.experiment
        return self._interim.get(name, experiment)

    def learn(self, scenario: str, generation: int, state: str) -> None:
        """A stored state: the first of each generation counts, as the database keeps it.
        Where it is this server's proposal, the proposed generation serves at once; another
        server's is taken at the next refresh."""
        known = self._states.get(scenario)
        if known is not None and known[0] >= generation:
            return
        self._states[scenario] = (generation, state)
        proposal = self._proposed.get(scenario)
        held = self._evolutions.get(scenario)
        if proposal is not None and proposal.state == state and held is not None:
            if held.generation < generation:
                self._evolutions[scenario] = proposal.evolution
            del self._proposed[scenario]
        elif held is not None and held.generation < generation:
            self.changed = True

    # -- the lock taken here --------------------------------------------------------------------

    def due(self) -> bool:
        """Whether an evolution's candidates have all served their recommendations, and no
        proposal of the next generation is awaited."""
        now = time.monotonic()
        with self._lock:
            for name, evolution in self._evolutions.items():
                proposal = self._proposed.get(name)
                if proposal is not None and now - proposal.at < PROPOSAL_TIMEOUT:
                    continue
                arms = self._stats.get(name, {})
                if evolution.ready({v: s.served for v, s in arms.items()}):
                    return True
        return False

    async def evolve(self) -> None:
        """Take the newer stored generations, and end the generations that are due."""
        self.changed = False
        with self._lock:
            names = list(self._evolutions)
        for name in names:
            await self._evolve(name)

    # -- internals ------------------------------------------------------------------------------

    def _evolution(self, name: str, settings: EvolutionSettings) -> WeightEvolution | None:
        held = self._evolutions.get(name)
        if held is not None and held.settings == settings:
            return held
        if name in self._busy:
            return None
        source: dict[str, Any] | None = None
        if held is not None:
            source = held.to_json()  # the configuration changed: go on where possible
        elif name in self._states:
            source = json.loads(self._states[name][1])
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a command, a test): build it here
            self._evolutions[name] = _make_evolution(name, settings, source)
            return self._evolutions[name]
        self._busy.add(name)
        incumbent = None if source is None else stored_incumbent(settings, source)
        if incumbent is not None:
            self._interim[name] = Experiment(
                (incumbent,), "thompson", settings.reward, 0.0, (), settings.sticky_seconds
            )
        self._spawn(loop, self._build(name, settings, source))
        return None

    async def _build(
        self, name: str, settings: EvolutionSettings, source: dict[str, Any] | None
    ) -> None:
        try:
            evolution = await asyncio.to_thread(_make_evolution, name, settings, source)
            with self._lock:
                self._evolutions[name] = evolution
        finally:
            with self._lock:
                self._busy.discard(name)
                self._interim.pop(name, None)

    def _spawn(self, loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]) -> None:
        task = loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("weight evolution failed: %r", task.exception())

    async def _evolve(self, name: str) -> None:
        """Take a newer stored generation, or end the current one where every candidate has
        served its recommendations (the fitting in a thread)."""
        with self._lock:
            evolution = self._evolutions.get(name)
            if evolution is None or name in self._busy:
                return
            stored = self._states.get(name)
            proposal = self._proposed.get(name)
            newer = stored is not None and stored[0] > evolution.generation
            waiting = (
                proposal is not None
                and proposal.evolution.generation > evolution.generation
                and time.monotonic() - proposal.at < PROPOSAL_TIMEOUT
            )
            arms = self._stats.setdefault(name, {})
            stats = {v: copy.copy(arms.get(v, Outcomes())) for v in evolution.experiment.names}
            ready = evolution.ready({v: s.served for v, s in stats.items()})
            if not newer and (waiting or not ready):
                return
            self._busy.add(name)
        try:
            if newer:
                assert stored is not None
                await self._adopt(name, evolution, stored)
                return
            # Imported here: server.experiments.bandits builds its Experiments on this module.
            from server.experiments.bandits import Bandit

            # A posterior draws nothing: the generator is never used.
            evidence = Bandit(evolution.experiment, np.random.default_rng(0), stats).evidence()
            following = await asyncio.to_thread(evolution.successor, evidence)
            state = json.dumps(following.to_json())
            with self._lock:
                if self._evolutions.get(name) is not evolution:
                    return
                row = state_assignment(name, following.generation, state, time.time())
                flush = self._queue(row)
                if self._deferred:
                    self._proposed[name] = _Proposal(following, state, time.monotonic())
                else:
                    self._evolutions[name] = following
                    self._states[name] = (following.generation, state)
            if flush:
                self._flush()
        finally:
            with self._lock:
                self._busy.discard(name)

    async def _adopt(self, name: str, evolution: WeightEvolution, stored: tuple[int, str]) -> None:
        """Serve a stored generation that is newer than the one held (another server's)."""
        with self._lock:
            proposal = self._proposed.pop(name, None)
        if proposal is not None and proposal.state == stored[1]:
            following = proposal.evolution
        else:
            data = json.loads(stored[1])
            try:
                following = await asyncio.to_thread(
                    WeightEvolution.restore, evolution.settings, data
                )
            except StateMismatch as error:
                logger.warning("scenario %r: %s; it is not taken", name, error)
                return
        with self._lock:
            if self._evolutions.get(name) is evolution:
                self._evolutions[name] = following


def _make_evolution(
    name: str, settings: EvolutionSettings, source: dict[str, Any] | None
) -> WeightEvolution:
    """The evolution of a stored state; a new one where there is none or where it does not fit
    the settings (numbered on from the stored generation, so that no variant name comes back
    with other weights)."""
    if source is None:
        return WeightEvolution(settings)
    try:
        return WeightEvolution.restore(settings, source)
    except StateMismatch as error:
        logger.warning(
            "scenario %r: %s; the search starts again from the configuration", name, error
        )
        after = source.get("generation")
        return WeightEvolution(settings, int(after) + 1 if isinstance(after, int) else 0)
