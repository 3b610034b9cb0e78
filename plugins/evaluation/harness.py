"""The offline evaluation harness: split a snapshot, fit each model on the train part (with the
validation part for early stopping), rank every item for each test user and measure.

Scoring goes through `Algorithm.score_users` with each user's train interactions as a
`UserHistory` (items, kinds, times and weights), over the live items as candidates: the path the
server takes for Items to User, so that the figures are those of the served model.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from tqdm import tqdm

from plugins.algorithm import Algorithm, UserHistory
from plugins.evaluation.cold import (
    COLD_SHARE,
    COLD_USER_INTERACTIONS,
    UserPropertyRows,
    cold_items_split,
    cold_users_split,
)
from plugins.evaluation.metrics import METRICS, item_coverage, top_k
from plugins.evaluation.splits import (
    TEST,
    TRAIN,
    VALID,
    Parts,
    SplitError,
    leave_one_out,
    normalise_ratios,
    part_sizes,
    quantile_time,
    random_split,
    temporal_split,
)
from plugins.training import (
    Holdout,
    ItemEmbeddings,
    ItemTextVectorProvider,
    ItemVectorProvider,
    TrainingData,
    interaction_weights,
    validate_weights,
)
from storage.snapshot import KIND_NAMES, Snapshot

PROTOCOLS = ("random", "loo", "temporal", "cold-items", "cold-users")
COLD_PROTOCOLS = ("cold-items", "cold-users")
RANK_AMONG = ("cold", "all")
FEEDBACKS = ("implicit", "weighted")
SCORE_CELLS = 1 << 24
"""Users are scored in batches of at most this many (user, item) scores (64 MiB of float32)."""


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: its name, algorithm class, parameters and interaction kind weights
    (the kind weights count only with weighted feedback)."""

    name: str
    algorithm: type[Algorithm]
    params: Mapping[str, Any] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Protocol:
    """How to split and what to measure.

    - `name`: "random" (per user, shuffled, by `split` ratios as RecBole), "loo" (each user's
      last interaction is the test, the one before it the validation) or "temporal" (a global
      cut at `at`, or else at the `quantile` of the interaction times; the validation is the
      latest `split[1]` share of the interactions before the cut), "cold-items" (a seeded
      `cold_share` of the items with every interaction of theirs held out; each test user's
      cold items are ranked among the cold items, or all items with `rank_among="all"`) or
      "cold-users" (a seeded `cold_share` of the users keep only their first
      `cold_user_interactions` interactions in train; the rest are the test). The cold
      protocols have no validation part (see plugins.evaluation.cold);
    - `feedback`: "implicit" (every interaction a positive of weight 1) or "weighted" (each
      model's kind weights);
    - `seeds`: one split (random protocol) and one fit of each model per seed; the seed seeds
      Python's, numpy's and torch's generators and is the algorithm's `seed` parameter where it
      has one that the model does not set;
    - `exclude_seen`: see below.
    """

    name: str = "random"
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    at: float | None = None
    quantile: float = 0.9
    ks: tuple[int, ...] = (10, 20)
    seeds: tuple[int, ...] = (1,)
    feedback: str = "implicit"
    exclude_seen: bool = True
    """Whether each ranking leaves out the items the user interacted with before the test (as
    RecBole does for general recommenders); RecBole's sequential protocol ranks them too."""
    cold_share: float = COLD_SHARE
    """The share of items (cold-items) or users (cold-users) that are new."""
    rank_among: str = "cold"
    """cold-items: rank the held-out items among the cold items ("cold") or every item."""
    cold_user_interactions: int = COLD_USER_INTERACTIONS
    """cold-users: how many of its first interactions a new user keeps in train."""

    def check(self) -> None:
        """SplitError where a setting cannot be used."""
        if self.name not in PROTOCOLS:
            raise SplitError(f"unknown protocol '{self.name}' (known: {', '.join(PROTOCOLS)})")
        if self.feedback not in FEEDBACKS:
            raise SplitError(f"unknown feedback '{self.feedback}' (known: {', '.join(FEEDBACKS)})")
        normalise_ratios(self.split)
        if not self.ks or any(k < 1 for k in self.ks):
            raise SplitError(f"cut-offs K must be integers >= 1, not {list(self.ks)}")
        if not self.seeds:
            raise SplitError("at least one seed is needed")
        if not 0 < self.cold_share < 1:
            raise SplitError(f"the cold share must be in (0, 1), not {self.cold_share}")
        if self.rank_among not in RANK_AMONG:
            raise SplitError(f"rank among '{self.rank_among}'? (known: {', '.join(RANK_AMONG)})")
        if self.cold_user_interactions < 0:
            raise SplitError("a cold user keeps 0 or more interactions in train")

    @property
    def seeded_split(self) -> bool:
        """Whether the split depends on the seed (otherwise only the models' fitting does)."""
        return self.name == "random" or self.name in COLD_PROTOCOLS


@dataclass(frozen=True)
class Run:
    """One model fitted and measured on one seed's split."""

    model: str
    seed: int
    figures: dict[str, float]
    """"ndcg@10", "recall@20", "coverage@10", …: means over the test users."""
    train_seconds: float
    score_seconds: float


@dataclass(frozen=True)
class SplitInfo:
    """One seed's split: interactions per part, and the users with held-out items."""

    seed: int
    sizes: dict[str, int]
    valid_users: int
    test_users: int


@dataclass(frozen=True)
class Evaluation:
    """Everything an evaluation measured."""

    protocol: Protocol
    models: tuple[ModelSpec, ...]
    dataset: dict[str, int]
    splits: tuple[SplitInfo, ...]
    runs: tuple[Run, ...]
    cut: float | None = None
    """The temporal protocol's cut, epoch seconds."""

    @property
    def figure_names(self) -> list[str]:
        """The figures of each run, in display order: each metric at each K, then coverage."""
        names = [f"{metric}@{k}" for metric in METRICS for k in self.protocol.ks]
        return names + [f"coverage@{k}" for k in self.protocol.ks]


@dataclass(frozen=True)
class Holdouts:
    """One split's held-out items per user, and what each ranking leaves out."""

    valid: Holdout
    test: Holdout
    seen_before_test: Holdout
    """Each user's train and validation items: left out of the test ranking."""


def split_parts(snapshot: Snapshot, protocol: Protocol, seed: int) -> tuple[Parts, float | None]:
    """The part of each interaction of the snapshot, and the temporal cut (None otherwise)."""
    if protocol.name == "random":
        return random_split(snapshot.users, protocol.split, seed), None
    if protocol.name == "loo":
        return leave_one_out(snapshot.users, snapshot.timestamps), None
    if protocol.name == "cold-items":
        return cold_items_split(snapshot.items, protocol.cold_share, seed)[0], None
    if protocol.name == "cold-users":
        keep = protocol.cold_user_interactions
        parts = cold_users_split(
            snapshot.users, snapshot.timestamps, protocol.cold_share, keep, seed
        )
        return parts[0], None
    cut = protocol.at
    if cut is None:
        cut = quantile_time(snapshot.timestamps, protocol.quantile)
    valid_share = normalise_ratios(protocol.split)[1]
    return temporal_split(snapshot.timestamps, cut, valid_share), cut


def make_holdouts(snapshot: Snapshot, parts: Parts) -> Holdouts:
    """Validation and test items per user, each item once, without the items the user has in an
    earlier part: those are left out of the ranking, so they could only count as misses."""
    n_users, n_items = snapshot.n_users, snapshot.n_items
    keys = snapshot.users * n_items + snapshot.items

    def pairs(chosen: np.ndarray[Any, np.dtype[np.bool_]], minus: Iterable[Any] = ()) -> Any:
        unique = np.unique(keys[chosen])
        for earlier in minus:
            unique = unique[~np.isin(unique, earlier)]
        return unique

    def holdout(unique: np.ndarray[Any, Any]) -> Holdout:
        return Holdout.of(unique // n_items, unique % n_items, n_users)

    train = pairs(parts == TRAIN)
    valid = pairs(parts == VALID, [train])
    test = pairs(parts == TEST, [train, valid])
    return Holdouts(holdout(valid), holdout(test), holdout(pairs(parts != TEST)))


def feedback_weights(
    snapshot: Snapshot, feedback: str, kind_weights: Mapping[str, float]
) -> tuple[np.ndarray[Any, np.dtype[np.float32]], dict[str, float]]:
    """Each interaction's weight (and the kind weights that describe them) for a feedback."""
    if feedback == "implicit":
        ones = np.ones(len(snapshot.users), dtype=np.float32)
        return ones, dict.fromkeys(validate_weights(None), 1.0)
    weights = validate_weights(kind_weights)
    return interaction_weights(snapshot, weights), weights


def seed_everything(seed: int) -> None:
    """Seed the generators a model may draw from while it fits."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")  # seeded only where a plugin uses it: importing costs
    if torch is not None:
        torch.manual_seed(seed)


def seeded_params(spec: ModelSpec, seed: int) -> dict[str, Any]:
    """The spec's parameters, with the run's seed as `seed` where the algorithm takes one and
    the spec leaves it out: seeds then vary the model's initialisation, not only the split."""
    params = dict(spec.params)
    if "seed" not in params and any(p.name == "seed" for p in spec.algorithm.parameters):
        params["seed"] = seed
    return params


_KIND_BY_CODE = [KIND_NAMES.get(code, "") for code in range(256)]


def histories(
    data: TrainingData, users: Sequence[int], properties: UserPropertyRows | None = None
) -> list[UserHistory]:
    """The users' train interactions, as the server's history index hands them to a model, with
    their property values where `properties` has them and their dense index."""
    values = properties.of(list(users)) if properties is not None else [{}] * len(users)
    out = []
    for user, found in zip(users, values, strict=True):
        start, end = int(data.indptr[user]), int(data.indptr[user + 1])
        out.append(
            UserHistory(
                data.items[start:end],
                tuple(_KIND_BY_CODE[code] for code in data.kinds[start:end].tolist()),
                data.timestamps[start:end],
                data.weights[start:end],
                found,
                user,
            )
        )
    return out


def rank(
    model: Algorithm,
    data: TrainingData,
    users: np.ndarray[Any, np.dtype[np.int64]],
    excluded: Holdout,
    k: int,
    candidates: np.ndarray[Any, np.dtype[np.bool_]],
    ties: np.ndarray[Any, np.dtype[np.int64]] | None = None,
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """users x k: each user's best items, scored from their train history, leaving out the
    `excluded` items and the non-candidates. Equal scores go by the lower index, or with
    `ties` (a permutation of the items) by the lower place in it."""
    batch = max(1, min(1024, SCORE_CELLS // max(1, data.n_items)))
    properties = UserPropertyRows(data.user_properties, data.n_users)
    place = None if ties is None else np.argsort(ties)
    ranked = []
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch].tolist()
        scores = model.score_users(histories(data, chunk, properties), data.n_items, candidates)
        left_out = [excluded.of_user(u) for u in chunk]
        if ties is None or place is None:
            ranked.append(top_k(scores, k, left_out))
            continue
        best = top_k(scores[:, ties], k, [place[items] for items in left_out])
        ranked.append(np.where(best >= 0, ties[np.maximum(best, 0)], -1))
    if not ranked:
        return np.zeros((0, k), dtype=np.int64)
    return np.concatenate(ranked)


def measure(
    ranked: np.ndarray[Any, np.dtype[np.int64]],
    relevant: Sequence[np.ndarray[Any, np.dtype[np.int64]]],
    ks: Sequence[int],
    n_candidates: int,
) -> dict[str, float]:
    """Every metric at every K (means over the ranked users), and item coverage."""
    figures = {}
    for metric, function in METRICS.items():
        for k in ks:
            values = function(ranked, relevant, k)
            figures[f"{metric}@{k}"] = float(values.mean()) if len(values) else 0.0
    for k in ks:
        figures[f"coverage@{k}"] = item_coverage(ranked[:, :k], n_candidates)
    return figures


def evaluate(
    snapshot: Snapshot,
    models: Sequence[ModelSpec],
    protocol: Protocol,
    *,
    progress: bool = False,
    item_vectors: ItemVectorProvider | None = None,
    item_text_vectors: ItemTextVectorProvider | None = None,
) -> Evaluation:
    """Fit and measure every model on every seed's split (SplitError: a split that cannot be
    made, or that leaves no test user). `item_vectors` and `item_text_vectors`: the host's
    providers of item image and text embeddings (server/training/item_vectors.py), for models
    that use them."""
    protocol.check()
    item_text_vectors = _remembered(item_text_vectors)
    candidates = np.array([item is not None for item in snapshot.item_ids], dtype=bool)
    ks = sorted(set(protocol.ks))
    runs: list[Run] = []
    infos: list[SplitInfo] = []
    split: PreparedSplit | None = None
    bar = tqdm(
        total=len(protocol.seeds) * len(models), desc="evaluating", unit="fit", disable=not progress
    )
    with bar:
        for seed in protocol.seeds:
            if split is None or protocol.seeded_split:
                split = prepare_split(snapshot, protocol, seed)
            infos.append(split.info(seed))
            for spec in models:
                bar.set_postfix_str(f"seed {seed}, {spec.name}")
                runs.append(
                    run_one(
                        snapshot,
                        spec,
                        protocol,
                        seed,
                        split,
                        candidates,
                        ks,
                        item_vectors,
                        item_text_vectors,
                    )
                )
                bar.update()
    dataset = {
        "users": sum(user is not None for user in snapshot.user_ids),
        "items": int(candidates.sum()),
        "interactions": len(snapshot.users),
    }
    cut = split.cut if split is not None else None
    return Evaluation(protocol, tuple(models), dataset, tuple(infos), tuple(runs), cut)


def _remembered(provider: ItemTextVectorProvider | None) -> ItemTextVectorProvider | None:
    """The provider, each embedder's vectors computed once for every model and seed (the
    offline provider embeds every text at each call)."""
    if provider is None:
        return None
    known: dict[str, ItemEmbeddings] = {}

    def provide(*, embedder: str) -> ItemEmbeddings:
        if embedder not in known:
            known[embedder] = provider(embedder=embedder)
        return known[embedder]

    return provide


@dataclass(frozen=True)
class PreparedSplit:
    """A split with its holdouts, ready for every model of a seed."""

    parts: Parts
    holdouts: Holdouts
    cut: float | None
    candidates: np.ndarray[Any, np.dtype[np.bool_]] | None = None
    """The items the test ranks where the protocol narrows them (the cold items); None: every
    live item."""

    def info(self, seed: int) -> SplitInfo:
        return SplitInfo(
            seed,
            part_sizes(self.parts),
            len(self.holdouts.valid.users),
            len(self.holdouts.test.users),
        )


def prepare_split(snapshot: Snapshot, protocol: Protocol, seed: int) -> PreparedSplit:
    """One seed's split and holdouts (SplitError where no user has a test item)."""
    parts, cut = split_parts(snapshot, protocol, seed)
    holdouts = make_holdouts(snapshot, parts)
    if not len(holdouts.test.users):
        raise SplitError("the split leaves no user with a test item to evaluate")
    candidates = None
    if protocol.name == "cold-items" and protocol.rank_among == "cold":
        # Every interaction of a cold item is in the test: those items are the cold ones.
        candidates = np.zeros(snapshot.n_items, dtype=bool)
        candidates[np.unique(snapshot.items[parts == TEST])] = True
        candidates &= np.array([item is not None for item in snapshot.item_ids], dtype=bool)
    return PreparedSplit(parts, holdouts, cut, candidates)


def run_one(
    snapshot: Snapshot,
    spec: ModelSpec,
    protocol: Protocol,
    seed: int,
    split: PreparedSplit,
    candidates: np.ndarray[Any, np.dtype[np.bool_]],
    ks: Sequence[int],
    item_vectors: ItemVectorProvider | None = None,
    item_text_vectors: ItemTextVectorProvider | None = None,
) -> Run:
    """Fit one model on the split's train part (the validation holdout at hand for early
    stopping), then rank and measure the test users once."""
    model, data, train_seconds = fit_one(
        snapshot, spec, protocol, seed, split, item_vectors, item_text_vectors
    )
    trained = time.perf_counter()
    test = split.holdouts.test
    users = test.users
    excluded = split.holdouts.seen_before_test
    if not protocol.exclude_seen:
        nothing = np.zeros(0, dtype=np.int64)
        excluded = Holdout.of(nothing, nothing, snapshot.n_users)
    history = test_histories(snapshot, spec, protocol, split, data)
    if split.candidates is not None:
        candidates = split.candidates
    ties = None
    if protocol.name in COLD_PROTOCOLS:
        # A cold-start baseline ties many items (an attribute's popularity, no evidence at
        # all); by index, ties would favour the items listed first, on ML-100K the popular
        # ones. A seeded shuffle breaks them the same way for every model.
        ties = np.random.default_rng(seed).permutation(snapshot.n_items)
    ranked = rank(model, history, users, excluded, max(ks), candidates, ties)
    relevant = [test.of_user(int(u)) for u in users]
    figures = measure(ranked, relevant, ks, int(candidates.sum()))
    return Run(spec.name, seed, figures, train_seconds, time.perf_counter() - trained)


def test_histories(
    snapshot: Snapshot,
    spec: ModelSpec,
    protocol: Protocol,
    split: PreparedSplit,
    train: TrainingData,
) -> TrainingData:
    """The histories the test users are scored from. Where the validation part comes before the
    test in time (leave-last-one-out, temporal), the user has had those interactions by the time
    of the test, so they are in the history (as RecBole's sequential protocol has them); the
    model was fitted without them. The random and cold protocols score from the train part
    alone (a cold user's history is its first few interactions, or none)."""
    if protocol.name == "random" or protocol.name in COLD_PROTOCOLS:
        return train
    weights, kind_weights = feedback_weights(snapshot, protocol.feedback, spec.weights)
    return TrainingData.from_interactions(
        snapshot, weights, keep=split.parts != TEST, kind_weights=kind_weights
    )


def fit_one(
    snapshot: Snapshot,
    spec: ModelSpec,
    protocol: Protocol,
    seed: int,
    split: PreparedSplit,
    item_vectors: ItemVectorProvider | None = None,
    item_text_vectors: ItemTextVectorProvider | None = None,
) -> tuple[Algorithm, TrainingData, float]:
    """One model fitted on the split's train part: the model, its training data and the
    seconds it took."""
    weights, kind_weights = feedback_weights(snapshot, protocol.feedback, spec.weights)
    valid = split.holdouts.valid
    data = TrainingData.from_interactions(
        snapshot,
        weights,
        keep=split.parts == TRAIN,
        kind_weights=kind_weights,
        validation=valid if len(valid.users) else None,
    )
    data = replace(data, item_vectors=item_vectors, item_text_vectors=item_text_vectors)
    seed_everything(seed)
    model = spec.algorithm(**seeded_params(spec, seed))
    started = time.perf_counter()
    model.fit(data)
    return model, data, time.perf_counter() - started
