"""The recommendation pipeline: candidates, scores, boosters, rotation, relevance, diversity.

One run serves one request, on a reader thread: the ReQL filters become masks over the dense
index (cached), the scenario's model scores every candidate at once (numpy), and the top `count`
are picked. Nothing loops over items in Python.

What a request would otherwise query for is kept in memory while it is current: every user's
interactions (`HistoryIndex`, per interactions version), the ids of dense indexes (`IdMap`,
append-only), the fallback model's scores (per model version). One request at a time computes
(numpy over whole vectors is GIL-bound; several threads at once only trade the GIL back and
forth); SQL runs outside that lock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plugins.algorithm import Algorithm, UserHistory, pad_scores, restrict
from plugins.builtin.ensemble import Ensemble
from plugins.builtin.members import MemberModel
from plugins.training import validate_weights
from server.search.fulltext import Hit
from server.serving import cold_start, ranking, segments
from server.serving.cold_start import ColdStart
from server.serving.expressions import BadExpression, Context
from server.serving.histories import HistoryIndex, IdMap
from server.serving.live_models import LiveModels, LoadedModel
from server.serving.logic_sources import LogicSources, SourceCall
from server.serving.reql_engine import ExpressionEngine, fitted
from server.serving.scenarios import FALLBACK_MODEL
from storage.database import NeedsDatabase, ReadContext
from storage.errors import EntityNotFound, StorageError
from storage.recommendations import recently_recommended
from storage.schema import Entity
from storage.snapshot import KIND_NAMES

logger = logging.getLogger("reqo")

DIVERSITY_POOL = 5
"""Diversity re-ranks the best count x this many candidates."""


class ScenarioMisconfigured(StorageError):
    """A scenario's own expression no longer compiles on the database (its schema changed
    since the configuration was checked): the configuration is at fault, not the request."""

    status = 409

    def __init__(self, key: str, database: str, error: BadExpression) -> None:
        super().__init__(
            f"the server's configuration is at fault, not this request: {key} does not compile "
            f"on database '{database}' any more (its properties changed); fix it and reload: "
            f"{error.message}"
        )
        self.key = key


_REPORTED: set[tuple[str, str, str]] = set()
"""The configuration mistakes logged already (each is logged once)."""


@contextlib.contextmanager
def _configuration_at_fault(query: Query, text: str, database: str) -> Iterator[None]:
    """Report a scenario's own expression that fails as the configuration's mistake."""
    try:
        yield
    except BadExpression as error:
        key = dict(query.configured).get(text)
        if key is None:
            raise
        if (database, key, text) not in _REPORTED:
            _REPORTED.add((database, key, text))
            logger.error("database %r: %s no longer compiles: %s", database, key, error.message)
        raise ScenarioMisconfigured(key, database, error) from None


@dataclass(frozen=True)
class Query:
    """One recommendation request, with the scenario's settings merged in."""

    endpoint: str  # items-to-user | items-to-item | users-to-item | users-to-user
    count: int
    model: str
    user_id: str | None = None
    item_id: str | None = None
    filters: tuple[str, ...] = ()
    boosters: tuple[str, ...] = ()
    configured: tuple[tuple[str, str], ...] = ()
    """The expressions among `filters` and `boosters` that the scenario's configuration gave,
    with their key (`scenarios.<name>.filter`): a mistake there is the configuration's."""
    diversity: float = 0.0
    rotation_rate: float = 0.0
    rotation_time: float = 7200.0
    min_relevance: str = "low"
    exclude_interacted: bool = True
    user_impact: float = 0.0
    exclude_ids: frozenset[str] = frozenset()
    ensemble_weights: tuple[tuple[str, float], ...] = ()
    """The scenario's weights of its ensemble's members (over the model's own)."""
    source: str | None = None
    """A logic's ranking that replaces the model's scores (server/serving/logic_sources.py)."""
    source_settings: tuple[tuple[str, Any], ...] = ()
    """The logic's validated settings, which `source` reads."""
    vector: np.ndarray[Any, Any] | None = field(default=None, compare=False, repr=False)
    """Items to Image: the query picture's embedding (by the model's embedder)."""
    search_text: str | None = None
    """Search Items: the query."""
    search_fields: tuple[tuple[str, float], ...] = ()
    """Search Items: the properties searched, with their weights (empty: every one, alike)."""
    text_hits: tuple[Hit, ...] | None = field(default=None, compare=False, repr=False)
    """Search Items: what full-text retrieval found for `search_text`, most relevant first."""
    personalisation: float = 0.0
    """Search Items: the weight of the user's model scores against text relevance."""
    search_mode: str = "full-text"
    """Search Items: full-text, semantic or hybrid retrieval."""
    text_embedder: str = ""
    """Search Items: the text embedder of semantic and hybrid retrieval."""
    cold_start: ColdStart | None = None
    """The scenario's model for new users and new items (server/serving/cold_start.py)."""
    segmentation: str | None = None
    """Segment endpoints: the scenario's segmentation (server/serving/segments.py)."""
    context_segmentation: str | None = None
    context_segment: str | None = None
    """Items to Item Segment, Item Segments to Item Segment: the context segment."""

    @property
    def candidates(self) -> Entity:
        # Segment rankings score items too (their answer is segments of items).
        return Entity.USER if self.endpoint.startswith("users") else Entity.ITEM

    @property
    def searches(self) -> bool:
        return self.search_text is not None


@dataclass
class Result:
    ids: list[str]
    timings: dict[str, float] = field(default_factory=dict)


class Pipeline:
    """Runs queries against one database's expressions and models."""

    def __init__(
        self,
        engine: ExpressionEngine,
        models: LiveModels,
        *,
        recent: Callable[[str, float], dict[str, int]] | None = None,
    ) -> None:
        self.engine = engine
        self.models = models
        self.recent = recent
        """Recommendations of this process not yet in the database (user, since -> counts)."""
        self.histories = HistoryIndex(engine.database)
        self._id_maps = {entity: IdMap(entity) for entity in Entity}
        self._popularity: tuple[LoadedModel, int, np.ndarray[Any, Any]] | None = None
        self._array_bounds: dict[int, tuple[np.ndarray[Any, Any], float, float]] = {}
        self.sources = LogicSources(engine, self.histories, self._history_rows, self._released)
        # Choosing the candidates is Python and numpy over whole item vectors, bound by the GIL:
        # run on several reader threads at once it only adds GIL hand-offs (each numpy call
        # releases the GIL and takes it back), so one request computes at a time. The lock is
        # released while a request waits on its own SQL queries (`_released`).
        self._compute = threading.Lock()
        self.segment_members = segments.Memberships()

    def run(self, ctx: ReadContext, query: Query) -> Result:
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = timings.get(stage, 0.0) + (now - clock) * 1000
            clock = now

        with self._compute:
            if query.endpoint in segments.SEGMENT_RANKINGS:
                found = segments.rank_segments(self, ctx, query)
                lap("segments")
                return Result(found, timings)
            entity, chosen = self._choose(ctx, query, lap)
        ids = self._ids(ctx, entity, chosen)
        lap("ids")
        return Result(ids, timings)

    @contextlib.contextmanager
    def _released(self) -> Iterator[None]:
        """Let other requests compute while this one waits on DuckDB (the caller holds the
        compute lock)."""
        self._compute.release()
        try:
            yield
        finally:
            self._compute.acquire()

    def _choose(
        self, ctx: ReadContext, query: Query, lap: Callable[[str], None]
    ) -> tuple[Entity, np.ndarray[Any, Any]]:
        """The indexes of the recommended candidates, best first (under the compute lock)."""
        entity = query.candidates
        context = Context(item_id=query.item_id, user_id=query.user_id)
        size = self.engine.index_size(ctx, entity)
        mask = self._candidate_mask(ctx, query, context, size)
        lap("filter")

        model = self._scoring_model(ctx, query)
        history = self._history(ctx, query) if query.user_id is not None else UserHistory.empty()
        if query.user_id is not None and self._wants_user(ctx, query, model):
            user = self._index(ctx, Entity.USER, query.user_id)
            user_values = self.engine.entity_values(ctx, Entity.USER, query.user_id)
            history = cold_start.with_user(history, user, user_values)
        item_index = self._index(ctx, Entity.ITEM, query.item_id) if query.item_id else None
        segment = segments.context_segment(self, ctx, query, size)
        if segment is not None:  # Items to Item Segment: the segment's items only
            inside = np.zeros(size, dtype=np.bool_)
            inside[segment.items[segment.items < size]] = True
            mask &= inside
        self._exclude(ctx, query, mask, history, item_index, size)
        lap("context")

        pool = query.count * (DIVERSITY_POOL if query.diversity > 0 else 1)
        rotated = query.rotation_rate > 0 and query.user_id is not None
        # A search answers with what matches its text, never padded with other items.
        padded = query.min_relevance == "low" and not query.searches
        scores = self._scores(ctx, query, model, history, item_index, mask, size, segment)
        if query.source is not None:
            scores = self.sources.scores(
                SourceCall(
                    ctx=ctx,
                    source=query.source,
                    settings=dict(query.source_settings),
                    endpoint=query.endpoint,
                    count=query.count,
                    user_id=query.user_id,
                    item_index=item_index,
                    history=history,
                    scores=scores,
                    mask=mask,
                    size=size,
                )
            )
        lap("score")
        boosts = self._boosts(ctx, query, context, size)
        shown = self._recently_shown(ctx, query, entity) if rotated else {}
        lap("boost")
        found = None
        if query.searches:
            evidence = np.isfinite(scores)
        elif query.source is not None:  # a logic's ranking: above 0 is what it recommends
            evidence = scores > 0
        else:
            evidence = model.relevant(scores)
        if not rotated:
            relevant = np.flatnonzero(evidence)
            found = ranking.relevant_top(relevant, scores[relevant], boosts, pool, padded)
            lap("relevance")
        if found is None:
            keys = self._relevance(ctx, query, evidence, scores, size)
            lap("relevance")
            # Boosters multiply the ranking keys, so that they lift padded (popular) items.
            for values, low, _ in boosts:
                if low > 0:
                    # -inf stays -inf (+inf stays +inf) when multiplied by a positive boost.
                    np.multiply(keys, values, out=keys)
                else:
                    keys = np.where(np.isfinite(keys), keys * values, keys)
            if rotated:
                keys = ranking.rotate(keys, shown, query.rotation_rate)
            lap("boost")
            chosen = ranking.top(keys, pool)
            found = chosen, keys[chosen]
        lap("rank")
        chosen, chosen_keys = found
        if query.diversity > 0 and len(chosen) > 1:
            chosen = self._diversify(ctx, query, chosen, chosen_keys, size)
        chosen = chosen[: query.count]
        lap("rank")
        return entity, chosen

    # -- stages ---------------------------------------------------------------------------------

    def _candidate_mask(
        self, ctx: ReadContext, query: Query, context: Context, size: int
    ) -> np.ndarray[Any, Any]:
        """True at every candidate that passes the request's (and its scenario's) filters."""
        entity = query.candidates
        mask = np.array(fitted(self.engine.mask(ctx, "true", entity=entity), size, False))
        for text in query.filters:
            with _configuration_at_fault(query, text, self.engine.database.name):
                mask &= fitted(self.engine.mask(ctx, text, context, entity=entity), size, False)
        return mask

    def _scoring_model(self, ctx: ReadContext, query: Query) -> Algorithm:
        """The query's model, an ensemble with the scenario's member weights."""
        model = self._model(ctx, query.model).algorithm
        if query.ensemble_weights and isinstance(model, Ensemble):
            model = model.weighted(dict(query.ensemble_weights))
        return model

    def _exclude(
        self,
        ctx: ReadContext,
        query: Query,
        mask: np.ndarray[Any, Any],
        history: UserHistory,
        item_index: int | None,
        size: int,
    ) -> None:
        """Take out of the candidates what the request must not get: the context item or user,
        the user's items (unless asked for), the ids the request excludes."""
        personal = query.endpoint in ("items-to-user", "items-to-item-segment")
        if personal and query.exclude_interacted:
            mask[history.items[history.items < size]] = False
        elif query.endpoint == "items-to-item" and item_index is not None and item_index < size:
            mask[item_index] = False
        elif query.endpoint == "users-to-user":
            own = self._index(ctx, Entity.USER, query.user_id)
            if own is not None and own < size:
                mask[own] = False
        for excluded in self._indexes(ctx, query.candidates, query.exclude_ids):
            if excluded < size:
                mask[excluded] = False

    def _scores(
        self,
        ctx: ReadContext,
        query: Query,
        model: Algorithm,
        history: UserHistory,
        item_index: int | None,
        mask: np.ndarray[Any, Any],
        size: int,
        segment: segments.SegmentContext | None = None,
    ) -> np.ndarray[Any, Any]:
        """Every candidate's score (-inf for the masked-out ones)."""
        scores: np.ndarray[Any, Any]
        if query.searches:
            return search_scores(query, model, history, mask, size)
        if query.endpoint == "items-to-item-segment":
            assert segment is not None
            sample, impact = segment.sample, query.user_impact
            return segments.context_scores(model, history, sample, mask, size, impact)
        if query.endpoint == "items-to-image":
            if query.vector is None:
                # The model has no trained version yet: the fallback ranks without the picture.
                scores = model.score_users([UserHistory.empty()], size, mask)[0]
                return scores
            scores = restrict(pad_scores(model.query_scores(query.vector[None, :]), size), mask)[0]
            return scores
        cold = query.cold_start
        if query.endpoint == "items-to-user":
            scores = model.score_users([history], size, mask)[0]
            if cold is None:
                return scores
            # New to the model: the user (few interactions) or the item (few when the model
            # was trained, or added since); the cold-start model has the rest of the weight.
            known = self._model(ctx, query.model)
            weights = cold_start.user_weight(history, cold.until) * cold_start.item_weights(
                known.item_interactions, known.algorithm.n_items, size, cold.until
            )
            if bool((weights[mask] < 1.0).any()):
                newcomer = self._model(ctx, cold.model).algorithm
                fresh = newcomer.score_users([history], size, mask)[0]
                scores = cold_start.blend(scores, fresh, weights, mask)
            return scores
        if query.endpoint == "items-to-item":
            assert item_index is not None
            scores = model.score_items([item_index], size, mask)[0]
            if cold is not None and cold_start.knows_nothing(scores):
                # An item the model has no interactions of: its content speaks for it.
                scores = self._model(ctx, cold.model).algorithm.score_items(
                    [item_index], size, mask
                )[0]
            if query.user_impact > 0 and len(history):
                personal = model.score_users([history], size, mask)[0]
                scores = (1 - query.user_impact) * ranking.normalized(scores) + (
                    query.user_impact * ranking.normalized(personal)
                )
            return scores
        n_items = self.engine.index_size(ctx, Entity.ITEM)
        if query.endpoint == "users-to-item":
            assert item_index is not None
            item_scores = model.score_items([item_index], n_items)[0]
        else:
            item_scores = model.score_users([history], n_items)[0]
        scores = self._user_scores(ctx, item_scores, size)
        return np.where(mask, scores, -np.inf).astype(np.float32)

    def _boosts(
        self, ctx: ReadContext, query: Query, context: Context, size: int
    ) -> list[tuple[np.ndarray[Any, Any], float, float]]:
        """The boosters' vectors over the candidates, with their minimum and maximum."""
        boosts = []
        for text in query.boosters:
            with _configuration_at_fault(query, text, self.engine.database.name):
                whole = self.engine.boosts(ctx, text, context, entity=query.candidates)
            # The bounds are kept per cached vector: over the slice they would be recomputed.
            boosts.append((fitted(whole, size, 1.0), *self._bounds(whole)))
        return boosts

    def _relevance(
        self,
        ctx: ReadContext,
        query: Query,
        relevant: np.ndarray[Any, Any],
        scores: np.ndarray[Any, Any],
        size: int,
    ) -> np.ndarray[Any, Any]:
        """Ranking keys: relevant candidates (by the model's relevance threshold) by score,
        above the rest; with minRelevance low the rest are ranked by popularity, so that a
        short list is padded."""
        finite = np.isfinite(scores)
        keys = np.full(size, -np.inf, dtype=np.float64)
        # Gathering and scattering by index lists: the same values as indexing by the boolean
        # masks, at a fraction of the cost over 100,000s of candidates.
        chosen = np.flatnonzero(relevant)
        if len(chosen):
            keys[chosen] = ranking.relevance_keys(scores[chosen])
        pad = query.min_relevance == "low" or (query.min_relevance == "medium" and not len(chosen))
        if pad:
            rest = np.flatnonzero(finite & ~relevant)
            if query.candidates is Entity.ITEM and FALLBACK_MODEL in self.models.configs:
                popularity = self._fallback_scores(ctx, size)[rest]
            else:
                popularity = np.zeros(len(rest))
            peak = float(popularity.max()) if len(rest) else 0.0
            # Padding ranks below every relevant candidate, but above zero, so boosters count.
            keys[rest] = 0.01 + (popularity / (peak + 1.0) if peak > 0 else 0.0)
        return keys

    def _bounds(self, array: np.ndarray[Any, Any]) -> tuple[float, float]:
        """The minimum and maximum of a (cached, read-only) booster vector, kept per vector."""
        cached = self._array_bounds.get(id(array))
        if cached is not None and cached[0] is array:
            return cached[1], cached[2]
        low = float(array.min()) if len(array) else 1.0
        high = float(array.max()) if len(array) else 1.0
        if len(self._array_bounds) >= 64:
            self._array_bounds.clear()
        self._array_bounds[id(array)] = (array, low, high)
        return low, high

    def _fallback_scores(self, ctx: ReadContext, size: int) -> np.ndarray[Any, Any]:
        """The fallback model's scores of every item (0 where it has none), kept per model
        version: they are the same for every request. Only candidates' entries are read."""
        loaded = self._model(ctx, FALLBACK_MODEL)
        cached = self._popularity
        if cached is not None and cached[0] is loaded and cached[1] == size:
            return cached[2]
        scores = loaded.algorithm.score_users([UserHistory.empty()], size)[0].astype(np.float64)
        scores = np.where(np.isfinite(scores), scores, 0.0)
        scores.flags.writeable = False
        self._popularity = (loaded, size, scores)
        return scores

    def _recently_shown(self, ctx: ReadContext, query: Query, entity: Entity) -> dict[int, int]:
        """How often each candidate (by index) was recommended to the user within the rotation
        time."""
        assert query.user_id is not None
        since = time.time() - query.rotation_time
        with self._released():
            shown = recently_recommended(ctx, query.user_id, since)
        if self.recent is not None:
            for item, count in self.recent(query.user_id, since).items():
                shown[item] = shown.get(item, 0) + count
        if not shown:
            return {}
        indexes = self._index_map(ctx, entity, list(shown))
        return {index: shown[entity_id] for entity_id, index in indexes.items()}

    def _diversify(
        self,
        ctx: ReadContext,
        query: Query,
        pool: np.ndarray[Any, Any],
        pool_keys: np.ndarray[Any, Any],
        size: int,
    ) -> np.ndarray[Any, Any]:
        """Maximal marginal relevance over the pool, with item-kNN similarity for items."""
        if query.candidates is not Entity.ITEM or "item-knn" not in self.models.configs:
            return pool
        similarity_model = self._model(ctx, "item-knn").algorithm
        similarity = similarity_model.score_items(list(pool), size)[:, pool]
        return ranking.maximal_marginal_relevance(
            pool, pool_keys, similarity, query.diversity, query.count
        )

    # -- data -----------------------------------------------------------------------------------

    def _model(self, ctx: ReadContext, name: str) -> LoadedModel:
        """A served model; in a memory-only read, only one that is loaded already (loading
        reads files, or even trains). An ensemble's members are loaded with it."""
        if ctx.memory_only:
            found = self.models.peek(name)
            if found is None:
                raise NeedsDatabase(f"loading model {name!r}")
            loaded = found
        else:
            loaded = self.models.get(name)
        if isinstance(loaded.algorithm, MemberModel):
            for member in loaded.algorithm.members:
                self._model(ctx, member)
        return loaded

    def _wants_user(self, ctx: ReadContext, query: Query, model: Algorithm) -> bool:
        """Whether the models that will score this user read its properties (and index): the
        cold-start model too where it scores users (Items to User: new items, for every user;
        in Items to Item it scores the context item alone)."""

        def member(name: str) -> Algorithm:
            return self._model(ctx, name).algorithm

        models = [model]
        cold = query.cold_start
        if cold is not None and query.endpoint == "items-to-user":
            models.append(member(cold.model))
        return any(cold_start.wants_user_properties(m, member) for m in models)

    def has_interactions(self, ctx: ReadContext, user_id: str) -> bool:
        """Whether the history index shows interactions of the user, which then exists
        (deleting a user deletes its interactions); False where the index cannot tell."""
        found = self.histories.get(ctx, user_id)
        return found is not None and len(found.items) > 0

    def _history(self, ctx: ReadContext, query: Query) -> UserHistory:
        assert query.user_id is not None
        weights = validate_weights(self.models.configs[query.model].weights)
        found = self.histories.get(ctx, query.user_id)
        if found is not None:
            return found.history(weights)
        rows = self._history_rows(ctx, query.user_id)
        kinds = tuple(KIND_NAMES[row[1]] for row in rows)
        values = []
        for kind, row in zip(kinds, rows, strict=True):
            weight = weights[kind]
            if kind == "ratings":
                weight *= max(row[3] + 1.0, 0.0)
            elif kind == "view_portions":
                weight *= min(max(row[4], 0.0), 1.0)
            values.append(weight)
        return UserHistory(
            np.asarray([row[0] for row in rows], dtype=np.int64),
            kinds,
            np.asarray([row[2] for row in rows], dtype=np.float64),
            np.asarray(values, dtype=np.float32),
        )

    def _history_rows(self, ctx: ReadContext, user_id: str) -> list[tuple[Any, ...]]:
        """A user's interactions (item index, kind, time, rating, portion) by SQL, oldest first:
        the user's rows (a server's copy indexes interactions by user), their items' indexes
        from the id map in memory rather than a join with every item."""
        version = (
            self.engine.database.catalog_version
        )  # before the read: a later change reads again
        with self._released():
            rows = ctx.conn.execute(
                "SELECT item_id, kind, epoch_us(ts) / 1e6, coalesce(rating, 0), "
                "coalesce(portion, 1) FROM interactions WHERE user_id = ? ORDER BY ts",
                [user_id],
            ).fetchall()
        ids = sorted({row[0] for row in rows})
        indexes = self._id_maps[Entity.ITEM].indexes_of(ctx, ids, version)
        if indexes is None:
            with self._released():
                joined: list[tuple[Any, ...]] = ctx.conn.execute(
                    'SELECT i."$idx", x.kind, epoch_us(x.ts) / 1e6, coalesce(x.rating, 0), '
                    "coalesce(x.portion, 1) FROM interactions AS x "
                    'JOIN items AS i ON i."$id" = x.item_id WHERE x.user_id = ? ORDER BY x.ts',
                    [user_id],
                ).fetchall()
            return joined
        return [(indexes[row[0]], *row[1:]) for row in rows if row[0] in indexes]

    def _user_scores(
        self, ctx: ReadContext, item_scores: np.ndarray[Any, Any], size: int
    ) -> np.ndarray[Any, Any]:
        """Each user's summed score of the items they interacted with."""
        with self._released():
            columns = ctx.conn.execute(
                'SELECT u."$idx" AS u, i."$idx" AS i FROM interactions AS x '
                'JOIN users AS u ON u."$id" = x.user_id JOIN items AS i ON i."$id" = x.item_id'
            ).fetchnumpy()
        users = np.asarray(columns["u"], dtype=np.int64)
        items = np.asarray(columns["i"], dtype=np.int64)
        values = np.where(np.isfinite(item_scores), item_scores, 0.0)
        inside = items < len(values)
        return np.bincount(users[inside], weights=values[items[inside]], minlength=size)[:size]

    def _index(self, ctx: ReadContext, entity: Entity, entity_id: str | None) -> int | None:
        if entity_id is None:
            return None
        found = self._index_map(ctx, entity, [entity_id])
        if entity_id not in found:
            raise EntityNotFound(entity.value, entity_id)
        return found[entity_id]

    def _indexes(self, ctx: ReadContext, entity: Entity, ids: frozenset[str]) -> list[int]:
        return list(self._index_map(ctx, entity, list(ids)).values()) if ids else []

    def _index_map(self, ctx: ReadContext, entity: Entity, ids: Sequence[str]) -> dict[str, int]:
        with self._released():
            rows = ctx.conn.execute(
                f'SELECT "$id", "$idx" FROM {entity.table} WHERE "$id" IN '
                "(SELECT unnest(?::VARCHAR[]))",
                [list(ids)],
            ).fetchall()
        return {row[0]: int(row[1]) for row in rows}

    def _ids(self, ctx: ReadContext, entity: Entity, indexes: np.ndarray[Any, Any]) -> list[str]:
        if not len(indexes):
            return []
        known = self._id_maps[entity].get(ctx, indexes)
        if known is not None:
            return known
        rows = ctx.conn.execute(
            f'SELECT "$idx", "$id" FROM {entity.table} WHERE "$idx" IN '
            "(SELECT unnest(?::BIGINT[]))",
            [[int(i) for i in indexes]],
        ).fetchall()
        by_index: Mapping[int, str] = {int(row[0]): row[1] for row in rows}
        return [by_index[int(i)] for i in indexes if int(i) in by_index]


def search_scores(
    query: Query,
    model: Algorithm,
    history: UserHistory,
    mask: np.ndarray[Any, Any],
    size: int,
) -> np.ndarray[Any, Any]:
    """Search Items: the text relevance of the items that full-text retrieval found (-inf for
    the others), blended with the user's model scores by the query's `personalisation`."""
    scores = np.full(size, -np.inf, dtype=np.float32)
    for hit in reversed(query.text_hits or ()):  # the best last: it wins a duplicate
        if hit.index < size and mask[hit.index]:
            scores[hit.index] = hit.score
    weight = query.personalisation
    found = np.flatnonzero(np.isfinite(scores))
    if weight <= 0 or not len(history) or not len(found):
        return scores
    personal = model.score_users([history], size, mask)[0][found].astype(np.float64)
    text = ranking.normalized(scores[found].astype(np.float64))
    personal = ranking.normalized(np.where(np.isfinite(personal), personal, -np.inf))
    personal = np.where(np.isfinite(personal), personal, 0.0)
    scores[found] = ((1 - weight) * text + weight * personal).astype(np.float32)
    return scores
