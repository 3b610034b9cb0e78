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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.serving.scenarios import ModelConfig, ScenarioError, _ensemble_weights, resolve_model

METHODS = ("thompson", "split")
REWARDS = ("ctr", "revenue", "profit")
DEFAULT_MIN_SHARE = 0.05
DEFAULT_STICKY_SECONDS = 86400.0
_VARIANT_KEYS = {"name", "model", "logic", "ensemble_weights"}
_ALLOCATION_KEYS = {"method", "reward", "min_share", "split", "sticky_seconds"}


@dataclass(frozen=True)
class Variant:
    """One arm of a scenario's experiment: a name (the `abGroup`) and the model it serves with."""

    name: str
    model: str
    ensemble_weights: Mapping[str, float] | None = None
    """Weights of the members, where the model is an ensemble (over the model's own)."""


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
        return {
            "method": self.method,
            "reward": self.reward,
            "minShare": self.min_share,
            "split": dict(zip(self.names, self.split, strict=True)) if self.split else None,
            "stickySeconds": self.sticky_seconds,
            "variants": {v.name: v.model for v in self.variants},
        }


def parse_experiment(
    key: str, settings: Mapping[str, Any], models: Mapping[str, ModelConfig]
) -> Experiment | None:
    """The scenario's experiment, or None where it has no `variants` (`key`: the scenario's
    key in the configuration, for errors)."""
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
