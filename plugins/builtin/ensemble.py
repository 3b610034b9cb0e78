"""An ensemble: a weighted blend of other configured models' normalised scores, per request.

```yaml
models:
  blend:
    algorithm: ensemble
    params:
      members: [ease, vae, item-knn]        # names of configured models (any plugin's)
      weights: {ease: 1.0, vae: 1.0, item-knn: 0.5}   # >= 0; a member not listed weighs 1
      normalisation: zscore                 # zscore | rank
```

The ensemble trains nothing: its members are models of their own, fitted (and retrained) once
and shared by every ensemble and scenario that uses them. The host binds a loaded ensemble to a
lookup of its members (`bind`), which it resolves at each request, so that a member that was
retrained is used at once.

Each member scores the request's candidates; its scores are normalised over the candidates it
can score, then combined:

- `zscore` (the default): (score - mean) / standard deviation over the scored candidates (0
  where all are equal); on MovieLens-100K it blends better than ranks (bench/ensemble.py);
- `rank`: a candidate's rank among the member's scored candidates, as a share in (0, 1] (the
  best 1, the worst 1/n; equal scores share their mean rank), so that members with scores of
  any scale or shape count alike.

The blend is the weighted sum. A candidate that some members cannot score (-inf: a new item)
counts at those members' lowest normalised value; one that no weighted member scores, and every
non-candidate, stays -inf. The blend is shifted to be above 0 wherever it is finite, so that the
host's relevance rule (a positive score is relevant) ranks every scored candidate by the blend.

An ensemble without members scores nothing (-inf everywhere: the host then pads with popular
items); one with members that the host has not bound raises `MembersUnbound`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from plugins.algorithm import Algorithm, Parameter, ParameterError, UserHistory
from plugins.builtin.members import MemberLookup, MemberModel, MembersUnbound
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData

__all__ = [
    "FLOOR",
    "NORMALISATIONS",
    "Ensemble",
    "MemberLookup",
    "MembersUnbound",
    "check_weights",
    "combine",
    "normalise",
]

NORMALISATIONS = ("rank", "zscore")
FLOOR = 1e-6
"""The blend's lowest finite value after the shift: above 0, so every scored candidate counts
as relevant."""

Array = np.ndarray[Any, Any]


class Ensemble(MemberModel):
    """A weighted blend of the normalised scores of other models (its members)."""

    name = "ensemble"
    description = "a weighted blend of other models' normalised scores (rank or z-score)"
    parameters = (
        Parameter("members", list, [], "names of the configured models to blend"),
        Parameter("weights", dict, {}, "weight of each member, >= 0 (a member not listed: 1)"),
        Parameter(
            "normalisation",
            str,
            "zscore",
            "how member scores are made comparable: zscore (standardised) or rank (rank share)",
            choices=NORMALISATIONS,
        ),
    )

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """As MemberModel.validate, and: weights name members and are numbers >= 0, at least
        one of them above 0."""
        checked = super().validate(settings)
        members = checked["members"]
        checked["weights"] = check_weights(cls.name, "weights", checked["weights"], members)
        return checked

    # -- members ----------------------------------------------------------------------------------

    @property
    def member_weights(self) -> dict[str, float]:
        """Every member's weight (1 where the configuration leaves it out)."""
        given: Mapping[str, float] = self.settings["weights"]
        return {member: float(given.get(member, 1.0)) for member in self.members}

    def weighted(self, weights: Mapping[str, float]) -> Ensemble:
        """This ensemble (same members, same binding) with some members' weights replaced: a
        scenario's `ensemble_weights`. ParameterError names a weight that does not fit."""
        merged = {**self.settings["weights"], **weights}
        check_weights(self.name, "weights", merged, self.members)
        other = copy.copy(self)
        other.settings = {**self.settings, "weights": {k: float(v) for k, v in merged.items()}}
        return other

    # -- Algorithm ------------------------------------------------------------------------------

    def fit(self, data: TrainingData) -> None:
        """Nothing to learn: the members are trained as models of their own."""
        self.n_items = data.n_items

    def score_users(
        self,
        histories: Sequence[UserHistory],
        n_items: int,
        candidates: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    ) -> Array:
        """The blend of the members' normalised scores of the candidates for each history."""
        parts = [
            (self._member(name).score_users(histories, n_items, candidates), weight)
            for name, weight in self.member_weights.items()
            if weight > 0
        ]
        return self._blend(parts, len(histories), n_items)

    def score_items(
        self,
        items: Sequence[int],
        n_items: int,
        candidates: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    ) -> Array:
        """The blend of the members' normalised scores of the candidates for each item."""
        parts = [
            (self._member(name).score_items(items, n_items, candidates), weight)
            for name, weight in self.member_weights.items()
            if weight > 0
        ]
        return self._blend(parts, len(items), n_items)

    def _blend(self, parts: list[tuple[Array, float]], rows: int, n_items: int) -> Array:
        method = self.settings["normalisation"]
        normalised = [(normalise(scores, method), weight) for scores, weight in parts]
        return combine(normalised, method, (rows, n_items))

    def state(self) -> dict[str, Array]:
        return {}

    def restore(self, arrays: Mapping[str, Array]) -> None:
        """Nothing to take back: the members are loaded (and bound) by the host."""


def check_weights(
    algorithm: str, parameter: str, weights: object, members: Sequence[str]
) -> dict[str, float]:
    """Weights by member name as floats; ParameterError where one names no member, is not a
    number >= 0, or where members are given and all of them would weigh 0."""
    if not isinstance(weights, Mapping):
        raise ParameterError(algorithm, parameter, "must be a mapping of member -> weight")
    out = {}
    for name, value in weights.items():
        if name not in members:
            listed = ", ".join(members) or "none"
            raise ParameterError(
                algorithm, parameter, f"'{name}' is not a member (members: {listed})"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ParameterError(
                algorithm, parameter, f"the weight of '{name}' must be a number >= 0, not {value!r}"
            )
        out[str(name)] = float(value)
    if members and all(out.get(member, 1.0) == 0 for member in members):
        raise ParameterError(algorithm, parameter, "at least one member must weigh more than 0")
    return out


def normalise(scores: Array, method: str) -> Array:
    """Each row's finite scores made comparable across members (float32; -inf stays -inf):
    `rank` maps them to their rank share in (0, 1], best 1; `zscore` standardises them."""
    scores = np.asarray(scores, dtype=np.float32)
    finite = np.isfinite(scores)
    if method == "rank":
        # Average ranks, 1..n over the whole row: the -inf entries take the lowest ranks, so a
        # finite entry's rank among the finite ones is its rank minus their count.
        import scipy.stats  # here: scipy.stats costs half a second of every server's start

        ranks = scipy.stats.rankdata(np.where(finite, scores, -np.inf), method="average", axis=1)
        scored = finite.sum(axis=1, keepdims=True)
        shares = (ranks - (scores.shape[1] - scored)) / np.maximum(scored, 1)
        return np.where(finite, shares, -np.inf).astype(np.float32)
    if method == "zscore":
        values = np.where(finite, scores, 0.0).astype(np.float64)
        count = np.maximum(finite.sum(axis=1, keepdims=True), 1)
        mean = values.sum(axis=1, keepdims=True) / count
        deviations = np.where(finite, values - mean, 0.0)
        spread = np.sqrt((deviations**2).sum(axis=1, keepdims=True) / count)
        z = np.divide(values - mean, spread, out=np.zeros_like(values), where=spread > 0)
        return np.where(finite, z, -np.inf).astype(np.float32)
    raise ValueError(f"unknown normalisation '{method}' (known: {', '.join(NORMALISATIONS)})")


def combine(parts: Sequence[tuple[Array, float]], method: str, shape: tuple[int, int]) -> Array:
    """The weighted sum of normalised scores (float32, `shape`), shifted above 0 where finite.

    An entry that a member cannot score counts at that member's lowest normalised value of the
    row (rank: 0); an entry that no member scores is -inf.
    """
    total = np.zeros(shape, dtype=np.float64)
    scored = np.zeros(shape, dtype=np.bool_)
    for normalised, weight in parts:
        finite = np.isfinite(normalised)
        scored |= finite
        if method == "rank":
            floor = np.zeros((shape[0], 1))
        else:
            lowest = np.where(finite, normalised, np.inf).min(axis=1, keepdims=True)
            floor = np.where(np.isfinite(lowest), lowest, 0.0)
        total += weight * np.where(finite, normalised, floor)
    if method != "rank" and scored.any():
        # Only the order matters to the ranking; the shift keeps every scored entry relevant.
        lowest = np.where(scored, total, np.inf).min(axis=1, keepdims=True)
        total -= np.where(np.isfinite(lowest), lowest, 0.0)
    total += FLOOR
    return np.where(scored, total, -np.inf).astype(np.float32)


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [Ensemble]
