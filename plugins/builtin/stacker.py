"""A stacker: a learned ranker (LightGBM's LambdaRank) over other configured models' top lists.

```yaml
models:
  stacked:
    algorithm: stacker
    params:
      members: [slim, ials, rp3beta]     # names of configured models (any plugin's)
      candidates: 100                    # each member's best N, pooled, are re-ranked
      item_properties: false             # true, or a list of names: item properties as features
```

At a request each member scores the candidates; the *pool* is the union of each member's
`candidates` best (the user's own items left out), and the ranker scores each pooled item from
its features (plugins.builtin.stacker_features: each member's z-score, rank and margin to its
10th best, the item's popularity and age, whether it was around while the user was, the user's
activity and taste for popular items, and optionally item properties with the user's affinity
to each). Pooled items rank above every other candidate, by the ranker (its ties by the
blend); the other candidates follow by the equal-weight blend of the members' z-scores (as the
ensemble blends), so that a long list is still filled; an item that no member scores stays
-inf. Every scored candidate is above 0, relevant by the host's rule.

Learning (`fit`), `rounds` times: a seeded random `validation` share (or count) of each user's
items is held out, fresh copies of the members are fitted on the rest, and LambdaRank
(LightGBM's `lambdarank` objective, one query per user and round) learns to rank the held-out
items of the users' pools first. A fifth of the users picks the number of boosting rounds
(early stopping on NDCG@10), then the ranker is fitted on all of them. Each member's z-score,
rank and margin may only raise an item (LightGBM's monotone constraints). Offline, where the
data carries the evaluation's validation part (`data.validation`; `holdout: auto`), the ranker
learns from it too, against members fitted on all the training data (those it then keeps): the
linear ensemble's weights are optimised on the same part. On MovieLens-100K that part is worth
about +0.005 NDCG@10 (bench.stacker): its examples come from the members that score the test,
where the rounds' come from members fitted on 90 % of the data. A served stacker has no such
part: it learns from its rounds alone (`holdout: own` measures that offline).

Members: the stacker fits copies of its members while it learns, from the host's factory of
unfitted members (`bind_factory`; MembersUnbound without one); the copies learn from the
stacker's training data (its model's interaction `weights`, not each member's). The server
trains the members as models of their own and binds them when it loads the stacker (`hosted`):
the stacker then keeps no copies and saves only the ranker and its item features. Without a
host (`reqo evaluate`, the benchmarks, a saved stacker used on its own) it fits the members once
more on all the data and keeps them: it saves their states beside the ranker, under
`member<i>.` keys (with their algorithm and settings in the layout), so that a saved stacker
scores alone (its members must be built-in or installed plugins' algorithms to load). The ranker
is saved as LightGBM's text model, in a uint8 array (no pickle).

Cost: learning fits every member `rounds` + 1 times (`rounds` when hosted) and LightGBM on
`rounds` x users x pool pairs (`max_users` bounds the users); a request costs the members'
scores, a few passes over the items' scores per member, and the ranker on the pool (a few
hundred rows).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from plugins.algorithm import Algorithm, Parameter, ParameterError, UserHistory, restrict
from plugins.builtin.members import MemberModel
from plugins.builtin.stacker_features import categorical_columns, feature_names, pools
from plugins.builtin.stacker_items import ItemSide
from plugins.builtin.stacker_learning import hold_out, sample, train_ranker, users_with_items
from plugins.hookspecs import hookimpl
from plugins.training import Holdout, TrainingData

if TYPE_CHECKING:
    import lightgbm

Array = np.ndarray[Any, Any]
HOLDOUTS = ("auto", "own")
SCORE_CELLS = 1 << 22
"""(user, item) scores the stacker builds features from at a time, learning or serving."""


class Stacker(MemberModel):
    """A LambdaRank model over the pooled top lists of other models (its members)."""

    name = "stacker"
    description = (
        "a learned ranker (LightGBM LambdaRank) over other models' top lists: their scores and "
        "ranks, item popularity and age, user activity, optionally item properties"
    )
    fits_members = True
    parameters = (
        Parameter("members", list, [], "names of the configured models whose top lists it ranks"),
        Parameter("candidates", int, 100, "each member's best N candidates are pooled", 1, 10_000),
        Parameter(
            "validation",
            float,
            0.1,
            "share (below 1) or count (1, 2, ...) of each user's items held out to learn from",
            minimum=0.0,
            maximum=10_000,
        ),
        Parameter(
            "rounds",
            int,
            2,
            "times the members are fitted on all but a random held-out part (`validation`) "
            "of each user's items, the ranker learning from each part: more examples, at one "
            "more fit of every member each",
            1,
            100,
        ),
        Parameter(
            "holdout",
            str,
            "auto",
            "auto: where the data carries an offline evaluation's validation part, learn from it "
            "too (against the members fitted on all the data given); own: from the rounds' "
            "held-out parts only, as when served",
            choices=HOLDOUTS,
        ),
        Parameter("num_leaves", int, 31, "leaves per tree", 2, 4096),
        Parameter("learning_rate", float, 0.05, "boosting learning rate", 1e-4, 1.0),
        Parameter("n_estimators", int, 500, "most boosting rounds", 1, 100_000),
        Parameter(
            "early_stopping",
            int,
            50,
            "stop after this many rounds without a better NDCG@10 on a fifth of the users "
            "(0: run every round, on all of them)",
            0,
            10_000,
        ),
        Parameter("min_data_in_leaf", int, 50, "fewest pairs in a leaf", 1, 1_000_000),
        Parameter(
            "max_users",
            int,
            10_000,
            "most users whose held-out items it learns from (a seeded sample): bounds the "
            "ranker's examples, rounds x users x pool, about 1 GB at the defaults",
            1,
        ),
        Parameter(
            "item_properties",
            bool,
            False,
            "item properties as features: true (every one that encodes) or a list of names",
        ),
        Parameter(
            "threads",
            int,
            1,
            "LightGBM's threads while learning (0: one per core); one spares the servers' cores, "
            "and on a busy machine OpenMP's waiting made two threads ten times slower than one",
            0,
            1024,
        ),
        Parameter("seed", int, 0, "seeds the held-out part, the user sample and LightGBM"),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._ranker: lightgbm.Booster | None = None
        self._own: dict[str, Algorithm] = {}
        self._side = ItemSide.empty()
        self._predicting = threading.Lock()

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """As MemberModel.validate, and: `validation` is a share below 1 or a whole count, and
        `item_properties` true, false or a list of property names."""
        given = dict(settings)
        properties = given.pop("item_properties", False)
        checked = super().validate(given)
        validation = checked["validation"]
        if validation <= 0 or (validation >= 1 and validation != int(validation)):
            raise ParameterError(
                cls.name,
                "validation",
                f"must be a share in (0, 1) or a whole count >= 1, not {validation}",
            )
        if isinstance(properties, list):
            if not all(isinstance(p, str) and p for p in properties):
                raise ParameterError(
                    cls.name, "item_properties", f"must name item properties: {properties}"
                )
            properties = list(dict.fromkeys(properties))
        elif not isinstance(properties, bool):
            raise ParameterError(
                cls.name,
                "item_properties",
                f"must be true, false or a list of property names, not {properties!r}",
            )
        checked["item_properties"] = properties
        return checked

    @property
    def scores_alone(self) -> bool:
        return not self.members or bool(self._own)

    # -- learning ---------------------------------------------------------------------------------

    def fit(self, data: TrainingData) -> None:
        """Learn to rank held-out items from the top lists of members fitted without them,
        `rounds` times (and from an offline evaluation's validation part, see `holdout`); then
        keep members fitted on all the data, unless the host serves them (see the module)."""
        self.n_items = data.n_items
        self._ranker = None
        self._own = {}
        chosen: bool | list[str] = self.settings["item_properties"]
        self._side = ItemSide.of(data, chosen)
        if not self.members:
            return
        rng = np.random.default_rng(int(self.settings["seed"]))
        most = int(self.settings["max_users"])
        parts = []
        full: dict[str, Algorithm] = {}
        validation = data.validation
        if self.settings["holdout"] == "auto" and validation is not None:
            # The evaluation's validation part, against the members the stacker then keeps:
            # examples whose features are those of the scored test (as an ensemble's weights
            # are optimised on it).
            full = {name: self._fit_member(name, data) for name in self.members}
            users = sample(validation.users, most, rng)
            parts.append(self._examples(full, data, users, validation, self._side))
        users = sample(users_with_items(data, 2), most, rng)
        for _ in range(int(self.settings["rounds"])):
            train, labels = hold_out(data, users, float(self.settings["validation"]), rng)
            fitted = {name: self._fit_member(name, train) for name in self.members}
            parts.append(self._examples(fitted, train, users, labels, ItemSide.of(train, chosen)))
        features, targets, groups, owners = (np.concatenate(p) for p in zip(*parts, strict=True))
        self._ranker = train_ranker(
            features,
            targets,
            groups,
            owners,
            feature_names(len(self.members), self._side),
            categorical_columns(len(self.members), self._side),
            self.settings,
        )
        if not self._hosted:
            self._own = full or {name: self._fit_member(name, data) for name in self.members}

    def _fit_member(self, name: str, data: TrainingData) -> Algorithm:
        model = self._fresh(name)
        model.fit(data)
        return model

    def _examples(
        self,
        fitted: Mapping[str, Algorithm],
        train: TrainingData,
        users: Array,
        labels: Holdout,
        side: ItemSide,
    ) -> tuple[Array, Array, Array, Array]:
        """The pooled pairs of the users (their features), whether each is held out, the pairs
        per user and the users; users whose pool holds no held-out item are left out."""
        from plugins.evaluation.cold import UserPropertyRows
        from plugins.evaluation.harness import histories

        candidates = np.array([item is not None for item in train.item_ids], dtype=np.bool_)
        properties = UserPropertyRows(train.user_properties, train.n_users)
        n_items = train.n_items
        batch = max(1, SCORE_CELLS // max(1, n_items))
        features, targets, groups, owners = [], [], [], []
        for start in range(0, len(users), batch):
            chunk = users[start : start + batch]
            given = histories(train, chunk.tolist(), properties)
            raw = [m.score_users(given, n_items, candidates) for m in fitted.values()]
            pooled = pools(raw, given, int(self.settings["candidates"]), side)
            keys = chunk[pooled.rows] * n_items + pooled.items
            held = np.concatenate([u * n_items + labels.of_user(int(u)) for u in chunk])
            target = np.isin(keys, held)
            sizes = np.bincount(pooled.rows, minlength=len(chunk))
            useful = np.bincount(pooled.rows, weights=target, minlength=len(chunk)) > 0
            keep = useful[pooled.rows]
            features.append(pooled.features[keep])
            targets.append(target[keep])
            groups.append(sizes[useful])
            owners.append(chunk[useful])
        width = len(feature_names(len(fitted), side))
        return (
            np.concatenate([np.zeros((0, width), dtype=np.float32), *features]),
            np.concatenate([np.zeros(0, dtype=np.bool_), *targets]),
            np.concatenate([np.zeros(0, dtype=np.int64), *groups]),
            np.concatenate([np.zeros(0, dtype=np.int64), *owners]),
        )

    # -- scoring ----------------------------------------------------------------------------------

    def _scorer(self, name: str) -> Algorithm:
        """A member's model: the host's where it bound them, else the stacker's own copy."""
        if self._lookup is None and name in self._own:
            return self._own[name]
        return self._member(name)

    def score_users(
        self,
        histories: Sequence[UserHistory],
        n_items: int,
        candidates: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    ) -> Array:
        """The ranker's order of each history's pool, then the blend (see the module)."""
        if not self.members:
            return np.full((len(histories), n_items), -np.inf, dtype=np.float32)
        raw = [
            self._scorer(name).score_users(histories, n_items, candidates) for name in self.members
        ]
        return restrict(self._rank(raw, histories, n_items), candidates)

    def score_items(
        self,
        items: Sequence[int],
        n_items: int,
        candidates: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    ) -> Array:
        """As score_users, the context item taken for a one-item history without times."""
        if not self.members:
            return np.full((len(items), n_items), -np.inf, dtype=np.float32)
        raw = [self._scorer(name).score_items(items, n_items, candidates) for name in self.members]
        histories = [UserHistory(np.array([item], dtype=np.int64)) for item in items]
        return restrict(self._rank(raw, histories, n_items), candidates)

    def _rank(self, raw: list[Array], histories: Sequence[UserHistory], n_items: int) -> Array:
        out = np.empty((len(histories), n_items), dtype=np.float32)
        batch = max(1, SCORE_CELLS // max(1, n_items))
        for start in range(0, len(histories), batch):
            stop = min(len(histories), start + batch)
            part = [scores[start:stop] for scores in raw]
            out[start:stop] = self._rank_batch(part, histories[start:stop])
        return out

    def _rank_batch(self, raw: list[Array], histories: Sequence[UserHistory]) -> Array:
        pooled = pools(raw, histories, int(self.settings["candidates"]), self._side)
        scores = pooled.blend
        if self._ranker is None or not len(pooled.rows):
            return scores
        with self._predicting:
            predicted = np.asarray(self._ranker.predict(pooled.features, num_threads=1))
        rows, items = pooled.rows, pooled.items
        # Above every blended candidate of the row, in the ranker's order; its ties (a few
        # trees give many) by the blend. Only the order counts: each pooled item scores its
        # place, 1 for the row's last.
        order = np.lexsort((scores[rows, items], predicted, rows))
        starts = np.flatnonzero(np.r_[True, rows[order][1:] != rows[order][:-1]])
        sizes = np.diff(np.r_[starts, len(order)])
        place = np.arange(len(order)) - np.repeat(starts, sizes) + 1.0
        top = np.where(np.isfinite(scores), scores, 0.0).max(axis=1)
        scores[rows[order], items[order]] = top[rows[order]] + place
        return scores

    # -- persistence ------------------------------------------------------------------------------

    def state(self) -> dict[str, Array]:
        """The ranker (LightGBM's text model as uint8), the item features, a JSON layout, and
        the states of the own members (where it keeps any) under `member<i>.` keys."""
        layout: dict[str, Any] = {"items": self._side.layout(), "own": []}
        arrays = dict(self._side.state())
        for i, (name, model) in enumerate(self._own.items()):
            state = model.state()
            layout["own"].append(
                {
                    "name": name,
                    "algorithm": model.name,
                    "settings": model.settings,
                    "n_items": model.n_items,
                    "arrays": sorted(state),
                }
            )
            arrays.update({f"member{i}.{key}": value for key, value in state.items()})
        ranker = b"" if self._ranker is None else self._ranker.model_to_string().encode()
        arrays["ranker"] = np.frombuffer(ranker, dtype=np.uint8)
        arrays["layout"] = np.frombuffer(json.dumps(layout).encode(), dtype=np.uint8)
        return arrays

    def restore(self, arrays: Mapping[str, Array]) -> None:
        layout = json.loads(np.asarray(arrays["layout"], dtype=np.uint8).tobytes().decode())
        self._side = ItemSide.restore(arrays, layout["items"])
        text = np.asarray(arrays["ranker"], dtype=np.uint8).tobytes().decode()
        self._ranker = None
        if text:
            import lightgbm

            self._ranker = lightgbm.Booster(model_str=text)
        self._own = {}
        if layout["own"]:
            from plugins.manager import collect, get_plugin_manager

            registry = collect(get_plugin_manager())
            for i, own in enumerate(layout["own"]):
                model = registry.algorithm(own["algorithm"])(**own["settings"])
                model.n_items = int(own["n_items"])
                model.restore({key: arrays[f"member{i}.{key}"] for key in own["arrays"]})
                self._own[own["name"]] = model


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [Stacker]
