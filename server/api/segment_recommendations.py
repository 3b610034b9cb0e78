"""Recombee's Composite Recommendation: a source (an item segment or an item) and the results
related to it, in one call with one recommId.

The scenario says what the source and the results are (`endpoint: composite`, `source:
item-segments | items`, `result: items | item-segments`, and `segmentation:` where segments are
involved). Each stage is a request of the endpoint that Recombee's document names for it, run
by the pipeline like any other (server/api/recommendations.py), so the stages take the same
parameters (`sourceSettings`, `resultSettings`) and the scenario's model, filter and booster:

- the source: the best one of Item Segments to User (`userId`), to Item (`itemId`), to Item
  Segment (`segmentId`, in the scenario's context segmentation) or Search Item Segments
  (`searchQuery`); or, for items, Items to User / to Item / to Item Segment / Search Items;
- the results: Items to Item Segment or Item Segments to Item Segment for a segment, Items to
  Item or Item Segments to Item for an item, with the request's `userId` as the target user.

The other segment endpoints are ordinary recommendation kinds (segments.py in server/serving);
only the composite needs its own handling here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from server.api.operations import Params
from server.api.recommendations import (
    MAX_COUNT,
    Request,
    ab_group,
    answer,
    log,
    parse_request,
)
from server.serving.expressions import BadExpression
from server.serving.recommendation_log import new_recomm_id
from server.serving.scenarios import RECOMBEE_ENDPOINTS, ScenarioConfig
from storage.errors import BadParameter
from storage.params import check_known, read_bool, read_int, read_str
from storage.recommendations import Recommendation
from storage.schema import validate_id

if TYPE_CHECKING:
    from plugins.logic import Logic
    from server.serving.store import Served

COMPOSITE = "composite"
PARAMETERS = (
    "scenario",
    "count",
    "itemId",
    "userId",
    "logic",
    "segmentId",
    "searchQuery",
    "cascadeCreate",
    "sourceSettings",
    "resultSettings",
    "expertSettings",
)
"""Composite Recommendation's parameters (Recombee's SDK sends `searchQuery` too)."""
_OWN = frozenset(
    {"count", "scenario", "cascadeCreate", "userId", "itemId", "segmentId", "searchQuery"}
    | {"targetUserId", "contextSegmentId"}
)
"""What a stage's settings may not set: the composite's own parameters give them."""
_SOURCES = {
    # (source is segments, context) -> the source stage's endpoint
    (True, "searchQuery"): "search-item-segments",
    (True, "segmentId"): "item-segments-to-item-segment",
    (True, "itemId"): "item-segments-to-item",
    (True, "userId"): "item-segments-to-user",
    (False, "searchQuery"): "search-items",
    (False, "segmentId"): "items-to-item-segment",
    (False, "itemId"): "items-to-item",
    (False, "userId"): "items-to-user",
}
_BY_USER = ("items-to-user", "item-segments-to-user", "search-items", "search-item-segments")
"""Source endpoints whose path names the user (the others take it as targetUserId)."""
_RESULTS = {
    # (source is segments, results are segments) -> the result stage's endpoint
    (True, False): "items-to-item-segment",
    (True, True): "item-segments-to-item-segment",
    (False, False): "items-to-item",
    (False, True): "item-segments-to-item",
}


@dataclass(frozen=True)
class Composite:
    """A parsed Composite Recommendation."""

    scenario: ScenarioConfig
    count: int
    user_id: str | None
    item_id: str | None
    source: Request
    result_settings: Mapping[str, Any]
    logic: Any
    params: Mapping[str, Any]
    logics: Mapping[str, Logic] | None


def parse_composite(
    params: Params,
    scenarios: Mapping[str, ScenarioConfig],
    models: Mapping[str, Any],
    logics: Mapping[str, Logic] | None = None,
) -> Composite:
    """Check a Composite Recommendation and parse its source stage (400s name the parameter)."""
    merged = params.merged
    check_known(merged, PARAMETERS)
    name = read_str(merged, "scenario", required=True)
    assert name is not None
    scenario = scenarios.get(name)
    if scenario is None:
        raise BadParameter(
            "scenario",
            f"scenario '{name}' is not configured: a composite scenario names its source and "
            "result (endpoint: composite) in the configuration",
        )
    if scenario.endpoint != COMPOSITE:
        raise BadParameter(
            "scenario",
            f"scenario '{name}' is a {RECOMBEE_ENDPOINTS[scenario.endpoint]} scenario, not a "
            "composite one (endpoint: composite)",
        )
    count = read_int(merged, "count", minimum=1)
    if count is None:
        raise BadParameter("count", "is required")
    if count > MAX_COUNT:
        raise BadParameter("count", f"{count} is above the maximum {MAX_COUNT}")
    context = {key: read_str(merged, key) for key in ("userId", "itemId", "segmentId")}
    for key in ("userId", "itemId"):
        if context[key] is not None:
            validate_id(str(context[key]), key)
    search = merged.get("searchQuery")
    given = next(
        (key for key in ("searchQuery", "segmentId", "itemId", "userId") if merged.get(key)),
        None,
    )
    if given is None:
        raise BadParameter(
            "userId", "is required where no itemId, segmentId or searchQuery gives the context"
        )
    if given == "searchQuery" and context["userId"] is None:
        raise BadParameter("userId", "is required with searchQuery (Search Items is per user)")
    kind = _SOURCES[(scenario.source == "item-segments", given)]
    body: dict[str, Any] = {
        **_settings(merged, "sourceSettings"),
        "count": 1,
        "scenario": name,
        "cascadeCreate": read_bool(merged, "cascadeCreate", False),
    }
    args: dict[str, str] = {}
    user_id, item_id = context["userId"], context["itemId"]
    if given == "searchQuery":
        body["searchQuery"] = search
    if given == "segmentId":
        body["contextSegmentId"] = context["segmentId"]
    if given == "itemId" and item_id is not None:
        args["itemId"] = item_id
    if user_id is not None:
        if kind in _BY_USER:
            args["userId"] = user_id
        else:
            body["targetUserId"] = user_id
    logic = merged.get("logic")
    if logic is not None:
        body.setdefault("logic", logic)
    source = _stage("sourceSettings", kind, args, body, scenarios, models, logics)
    return Composite(
        scenario=scenario,
        count=count,
        user_id=user_id,
        item_id=item_id,
        source=source,
        result_settings=_settings(merged, "resultSettings"),
        logic=logic,
        params=merged,
        logics=logics,
    )


def _settings(merged: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A stage's settings: an object of the stage endpoint's parameters."""
    value = merged.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadParameter(key, "must be an object of the stage's parameters")
    for name in value:
        if name in _OWN:
            raise BadParameter(
                key, f"'{name}' is set by the Composite Recommendation's own parameters"
            )
    return dict(value)


def _stage(
    key: str,
    kind: str,
    args: Mapping[str, str],
    body: Mapping[str, Any],
    scenarios: Mapping[str, ScenarioConfig],
    models: Mapping[str, Any],
    logics: Mapping[str, Logic] | None,
) -> Request:
    """A stage's request, its mistakes named as the stage settings' (`key`)."""
    try:
        return parse_request(kind, args, Params(body=body), scenarios, models, logics)
    except BadParameter as error:
        raise BadParameter(key, str(error)) from None


def _result_stage(
    composite: Composite,
    source_id: str,
    scenarios: Mapping[str, ScenarioConfig],
    models: Mapping[str, Any],
) -> Request:
    """The result stage's request, for the chosen source."""
    scenario = composite.scenario
    segment_source = scenario.source == "item-segments"
    kind = _RESULTS[(segment_source, scenario.result == "item-segments")]
    body: dict[str, Any] = {
        **composite.result_settings,
        "count": composite.count,
        "scenario": scenario.name,
    }
    args: dict[str, str] = {}
    if segment_source:
        body["contextSegmentId"] = source_id
    else:
        args["itemId"] = source_id
    if composite.user_id is not None:
        body["targetUserId"] = composite.user_id
    if composite.logic is not None:
        body.setdefault("logic", composite.logic)
    request = _stage("resultSettings", kind, args, body, scenarios, models, composite.logics)
    if segment_source:
        # The source segment is one of the scenario's segmentation, whatever the context
        # segmentation of its Item Segments to Item Segment source stage.
        query = replace(request.query, context_segmentation=scenario.segmentation)
        request = replace(request, query=query)
    return request


async def _answer(key: str, served: Served, request: Request) -> tuple[Request, dict[str, Any]]:
    """Run a stage; a ReQL mistake (found as it runs) is named as the stage settings'."""
    try:
        served_by, body, _ = await answer(served, request)
    except BadExpression as error:
        raise BadParameter(key, str(error)) from None
    return served_by, body


async def composite(
    served: Served,
    params: Params,
    scenarios: Mapping[str, ScenarioConfig],
    models: Mapping[str, Any],
) -> dict[str, Any]:
    """Composite Recommendation: `{recommId, source, recomms, numberNextRecommsCalls}`; the
    source is null (and recomms empty) where the source stage finds nothing."""
    parsed = parse_composite(params, scenarios, models, served.models.registry.logics)
    source_request, source_body = await _answer("sourceSettings", served, parsed.source)
    recomms: list[dict[str, Any]] = []
    source: dict[str, Any] | None = None
    served_by = source_request
    if source_body["recomms"]:
        source = source_body["recomms"][0]
        assert source is not None
        result_request = _result_stage(parsed, source["id"], scenarios, models)
        served_by, result_body = await _answer("resultSettings", served, result_request)
        recomms = result_body["recomms"]
    record = Recommendation(
        recomm_id=new_recomm_id(),
        timestamp=time.time(),
        endpoint=COMPOSITE,
        user_id=parsed.user_id,
        item_id=parsed.item_id,
        scenario=parsed.scenario.name,
        params={k: v for k, v in parsed.params.items() if k != "count"},
        returned=tuple(r["id"] for r in recomms),
        next_calls=0,
        variant=served_by.variant,
    )
    await log(served, served_by, record)
    return {
        "recommId": record.recomm_id,
        "source": source,
        "recomms": recomms,
        "numberNextRecommsCalls": 0,
        **ab_group(served_by),
    }
