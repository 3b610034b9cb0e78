"""Segment recommendations: Recombee's Item Segments to User / Item / Item Segment, Search Item
Segments, and Items to Item Segment, as stages of the recommendation pipeline.

A scenario names its segmentation (`segmentation:` in its YAML; `context_segmentation:` for the
context segment of Item Segments to Item Segment, by default the same one). Segments are scored
by their items, with the scenario's model:

1. Every item is scored for the request's context as the matching item endpoint scores it
   (Items to User for a user, Items to Item for an item, Search Items' text hits for a search,
   and for a context segment the mean of the item-to-item scores from a sample of the
   segment's most popular items, `CONTEXT_SAMPLE`). The request's `filter` and `booster` are
   ReQL over items, as everywhere in reqo: the filter decides which items count for their
   segments (a segment none of whose items pass drops out), the booster multiplies each item's
   weight.
2. Each item the model finds relevant weighs its score scaled to (0, 1] (as the pipeline's
   relevance keys scale it); a segment's relevance is the sum of its `TOP_K` best weights
   divided by `TOP_K`: a mean of its best items that counts missing ones as 0. The best few
   rather than all: a large segment (Drama) is not diluted by its many items the user would not
   watch, nor a small one lifted by a single lucky item (the maximum) or a large one by its size
   (the sum).
3. Segments with relevant items rank first (by that mean), then (where nothing is relevant: a
   new user) the others by the same top-k mean of their items' popularity share, as a short
   list of items is padded with popular ones; boosters multiply both, so (as for padded items)
   a large boost lifts a segment without relevant items above the relevant ones. A search
   ranks only the segments with text hits.

The work is bounded: a segment counts at most `MAX_SEGMENT_ITEMS` items (its most popular);
memberships are read once per segmentation definition and catalog version (`Memberships`);
scoring is whole-vector numpy, never a Python loop over items.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from plugins.algorithm import Algorithm, UserHistory
from server.serving import ranking
from server.serving.expressions import Context
from storage.database import ReadContext
from storage.errors import BadParameter, NotFound
from storage.params import read_str
from storage.schema import Entity
from storage.segmentations import (
    Segmentation,
    SegmentationNotFound,
    get_segmentation,
    segment_items,
)

if TYPE_CHECKING:
    from server.serving.pipeline import Pipeline, Query
    from server.serving.scenarios import ScenarioConfig

Array = np.ndarray[Any, Any]

SEGMENT_RANKINGS = frozenset(
    {
        "item-segments-to-user",
        "item-segments-to-item",
        "item-segments-to-item-segment",
        "search-item-segments",
    }
)
"""The endpoints that answer segments (of the scenario's segmentation)."""
CONTEXT_SEGMENT_ENDPOINTS = frozenset({"items-to-item-segment", "item-segments-to-item-segment"})
"""The endpoints whose context is a segment (`contextSegmentId`)."""
SEGMENT_ENDPOINTS = SEGMENT_RANKINGS | CONTEXT_SEGMENT_ENDPOINTS
"""Every endpoint that needs its scenario's segmentation."""
SCORED_AS = {
    "item-segments-to-user": "items-to-user",
    "item-segments-to-item": "items-to-item",
    "item-segments-to-item-segment": "items-to-item-segment",
    "search-item-segments": "search-items",
}
"""How the items of a segment ranking are scored: as the item endpoint of the same context."""

TOP_K = 5
"""A segment's relevance: the mean of its best this many item weights (missing ones count 0)."""
MAX_SEGMENT_ITEMS = 2_000
"""Items per segment that count (its most popular): bounds the work on huge segments."""
CONTEXT_SAMPLE = 32
"""Items of a context segment (its most popular) whose item-to-item scores are averaged."""
USER_IMPACT = 0.5
"""With a context segment, the weight of the target user's own scores (where they have a
history) against the segment's, both scaled to [0, 1] (as Items to Item's userImpact)."""
_CACHED = 32
"""Segmentations whose memberships are kept per pipeline."""


def with_segments(query: Query, merged: Mapping[str, Any], scenario: ScenarioConfig) -> Query:
    """The query with its scenario's segmentation and its context segment (`contextSegmentId`);
    unchanged for an endpoint that uses no segments. A 400 names `scenario` where the scenario
    has no segmentation."""
    if query.endpoint not in SEGMENT_ENDPOINTS:
        return query
    segmentation = scenario.segmentation
    if segmentation is None:
        if not scenario.name:
            raise BadParameter(
                "scenario",
                "is required: segment recommendations use the segmentation of their scenario "
                "(its `segmentation` key in the configuration)",
            )
        raise BadParameter(
            "scenario",
            f"scenario '{scenario.name}' has no segmentation: give it one with the key "
            "`segmentation` in the configuration's scenarios",
        )
    expressions = merged.get("reqlExpressions")
    if query.endpoint in SEGMENT_RANKINGS and expressions:
        raise BadParameter(
            "reqlExpressions",
            "is not supported for segments: reqo evaluates ReQL over items, not segments",
        )
    context = None
    if query.endpoint in CONTEXT_SEGMENT_ENDPOINTS:
        context = read_str(merged, "contextSegmentId", required=True)
        if not context:
            raise BadParameter("contextSegmentId", "must not be empty")
    # Items to Item Segment's context is the scenario's segmentation; Item Segments to Item
    # Segment may take its context from another one.
    context_segmentation = segmentation
    if query.endpoint == "item-segments-to-item-segment":
        context_segmentation = scenario.context_segmentation or segmentation
    return replace(
        query,
        segmentation=segmentation,
        context_segmentation=context_segmentation,
        context_segment=context,
        user_impact=USER_IMPACT if context is not None else query.user_impact,
    )


# -- memberships --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Members:
    """A segmentation's segments and their items' dense indexes, flat: the items of segment `s`
    (position in `ids`) are `items[starts[s]:starts[s + 1]]`, most popular first."""

    ids: tuple[str, ...]
    items: Array
    owner: Array
    """The segment position of each entry of `items`."""
    starts: Array

    def of(self, segment_id: str) -> Array | None:
        """The items of a segment (None for a segment that does not exist)."""
        try:
            position = self.ids.index(segment_id)
        except ValueError:
            return None
        items: Array = self.items[self.starts[position] : self.starts[position + 1]]
        return items


def members_of(
    listing: Mapping[str, Sequence[str]],
    indexes: Mapping[str, int],
    popularity: Array,
    limit: int = MAX_SEGMENT_ITEMS,
) -> Members:
    """Members from segment id -> item ids: each segment's known items, at most `limit`, most
    popular first (by `popularity` over the dense index; ties by index)."""
    ids = tuple(sorted(listing))
    chunks: list[Array] = []
    for segment_id in ids:
        found = np.fromiter(
            (indexes[item] for item in listing[segment_id] if item in indexes), dtype=np.int64
        )
        found = np.unique(found)
        weight = np.zeros(len(found))
        known = found < len(popularity)
        weight[known] = popularity[found[known]]
        chunks.append(found[np.lexsort((found, -weight))][:limit])
    sizes = np.array([len(c) for c in chunks], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    items = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(len(ids), dtype=np.int64), sizes)
    return Members(ids, items.astype(np.int64), owner, starts)


class Memberships:
    """Members per (segmentation definition, catalog version): read once, then from memory."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[Segmentation, int], Members] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Segmentation, int]) -> Members | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple[Segmentation, int], members: Members) -> None:
        with self._lock:
            self._entries[key] = members
            while len(self._entries) > _CACHED:
                self._entries.popitem(last=False)


def _members(
    pipeline: Pipeline, ctx: ReadContext, segmentation_id: str, size: int, popularity: Array
) -> Members:
    """The segmentation's members, from the pipeline's cache or read (off the compute lock)."""
    version = pipeline.engine.database.catalog_version  # before the read: a change reads again
    with pipeline._released():
        try:
            segmentation = get_segmentation(ctx, segmentation_id)
        except SegmentationNotFound:
            raise NotFound(
                f"segmentation '{segmentation_id}' of the request's scenario does not exist in "
                "this database: create it, or name another in the scenario's `segmentation`"
            ) from None
    key = (segmentation, version)
    cached = pipeline.segment_members.get(key)
    if cached is not None:
        return cached
    with pipeline._released():
        found = segment_items(ctx, segmentation)
    # Segments defined without items yet (manual ones) exist too.
    listing: dict[str, Sequence[str]] = {segment[0]: () for segment in segmentation.segments}
    listing.update(found)
    everything = sorted({item for items in listing.values() for item in items})
    indexes = pipeline._index_map(ctx, Entity.ITEM, everything)
    members = members_of(listing, indexes, popularity)
    pipeline.segment_members.put(key, members)
    return members


@dataclass(frozen=True)
class SegmentContext:
    """A context segment: its items (at most MAX_SEGMENT_ITEMS) and the sample that scores."""

    segment_id: str
    items: Array
    sample: Array


def context_segment(
    pipeline: Pipeline, ctx: ReadContext, query: Query, size: int
) -> SegmentContext | None:
    """The query's context segment (None where it has none); 404 for one that does not exist."""
    if query.context_segment is None or query.context_segmentation is None:
        return None
    popularity = popularity_of(pipeline, ctx, size)
    members = _members(pipeline, ctx, query.context_segmentation, size, popularity)
    items = members.of(query.context_segment)
    if items is None:
        raise NotFound(
            f"segment '{query.context_segment}' not found in segmentation "
            f"'{query.context_segmentation}'"
        )
    return SegmentContext(query.context_segment, items, items[:CONTEXT_SAMPLE])


def popularity_of(pipeline: Pipeline, ctx: ReadContext, size: int) -> Array:
    """The fallback model's scores of every item (zeros where there is none)."""
    from server.serving.scenarios import FALLBACK_MODEL

    if FALLBACK_MODEL not in pipeline.models.configs:
        return np.zeros(size)
    scores: Array = pipeline._fallback_scores(ctx, size)
    return scores


# -- scoring ------------------------------------------------------------------------------------


def context_scores(
    model: Algorithm,
    history: UserHistory,
    sample: Array,
    mask: Array,
    size: int,
    user_impact: float,
) -> Array:
    """Items for a context segment: the mean of their item-to-item scores from the segment's
    sample (an unscorable pair counts 0; -inf where no sample item scores them), blended with
    the user's own scores by `user_impact` where the user has a history."""
    if len(sample):
        rows = model.score_items([int(i) for i in sample], size, mask)
        finite = np.isfinite(rows)
        total = np.where(finite, rows, 0.0).sum(axis=0, dtype=np.float64)
        scores = np.where(finite.any(axis=0), total / len(sample), -np.inf)
    else:
        scores = np.where(mask, 0.0, -np.inf)
    if user_impact > 0 and len(history):
        personal = model.score_users([history], size, mask)[0].astype(np.float64)
        blended = (1 - user_impact) * ranking.normalized(scores) + user_impact * np.where(
            np.isfinite(personal), ranking.normalized(personal), 0.0
        )
        scores = np.where(np.isfinite(scores), blended, -np.inf)
    return scores.astype(np.float32)


def item_weights(scores: Array, relevant: Array) -> Array:
    """Each relevant item's score scaled to (0, 1] (in the order of the scores); 0 elsewhere."""
    weights = np.zeros(len(scores), dtype=np.float64)
    chosen = np.flatnonzero(relevant & np.isfinite(scores))
    if len(chosen):
        weights[chosen] = ranking.relevance_keys(scores[chosen]) - 2.0
    return weights


def top_k_means(owner: Array, values: Array, segments: int, k: int = TOP_K) -> Array:
    """Per segment (`owner` of each value): the sum of its `k` largest values, divided by k."""
    if not len(values):
        return np.zeros(segments)
    order = np.lexsort((-values, owner))
    grouped, sorted_values = owner[order], values[order]
    starts = np.searchsorted(grouped, np.arange(segments))
    rank = np.arange(len(grouped)) - starts[grouped]
    kept = rank < k
    sums = np.bincount(grouped[kept], weights=sorted_values[kept], minlength=segments)
    result: Array = sums / k
    return result


def rank_members(
    members: Members,
    scores: Array,
    relevant: Array,
    boosts: Array,
    popularity: Array,
    count: int,
    *,
    exclude: frozenset[str] = frozenset(),
    pad: bool = True,
    k: int = TOP_K,
) -> list[str]:
    """The best `count` segments. A segment with relevant items ranks by 2 + the top-k mean of
    their weights (times their boosts); one without (with `pad`) by the top-k mean of its items'
    popularity share (times their boosts), below 1 unless boosted: as the pipeline ranks padded
    items, a booster can lift such a segment above relevant ones. Ties by segment id. Items with
    a -inf score (filtered out) do not count; a segment without any item that counts is left
    out, and so is one with nothing relevant unless `pad`."""
    size = len(scores)
    items, owner = members.items, members.owner
    inside = items < size
    items, owner = items[inside], owner[inside]
    counted = np.isfinite(scores[items])
    items, owner = items[counted], owner[counted]
    n = len(members.ids)
    boost = np.where(np.isfinite(boosts), boosts, 1.0)[items]
    relevance = top_k_means(owner, item_weights(scores, relevant)[items] * boost, n, k)
    keep = np.bincount(owner, minlength=n) > 0
    if pad:
        # As the pipeline pads: above 0 (so that boosters count) and below 1.01.
        shares: Array = np.zeros(size)
        known = np.asarray(popularity, dtype=np.float64)[:size]
        shares[: len(known)] = np.where(np.isfinite(known) & (known > 0), known, 0.0)
        peak = float(shares.max()) if size else 0.0
        popular: Array = 0.01 + (shares / (peak + 1.0) if peak > 0 else shares * 0.0)
        padding = top_k_means(owner, popular[items] * boost, n, k)
    else:
        padding = np.zeros(n)
        keep &= relevance > 0
    for segment_id in exclude:
        if segment_id in members.ids:
            keep[members.ids.index(segment_id)] = False
    keys = np.where(relevance > 0, 2.0 + relevance, padding)
    order = np.lexsort((np.arange(n), -keys))
    chosen = order[keep[order]][:count]
    return [members.ids[int(i)] for i in chosen]


def rank_segments(pipeline: Pipeline, ctx: ReadContext, query: Query) -> list[str]:
    """A segment ranking's answer (under the pipeline's compute lock): every item scored for
    the context as its item endpoint scores it, then the segments ranked by their items."""
    size = pipeline.engine.index_size(ctx, Entity.ITEM)
    context = Context(item_id=query.item_id, user_id=query.user_id)
    mask = pipeline._candidate_mask(ctx, query, context, size)
    model = pipeline._scoring_model(ctx, query)
    history = pipeline._history(ctx, query) if query.user_id is not None else UserHistory.empty()
    item_index = pipeline._index(ctx, Entity.ITEM, query.item_id) if query.item_id else None
    segment = context_segment(pipeline, ctx, query, size)
    scoring = replace(query, endpoint=SCORED_AS[query.endpoint])
    scores = pipeline._scores(ctx, scoring, model, history, item_index, mask, size, segment)
    boosts = np.ones(size)
    for values, _, _ in pipeline._boosts(ctx, query, context, size):
        boosts = boosts * values
    relevant = np.isfinite(scores) if query.searches else model.relevant(scores)
    popularity = popularity_of(pipeline, ctx, size)
    assert query.segmentation is not None
    members = _members(pipeline, ctx, query.segmentation, size, popularity)
    exclude = set(query.exclude_ids)
    if segment is not None and query.context_segmentation == query.segmentation:
        exclude.add(segment.segment_id)  # a segment is not its own relative
    return rank_members(
        members,
        scores,
        relevant,
        boosts,
        popularity,
        query.count,
        exclude=frozenset(exclude),
        pad=not query.searches,
    )
