"""Recombee's recommendation endpoints: Items to User, Items to Item, Users to Item, Users to User,
and Recommend Next Items. Each request becomes a pipeline Query with its scenario merged in."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from server.api.image_search import ENDPOINT as ENDPOINT_IMAGE
from server.api.operations import Params
from server.search.fulltext import MAX_QUERY_LENGTH, Hit
from server.search.semantic import fuse
from server.serving.expressions import Context
from server.serving.live_models import FALLBACK_VERSION
from server.serving.logics import LogicProblem, LogicRun, read_logic, resolve_logic
from server.serving.pipeline import Pipeline, Query
from server.serving.recommendation_log import new_recomm_id, recomm_id_time
from server.serving.scenarios import LOGIC_ENDPOINT, ScenarioConfig
from server.serving.segments import SEGMENT_RANKINGS, with_segments
from storage import catalog
from storage.database import NeedsDatabase, ReadContext
from storage.entities import entity_exists
from storage.errors import BadParameter, NotFound
from storage.params import check_known, read_bool, read_int, read_number, read_str, read_str_list
from storage.recommendations import Recommendation, get_recommendation
from storage.schema import Entity, validate_id

if TYPE_CHECKING:
    from plugins.logic import Logic
    from server.experiments.bandits import Experiments
    from server.serving.store import Served

NEXT_ITEMS_LIFETIME = 30 * 60
MAX_COUNT = 10_000
_COMMON = (
    "count",
    "scenario",
    "cascadeCreate",
    "returnProperties",
    "includedProperties",
    "filter",
    "booster",
    "logic",
    "reqlExpressions",
    "diversity",
    "minRelevance",
    "rotationRate",
    "rotationTime",
    "expertSettings",
    "returnAbGroup",
)
_SEGMENTS = (
    "count",
    "scenario",
    "cascadeCreate",
    "filter",
    "booster",
    "logic",
    "expertSettings",
    "returnAbGroup",
    "reqlExpressions",
)
"""The parameters of Recombee's Item Segments endpoints (Recombee's SDK sends targetUserId to
Item Segments to Item too)."""
ALLOWED = {
    "items-to-user": _COMMON,
    "items-to-item": (*_COMMON, "targetUserId", "userImpact"),
    "users-to-item": _COMMON,
    "users-to-user": _COMMON,
    "items-to-image": tuple(
        p for p in _COMMON if p not in ("cascadeCreate", "rotationRate", "rotationTime")
    ),
    # Recombee's Search Items takes no diversity, relevance or rotation.
    "search-items": (
        "searchQuery",
        *(
            p
            for p in _COMMON
            if p not in ("diversity", "minRelevance", "rotationRate", "rotationTime")
        ),
    ),
    # Recombee's segment endpoints (server/serving/segments.py).
    "items-to-item-segment": (
        "contextSegmentId",
        "targetUserId",
        *(p for p in _COMMON if p != "diversity"),
    ),
    "item-segments-to-user": _SEGMENTS,
    "item-segments-to-item": (*_SEGMENTS, "targetUserId"),
    "item-segments-to-item-segment": (*_SEGMENTS, "contextSegmentId", "targetUserId"),
    "search-item-segments": (*_SEGMENTS, "searchQuery"),
}
SEARCHES = ("search-items", "search-item-segments")
"""The endpoints that take a `searchQuery`."""
SEARCH_CANDIDATES = 500
"""Items that full-text retrieval hands to the ranking of a search."""
SYNONYM_VARIANTS = 2
"""Synonym variants of a query embedded beside it for semantic search (each costs about as
much as the query)."""


def _configured_expressions(
    scenario: ScenarioConfig, scenarios: Mapping[str, ScenarioConfig]
) -> tuple[tuple[str, str], ...]:
    """The scenario's own filter and booster with their configuration keys (a configured
    scenario only: a request's scenario name that is not configured brings none)."""
    if scenarios.get(scenario.name) is not scenario:
        return ()
    return tuple(
        (text, f"scenarios.{scenario.name}.{key}")
        for key, text in (("filter", scenario.filter), ("booster", scenario.booster))
        if text
    )


DEFAULT_MODEL = {
    "items-to-user": "item-knn",
    "items-to-item": "item-knn",
    "users-to-item": "item-knn",
    "users-to-user": "item-knn",
    "items-to-image": "visually-similar",
    "search-items": "item-knn",
    "items-to-item-segment": "item-knn",
    "item-segments-to-user": "item-knn",
    "item-segments-to-item": "item-knn",
    "item-segments-to-item-segment": "item-knn",
    "search-item-segments": "item-knn",
    "composite": "item-knn",
}

logger = logging.getLogger("reqo")

FEED_WAIT = 2.0
"""Seconds within which another server's recommendation record reaches this one (its log's
delay, a commit and the change feed, with a wide margin)."""


@dataclass(frozen=True)
class Request:
    """A parsed recommendation request: the pipeline query and what the response shows."""

    query: Query
    scenario: str | None
    cascade_create: bool
    return_properties: bool
    included_properties: tuple[str, ...] | None
    reql_expressions: Mapping[str, str]
    params: Mapping[str, Any]
    experiment: ScenarioConfig | None = None
    """The scenario whose variants share its traffic, where this request takes part (it does
    not when it names its own `logic`)."""
    variant: str | None = None
    """The variant allocated to serve it (`allocate`)."""
    return_ab_group: bool = False


def parse_request(
    endpoint: str,
    path_args: Mapping[str, str],
    params: Params,
    scenarios: Mapping[str, ScenarioConfig],
    models: Mapping[str, Any],
    logics: Mapping[str, Logic] | None = None,
) -> Request:
    """A request's parameters with its scenario's merged in; `logics`: the registry's logic
    catalogue (None: the built-in logics)."""
    merged = params.merged
    check_known(merged, ALLOWED[endpoint])
    count = read_int(merged, "count", minimum=1)
    if count is None:
        raise BadParameter("count", "is required")
    if count > MAX_COUNT:
        raise BadParameter("count", f"{count} is above the maximum {MAX_COUNT}")
    scenario_name = read_str(merged, "scenario")
    scenario = scenarios.get(scenario_name or "", ScenarioConfig(scenario_name or "", endpoint))
    user_id = path_args.get("userId") or read_str(merged, "targetUserId")
    item_id = path_args.get("itemId")
    if user_id is not None:
        validate_id(user_id, "userId" if "userId" in path_args else "targetUserId")
    if item_id is not None:
        validate_id(item_id, "itemId")
    model = scenario.model or DEFAULT_MODEL[endpoint]
    logic = merged.get("logic")
    experiment = scenario if scenario.experiment is not None and logic is None else None
    # A segment endpoint takes the logics of the item endpoint that scores its items.
    run = _logic_run(logic, scenario, LOGIC_ENDPOINT.get(endpoint, endpoint), models, logics)
    if run is not None:
        model = run.model
    expressions = merged.get("reqlExpressions") or {}
    if not isinstance(expressions, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in expressions.items()
    ):
        raise BadParameter("reqlExpressions", "must be an object of name -> ReQL expression")
    min_relevance = read_str(merged, "minRelevance") or scenario.min_relevance
    if min_relevance not in ("low", "medium", "high"):
        raise BadParameter("minRelevance", f"must be low, medium or high, not {min_relevance!r}")
    filters = tuple(f for f in (scenario.filter, read_str(merged, "filter")) if f)
    boosters = tuple(b for b in (scenario.booster, read_str(merged, "booster")) if b)
    diversity = read_number(merged, "diversity", minimum=0, maximum=1)
    rotation_rate = read_number(merged, "rotationRate", minimum=0, maximum=1)
    rotation_time = read_number(merged, "rotationTime", minimum=0)
    user_impact = read_number(merged, "userImpact", minimum=0, maximum=1)
    included = read_str_list(merged, "includedProperties")
    search_text = _search_query(merged) if endpoint in SEARCHES else None
    query = Query(
        endpoint=endpoint,
        count=count,
        model=model,
        user_id=user_id,
        item_id=item_id,
        filters=filters,
        boosters=boosters,
        configured=_configured_expressions(scenario, scenarios),
        diversity=scenario.diversity if diversity is None else diversity,
        rotation_rate=scenario.rotation_rate if rotation_rate is None else rotation_rate,
        rotation_time=scenario.rotation_time if rotation_time is None else rotation_time,
        min_relevance=min_relevance,
        # A search finds what the user has seen too.
        exclude_interacted=scenario.exclude_interacted and search_text is None,
        search_text=search_text,
        search_fields=tuple((scenario.search_fields or {}).items()),
        personalisation=scenario.personalisation,
        # A request's own logic picks its model; the scenario's newcomers' model goes with its.
        cold_start=scenario.cold_start if model == scenario.model else None,
        search_mode=scenario.search_mode,
        text_embedder=scenario.text_embedder,
        user_impact=0.0 if user_impact is None else user_impact,
        # The scenario's member weights are for its own model, not one that `logic` picks.
        ensemble_weights=tuple((scenario.ensemble_weights or {}).items())
        if model == scenario.model
        else (),
    )
    query = with_segments(query, merged, scenario)
    query = _with_logic(query, run)
    return Request(
        query=query,
        scenario=scenario_name,
        cascade_create=read_bool(merged, "cascadeCreate", False),
        return_properties=read_bool(merged, "returnProperties", scenario.return_properties),
        included_properties=tuple(included)
        if included is not None
        else scenario.included_properties,
        reql_expressions=dict(expressions),
        params=dict(merged),
        experiment=experiment,
        return_ab_group=read_bool(merged, "returnAbGroup", False),
    )


def _logic_run(
    logic: object,
    scenario: ScenarioConfig,
    endpoint: str,
    models: Mapping[str, Any],
    logics: Mapping[str, Logic] | None,
) -> LogicRun | None:
    """What the request's `logic`, or else its scenario's `logic:`, runs (None: neither)."""
    if logic is not None:
        try:
            return resolve_logic(read_logic(logic), endpoint, models, logics)
        except LogicProblem as error:
            raise BadParameter("logic", error.problem) from None
    if scenario.logic is None:
        return None
    try:
        return resolve_logic(scenario.logic, endpoint, models, logics)
    except LogicProblem as error:  # checked at start-up for the scenario's own endpoint
        raise BadParameter("scenario", f"scenario '{scenario.name}': {error.problem}") from None


def _with_logic(query: Query, run: LogicRun | None) -> Query:
    """The query with the pipeline settings its logic implies: its filter and booster with the
    others, its exclusion of the user's items, its ranking."""
    if run is None:
        return query
    return replace(
        query,
        filters=(*query.filters, run.filter) if run.filter else query.filters,
        boosters=(*query.boosters, run.booster) if run.booster else query.boosters,
        exclude_interacted=query.exclude_interacted
        if run.exclude_interacted is None or query.searches
        else run.exclude_interacted,
        source=run.source,
        source_settings=run.settings,
    )


def allocate(experiments: Experiments, request: Request) -> Request:
    """The request as the variant that its scenario's experiment allocates it to serves it
    (unchanged where it takes part in no experiment, or is allocated already)."""
    if request.experiment is None or request.variant is not None:
        return request
    variant = experiments.assign(request.experiment, request.query.user_id)
    if variant is None:
        return request
    weights = tuple((variant.ensemble_weights or {}).items())
    query = replace(request.query, model=variant.model, ensemble_weights=weights)
    return replace(request, query=query, variant=variant.name)


def ab_group(request: Request) -> dict[str, str]:
    """Recombee's `abGroup` field, where the request asked for it and a variant served it."""
    return {"abGroup": request.variant} if request.return_ab_group and request.variant else {}


def respond(ctx: ReadContext, pipeline: Pipeline, request: Request) -> tuple[dict[str, Any], Any]:
    """Run the pipeline and build Recombee's response (without the recommId)."""
    query = request.query
    result = pipeline.run(ctx, query)
    entity = query.candidates
    records: list[dict[str, Any]] = [{"id": entity_id} for entity_id in result.ids]
    if request.return_properties and result.ids:
        rows = catalog.list_entities(
            ctx,
            entity,
            count=None,
            offset=0,
            return_properties=True,
            included_properties=list(request.included_properties)
            if request.included_properties is not None
            else None,
            condition=catalog.Condition(
                'c."$id" IN (SELECT unnest(CAST($ids AS VARCHAR[])))', {"ids": result.ids}
            ),
        )
        by_id = {row.pop(entity.id_field): row for row in rows}
        for record in records:
            record["values"] = by_id.get(record["id"], {})
    if request.reql_expressions and result.ids:
        context = Context(item_id=query.item_id, user_id=query.user_id)
        evaluations: dict[str, list[Any]] = {
            name: pipeline.engine.values(
                ctx, text, result.ids, context, parameter=f"reqlExpressions.{name}", entity=entity
            )
            for name, text in request.reql_expressions.items()
        }
        for position, record in enumerate(records):
            record["reqlEvaluations"] = {name: v[position] for name, v in evaluations.items()}
    return {"recomms": records, "numberNextRecommsCalls": 0}, result


def new_log(request: Request, ids: list[str], endpoint: str) -> Recommendation:
    return Recommendation(
        recomm_id=new_recomm_id(),
        timestamp=time.time(),
        endpoint=endpoint,
        user_id=request.query.user_id,
        item_id=request.query.item_id,
        scenario=request.scenario,
        params={k: v for k, v in request.params.items() if k != "count"},
        returned=tuple(ids),
        next_calls=0,
        variant=request.variant,
    )


def _search_query(merged: Mapping[str, Any]) -> str:
    text = merged.get("searchQuery")
    if text is None:
        raise BadParameter("searchQuery", "is required")
    if not isinstance(text, str):
        raise BadParameter("searchQuery", f"must be a string, not {type(text).__name__}")
    if not text.strip():
        raise BadParameter("searchQuery", "must not be empty")
    if len(text) > MAX_QUERY_LENGTH:
        raise BadParameter("searchQuery", f"is longer than {MAX_QUERY_LENGTH} characters")
    return text


async def with_text_hits(served: Served, request: Request) -> Request:
    """A search with what retrieval finds for its text: full text (in memory, on the event
    loop: tantivy answers in a few milliseconds), semantic (the query embedded on a thread), or
    both fused by their ranks."""
    query = request.query
    if query.search_text is None or query.text_hits is not None:
        return request
    hits: list[Hit] = []
    if query.search_mode != "semantic":
        weights = dict(query.search_fields) or None
        hits = served.search.index.search(query.search_text, weights, SEARCH_CANDIDATES)
    if query.search_mode != "full-text":
        semantic = await served.search.semantic_index(query.text_embedder)
        # Synonyms reach a semantic search as variants of the query: an item near any counts.
        texts = [query.search_text]
        texts += served.search.index.synonym_variants(query.search_text, SYNONYM_VARIANTS)
        vectors = await asyncio.to_thread(lambda: [semantic.embed_query(t) for t in texts])
        near = semantic.search(np.stack(vectors), SEARCH_CANDIDATES)
        hits = near if query.search_mode == "semantic" else fuse(hits, near)
    return replace(request, query=replace(query, text_hits=tuple(hits)))


async def recommend(
    served: Served, request: Request, endpoint: str, *, logged: bool = True
) -> dict[str, Any]:
    """Answer a recommendation request and log it (`logged`: false for a preview, which no
    KPI counts)."""
    request, body, result = await answer(served, request)
    record = new_log(request, result.ids, endpoint)
    if logged:
        await log(served, request, record)
    return {"recommId": record.recomm_id, **body, **ab_group(request)}


async def log(served: Served, request: Request, record: Recommendation) -> None:
    """Log a recommendation (and count it for its variant)."""
    # Logged behind the response (see server.serving.recommendation_log), but before it where
    # the request rotates: the user's next rotated request must count it on any server.
    if request.query.rotation_rate > 0:
        await served.log.commit(record)
    else:
        served.log.add(record)
    if request.scenario and request.variant:
        served.experiments.served(request.scenario, request.variant)


async def answer(served: Served, request: Request) -> tuple[Request, dict[str, Any], Any]:
    """Run a request (not logged yet): the request as its variant serves it, Recombee's body
    (without the recommId) and the pipeline's result."""
    database, pipeline = served.database, served.pipeline
    request = await with_text_hits(served, request)
    request = allocate(served.experiments, request)
    assigned = served.experiments.take_pending()
    if assigned:
        # Before the response: the user keeps the variant on every server from now on.
        rows = [[a.scenario, a.user_id, a.variant, a.assigned] for a in assigned]
        await served.write("assign", {"assignments": rows})
    if request.variant is not None:
        # Only an experiment's requests read its rewards again: other traffic never pays for
        # the query.
        served.experiments.maybe_refresh()
    # Most requests are answered from memory (the models, the history index, cached filter
    # masks), on the event loop: a reader thread is only worth its hand-off when one must query.
    try:
        found = database.read_in_memory(lambda ctx: _respond_if_known(ctx, pipeline, request))
    except NeedsDatabase:
        # Most requests name a user (or item) that exists: one read answers them. The write
        # that creates a missing one (or refuses it) runs only when the read finds it missing.
        found = await database.read(lambda ctx: _respond_if_known(ctx, pipeline, request))
    if found is None:
        query = request.query
        context = {"userId": query.user_id, "itemId": query.item_id}
        await served.write_and_see("context", {**context, "cascade": request.cascade_create})
        found = await database.read(lambda ctx: respond(ctx, pipeline, request))
    body, result = found
    return request, body, result


def _respond_if_known(
    ctx: ReadContext, pipeline: Pipeline, request: Request
) -> tuple[dict[str, Any], Any] | None:
    """`respond`, where the request's user and item exist; None where one is missing."""
    query = request.query
    if query.user_id is not None and not (
        pipeline.has_interactions(ctx, query.user_id)
        or entity_exists(ctx, Entity.USER, query.user_id)
    ):
        return None
    if query.item_id is not None and not entity_exists(ctx, Entity.ITEM, query.item_id):
        return None
    return respond(ctx, pipeline, request)


async def recommend_for_image(served: Served, request: Request, image: Any) -> dict[str, Any]:
    """Items to Image: embed the picture with the model's embedder (off the event loop: a CNN
    takes tens of milliseconds), then recommend as for any query."""
    # The variant first: its model embeds the picture.
    request = allocate(served.experiments, request)
    model = request.query.model
    cls = served.models.registry.algorithm(served.models.configs[model].algorithm)
    if not cls.embeds_images:
        raise BadParameter(
            "logic",
            f"model '{model}' ({cls.name}) cannot score a picture; use a visual-similarity model",
        )
    loaded = await asyncio.to_thread(served.models.get, model)
    if loaded.version == FALLBACK_VERSION:
        # No trained version yet: the fallback (popularity, which does not look at the
        # picture) answers while a trainer fits the model, as for any other query.
        return await recommend(served, request, ENDPOINT_IMAGE)
    algorithm = loaded.algorithm
    try:
        vectors = await asyncio.to_thread(
            algorithm.embed_images, [image], served.models.registry.embedder
        )
    except ValueError as error:
        raise BadParameter("image", f"model '{request.query.model}': {error}") from None
    query = replace(request.query, vector=vectors[0])
    return await recommend(served, replace(request, query=query), ENDPOINT_IMAGE)


async def find_recommendation(served: Served, recomm_id: str) -> Recommendation | None:
    """A recommendation's record: this server's own not yet stored, or from its copy of the
    database. A recommId made in the last `FEED_WAIT` seconds that is not there yet comes from
    another server whose log has not reached this one: the change feed brings it shortly."""
    pending = served.log.pending.get(recomm_id) or served.replica.recent.get(recomm_id)
    if pending is not None:
        return pending
    made = recomm_id_time(recomm_id)
    deadline = time.monotonic() + FEED_WAIT
    while True:
        record = await served.database.read(lambda ctx: get_recommendation(ctx, recomm_id))
        if record is not None or made is None or time.time() - made > FEED_WAIT:
            return record
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.01)
        await served.replica.caught_up()


async def next_items(
    served: Served,
    recomm_id: str,
    params: Params,
    scenarios: Mapping[str, ScenarioConfig],
    models: Mapping[str, Any],
    *,
    segments: bool = False,
) -> dict[str, Any]:
    """Recommend Next Items (or, with `segments`, Recommend Next Item Segments): the next page
    of a recommendation, with its parameters, never repeating what it returned."""
    # Recombee's client-side SDK sends cascadeCreate with every Recommend Next Items; the page
    # continues a recommendation that exists, so there is nothing to create.
    check_known(params.merged, ("count", "cascadeCreate"))
    read_bool(params.merged, "cascadeCreate", True)
    count = read_int(params.merged, "count", minimum=1)
    if count is None:
        raise BadParameter("count", "is required")
    database, pipeline = served.database, served.pipeline
    try:
        uuid.UUID(recomm_id)
    except ValueError:
        raise BadParameter("recommId", f"'{recomm_id[:64]}' is not a UUID") from None
    record = await find_recommendation(served, recomm_id)
    if record is None or time.time() - record.timestamp > NEXT_ITEMS_LIFETIME:
        raise NotFound(f"recommendation '{recomm_id}' does not exist or has expired")
    if record.endpoint == ENDPOINT_IMAGE:
        raise BadParameter(
            "recommId", "Recommend Next Items does not page image queries (the picture is not kept)"
        )
    if record.endpoint not in ALLOWED:  # a Composite Recommendation
        raise BadParameter("recommId", f"a {record.endpoint} recommendation has no next page")
    if (record.endpoint in SEGMENT_RANKINGS) != segments:
        other = "Recommend Next Items" if segments else "Recommend Next Item Segments"
        raise BadParameter("recommId", f"recommendation '{recomm_id}' is paged by {other}")
    args = {}
    by_user = ("items-to-user", "users-to-user", "search-items", *_BY_USER)
    if record.endpoint in by_user and record.user_id is not None:
        args["userId"] = record.user_id
    by_item = ("items-to-item", "users-to-item", "item-segments-to-item")
    if record.endpoint in by_item and record.item_id is not None:
        args["itemId"] = record.item_id
    request = parse_request(
        record.endpoint,
        args,
        Params(body={**record.params, "count": count}),
        scenarios,
        models,
        served.models.registry.logics,
    )
    request = await with_text_hits(served, request)
    query = _excluding(request.query, record.returned)
    # The next page comes from the variant that served the first (no new allocation).
    variant = None
    if request.experiment is not None:
        served_by = served.experiments.variant(request.experiment, record.variant)
        if served_by is not None:
            weights = tuple((served_by.ensemble_weights or {}).items())
            query = replace(query, model=served_by.model, ensemble_weights=weights)
            variant = served_by.name
    request = Request(
        query=query,
        scenario=request.scenario,
        cascade_create=False,
        return_properties=request.return_properties,
        included_properties=request.included_properties,
        reql_expressions=request.reql_expressions,
        params=request.params,
        return_ab_group=request.return_ab_group,
        variant=variant,
    )
    body, result = await database.read(lambda ctx: respond(ctx, pipeline, request))
    if recomm_id in served.log.pending:
        await served.log.settled()  # the page extends the stored record
    await served.write("extend", {"recommId": recomm_id, "ids": list(result.ids)})
    body["numberNextRecommsCalls"] = record.next_calls + 1
    return {"recommId": recomm_id, **body, **ab_group(request)}


_BY_USER = ("item-segments-to-user", "search-item-segments")
"""Segment endpoints whose path names the user."""


def _excluding(query: Query, ids: tuple[str, ...]) -> Query:
    return replace(query, exclude_ids=frozenset(ids))
