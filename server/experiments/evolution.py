"""Online optimisation of an ensemble's member weights: an evolution strategy whose fitness is
each weighting's noisy online performance, modelled by a surrogate.

- CMA-ES (the `cma` package) searches the members' log-weights: a point x serves the weights
  softmax(x), scaled so that the largest is 1 (a blend depends on the ratios alone).
- A generation is `population` weightings that CMA-ES proposes, each served as a variant beside
  the incumbent (the best weighting found so far, so that users do not pay for the search);
  Thompson sampling (server.experiments.bandits.Bandit) shares the traffic among them, each with
  at least `min_share` of it.
- A generation ends when each candidate, and the incumbent, has served
  `recommendations_per_candidate` recommendations: the posterior mean reward of each of its
  variants, with its standard deviation, joins the history. A Gaussian process over the history
  (server.experiments.surrogate) models the fitness as a function of the weights and of the
  generation, so that a drift of the traffic over time (the season, new items: every variant of a
  generation shares it) is not mistaken for the weights' doing; each observation's noise is its
  posterior's variance. CMA-ES is told the surrogate's mean at each candidate rather than its raw,
  noisy reward. The next incumbent is chosen cautiously: the incumbent or a well-measured weighting,
  whichever has the best lower bound (mean - standard deviation) now; before the surrogate has
  enough points, a candidate that beat the incumbent of its generation with 90 % confidence
  (Bonferroni-corrected for the population). Once it has, the surrogate also pre-screens: CMA-ES
  proposes `screen` times the population and the most promising (mean + standard deviation) are
  served.
- The state is plain JSON (`to_json`, `restore`): the settings it belongs to, each generation's
  candidates with their CMA-ES points, their evidence and the values told, and CMA-ES's mean,
  step size and covariance. CMA-ES's internals are restored exactly by replaying its asks and
  tells from the seed: its random numbers come from the evolution's own seeded generator, never
  from numpy's global one.

The server (server.experiments.bandits.Experiments) and the replay simulator
(bench/online_weights.py) use this class alike.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from server.experiments.generations import (
    Candidate,
    Evidence,
    Generation,
    StateMismatch,
    candidate_of,
    fingerprint,
    generation_json,
    generation_of,
)
from server.experiments.surrogate import Surrogate
from server.experiments.variants import EvolutionSettings, Experiment, Variant, evolved_name

logger = logging.getLogger("reqo")

Array = np.ndarray[Any, Any]
STATE_VERSION = 1
HISTORY_LIMIT = 256
"""The surrogate is fitted on the latest this many observations (a Gaussian process costs the
cube of its points)."""
SMALLEST_SHARE = 1e-3
"""A starting weight of 0 starts at this share of the largest (a log-weight must be finite)."""
MIN_STD = 0.05
"""CMA-ES keeps at least this spread in every log-weight: online, the landscape moves (new
items, new users), so the search never freezes."""
MAX_STD = 4.0
WEIGHT_DIGITS = 4
"""Decimals of the served weights."""
PROMOTION_CONFIDENCE = 0.9
"""Before the surrogate has enough points, a candidate replaces the incumbent where it beat it
in their generation with this confidence (one-sided, over all the generation's candidates)."""


@dataclass(frozen=True)
class Landscape:
    """The surrogate of a weighting's fitness: a Gaussian process over its weights and its
    generation (scaled by the generations so far, `span`)."""

    surrogate: Surrogate
    span: int

    def predict(self, points: Sequence[Sequence[float]], generation: int) -> tuple[Array, Array]:
        """The mean fitness of weightings in a generation, and its standard deviation."""
        return self.surrogate.predict([(*p, generation / self.span) for p in points])


class WeightEvolution:
    """The online search over one scenario's ensemble weights (see the module's doc). Not
    thread-safe: `successor` gives the next generation as a new object, so that a server can
    compute it beside the one that serves."""

    def __init__(self, settings: EvolutionSettings, first_generation: int = 0) -> None:
        """A new search from the starting weights; its first generation is numbered
        `first_generation` (a search that starts again goes on from the old one's numbers)."""
        self.settings = settings
        self._strategy = _strategy(settings)
        self._generations: list[Generation] = []
        self._by_name: dict[str, Candidate] = {}
        self._experiment: Experiment | None = None
        start = Candidate(evolved_name(first_generation), _normalised(settings.start))
        self._open(first_generation, start, None)

    # -- what serves ----------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        return self._generations[-1].number

    @property
    def current(self) -> Generation:
        return self._generations[-1]

    @property
    def experiment(self) -> Experiment:
        """The current generation's variants (its candidates, then the incumbent), allocated by
        Thompson sampling; the same object until the generation ends."""
        assert self._experiment is not None
        return self._experiment

    def variant(self, name: str | None) -> Variant | None:
        """The variant of that name, of any generation (a next page keeps its weights)."""
        found = self._by_name.get(name or "")
        return None if found is None else self._variant(found)

    def ready(self, served: Mapping[str, int]) -> bool:
        """Whether every variant of the generation, the incumbent too (every candidate is
        judged against it), has served its recommendations."""
        need = self.settings.recommendations_per_candidate
        return all(served.get(v.name, 0) >= need for v in self.current.variants)

    # -- the search -----------------------------------------------------------------------------

    def advance(self, evidence: Mapping[str, Evidence]) -> None:
        """End the generation with what its variants earned (each candidate's evidence is
        required; the incumbent's counts where given) and open the next one."""
        current = self.current
        missing = [c.name for c in current.candidates if c.name not in evidence]
        if missing:
            raise ValueError(f"no evidence for candidates {', '.join(missing)}")
        current.evidence = {
            v.name: evidence[v.name] for v in current.variants if v.name in evidence
        }
        surrogate = self._surrogate()
        if surrogate is not None:
            points = [c.weights for c in current.candidates]
            fitness = surrogate.predict(points, current.number)[0].tolist()
        else:
            fitness = [evidence[c.name].mean for c in current.candidates]
        current.told = tuple(-float(f) for f in fitness)
        self._tell(current)
        best = self._best(surrogate)
        self._open(current.number + 1, Candidate(evolved_name(current.number + 1), best), surrogate)

    def successor(self, evidence: Mapping[str, Evidence]) -> WeightEvolution:
        """A new evolution, this one advanced with the evidence (this one stays as it is)."""
        following = WeightEvolution.restore(self.settings, self.to_json())
        following.advance(evidence)
        return following

    def observations(self) -> list[tuple[int, Candidate, Evidence]]:
        """Every weighting judged so far, with its generation, oldest first."""
        return [
            (g.number, v, g.evidence[v.name])
            for g in self._generations
            if g.evidence is not None
            for v in g.variants
            if v.name in g.evidence and g.evidence[v.name].served > 0
        ]

    def search_mean(self) -> dict[str, float]:
        """The weights at CMA-ES's mean (where the search is centred now)."""
        mean = np.asarray(self._strategy.mean, dtype=np.float64)
        return self.served_weights(_softmax(mean).tolist())

    def served_weights(self, weights: Sequence[float]) -> dict[str, float]:
        """Normalised weights as a variant serves them: the largest is 1, rounded."""
        return served_weights(self.settings.members, weights)

    def summary(self, history: int = 50) -> dict[str, Any]:
        """The search as operators see it (the KPI endpoint): the generation, CMA-ES's centre
        and step size, the incumbent and the latest `history` observations (with, for a
        candidate, the fitness CMA-ES was told: the surrogate's smoothing of the raw mean)."""
        told = {
            c.name: -value
            for g in self._generations
            if g.told is not None
            for c, value in zip(g.candidates, g.told, strict=True)
        }
        seen = self.observations()[-history:]
        return {
            "generation": self.generation,
            "populationSize": self.settings.population,
            "recommendationsPerCandidate": self.settings.recommendations_per_candidate,
            "sigma": float(self._strategy.sigma),
            "searchMean": self.search_mean(),
            "incumbent": {
                "variant": self.current.incumbent.name,
                "weights": self.served_weights(self.current.incumbent.weights),
            },
            "history": [
                {
                    "generation": number,
                    "variant": candidate.name,
                    "weights": self.served_weights(candidate.weights),
                    "mean": found.mean,
                    "sd": found.sd,
                    "served": found.served,
                    "fitness": told.get(candidate.name),
                }
                for number, candidate, found in seen
            ],
        }

    # -- state ----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The whole state as JSON-able values (see the module's doc)."""
        strategy = self._strategy
        return {
            "version": STATE_VERSION,
            "settings": fingerprint(self.settings),
            "generation": self.generation,
            "mean": [float(v) for v in strategy.mean],
            "sigma": float(strategy.sigma),
            "covariance": np.asarray(strategy.sm.C, dtype=np.float64).tolist(),
            "generations": [generation_json(g) for g in self._generations],
        }

    @classmethod
    def restore(cls, settings: EvolutionSettings, data: Mapping[str, Any]) -> WeightEvolution:
        """The evolution of a stored state (`to_json`), CMA-ES replayed to the same point;
        StateMismatch where the state is not of these settings (members, start, population,
        sigma, seed, screen) or cannot be read."""
        if data.get("version") != STATE_VERSION:
            raise StateMismatch(f"version {data.get('version')!r}, not {STATE_VERSION}")
        if data.get("settings") != fingerprint(settings):
            raise StateMismatch("the members, start, population, sigma, seed or screen changed")
        try:
            generations = [generation_of(g, len(settings.members)) for g in data["generations"]]
        except (KeyError, TypeError, ValueError) as error:
            raise StateMismatch(f"unreadable generations ({error!r})") from None
        numbers = [g.number for g in generations]
        finished = [g.told is not None for g in generations]
        first = numbers[0] if numbers else 0
        if (
            numbers != list(range(first, first + len(generations)))
            or not generations
            or finished[-1]
            or not all(finished[:-1])
        ):
            raise StateMismatch("the generations are not consecutive, ending with an open one")
        evolution = cls.__new__(cls)
        evolution.settings = settings
        evolution._strategy = _strategy(settings)
        evolution._generations = []
        evolution._by_name = {}
        for generation in generations:
            evolution._strategy.ask(generation.asked)  # the same draws as the first time
            evolution._generations.append(generation)
            if generation.told is not None:
                evolution._tell(generation)
            for variant in generation.variants:
                evolution._by_name[variant.name] = variant
        evolution._experiment = evolution._build_experiment()
        stored = data.get("mean")
        if isinstance(stored, list) and not np.allclose(evolution._strategy.mean, stored):
            # Another version of `cma` replays differently: the search goes on from here.
            logger.warning("weight evolution: CMA-ES replayed to another mean than was stored")
        return evolution

    # -- internals ------------------------------------------------------------------------------

    def _open(self, number: int, incumbent: Candidate, surrogate: Landscape | None) -> None:
        population = self.settings.population
        screen = self.settings.screen if surrogate is not None else 1
        asked = [np.asarray(x, dtype=np.float64) for x in self._strategy.ask(population * screen)]
        if screen > 1 and surrogate is not None:
            mean, spread = surrogate.predict([_softmax(x).tolist() for x in asked], number)
            order = np.argsort(-(mean + spread), kind="stable")[:population]
            asked = [asked[int(i)] for i in order]
        candidates = tuple(
            Candidate(
                evolved_name(number, index),
                tuple(float(w) for w in _softmax(x)),
                tuple(float(v) for v in x),
            )
            for index, x in enumerate(asked)
        )
        generation = Generation(number, population * screen, candidates, incumbent)
        self._generations.append(generation)
        for variant in generation.variants:
            self._by_name[variant.name] = variant
        self._experiment = self._build_experiment()

    def _tell(self, generation: Generation) -> None:
        assert generation.told is not None
        points = [np.asarray(c.point, dtype=np.float64) for c in generation.candidates]
        self._strategy.tell(points, list(generation.told))

    def _surrogate(self) -> Landscape | None:
        """The Gaussian process over the latest observations, by weights and generation; None
        until there are enough (the members + 2) or where it cannot be fitted."""
        seen = self.observations()[-HISTORY_LIMIT:]
        if len(seen) < len(self.settings.members) + 2:
            return None
        span = self.current.number + 1
        try:
            surrogate = Surrogate(
                [(*c.weights, number / span) for number, c, _ in seen],
                [e.mean for _, _, e in seen],
                [e.sd for _, _, e in seen],
                self.settings.seed,
            )
        except (ValueError, np.linalg.LinAlgError) as error:
            logger.warning("weight evolution: the surrogate could not be fitted: %r", error)
            return None
        return Landscape(surrogate, span)

    def _best(self, landscape: Landscape | None) -> tuple[float, ...]:
        """The weights of the next incumbent, chosen cautiously (users are served by it):
        among the incumbent and the weightings that served their recommendations, the best by
        the surrogate's lower bound (mean - standard deviation) at the current generation.
        Without a surrogate, the generation's best candidate where it beat the incumbent with
        PROMOTION_CONFIDENCE."""
        current = self.current
        incumbent = current.incumbent.weights
        if landscape is not None:
            need = self.settings.recommendations_per_candidate
            seen = self.observations()[-HISTORY_LIMIT:]
            points = [incumbent, *(c.weights for _, c, e in seen if e.served >= need)]
            mean, sd = landscape.predict(points, current.number)
            return points[int(np.argmax(mean - sd))]
        found = current.evidence or {}
        control = found.get(current.incumbent.name)
        if control is None or control.served == 0:
            return incumbent
        doubt = (1 - PROMOTION_CONFIDENCE) / len(current.candidates)
        best, confidence = incumbent, NormalDist().inv_cdf(1 - doubt)
        for candidate in current.candidates:
            evidence = found[candidate.name]
            noise = math.hypot(evidence.sd, control.sd)
            z = (evidence.mean - control.mean) / noise if noise > 0 else 0.0
            if z > confidence:
                best, confidence = candidate.weights, z
        return best

    def _variant(self, candidate: Candidate) -> Variant:
        return Variant(candidate.name, self.settings.model, self.served_weights(candidate.weights))

    def _build_experiment(self) -> Experiment:
        settings = self.settings
        return Experiment(
            tuple(self._variant(v) for v in self.current.variants),
            method="thompson",
            reward=settings.reward,
            min_share=settings.min_share,
            sticky_seconds=settings.sticky_seconds,
        )


def served_weights(members: Sequence[str], weights: Sequence[float]) -> dict[str, float]:
    """Weights by member as a variant serves them: scaled so that the largest is 1, rounded."""
    top = float(max(weights))
    return {
        member: round(float(w) / top, WEIGHT_DIGITS)
        for member, w in zip(members, weights, strict=True)
    }


def stored_incumbent(settings: EvolutionSettings, data: Mapping[str, Any]) -> Variant | None:
    """The incumbent of a stored state's current generation, read without CMA-ES (it serves
    while the evolution is restored); None where the state cannot be read."""
    try:
        incumbent = candidate_of(data["generations"][-1]["incumbent"], len(settings.members), False)
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return Variant(
        incumbent.name, settings.model, served_weights(settings.members, incumbent.weights)
    )


def _strategy(settings: EvolutionSettings) -> Any:
    """A fresh CMA-ES at the starting weights, drawing from its own seeded generator."""
    import cma  # type: ignore[import-untyped]  # cma ships no type information

    generator = np.random.default_rng(settings.seed)

    def randn(*shape: int) -> Array:
        return generator.standard_normal(shape)

    start = np.asarray(settings.start, dtype=np.float64)
    shares = np.maximum(start / start.max(), SMALLEST_SHARE)
    x0 = np.log(shares) - np.log(shares).mean()
    options = {
        "popsize": settings.population,
        "randn": randn,
        "seed": math.nan,  # never touch numpy's global generator
        "CMA_mirrors": 0,  # the surrogate picks among the proposals: no mirrored pairs
        "minstd": MIN_STD,
        "maxstd": MAX_STD,
        "verbose": -9,
    }
    return cma.CMAEvolutionStrategy(x0.tolist(), settings.sigma, options)


def _softmax(x: Array) -> Array:
    shifted = np.exp(x - x.max())
    result: Array = shifted / shifted.sum()
    return result


def _normalised(weights: Sequence[float]) -> tuple[float, ...]:
    total = sum(weights)
    return tuple(float(w) / total for w in weights)
