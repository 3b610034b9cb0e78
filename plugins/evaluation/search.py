"""Offline optimisation of an ensemble's member weights (and, optionally, members' parameters):
CMA-ES over the weights, a Gaussian-process surrogate that pre-screens each generation, the
validation metric of the evaluation harness as the objective.

Per seed, the harness's split is made once and each member is fitted once on its train part;
each member's scores of the validation users (and of the test users) are normalised once, as the
ensemble normalises them at a request (over the candidates, the user's seen items left out).
Evaluating a weighting is then a weighted sum and a top-K: milliseconds. A searched member
parameter refits that member for each value (cached, but expensive).

Each CMA-ES generation asks for `screen` times its population; the surrogate, fitted on every
weighting evaluated so far, ranks them by an optimistic estimate (mean + std), and only the best
`population` are evaluated; the others are told to CMA-ES at the surrogate's mean (`evolve`,
which plugins.evaluation.param_search uses too, for one model's parameters alone). The spaces of
searched parameters (`--params`) are those of plugins.evaluation.param_space.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from plugins.algorithm import Algorithm
from plugins.builtin.ensemble import combine, normalise
from plugins.evaluation.harness import (
    ModelSpec,
    PreparedSplit,
    Protocol,
    fit_one,
    histories,
    prepare_split,
)
from plugins.evaluation.metrics import METRICS, top_k
from plugins.evaluation.param_space import ParamValue, ParamValues
from plugins.evaluation.param_space import SearchError as SearchError
from plugins.evaluation.param_space import Tunable as Tunable
from plugins.evaluation.param_space import parse_tunables as parse_tunables
from plugins.training import ItemVectorProvider, TrainingData
from storage.snapshot import Snapshot

Array = np.ndarray[Any, Any]
SCORE_CELLS = 1 << 24
"""Users are scored in batches of at most this many (user, item) scores."""
TUNED_CACHE = 12
"""Validation scores kept for refitted members (per seed and parameter values)."""


def parse_metric(text: str) -> tuple[str, int]:
    """ "ndcg@10" -> ("ndcg", 10); SearchError naming --metric otherwise."""
    name, _, k = text.strip().lower().partition("@")
    if name not in METRICS or not k.isdigit() or int(k) < 1:
        known = ", ".join(f"{m}@K" for m in METRICS)
        raise SearchError("--metric", f"{text!r} is not one of {known} (K >= 1)")
    return name, int(k)


@dataclass(frozen=True)
class Evaluated:
    """One weighting (and member parameters) evaluated on the validation users."""

    weights: dict[str, float]
    """Normalised to sum to 1."""
    params: dict[str, dict[str, ParamValue]]
    value: float
    """The metric, mean over the seeds."""
    generation: int


@dataclass(frozen=True)
class SearchResult:
    """What a search found, and the test figures of the best weighting beside each member's."""

    metric: str
    members: tuple[str, ...]
    start: Evaluated
    """The configured weights."""
    best: Evaluated
    history: tuple[Evaluated, ...]
    screened: int
    """Candidates the surrogate ranked (evaluated or not)."""
    validation: dict[str, float]
    """Each member alone on the validation users (mean over seeds)."""
    test: dict[int, dict[str, float]]
    """Per seed: the metric on the test users of "ensemble" (best weights), "configured" (the
    configured weights) and each member alone."""

    @property
    def best_weights(self) -> dict[str, float]:
        """The best weights, scaled so that the largest is 1, rounded."""
        top = max(self.best.weights.values())
        return {m: round(w / top, 4) for m, w in self.best.weights.items()}


@dataclass
class _Seed:
    """One seed's split, its fitted members and their normalised scores."""

    seed: int
    split: PreparedSplit
    valid_users: Array
    valid_relevant: list[Array]
    test_users: Array
    test_relevant: list[Array]
    fitted: dict[str, tuple[Algorithm, TrainingData]] = field(default_factory=dict)
    valid: dict[str, Array] = field(default_factory=dict)
    tuned: OrderedDict[tuple[str, ParamValues], Array] = field(default_factory=OrderedDict)


class Objective:
    """The validation metric of weighted blends of members, over every seed's split."""

    def __init__(
        self,
        snapshot: Snapshot,
        members: Sequence[ModelSpec],
        protocol: Protocol,
        normalisation: str,
        metric: str,
        item_vectors: ItemVectorProvider | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.members = {spec.name: spec for spec in members}
        self.protocol = protocol
        self.normalisation = normalisation
        self.metric, self.k = parse_metric(metric)
        self.item_vectors = item_vectors
        self.candidates = np.array([i is not None for i in snapshot.item_ids], dtype=bool)
        self.seeds: list[_Seed] = []
        say = progress or (lambda _: None)
        for seed in protocol.seeds:
            split = prepare_split(snapshot, protocol, seed)
            valid, test = split.holdouts.valid, split.holdouts.test
            state = _Seed(
                seed,
                split,
                valid.users,
                [valid.of_user(int(u)) for u in valid.users],
                test.users,
                [test.of_user(int(u)) for u in test.users],
            )
            for name, spec in self.members.items():
                say(f"seed {seed}: fitting {name}")
                model, data = self._fit(spec, seed, split)
                state.fitted[name] = (model, data)
                state.valid[name] = self._valid_scores(model, data, state)
            self.seeds.append(state)

    def _fit(self, spec: ModelSpec, seed: int, split: PreparedSplit) -> tuple[Algorithm, Any]:
        model, data, _ = fit_one(self.snapshot, spec, self.protocol, seed, split, self.item_vectors)
        return model, data

    def _scores(
        self, model: Algorithm, data: TrainingData, users: Array, excluded: Sequence[Array]
    ) -> Array:
        """Normalised scores of the users from their train histories, their `excluded` items
        left out of the candidates (as the server leaves out a user's seen items)."""
        out = np.empty((len(users), data.n_items), dtype=np.float32)
        batch = max(1, min(1024, SCORE_CELLS // max(1, data.n_items)))
        for start in range(0, len(users), batch):
            chunk = users[start : start + batch].tolist()
            scores = model.score_users(histories(data, chunk), data.n_items, self.candidates)
            for row, items in enumerate(excluded[start : start + batch]):
                scores[row, items] = -np.inf
            out[start : start + len(chunk)] = normalise(scores, self.normalisation)
        return out

    def _valid_scores(self, model: Algorithm, data: TrainingData, state: _Seed) -> Array:
        def train_items(user: int) -> Array:
            return data.items[int(data.indptr[user]) : int(data.indptr[user + 1])]

        excluded = [train_items(int(u)) for u in state.valid_users]
        return self._scores(model, data, state.valid_users, excluded)

    def _test_scores(self, model: Algorithm, data: TrainingData, state: _Seed) -> Array:
        seen = state.split.holdouts.seen_before_test
        return self._scores(
            model, data, state.test_users, [seen.of_user(int(u)) for u in state.test_users]
        )

    def _tuned(self, state: _Seed, member: str, values: ParamValues) -> Array:
        """A member's validation scores with some parameters changed (refitted, cached)."""
        key = (member, values)
        if key in state.tuned:
            state.tuned.move_to_end(key)
            return state.tuned[key]
        model, data = self._fit(self._spec(member, values), state.seed, state.split)
        scores = self._valid_scores(model, data, state)
        state.tuned[key] = scores
        if len(state.tuned) > TUNED_CACHE:
            state.tuned.popitem(last=False)
        return scores

    def _spec(self, member: str, values: ParamValues) -> ModelSpec:
        spec = self.members[member]
        return replace(spec, params={**spec.params, **dict(values)})

    def _measure(
        self, blocks: Mapping[str, Array], weights: Mapping[str, float], state: _Seed, test: bool
    ) -> float:
        parts = [(blocks[m], w) for m, w in weights.items() if w > 0]
        users = state.test_users if test else state.valid_users
        relevant = state.test_relevant if test else state.valid_relevant
        blend = combine(parts, self.normalisation, (len(users), len(self.candidates)))
        ranked = top_k(blend, self.k)
        values = METRICS[self.metric](ranked, relevant, self.k)
        return float(values.mean()) if len(values) else 0.0

    def __call__(
        self, weights: Mapping[str, float], params: Mapping[str, ParamValues] | None = None
    ) -> float:
        """The metric of a weighting on the validation users, mean over the seeds."""
        total = 0.0
        for state in self.seeds:
            blocks = dict(state.valid)
            for member, values in (params or {}).items():
                if values:
                    blocks[member] = self._tuned(state, member, values)
            total += self._measure(blocks, weights, state, test=False)
        return total / len(self.seeds)

    def test(
        self,
        weights: Mapping[str, float],
        params: Mapping[str, ParamValues] | None,
        configured: Mapping[str, float],
    ) -> dict[int, dict[str, float]]:
        """Per seed, the metric on the test users of the blend (members refitted with `params`
        where given), of the configured blend and of each member alone."""
        out = {}
        for state in self.seeds:
            plain = {m: self._test_scores(*state.fitted[m], state) for m in self.members}
            tuned = dict(plain)
            for member, values in (params or {}).items():
                if values:
                    model, data = self._fit(self._spec(member, values), state.seed, state.split)
                    tuned[member] = self._test_scores(model, data, state)
            figures = {
                "ensemble": self._measure(tuned, weights, state, test=True),
                "configured": self._measure(plain, configured, state, test=True),
            }
            for member in self.members:
                figures[member] = self._measure(plain, {member: 1.0}, state, test=True)
            out[state.seed] = figures
        return out


def search(
    objective: Objective,
    start: Mapping[str, float],
    *,
    budget: int = 60,
    tunables: Sequence[Tunable] = (),
    seed: int = 1,
    sigma: float = 0.3,
    screen: int = 4,
    progress: Callable[[Evaluated, Evaluated], None] | None = None,
) -> SearchResult:
    """CMA-ES over the members' weights (each in [0, 1], then normalised to sum to 1) and the
    tunables (in [0, 1], mapped to their spaces), with a Gaussian-process surrogate choosing
    which of each generation's candidates are evaluated; at most `budget` evaluations."""
    members = tuple(objective.members)
    if budget < 1:
        raise SearchError("--budget", f"must be at least 1, not {budget}")
    top = max(start.values()) if start and max(start.values()) > 0 else 1.0
    x0 = [start.get(m, 1.0) / top for m in members] + [0.5] * len(tunables)

    def decode(x: Sequence[float]) -> tuple[dict[str, float], dict[str, ParamValues]]:
        raw = np.clip(np.asarray(x[: len(members)], dtype=np.float64), 0.0, 1.0)
        raw = raw / raw.sum() if raw.sum() > 0 else np.full(len(members), 1.0 / len(members))
        weights = {m: float(w) for m, w in zip(members, raw, strict=True)}
        params: dict[str, list[tuple[str, ParamValue]]] = {}
        for tunable, unit in zip(tunables, x[len(members) :], strict=True):
            params.setdefault(tunable.member, []).append((tunable.parameter, tunable.value(unit)))
        return weights, {m: tuple(v) for m, v in params.items()}

    def features(x: Sequence[float]) -> list[float]:
        # The surrogate sees what the objective depends on: normalised weights, unit params.
        weights, _ = decode(x)
        return [weights[m] for m in members] + [min(max(u, 0.0), 1.0) for u in x[len(members) :]]

    history: list[Evaluated] = []

    def evaluate(x: Sequence[float], generation: int) -> float | None:
        if len(history) >= budget:
            return None
        weights, params = decode(x)
        value = objective(weights, params)
        record = Evaluated(weights, {m: dict(v) for m, v in params.items()}, value, generation)
        history.append(record)
        if progress is not None:
            progress(record, max(history, key=lambda e: e.value))
        return value

    seen = [(features(x0), evaluate(x0, 0) or 0.0)]
    start_record = history[0]
    screened = evolve(
        evaluate,
        x0,
        features,
        seen,
        more=lambda: len(history) < budget,
        seed=seed,
        sigma=sigma,
        screen=screen,
    )
    best = max(history, key=lambda e: e.value)
    validation = {m: objective({m: 1.0}) for m in members}
    configured = start_record.weights
    best_params = {m: tuple(v.items()) for m, v in best.params.items()}
    test = objective.test(best.weights, best_params, configured)
    return SearchResult(
        metric=f"{objective.metric}@{objective.k}",
        members=members,
        start=start_record,
        best=best,
        history=tuple(history),
        screened=screened,
        validation=validation,
        test=test,
    )


def evolve(
    evaluate: Callable[[Sequence[float], int], float | None],
    x0: Sequence[float],
    features: Callable[[Sequence[float]], list[float]],
    seen: list[tuple[list[float], float]],
    *,
    more: Callable[[], bool] = lambda: True,
    seed: int = 1,
    sigma: float = 0.3,
    screen: int = 4,
) -> int:
    """CMA-ES over [0, 1]^d from `x0`, maximising `evaluate(x, generation)` until it answers
    None (its budget is spent), `more()` turns false before a generation, or CMA-ES stops;
    returns how many candidates were screened.

    Once `seen` (the surrogate's (features, value) pairs, appended to as points are evaluated)
    holds d + 2 points, each generation asks for `screen` times its population and a Gaussian
    process ranks them by mean + std: only the best `population` are evaluated."""
    import cma  # type: ignore[import-untyped]  # cma ships no type information

    dims = len(x0)
    options = {"bounds": [0.0, 1.0], "seed": seed, "verbose": -9, "tolx": 1e-4}
    strategy = cma.CMAEvolutionStrategy(list(x0), sigma, options)
    population = int(strategy.popsize)
    screened = 0
    generation = 0
    spent = False
    while not spent and more() and not strategy.stop():
        generation += 1
        warm = len(seen) >= dims + 2
        asked = strategy.ask(population * screen if warm else population)
        screened += len(asked)
        if warm:
            # Pre-screening: the surrogate's most promising candidates form the generation.
            seen_x, seen_y = [s[0] for s in seen], [s[1] for s in seen]
            mean, spread = _surrogate(seen_x, seen_y, [features(x) for x in asked], seed)
            order = np.argsort(-(mean + spread), kind="stable")[:population]
            chosen = [asked[i] for i in order]
            guesses = [float(mean[i]) for i in order]
        else:
            chosen, guesses = list(asked), [seen[-1][1] if seen else 0.0] * len(asked)
        # CMA-ES minimises; a candidate past the budget is told the surrogate's guess.
        told = []
        for x, guess in zip(chosen, guesses, strict=True):
            value = None if spent else evaluate(x, generation)
            if value is None:
                spent = True
                told.append(-guess)
            else:
                seen.append((features(x), value))
                told.append(-value)
        strategy.tell(chosen, told)
    return screened


def _surrogate(
    seen_x: list[list[float]], seen_y: list[float], candidates: list[list[float]], seed: int
) -> tuple[Array, Array]:
    """A Gaussian process fitted on the evaluated points: its mean and standard deviation at
    the candidates."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    dims = len(seen_x[0])
    kernel = ConstantKernel(1.0) * Matern(length_scale=np.full(dims, 0.3), nu=2.5) + WhiteKernel(
        1e-3, noise_level_bounds=(1e-8, 1e-1)
    )
    model = GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(np.asarray(seen_x), np.asarray(seen_y))
        mean, spread = model.predict(np.asarray(candidates), return_std=True)
    return np.asarray(mean), np.asarray(spread)


def curve(history: Sequence[Evaluated]) -> list[float]:
    """The best value found after each evaluation."""
    best = -math.inf
    out = []
    for record in history:
        best = max(best, record.value)
        out.append(best)
    return out
