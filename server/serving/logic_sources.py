"""The host's rankings that logics use instead of a model's scores (`Logic.source`), computed per
request from the request's settings.

Each stays cheap: `recently-viewed` and `continue-watching` read the user's own interactions (the
history index, or one bounded query); `watch-next` and `editorial-picks` query the series of the
user's (or the context item's) items and the picked ids only; `popular` counts over all
interactions, so its counts are cached per settings (`PopularCounts`: at most `POPULAR_ENTRIES`
settings); the first request with new settings counts (under the pipeline's query), later ones
get the cached counts while a background thread recomputes them when they are older than
`POPULAR_REFRESH` seconds and the interactions have changed since.

A source returns a score per candidate: above 0 for what it recommends, best highest; -inf for
what it leaves out (so that `minRelevance: low` does not pad it back), 0 for what the pipeline
may pad with.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from plugins.algorithm import UserHistory
from server.serving.histories import HistoryIndex
from server.serving.reql_engine import ExpressionEngine, fitted
from storage.database import ReadContext
from storage.errors import BadParameter
from storage.reql_queries import BadExpression
from storage.schema import Entity
from storage.snapshot import KIND_NAMES

Array = np.ndarray[Any, Any]

VIEW_KINDS = frozenset({"detail_views", "view_portions"})
"""What counts as having viewed an item (recently-viewed)."""
POPULAR_REFRESH = 30.0
"""Seconds a cached count of `recombee:popular` serves before it is recomputed (when the
interactions changed since; a moving window moves on at most this late)."""
POPULAR_ENTRIES = 16
"""Distinct `recombee:popular` settings whose counts are kept (the least recently used go)."""
WATCH_NEXT_POOL = 100
"""watch-next: the model's best this many (or 10 x count) are checked for series membership."""

logger = logging.getLogger("reqo")
_CODE_BY_KIND = {name: code for code, name in KIND_NAMES.items()}


@dataclass(frozen=True)
class SourceCall:
    """One request's view for a source: its settings, the model's scores over the candidates
    (-inf outside `mask`), the user's history and the context item's index."""

    ctx: ReadContext
    source: str
    settings: Mapping[str, Any]
    endpoint: str
    count: int
    user_id: str | None
    item_index: int | None
    history: UserHistory
    scores: Array
    mask: Array
    size: int


@dataclass(frozen=True)
class Interactions:
    """A user's interactions, oldest first: item indexes, kind names, epoch seconds, portions."""

    items: Array
    kinds: Sequence[str] | Array
    times: Array
    portions: Array


class LogicSources:
    """The sources of one database's pipeline. `history_rows` reads a user's interactions by
    SQL (item index, kind code, time, rating, portion); `released` lets other requests compute
    while this one waits on DuckDB."""

    def __init__(
        self,
        engine: ExpressionEngine,
        histories: HistoryIndex,
        history_rows: Callable[[ReadContext, str], list[tuple[Any, ...]]],
        released: Callable[[], AbstractContextManager[None]],
    ) -> None:
        self.engine = engine
        self.histories = histories
        self.history_rows = history_rows
        self.released = released
        self.popular = PopularCounts(engine, released)

    def scores(self, call: SourceCall) -> Array:
        """The source's scores of every candidate (-inf outside the mask)."""
        ranking = {
            "popular": self.popular.scores,
            "recently-viewed": self._recently_viewed,
            "continue-watching": self._continue_watching,
            "watch-next": self._watch_next,
            "editorial-picks": self._editorial_picks,
        }[call.source]
        scores = np.asarray(ranking(call), dtype=np.float32)
        return np.where(call.mask, scores, -np.inf).astype(np.float32)

    # -- the user's own interactions ------------------------------------------------------------

    def interactions(self, ctx: ReadContext, user_id: str) -> Interactions:
        """From the history index where it is current, else one query over the user's rows."""
        stored = self.histories.get(ctx, user_id)
        if stored is not None:
            part = slice(stored.start, stored.end)
            whole = stored.histories
            return Interactions(
                whole.items[part], whole.names[part], whole.times[part], whole.portions[part]
            )
        rows = self.history_rows(ctx, user_id)
        return Interactions(
            np.asarray([row[0] for row in rows], dtype=np.int64),
            [KIND_NAMES[row[1]] for row in rows],
            np.asarray([row[2] for row in rows], dtype=np.float64),
            np.asarray([row[4] for row in rows], dtype=np.float64),
        )

    def _recently_viewed(self, call: SourceCall) -> Array:
        scores = np.full(call.size, -np.inf, dtype=np.float64)
        if call.user_id is None:
            return scores
        seen = self.interactions(call.ctx, call.user_id)
        max_age = call.settings.get("maxAge")
        oldest = time.time() - max_age if max_age is not None else -np.inf
        latest: dict[int, float] = {}
        views: dict[int, int] = {}
        for item, kind, at in zip(
            seen.items.tolist(), seen.kinds, seen.times.tolist(), strict=True
        ):
            if kind in VIEW_KINDS and at >= oldest and 0 <= item < call.size:
                latest[item] = max(latest.get(item, -np.inf), at)
                views[item] = views.get(item, 0) + 1
        order = sorted(latest, key=lambda i: latest[i])  # the oldest first
        recency = {item: rank + 1 for rank, item in enumerate(order)}
        for item, rank in recency.items():
            if call.settings.get("recencyOrdering", True):
                scores[item] = rank
            else:  # the most viewed first, the latest first among equals
                scores[item] = views[item] + rank / (len(order) + 1)
        return scores

    def _continue_watching(self, call: SourceCall) -> Array:
        scores = np.full(call.size, -np.inf, dtype=np.float64)
        if call.user_id is None:
            return scores
        seen = self.interactions(call.ctx, call.user_id)
        low = float(call.settings["watchingStartedPercentage"]) / 100
        high = float(call.settings["watchingCompletedPercentage"]) / 100
        last: dict[int, tuple[float, float]] = {}  # item -> (time, its latest portion)
        for item, kind, at, portion in zip(
            seen.items.tolist(),
            seen.kinds,
            seen.times.tolist(),
            seen.portions.tolist(),
            strict=True,
        ):
            if (
                kind == "view_portions"
                and 0 <= item < call.size
                and at >= last.get(item, (-1, 0))[0]
            ):
                last[item] = (at, portion)
        started = [item for item, (_, portion) in last.items() if low <= portion < high]
        started = self._of_asset_type(call, started, call.settings["assetType"])
        for rank, item in enumerate(sorted(started, key=lambda i: last[i][0])):
            scores[item] = rank + 1
        return scores

    def _watch_next(self, call: SourceCall) -> Array:
        scores = np.full(call.size, -np.inf, dtype=np.float64)
        asset = call.settings["assetType"]
        watched = {int(i) for i in call.history.items.tolist()}
        exclude = bool(call.settings["excludeAlreadyWatched"])
        if asset != "episodes":
            # The model's best movies (items in no series), scored into (0, 1) by their rank.
            pool = max(WATCH_NEXT_POOL, 10 * call.count)
            finite = np.flatnonzero(np.isfinite(call.scores))
            best = finite[np.argsort(-call.scores[finite], kind="stable")[:pool]].tolist()
            movies = self._of_asset_type(call, best, "movies")
            for rank, item in enumerate(movies):
                scores[item] = 1 - rank / (len(movies) + 1)
        if asset != "movies":
            nexts = self._next_episodes(call, watched if exclude else set())
            for rank, item in enumerate(reversed(nexts)):
                scores[item] = 2 + rank
        if exclude:
            for item in watched:
                if 0 <= item < call.size:
                    scores[item] = -np.inf
        return scores

    def _next_episodes(self, call: SourceCall, skipped: set[int]) -> list[int]:
        """The episode after the last watched one (or the context item) in each of their series,
        the most recently watched series first."""
        if call.endpoint == "items-to-item" and call.item_index is not None:
            anchors = {call.item_index: 0.0}
        elif call.user_id is not None:
            seen = self.interactions(call.ctx, call.user_id)
            anchors = {}
            for item, at in zip(seen.items.tolist(), seen.times.tolist(), strict=True):
                anchors[int(item)] = max(anchors.get(int(item), -np.inf), at)
        else:
            return []
        if not anchors:
            return []
        with self.released():
            rows = call.ctx.conn.execute(
                'SELECT s.series_id, i."$idx", s.time FROM series_items AS s '
                "JOIN items AS i ON i.\"$id\" = s.item_id WHERE s.item_type = 'item' AND "
                "s.series_id IN (SELECT t.series_id FROM series_items AS t "
                "JOIN items AS j ON j.\"$id\" = t.item_id WHERE t.item_type = 'item' "
                'AND j."$idx" IN (SELECT unnest(?::BIGINT[]))) ORDER BY s.series_id, s.time',
                [list(anchors)],
            ).fetchall()
        by_series: dict[str, list[tuple[int, float]]] = {}
        for series, item, at in rows:
            by_series.setdefault(str(series), []).append((int(item), float(at)))
        found: list[tuple[float, int]] = []
        for members in by_series.values():
            placed = [(at, item) for item, at in members if item in anchors]
            last_item = max(placed, key=lambda p: (anchors[p[1]], p[0]))
            after = [
                item
                for item, at in members
                if at > last_item[0] and item not in skipped and item != call.item_index
            ]
            if after and after[0] < call.size:
                found.append((anchors[last_item[1]], after[0]))
        return [item for _, item in sorted(found, key=lambda f: -f[0])]

    def _editorial_picks(self, call: SourceCall) -> Array:
        scores = np.full(call.size, -np.inf, dtype=np.float64)
        picks = list(dict.fromkeys(call.settings["picks"]))
        if not picks:
            return scores
        with self.released():
            rows = call.ctx.conn.execute(
                'SELECT "$id", "$idx" FROM items WHERE "$id" IN (SELECT unnest(?::VARCHAR[]))',
                [picks],
            ).fetchall()
        index = {str(row[0]): int(row[1]) for row in rows}
        # Ids that are no items are left out, as Recombee leaves out deleted items.
        order = [index[pick] for pick in picks if pick in index and index[pick] < call.size]
        if call.settings["personalizedReordering"] and len(call.history):
            model = call.scores
            scored = [i for i in order if np.isfinite(model[i]) and model[i] > 0]
            scored.sort(key=lambda i: -float(model[i]))  # stable: ties keep the editors' order
            order = scored + [i for i in order if i not in set(scored)]
        for rank, item in enumerate(order):
            scores[item] = len(order) - rank
        return scores

    def _of_asset_type(self, call: SourceCall, items: list[int], asset: str) -> list[int]:
        """`items` (in order) that are movies (in no series) or episodes (in one), or all."""
        if asset == "both" or not items:
            return items
        with self.released():
            rows = call.ctx.conn.execute(
                'SELECT DISTINCT i."$idx" FROM series_items AS s JOIN items AS i '
                "ON i.\"$id\" = s.item_id WHERE s.item_type = 'item' "
                'AND i."$idx" IN (SELECT unnest(?::BIGINT[]))',
                [items],
            ).fetchall()
        episodes = {int(row[0]) for row in rows}
        return [item for item in items if (item in episodes) == (asset == "episodes")]


@dataclass
class _Counts:
    version: int
    computed: float
    counts: Array


class PopularCounts:
    """`recombee:popular`'s interaction counts per settings (window, user filter, kinds),
    computed over every interaction, so kept: a bounded LRU whose entries are recomputed when
    older than POPULAR_REFRESH seconds and the interactions changed since."""

    def __init__(
        self, engine: ExpressionEngine, released: Callable[[], AbstractContextManager[None]]
    ) -> None:
        self.engine = engine
        self.released = released
        self._entries: OrderedDict[tuple[Any, ...], _Counts] = OrderedDict()
        self._refreshing: set[tuple[Any, ...]] = set()
        self._lock = threading.Lock()

    def scores(self, call: SourceCall) -> Array:
        settings = call.settings
        kinds = settings.get("interactionTypes")
        key = (settings.get("timeWindow"), settings.get("userFilter"), kinds)
        version = self.engine.database.interactions_version
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
        if entry is None:
            entry = _Counts(version, time.monotonic(), self._count(call.ctx, key, self.released))
            self._store(key, entry)
        elif entry.version != version and time.monotonic() - entry.computed >= POPULAR_REFRESH:
            # Stale: this request takes the counts it has; a thread counts again.
            with self._lock:
                start = key not in self._refreshing
                self._refreshing.add(key)
            if start:
                threading.Thread(
                    target=self._refresh, args=(key, version), name="reqo-popular", daemon=True
                ).start()
        return fitted(entry.counts, call.size, 0.0)

    def _store(self, key: tuple[Any, ...], entry: _Counts) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > POPULAR_ENTRIES:
                self._entries.popitem(last=False)

    def _refresh(self, key: tuple[Any, ...], version: int) -> None:
        try:
            counts = self.engine.database.read_sync(
                lambda ctx: self._count(ctx, key, contextlib.nullcontext)
            )
            self._store(key, _Counts(version, time.monotonic(), counts))
        except Exception:
            # The cached counts go on serving; the next stale request tries again.
            logger.exception("recounting recombee:popular failed")
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def _count(
        self,
        ctx: ReadContext,
        key: tuple[Any, ...],
        released: Callable[[], AbstractContextManager[None]],
    ) -> Array:
        window, user_filter, kinds = key
        users: Array | None = None
        if user_filter is not None:
            try:
                users = self.engine.mask(ctx, user_filter, parameter="logic", entity=Entity.USER)
            except BadExpression as error:
                raise BadParameter("logic", f"settings.userFilter is not usable: {error}") from None
        conditions: list[str] = ["true"]
        parameters: list[Any] = []
        if window is not None:
            conditions.append("epoch_us(x.ts) >= ?")
            parameters.append(int((time.time() - window) * 1e6))
        if kinds is not None:
            conditions.append("x.kind IN (SELECT unnest(?::UTINYINT[]))")
            parameters.append([_CODE_BY_KIND[kind] for kind in kinds])
        joined = 'JOIN users AS u ON u."$id" = x.user_id' if users is not None else ""
        user_column = ', u."$idx" AS u' if users is not None else ""
        with released():
            columns = ctx.conn.execute(
                f'SELECT i."$idx" AS i{user_column} FROM interactions AS x '
                f'JOIN items AS i ON i."$id" = x.item_id {joined} '
                f"WHERE {' AND '.join(conditions)}",
                parameters,
            ).fetchnumpy()
        items = np.asarray(columns["i"], dtype=np.int64)
        if users is not None:
            user_index = np.asarray(columns["u"], dtype=np.int64)
            inside = user_index < len(users)
            keep = np.zeros(len(items), dtype=bool)
            keep[inside] = users[user_index[inside]]
            items = items[keep]
        size = int(items.max()) + 1 if len(items) else 0
        counts: Array = np.bincount(items, minlength=size).astype(np.float32)
        counts.flags.writeable = False
        return counts
