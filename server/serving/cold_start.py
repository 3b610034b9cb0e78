"""How a scenario treats new users and new items (`cold_start:` in its YAML).

```yaml
scenarios:
  homepage:
    endpoint: items-to-user
    model: ease
    cold_start: {model: wide-deep, until: 5}
```

A user with fewer than `until` interactions is scored by a blend of the two models' normalised
scores whose weight shifts from the cold-start model (no interactions: it alone) to the
scenario's model (at `until`: it alone), linearly in the user's interactions. Items likewise:
an item that had fewer than `until` interactions when the scenario's model was trained (one
added since has none) is scored, for every user, by the same blend with its own weight, so
that a new item reaches the users its content suits before the model learns it. Items to Item for
an item that the scenario's model knows nothing of (no candidate scores above 0: an item without
interactions, for a collaborative model) takes the cold-start model's scores, which a content
model (`content-knn`, `wide-deep`, `content-mf`) gives from the item's attributes and text.

Models that score users from their properties (`Algorithm.uses_user_properties`) get them, and
the user's dense index, in `UserHistory`: a cached lookup per user and catalog version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from plugins.algorithm import Algorithm, UserHistory
from server.serving import ranking

Array = np.ndarray[Any, Any]

DEFAULT_UNTIL = 5
"""Interactions from which a user is scored by the scenario's model alone."""


class ColdStartError(ValueError):
    """A `cold_start:` setting that cannot work; names the key and the problem."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class ColdStart:
    """A scenario's cold-start model and the interactions at which it stops counting."""

    model: str
    until: int = DEFAULT_UNTIL


def parse_cold_start(key: str, value: object) -> ColdStart | None:
    """A scenario's `cold_start:` (None where it has none): a model name, or `{model, until}`."""
    if value is None:
        return None
    if isinstance(value, str):
        value = {"model": value}
    if not isinstance(value, Mapping):
        raise ColdStartError(key, "must be a model name or {model, until}")
    unknown = sorted(set(value) - {"model", "until"})
    if unknown:
        raise ColdStartError(f"{key}.{unknown[0]}", "is not a setting (model, until)")
    model = value.get("model")
    if not isinstance(model, str) or not model:
        raise ColdStartError(f"{key}.model", "must be the name of a model")
    until = value.get("until", DEFAULT_UNTIL)
    if isinstance(until, bool) or not isinstance(until, int) or until < 1:
        raise ColdStartError(f"{key}.until", f"must be a whole number >= 1, not {until!r}")
    return ColdStart(model, until)


def wants_user_properties(model: Algorithm, member: Any) -> bool:
    """Whether a model (or a member of an ensemble or stacker: `member(name)` loads one) scores
    users from their properties."""
    # Imported here: scenarios (read with the configuration) parse `cold_start:` from this
    # module without loading the models.
    from plugins.builtin.members import MemberModel

    if model.uses_user_properties:
        return True
    if isinstance(model, MemberModel):
        return any(member(name).uses_user_properties for name in model.members)
    return False


def with_user(history: UserHistory, user: int | None, values: Mapping[str, Any]) -> UserHistory:
    """The history with the user's dense index and property values (its id left out)."""
    properties = {k: v for k, v in values.items() if k != "userId"}
    return replace(history, user=user, properties=properties)


def user_weight(history: UserHistory, until: int) -> float:
    """The scenario model's weight for a user with this history (the cold-start model has the
    rest): 0 without interactions, 1 from `until` on."""
    return min(len(history) / until, 1.0)


def item_weights(counts: Array | None, known: int, size: int, until: int) -> Array:
    """The scenario model's weight for each of `size` items (the cold-start model has the
    rest): the item's interactions when that model was trained (`counts`) over `until`, at most
    1; 0 for an item added since. Without counts (a model trained from shards, or saved before
    they were kept), the `known` items the model was trained with count as known."""
    weights = np.zeros(size)
    if counts is None:
        weights[: min(known, size)] = 1.0
    else:
        n = min(len(counts), size)
        weights[:n] = np.minimum(np.asarray(counts[:n], dtype=np.float64) / until, 1.0)
    return weights


def blend(main: Array, cold: Array, weight: float | Array, mask: Array) -> Array:
    """`weight` (one for every item, or one per item) of the main model's scores and the rest
    of the cold-start model's, each normalised to [0, 1] over the candidates; -inf outside the
    mask."""
    weights = np.asarray(weight, dtype=np.float64)
    if (weights >= 1.0).all():
        return main
    if (weights <= 0.0).all():
        return cold
    shares = np.broadcast_to(np.clip(weights, 0.0, 1.0), main.shape)
    # A model's part counts only where it has weight: 0 x -inf (an item it cannot score) is no
    # score at all, not NaN.
    main_part = np.zeros(main.shape)
    np.multiply(shares, ranking.normalized(main), out=main_part, where=shares > 0.0)
    cold_part = np.zeros(main.shape)
    np.multiply(1.0 - shares, ranking.normalized(cold), out=cold_part, where=shares < 1.0)
    return np.where(mask, main_part + cold_part, -np.inf).astype(np.float32)


def knows_nothing(scores: Array) -> bool:
    """Whether a model's scores give no candidate any evidence (all <= 0 or not finite): what
    a collaborative model answers for an item without interactions."""
    finite = np.isfinite(scores)
    return not bool(np.any(scores[finite] > 0))
