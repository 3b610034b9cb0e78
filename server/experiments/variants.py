"""A scenario's variants and how its traffic is allocated among them (online A/B tests and bandits).

```yaml
scenarios:
  homepage:
    variants:                     # two or more; each serves with its own model (or logic)
      - {name: ease, model: ease}
      - {name: knn, model: recombee:personal}
      - {name: mix, model: my-ensemble, ensemble_weights: {ease: 2, knn: 1}}
    allocation:
      method: thompson            # thompson (a bandit) | split (a fixed A/B split)
      reward: ctr                 # ctr | revenue | profit: what Thompson sampling maximises
      min_share: 0.05             # thompson: each variant's minimum share of the traffic
      split: {ease: 0.5, knn: 0.5}  # split: the shares, summing to 1 (default: equal)
      sticky_seconds: 86400       # a user keeps a variant this long (0: drawn per request)
```

A scenario with variants names no `model`/`logic`/`ensemble_weights` of its own: each request
is served by the variant it is allocated to (an ensemble's weights go on the variant).

A scenario served by an ensemble may instead have its member weights optimised online
(server/experiments/evolution.py): CMA-ES proposes generations of weightings, each served as a
variant with Thompson sampling beside the best weighting so far, and their rewards are the
fitness.

```yaml
scenarios:
  homepage:
    model: blend                  # an ensemble (algorithm: ensemble)
    ensemble_weights: {ease: 1, knn: 0.5}   # the starting point (default: the model's)
    optimize_online:
      reward: ctr                 # ctr | revenue | profit: the fitness
      population: 4               # weightings per generation (3..50)
      recommendations_per_candidate: 500   # each one's recommendations before it is judged
      min_share: 0.05             # each variant's minimum share (at most 1/(population + 1))
      sigma: 1.0                  # CMA-ES's first step, in log-weights
      seed: 1
      screen: 3                   # the surrogate picks the population from screen x as many
      sticky_seconds: 86400       # a user keeps a weighting this long (0: drawn per request)
```
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.serving.scenarios import (
    ENSEMBLE_ALGORITHM,
    ModelConfig,
    ScenarioError,
    _ensemble_weights,
    resolve_model,
)

METHODS = ("thompson", "split")
EVOLVE = "evolve"
"""The method of a scenario whose ensemble weights are optimised online (`optimize_online`)."""
REWARDS = ("ctr", "revenue", "profit")
DEFAULT_MIN_SHARE = 0.05
DEFAULT_STICKY_SECONDS = 86400.0
MIN_POPULATION = 3
"""CMA-ES learns from no fewer weightings per generation."""
DEFAULT_POPULATION = 4
"""Online, every candidate costs traffic: on the MovieLens replay (bench/online_weights.py, three
members) four did better than six."""
MAX_POPULATION = 50
_VARIANT_KEYS = {"name", "model", "logic", "ensemble_weights"}
_ALLOCATION_KEYS = {"method", "reward", "min_share", "split", "sticky_seconds"}
_EVOLUTION_KEYS = {
    "reward",
    "population",
    "recommendations_per_candidate",
    "min_share",
    "sigma",
    "seed",
    "screen",
    "sticky_seconds",
}


@dataclass(frozen=True)
class Variant:
    """One arm of a scenario's experiment: a name (the `abGroup`) and the model it serves with."""

    name: str
    model: str
    ensemble_weights: Mapping[str, float] | None = None
    """Weights of the members, where the model is an ensemble (over the model's own)."""


@dataclass(frozen=True)
class EvolutionSettings:
    """A scenario's `optimize_online`: the ensemble whose member weights evolve, where they
    start, and how the search runs (server/experiments/evolution.py)."""

    model: str
    members: tuple[str, ...]
    start: tuple[float, ...]
    """Each member's starting weight, in the order of `members`."""
    reward: str = "ctr"
    population: int = DEFAULT_POPULATION
    recommendations_per_candidate: int = 500
    min_share: float = DEFAULT_MIN_SHARE
    sigma: float = 1.0
    seed: int = 1
    screen: int = 3
    sticky_seconds: float = DEFAULT_STICKY_SECONDS

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "start": dict(zip(self.members, self.start, strict=True)),
            "reward": self.reward,
            "population": self.population,
            "recommendationsPerCandidate": self.recommendations_per_candidate,
            "minShare": self.min_share,
            "sigma": self.sigma,
            "seed": self.seed,
            "screen": self.screen,
            "stickySeconds": self.sticky_seconds,
        }


def evolved_name(generation: int, candidate: int | None = None) -> str:
    """The variant name (`abGroup`) of a generation's candidate, or of its incumbent (the best
    weighting so far) where `candidate` is None."""
    return f"g{generation}-best" if candidate is None else f"g{generation}-c{candidate}"


@dataclass(frozen=True)
class Experiment:
    """A scenario's variants and their allocation."""

    variants: tuple[Variant, ...]
    method: str = "thompson"
    reward: str = "ctr"
    min_share: float = DEFAULT_MIN_SHARE
    split: tuple[float, ...] = ()
    """method split: each variant's share, in the order of `variants`."""
    sticky_seconds: float = DEFAULT_STICKY_SECONDS
    evolution: EvolutionSettings | None = None
    """method evolve: how the weights evolve; `variants` then holds the starting weighting
    alone, and the live variants are the current generation's (Experiments)."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)

    def variant(self, name: str | None) -> Variant | None:
        """The variant of that name, where the experiment still has it."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        return None

    def to_json(self) -> dict[str, Any]:
        shown = {
            "method": self.method,
            "reward": self.reward,
            "minShare": self.min_share,
            "split": dict(zip(self.names, self.split, strict=True)) if self.split else None,
            "stickySeconds": self.sticky_seconds,
            "variants": {v.name: v.model for v in self.variants},
        }
        if self.evolution is not None:
            shown["optimizeOnline"] = self.evolution.to_json()
        return shown


def parse_experiment(
    key: str, settings: Mapping[str, Any], models: Mapping[str, ModelConfig]
) -> Experiment | None:
    """The scenario's experiment, or None where it has no `variants` (`key`: the scenario's
    key in the configuration, for errors)."""
    if settings.get("optimize_online", False) is not False:
        return _evolving(key, settings, models)
    raw_variants = settings.get("variants")
    allocation = settings.get("allocation")
    if raw_variants is None:
        if allocation is not None:
            raise ScenarioError(f"{key}.allocation", "needs variants to allocate traffic to")
        return None
    for own in ("model", "logic", "ensemble_weights"):
        if own in settings:
            raise ScenarioError(
                f"{key}.{own}", "a scenario with variants serves each with the variant's model"
            )
    if not isinstance(raw_variants, list) or len(raw_variants) < 2:
        raise ScenarioError(f"{key}.variants", "must be a list of two or more {name, model}")
    variants: list[Variant] = []
    for position, raw in enumerate(raw_variants):
        where = f"{key}.variants[{position}]"
        if not isinstance(raw, Mapping):
            raise ScenarioError(where, "must be a mapping {name, model}")
        for name in raw:
            if name not in _VARIANT_KEYS:
                raise ScenarioError(
                    f"{where}.{name}", "unknown key (expected name, model, ensemble_weights)"
                )
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ScenarioError(f"{where}.name", "is required: a non-empty string")
        if name in (v.name for v in variants):
            raise ScenarioError(f"{where}.name", f"'{name}' names another variant too")
        given = "logic" if "logic" in raw and "model" not in raw else "model"
        if given not in raw:
            raise ScenarioError(f"{where}.model", "is required: a model or logic name")
        model = resolve_model(raw[given], models, f"{where}.{given}")
        weights = _ensemble_weights(
            f"{where}.ensemble_weights", raw.get("ensemble_weights"), models[model]
        )
        variants.append(Variant(name, model, weights))
    return _allocation(key, allocation, tuple(variants))


def _allocation(key: str, value: object, variants: tuple[Variant, ...]) -> Experiment:
    key = f"{key}.allocation"
    settings = {} if value is None else value
    if not isinstance(settings, Mapping):
        raise ScenarioError(key, "must be a mapping {method, reward, min_share, split, ...}")
    for name in settings:
        if name not in _ALLOCATION_KEYS:
            expected = ", ".join(sorted(_ALLOCATION_KEYS))
            raise ScenarioError(f"{key}.{name}", f"unknown key (expected one of {expected})")
    method = settings.get("method", "thompson")
    if method not in METHODS:
        raise ScenarioError(f"{key}.method", f"must be one of {', '.join(METHODS)}, not {method!r}")
    reward = settings.get("reward", "ctr")
    if reward not in REWARDS:
        raise ScenarioError(f"{key}.reward", f"must be one of {', '.join(REWARDS)}, not {reward!r}")
    min_share = _number(f"{key}.min_share", settings.get("min_share", DEFAULT_MIN_SHARE))
    if not 0 <= min_share <= 1 / len(variants):
        raise ScenarioError(
            f"{key}.min_share",
            f"must be from 0 to 1/{len(variants)} (one share per variant), not {min_share!r}",
        )
    sticky = _number(f"{key}.sticky_seconds", settings.get("sticky_seconds", 86400))
    if sticky < 0:
        raise ScenarioError(f"{key}.sticky_seconds", f"must be 0 or more seconds, not {sticky!r}")
    split: tuple[float, ...] = ()
    if method == "split":
        split = _split(f"{key}.split", settings.get("split"), variants)
    elif "split" in settings:
        raise ScenarioError(f"{key}.split", "belongs to method split")
    return Experiment(variants, str(method), str(reward), min_share, split, sticky)


def _evolving(
    key: str, settings: Mapping[str, Any], models: Mapping[str, ModelConfig]
) -> Experiment:
    """The experiment of a scenario with `optimize_online`: its ensemble, checked, and the
    search's settings."""
    where = f"{key}.optimize_online"
    for other in ("variants", "allocation", "logic"):
        if other in settings:
            raise ScenarioError(
                where,
                f"cannot be combined with {other}: it evolves the weights of the scenario's "
                "own ensemble model",
            )
    if "model" not in settings:
        raise ScenarioError(f"{key}.model", "is required with optimize_online: an ensemble model")
    model = models[resolve_model(settings["model"], models, f"{key}.model")]
    if model.algorithm != ENSEMBLE_ALGORITHM:
        raise ScenarioError(
            where,
            f"needs a model of algorithm ensemble, not model '{model.name}' ({model.algorithm})",
        )
    members = model.params.get("members")
    members = [str(m) for m in members] if isinstance(members, list) else []
    if len(members) < 2:
        raise ScenarioError(where, f"needs an ensemble of two or more members ('{model.name}')")
    start = _ensemble_weights(f"{key}.ensemble_weights", settings.get("ensemble_weights"), model)
    own = model.params.get("weights")
    weights = {**(own if isinstance(own, Mapping) else {}), **(start or {})}
    value = settings["optimize_online"]
    raw: Mapping[str, Any] = {} if value is None or value is True else value
    if not isinstance(raw, Mapping):
        raise ScenarioError(where, "must be a mapping {reward, population, min_share, ...}")
    for name in raw:
        if name not in _EVOLUTION_KEYS:
            expected = ", ".join(sorted(_EVOLUTION_KEYS))
            raise ScenarioError(f"{where}.{name}", f"unknown key (expected one of {expected})")
    reward = raw.get("reward", "ctr")
    if reward not in REWARDS:
        raise ScenarioError(
            f"{where}.reward", f"must be one of {', '.join(REWARDS)}, not {reward!r}"
        )
    population = _integer(
        f"{where}.population",
        raw.get("population", DEFAULT_POPULATION),
        MIN_POPULATION,
        MAX_POPULATION,
    )
    per_candidate = _integer(
        f"{where}.recommendations_per_candidate",
        raw.get("recommendations_per_candidate", 500),
        1,
        None,
    )
    min_share = _number(f"{where}.min_share", raw.get("min_share", DEFAULT_MIN_SHARE))
    if not 0 < min_share <= 1 / (population + 1):
        raise ScenarioError(
            f"{where}.min_share",
            f"must be above 0 (every candidate needs its recommendations) and at most "
            f"1/{population + 1} (one share per candidate and the incumbent), not {min_share!r}",
        )
    sigma = _number(f"{where}.sigma", raw.get("sigma", 1.0))
    if not 0 < sigma <= 10:
        raise ScenarioError(f"{where}.sigma", f"must be above 0 and at most 10, not {sigma!r}")
    seed = _integer(f"{where}.seed", raw.get("seed", 1), 0, None)
    screen = _integer(f"{where}.screen", raw.get("screen", 3), 1, 100)
    sticky = _number(f"{where}.sticky_seconds", raw.get("sticky_seconds", DEFAULT_STICKY_SECONDS))
    if sticky < 0:
        raise ScenarioError(f"{where}.sticky_seconds", f"must be 0 or more seconds, not {sticky!r}")
    evolution = EvolutionSettings(
        model=model.name,
        members=tuple(members),
        start=tuple(float(weights.get(m, 1.0)) for m in members),
        reward=str(reward),
        population=population,
        recommendations_per_candidate=per_candidate,
        min_share=min_share,
        sigma=sigma,
        seed=seed,
        screen=screen,
        sticky_seconds=sticky,
    )
    first = Variant(evolved_name(0), model.name, dict(zip(members, evolution.start, strict=True)))
    return Experiment((first,), EVOLVE, str(reward), min_share, (), sticky, evolution)


def _integer(key: str, value: object, low: int, high: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(key, f"must be a whole number, not {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise ScenarioError(key, f"must be {bounds}, not {value!r}")
    return value


def _split(key: str, value: object, variants: tuple[Variant, ...]) -> tuple[float, ...]:
    if value is None:
        return tuple(1 / len(variants) for _ in variants)
    if not isinstance(value, Mapping):
        raise ScenarioError(key, "must be a mapping of variant name -> share")
    names = [v.name for v in variants]
    for name in value:
        if name not in names:
            raise ScenarioError(f"{key}.{name}", f"no such variant (variants: {', '.join(names)})")
    shares = []
    for name in names:
        if name not in value:
            raise ScenarioError(f"{key}.{name}", "is missing: give every variant a share")
        share = _number(f"{key}.{name}", value[name])
        if share < 0:
            raise ScenarioError(f"{key}.{name}", f"must be 0 or more, not {share!r}")
        shares.append(share)
    if not math.isclose(sum(shares), 1.0, abs_tol=1e-6):
        raise ScenarioError(key, f"the shares must sum to 1, not {sum(shares):g}")
    return tuple(shares)


def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(key, f"must be a number, not {value!r}")
    return float(value)
