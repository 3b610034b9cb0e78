"""The records of an online weight evolution (server.experiments.evolution): each generation's
candidates, incumbent and evidence, and their plain-JSON form, as stored in the database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.experiments.variants import EvolutionSettings


class StateMismatch(ValueError):
    """A stored evolution that cannot continue under the configured settings."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"the stored weight evolution does not fit the configuration: {problem}")
        self.problem = problem


@dataclass(frozen=True)
class Evidence:
    """What a weighting earned in its generation: the posterior mean of its reward per
    recommendation, that mean's standard deviation, and the recommendations it served."""

    mean: float
    sd: float
    served: int


@dataclass(frozen=True)
class Candidate:
    """A weighting served as a variant."""

    name: str
    weights: tuple[float, ...]
    """Normalised to sum to 1, in the order of the members."""
    point: tuple[float, ...] | None = None
    """Its CMA-ES point (log-weights); None for an incumbent."""


@dataclass
class Generation:
    """CMA-ES's candidates of one generation, the incumbent served beside them, and (once the
    generation is over) what each earned and what CMA-ES was told."""

    number: int
    asked: int
    """Points CMA-ES proposed (the candidates are the surrogate's pick among them)."""
    candidates: tuple[Candidate, ...]
    incumbent: Candidate
    evidence: dict[str, Evidence] | None = None
    told: tuple[float, ...] | None = None
    """The fitness told to CMA-ES per candidate (negated: CMA-ES minimises)."""

    @property
    def variants(self) -> tuple[Candidate, ...]:
        return (*self.candidates, self.incumbent)


def fingerprint(settings: EvolutionSettings) -> dict[str, Any]:
    """What a stored state must have been made with to be replayed under these settings."""
    return {
        "members": list(settings.members),
        "start": list(settings.start),
        "population": settings.population,
        "sigma": settings.sigma,
        "seed": settings.seed,
        "screen": settings.screen,
    }


def candidate_json(candidate: Candidate) -> dict[str, Any]:
    found: dict[str, Any] = {"name": candidate.name, "weights": list(candidate.weights)}
    if candidate.point is not None:
        found["point"] = list(candidate.point)
    return found


def generation_json(generation: Generation) -> dict[str, Any]:
    return {
        "number": generation.number,
        "asked": generation.asked,
        "candidates": [candidate_json(c) for c in generation.candidates],
        "incumbent": candidate_json(generation.incumbent),
        "evidence": None
        if generation.evidence is None
        else {k: [e.mean, e.sd, e.served] for k, e in generation.evidence.items()},
        "told": None if generation.told is None else list(generation.told),
    }


def candidate_of(data: Mapping[str, Any], dims: int, point: bool) -> Candidate:
    weights = tuple(float(w) for w in data["weights"])
    found = tuple(float(v) for v in data["point"]) if point else None
    if len(weights) != dims or (found is not None and len(found) != dims):
        raise ValueError(f"candidate {data['name']!r} has not {dims} weights")
    return Candidate(str(data["name"]), weights, found)


def generation_of(data: Mapping[str, Any], dims: int) -> Generation:
    evidence = data["evidence"]
    told = data["told"]
    return Generation(
        int(data["number"]),
        int(data["asked"]),
        tuple(candidate_of(c, dims, True) for c in data["candidates"]),
        candidate_of(data["incumbent"], dims, False),
        None
        if evidence is None
        else {str(k): Evidence(float(v[0]), float(v[1]), int(v[2])) for k, v in evidence.items()},
        None if told is None else tuple(float(t) for t in told),
    )
