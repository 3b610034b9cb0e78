"""The Algorithm base class: what every recommendation algorithm, built in or from a plugin, is.

An algorithm is fitted on TrainingData, then scores all items, batch-first: for users (from each
user's history as of the request, so that a new interaction counts at once) and for context items.
Its state is saved as plain arrays (.npy) and JSON, never pickle.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from plugins.training import TrainingData

if TYPE_CHECKING:
    from plugins.embedders import Embedder
    from plugins.shards import SnapshotShards

EmbedderLookup = Callable[[str], "type[Embedder]"]
"""Finds an embedder class by name (plugins.manager.Registry.embedder)."""

Scores = np.ndarray[Any, np.dtype[np.float32]]
"""Scores of all items (or users): higher is better; -inf where the algorithm cannot score."""


class ParameterError(ValueError):
    """A model's parameters do not fit its algorithm."""

    def __init__(self, algorithm: str, parameter: str, problem: str) -> None:
        super().__init__(f"algorithm '{algorithm}', parameter '{parameter}': {problem}")
        self.algorithm = algorithm
        self.parameter = parameter
        self.problem = problem


@dataclass(frozen=True)
class Parameter:
    """One parameter of an algorithm (or embedder), as written in the YAML configuration:
    `kind` is the Python type of its value (int, float, bool, str, dict or list); `minimum`,
    `maximum` and `choices` bound it; `validate` checks a value against all of it."""

    name: str
    kind: type  # int, float, bool, str, dict or list
    default: Any
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()

    def validate(self, algorithm: str, value: Any) -> Any:
        """The value, converted where harmless (an int for a float); ParameterError otherwise."""
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            raise ParameterError(
                algorithm, self.name, f"must be {self.kind.__name__}, not {value!r}"
            )
        number: Any = value
        if self.minimum is not None and number < self.minimum:
            raise ParameterError(
                algorithm, self.name, f"{value} is below the minimum {self.minimum}"
            )
        if self.maximum is not None and number > self.maximum:
            raise ParameterError(
                algorithm, self.name, f"{value} is above the maximum {self.maximum}"
            )
        if self.choices and value not in self.choices:
            listed = ", ".join(repr(c) for c in self.choices)
            raise ParameterError(algorithm, self.name, f"{value!r} is not one of {listed}")
        return value


@dataclass(frozen=True)
class UserHistory:
    """A user's interactions as of the request, oldest first: dense item indexes, interaction
    kinds (ReQL's names: "detail_views", …), epoch seconds, and weights from the kind weights;
    `properties`: the user's property values by name (age, occupation, ...) where the host
    hands them over (the offline harness does), empty otherwise: what a model can score a user
    without interactions from; `user`: the user's dense index (`$idx`) where the host knows it
    (None for an anonymous or unknown user), for a model that learned something per user."""

    items: np.ndarray[Any, np.dtype[np.int64]]
    kinds: tuple[str, ...] = ()
    timestamps: np.ndarray[Any, np.dtype[np.float64]] = field(
        default_factory=lambda: np.zeros(0, dtype=np.float64)
    )
    weights: np.ndarray[Any, np.dtype[np.float32]] = field(
        default_factory=lambda: np.zeros(0, dtype=np.float32)
    )
    properties: Mapping[str, Any] = field(default_factory=dict)
    user: int | None = None

    @classmethod
    def empty(cls) -> UserHistory:
        """The history of a user with no interactions."""
        return cls(np.zeros(0, dtype=np.int64))

    @classmethod
    def of_items(cls, items: Sequence[int]) -> UserHistory:
        """A history of one detail view per item (weight 1), in the given order."""
        array = np.asarray(items, dtype=np.int64)
        return cls(
            array,
            ("detail_views",) * len(array),
            np.arange(len(array), dtype=np.float64),
            np.ones(len(array), dtype=np.float32),
        )

    def __len__(self) -> int:
        return len(self.items)


class Algorithm(ABC):
    """Base class of recommendation algorithms.

    Subclasses set `name` and `parameters`, and implement `fit`, `user_scores`, `state` and
    `restore`; `item_scores` (items to item) has a default built on `user_scores`. The host calls
    `score_users` / `score_items`, which widen the scores to the current item index space and give
    -inf to the items that are not candidates; an algorithm that can use the candidates to do less
    work (an ANN index) overrides those instead.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    uses_user_properties: ClassVar[bool] = False
    """Whether the model scores users from their properties (`UserHistory.properties`): the
    server then reads them for every request it scores (a cached lookup per user)."""
    relevance_threshold: ClassVar[float | None] = 0.0
    """Which scores are evidence for a candidate (it is *relevant*): those above this value.
    Relevant candidates rank above the others (which `minRelevance: low` pads with by
    popularity, and `high` leaves out). The default 0 suits scores that are 0 without evidence
    (counts, similarities); None makes every finite score relevant, for scores of any sign (a
    log-likelihood, a negative distance). The ranking uses the scores' order only, whatever
    their scale."""

    def __init__(self, **settings: Any) -> None:
        self.settings = self.validate(settings)
        self.n_items = 0

    def relevant(self, scores: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Which of the (finite or -inf) scores are relevant, by `relevance_threshold`."""
        finite: np.ndarray[Any, np.dtype[np.bool_]] = np.isfinite(scores)
        threshold = self.relevance_threshold
        if threshold is None:
            return finite
        return finite & (scores > threshold)

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The settings with defaults filled in; ParameterError names an unknown or bad one."""
        known = {p.name: p for p in cls.parameters}
        for key in settings:
            if key not in known:
                listed = ", ".join(known) or "none"
                raise ParameterError(cls.name, key, f"unknown parameter (known: {listed})")
        return {
            name: p.validate(cls.name, settings[name]) if name in settings else p.default
            for name, p in known.items()
        }

    # -- what subclasses implement --------------------------------------------------------------

    @abstractmethod
    def fit(self, data: TrainingData) -> None:
        """Learn from a training snapshot. Must set `self.n_items` to `data.n_items`."""

    @abstractmethod
    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        """Scores of the model's items for each history: (len(histories), self.n_items).

        A history may hold items the model has not seen (indexes >= self.n_items); ignore them.
        """

    def item_scores(self, items: Sequence[int]) -> np.ndarray[Any, Any]:
        """Scores of the model's items for each context item: (len(items), self.n_items).

        The default treats the context item as a one-item history.
        """
        return self.user_scores([UserHistory.of_items([i]) for i in items])

    learns_from_shards: ClassVar[bool] = False
    """Whether the model can also learn from a snapshot read in shards (`fit_shards`), for
    training data larger than memory."""

    def fit_shards(self, shards: SnapshotShards) -> None:
        """Learn from a snapshot's interactions read shard by shard (plugins.shards), never all
        in memory at once: for algorithms with `learns_from_shards`. Must set `self.n_items` to
        `shards.n_items`. There is no validation holdout: it trains the configured epochs."""
        raise NotImplementedError(f"{self.name} does not learn from shards")

    @classmethod
    def can_learn_from_shards(cls, settings: Mapping[str, Any]) -> bool:
        """Whether a model with these (validated) settings can learn from shards: by default
        `learns_from_shards`; an algorithm that can only with some settings overrides this."""
        return cls.learns_from_shards

    embeds_images: ClassVar[bool] = False
    """Whether the model scores items for a picture (Items to Image): then it implements
    `embed_images` and `query_scores`."""

    def embed_images(
        self, images: Sequence[Any], embedders: EmbedderLookup | None = None
    ) -> np.ndarray[Any, Any]:
        """Query vectors for pictures (PIL images), in the model's embedding space. The host
        passes `embedders`, its registry's lookup of embedder classes by name (config plugins
        included); ValueError where the model's embedder cannot embed a picture."""
        raise NotImplementedError(f"{self.name} does not score pictures")

    def query_scores(self, vectors: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Scores of the model's items for query vectors: (len(vectors), self.n_items)."""
        raise NotImplementedError(f"{self.name} does not score pictures")

    # -- what the host calls ----------------------------------------------------------------------

    def score_users(
        self,
        histories: Sequence[UserHistory],
        n_items: int,
        candidates: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    ) -> np.ndarray[Any, Any]:
        """Scores of all `n_items` items for each history, -inf for non-candidates and for items
        the model cannot score: float32, (len(histories), n_items)."""
        return restrict(pad_scores(self.user_scores(histories), n_items), candidates)

    def score_items(
        self,
        items: Sequence[int],
        n_items: int,
        candidates: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    ) -> np.ndarray[Any, Any]:
        """Scores of all `n_items` items for each context item, as `score_users`."""
        return restrict(pad_scores(self.item_scores(items), n_items), candidates)

    # -- persistence ----------------------------------------------------------------------------

    @abstractmethod
    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        """The fitted state as named arrays (saved as .npy files)."""

    @abstractmethod
    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        """Take back the state that `state` returned."""

    def save(self, directory: Path) -> None:
        """Write the model to a directory: meta.json and one .npy file per array."""
        directory.mkdir(parents=True, exist_ok=True)
        arrays = self.state()
        for key, array in arrays.items():
            np.save(directory / f"{key}.npy", np.asarray(array), allow_pickle=False)
        meta = {
            "algorithm": self.name,
            "settings": self.settings,
            "n_items": self.n_items,
            "arrays": sorted(arrays),
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def unloaded(cls, directory: Path) -> tuple[Self, dict[str, Any]]:
        """A model with the settings of one that `save` wrote, before its state is read, and
        the directory's meta.json (for subclasses that load more than arrays)."""
        meta: dict[str, Any] = json.loads((directory / "meta.json").read_text())
        if meta["algorithm"] != cls.name:
            raise ValueError(f"{directory} holds a '{meta['algorithm']}' model, not '{cls.name}'")
        model = cls(**meta["settings"])
        model.n_items = int(meta["n_items"])
        return model, meta

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model that `save` wrote."""
        model, meta = cls.unloaded(directory)
        model.restore(
            {key: np.load(directory / f"{key}.npy", allow_pickle=False) for key in meta["arrays"]}
        )
        return model


def pad_scores(scores: np.ndarray[Any, Any], n_items: int) -> np.ndarray[Any, Any]:
    """Scores over a model's items, widened (with -inf) or cut to `n_items` columns (a copy)."""
    rows, known = scores.shape
    if known >= n_items:
        return np.array(scores[:, :n_items], dtype=np.float32)
    out = np.full((rows, n_items), -np.inf, dtype=np.float32)
    out[:, :known] = scores
    return out


def restrict(
    scores: np.ndarray[Any, Any], candidates: np.ndarray[Any, np.dtype[np.bool_]] | None
) -> np.ndarray[Any, Any]:
    """-inf wherever `candidates` is false (in place; candidates may be shorter than a row)."""
    if candidates is None:
        return scores
    size = min(len(candidates), scores.shape[1])
    if scores.dtype == np.float32 and np.isfinite(scores[:, :size]).all():
        # Adding -inf (or 0) is the same for finite scores, and far cheaper than a masked write
        # over 100,000s of items: the penalty's bits are those of -inf where the candidate is
        # out, of 0.0 elsewhere.
        excluded = np.invert(candidates[:size]).astype(np.uint32)
        scores[:, :size] += (excluded * np.uint32(0xFF800000)).view(np.float32)
    else:
        scores[:, np.flatnonzero(~candidates[:size])] = -np.inf
    scores[:, size:] = -np.inf
    return scores
