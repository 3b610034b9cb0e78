"""One model's parameters searched alone for its best validation metric: `reqo optimize --model
NAME --params …` (or `--scenario` of a model that is not an ensemble).

A fit is expensive and a budget is a few dozen fits, so the search spends them by the space:

1. The configured values are fitted first: the figure to beat, and a candidate (a tie keeps
   them, so that an overlay never changes a model for nothing).
2. Choices (string, flag or listed values): every combination is fitted, the numbers at their
   configured values (clipped into their spaces), and the best combination is kept for what
   follows. Enumerating is exact for the few choices such parameters have; it ignores how a
   choice and a number interact, which a budget of ~20 fits could not measure anyway.
3. One number: a grid of `GRID` points spread evenly over its scale (log or linear), then
   bracketing: the midpoint of the wider gap beside the best point so far, again and again (a
   discrete golden-section search). Regularisation and size curves are unimodal on a log
   scale, and this converges on their optimum with no surrogate to fit on five points.
4. Two numbers or more: CMA-ES over the unit cube of their scales from the configured values,
   each generation pre-screened by the Gaussian process of plugins.evaluation.search.

Each distinct setting (after rounding: plugins.evaluation.param_space) is fitted once per seed
and its figure remembered: a repeated setting costs nothing and does not count against the
budget. The fitted models of the configured and of the best setting are kept, so the test
figures need no refit. The validation and test figures are the evaluation harness's (`reqo
evaluate`): its split, its scoring path, the seen items left out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import product
from typing import Any

import numpy as np

from plugins.algorithm import Algorithm
from plugins.evaluation.harness import (
    ModelSpec,
    PreparedSplit,
    Protocol,
    fit_one,
    prepare_split,
    rank,
    test_histories,
)
from plugins.evaluation.metrics import METRICS
from plugins.evaluation.param_space import (
    ParamValue,
    ParamValues,
    SearchError,
    Tunable,
    configured,
)
from plugins.evaluation.search import evolve, parse_metric
from plugins.training import (
    Holdout,
    ItemEmbeddings,
    ItemTextVectorProvider,
    ItemVectorProvider,
    TrainingData,
)
from storage.snapshot import Snapshot

GRID = 5
"""Points of the first grid over a single numeric parameter."""
MIN_GAP = 1e-3
"""Bracketing stops where the gaps beside the best point are narrower (on the unit scale)."""
STALL = 60
"""Settings in a row already fitted after which the search stops (it has converged)."""
Fitted = list[tuple[Algorithm, TrainingData]]
"""One fitted model (and its training data) per seed."""


@dataclass(frozen=True)
class Trial:
    """One setting of the searched parameters, fitted on every seed."""

    values: dict[str, ParamValue]
    value: float
    """The validation metric, mean over the seeds."""
    stage: str
    """"configured", "choices", "grid", "bracket" or "cma-es"."""
    seconds: float
    """Fitting and scoring, every seed."""


@dataclass(frozen=True)
class ParamSearchResult:
    """What a search of one model's parameters found, and the test figures before and after."""

    model: str
    metric: str
    tunables: tuple[Tunable, ...]
    start: Trial
    """The configured values."""
    best: Trial
    history: tuple[Trial, ...]
    """Every fitted setting, in order (at most the budget)."""
    test: dict[int, dict[str, float]]
    """Per seed: the metric on the test users, "configured" and "tuned" (the best setting)."""


class ModelObjective:
    """The validation metric of one model with some parameters set, mean over the seeds'
    splits; the test metric of fitted models."""

    def __init__(
        self,
        snapshot: Snapshot,
        spec: ModelSpec,
        protocol: Protocol,
        metric: str,
        item_vectors: ItemVectorProvider | None = None,
        item_text_vectors: ItemTextVectorProvider | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.spec = spec
        self.protocol = protocol
        self.metric, self.k = parse_metric(metric)
        self.item_vectors = item_vectors
        self.item_text_vectors = _remembered(item_text_vectors)
        self.live = np.array([i is not None for i in snapshot.item_ids], dtype=bool)
        self.splits: list[tuple[int, PreparedSplit]] = []
        for seed in protocol.seeds:
            split = prepare_split(snapshot, protocol, seed)
            if not len(split.holdouts.valid.users):
                raise SearchError("--split", "leaves no user with a validation item to search on")
            self.splits.append((seed, split))

    def fit(self, values: Mapping[str, ParamValue]) -> tuple[float, Fitted]:
        """The model fitted with `values` on each seed's train part: its validation metric
        (mean over the seeds) and the fitted models."""
        spec = replace(self.spec, params={**self.spec.params, **values})
        fitted: Fitted = []
        total = 0.0
        for seed, split in self.splits:
            model, data, _ = fit_one(
                self.snapshot,
                spec,
                self.protocol,
                seed,
                split,
                self.item_vectors,
                self.item_text_vectors,
            )
            fitted.append((model, data))
            valid = split.holdouts.valid
            # Ranked as the test is, from the train history, the user's train items left out.
            seen = Holdout(data.indptr, data.items)
            ranked = rank(model, data, valid.users, seen, self.k, self._candidates(split))
            total += self._measure(ranked, valid)
        return total / len(self.splits), fitted

    def test(self, fitted: Fitted) -> dict[int, float]:
        """Per seed, the metric of its fitted model on the test users (as `reqo evaluate`)."""
        out = {}
        for (seed, split), (model, data) in zip(self.splits, fitted, strict=True):
            history = test_histories(self.snapshot, self.spec, self.protocol, split, data)
            test = split.holdouts.test
            excluded = split.holdouts.seen_before_test
            ranked = rank(model, history, test.users, excluded, self.k, self._candidates(split))
            out[seed] = self._measure(ranked, test)
        return out

    def _candidates(self, split: PreparedSplit) -> np.ndarray[Any, np.dtype[np.bool_]]:
        return split.candidates if split.candidates is not None else self.live

    def _measure(self, ranked: np.ndarray[Any, Any], holdout: Holdout) -> float:
        relevant = [holdout.of_user(int(u)) for u in holdout.users]
        values = METRICS[self.metric](ranked, relevant, self.k)
        return float(values.mean()) if len(values) else 0.0


def check_budget(tunables: Sequence[Tunable], budget: int) -> None:
    """SearchError naming --params or --budget where the search cannot be run (before any fit)."""
    if not tunables:
        raise SearchError("--params", "give at least one parameter to search")
    if budget < 1:
        raise SearchError("--budget", f"must be at least 1, not {budget}")
    combinations = math.prod(len(t.choices) for t in tunables if t.categorical)
    if any(t.categorical for t in tunables) and budget < combinations + 1:
        raise SearchError(
            "--budget",
            f"the configured values and the {combinations} combinations of the choices need "
            f"at least {combinations + 1} fits, not {budget}",
        )


def search_params(
    objective: ModelObjective,
    tunables: Sequence[Tunable],
    *,
    budget: int = 20,
    seed: int = 1,
    progress: Callable[[Trial, Trial], None] | None = None,
) -> ParamSearchResult:
    """The model's best setting of `tunables` on the validation users: at most `budget`
    settings (the configured values included), each fitted once per seed, chosen by the
    strategy of the module's docstring."""
    check_budget(tunables, budget)
    trials = _Trials(objective, tunables, budget, progress)
    start_values = configured(objective.spec, tunables)
    trials.evaluate(start_values, "configured")
    choices = [t for t in tunables if t.categorical]
    numbers = [t for t in tunables if not t.categorical]
    anchor = {t.parameter: t.clip(start_values[t.parameter]) for t in numbers}
    fixed: dict[str, ParamValue] = {}
    if choices:
        names = [t.parameter for t in choices]
        tried = []
        for combination in product(*(t.choices for t in choices)):
            chosen = dict(zip(names, combination, strict=True))
            value = trials.evaluate({**anchor, **chosen}, "choices")
            if value is not None:
                tried.append((value, chosen))
        fixed = max(tried, key=lambda pair: pair[0])[1]
    if len(numbers) == 1:
        _bracket(trials, numbers[0], anchor, fixed)
    elif numbers:
        _evolve(trials, numbers, anchor, fixed, seed)
    before = objective.test(trials.kept[trials.key(start_values)])
    after = objective.test(trials.kept[trials.key(trials.best.values)])
    return ParamSearchResult(
        model=objective.spec.name,
        metric=f"{objective.metric}@{objective.k}",
        tunables=tuple(tunables),
        start=trials.history[0],
        best=trials.best,
        history=tuple(trials.history),
        test={run: {"configured": before[run], "tuned": after[run]} for run in before},
    )


class _Trials:
    """The fits of a search: each setting once, at most `budget`; the models of the first
    (configured) and of the best setting kept."""

    def __init__(
        self,
        objective: ModelObjective,
        tunables: Sequence[Tunable],
        budget: int,
        progress: Callable[[Trial, Trial], None] | None,
    ) -> None:
        self.objective = objective
        self.order = [t.parameter for t in tunables]
        self.budget = budget
        self.progress = progress
        self.history: list[Trial] = []
        self.by_values: dict[ParamValues, Trial] = {}
        self.kept: dict[ParamValues, Fitted] = {}
        self.repeats = 0

    def key(self, values: Mapping[str, ParamValue]) -> ParamValues:
        return tuple((name, values[name]) for name in self.order)

    @property
    def best(self) -> Trial:
        # The first of equals: the configured values win a tie.
        return max(self.history, key=lambda trial: trial.value)

    def evaluate(self, values: Mapping[str, ParamValue], stage: str) -> float | None:
        """The setting's validation metric, fitted unless it was; None once the budget is
        spent, or after `STALL` settings in a row that were all fitted already."""
        key = self.key(values)
        known = self.by_values.get(key)
        if known is not None:
            self.repeats += 1
            return known.value if self.repeats <= STALL else None
        if len(self.history) >= self.budget:
            return None
        self.repeats = 0
        started = time.perf_counter()
        value, fitted = self.objective.fit(dict(key))
        trial = Trial(dict(key), value, stage, time.perf_counter() - started)
        if not self.history or value > self.best.value:
            # Only the configured setting's models and the best's are kept: the test's.
            first = self.key(self.history[0].values) if self.history else key
            self.kept = {k: models for k, models in self.kept.items() if k == first}
            self.kept[key] = fitted
        self.history.append(trial)
        self.by_values[key] = trial
        if self.progress is not None:
            self.progress(trial, self.best)
        return value


def _bracket(
    trials: _Trials,
    tunable: Tunable,
    anchor: Mapping[str, ParamValue],
    fixed: Mapping[str, ParamValue],
) -> None:
    """A grid over one numeric parameter, then bisection of the wider gap beside the best."""
    name = tunable.parameter
    known: dict[float, float] = {}
    for trial in trials.history:
        value = trial.values[name]
        inside = isinstance(value, int | float) and tunable.low <= value <= tunable.high
        if inside and all(trial.values[c] == v for c, v in fixed.items()):
            known[tunable.unit(value)] = trial.value

    def probe(unit: float, stage: str) -> bool:
        found = trials.evaluate({**anchor, **fixed, name: tunable.value(unit)}, stage)
        if found is not None:
            known[unit] = found
        return found is not None

    for unit in np.linspace(0.0, 1.0, GRID).tolist():
        if not probe(unit, "grid"):
            return
    while True:
        points = sorted(known.items())
        best = max(range(len(points)), key=lambda i: points[i][1])
        gaps = [
            (abs(points[best][0] - points[j][0]), points[j][1], points[j][0])
            for j in (best - 1, best + 1)
            if 0 <= j < len(points)
        ]
        gaps = [gap for gap in gaps if gap[0] >= MIN_GAP]
        if not gaps:
            return
        # The wider gap first; of equal gaps, the one toward the better neighbour.
        _, _, neighbour = max(gaps, key=lambda gap: (round(gap[0], 9), gap[1]))
        if not probe((points[best][0] + neighbour) / 2, "bracket"):
            return


def _evolve(
    trials: _Trials,
    tunables: Sequence[Tunable],
    anchor: Mapping[str, ParamValue],
    fixed: Mapping[str, ParamValue],
    seed: int,
) -> None:
    """CMA-ES over the numeric parameters' unit scales, from the configured values."""

    def values(x: Sequence[float]) -> dict[str, ParamValue]:
        numbers = {t.parameter: t.value(u) for t, u in zip(tunables, x, strict=True)}
        return {**anchor, **fixed, **numbers}

    def features(x: Sequence[float]) -> list[float]:
        return [min(max(float(u), 0.0), 1.0) for u in x]

    seen = []
    for trial in trials.history:
        numbers = [trial.values[t.parameter] for t in tunables]
        inside = all(
            isinstance(v, int | float) and t.low <= v <= t.high
            for t, v in zip(tunables, numbers, strict=True)
        )
        if inside and all(trial.values[c] == v for c, v in fixed.items()):
            units = [t.unit(v) for t, v in zip(tunables, numbers, strict=True)]
            seen.append((units, trial.value))
    x0 = [t.unit(anchor[t.parameter]) for t in tunables]
    evolve(
        lambda x, _: trials.evaluate(values(x), "cma-es"),
        x0,
        features,
        seen,
        more=lambda: len(trials.history) < trials.budget,
        seed=seed,
    )


def _remembered(provider: ItemTextVectorProvider | None) -> ItemTextVectorProvider | None:
    """The provider, each embedder's vectors computed once for every fit."""
    if provider is None:
        return None
    known: dict[str, ItemEmbeddings] = {}

    def provide(*, embedder: str) -> ItemEmbeddings:
        if embedder not in known:
            known[embedder] = provider(embedder=embedder)
        return known[embedder]

    return provide
