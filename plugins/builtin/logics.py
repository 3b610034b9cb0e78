"""The built-in logics: Recombee's documented `logic` names (and reqo's own), each mapped to a
default model and the pipeline settings it implies. README's "Logics" table describes them.

They are registered through `register_logics`, the hook third-party plugins use. The models they
name are among the default models (`server/serving/scenarios.py`), which every configuration
has; the rankings they name as `source` are the host's (`server/serving/logic_sources.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plugins.hookspecs import hookimpl
from plugins.logic import Logic, LogicPlan, Setting, SettingError

EVERY_RECOMMENDATION = ("items-to-user", "items-to-item", "users-to-item", "users-to-user")
INTERACTION_KINDS = (
    "detail_views",
    "purchases",
    "ratings",
    "cart_additions",
    "bookmarks",
    "view_portions",
)
ASSET_TYPES = ("movies", "episodes", "both")


def _asset_type(default: str) -> Setting:
    return Setting(
        "assetType",
        str,
        default,
        "movies (items in no series), episodes (items in a series) or both",
        choices=ASSET_TYPES,
    )


def _exclude_watched(default: bool) -> Setting:
    return Setting(
        "excludeAlreadyWatched", bool, default, "leave out what the user has interacted with"
    )


def _popular_plan(values: Mapping[str, Any]) -> LogicPlan:
    """Without settings, the trained popularity model answers; with any, the host's cached
    counts over the window, users and kinds the settings choose."""
    given = any(
        values[name] is not None for name in ("timeWindow", "userFilter", "interactionTypes")
    )
    if values["interactionTypes"] == []:
        raise SettingError("interactionTypes", "must name at least one interaction kind")
    return LogicPlan(source="popular" if given else None)


def _continue_watching_plan(values: Mapping[str, Any]) -> LogicPlan:
    started, completed = values["watchingStartedPercentage"], values["watchingCompletedPercentage"]
    if started >= completed:
        raise SettingError(
            "watchingStartedPercentage",
            f"must be below settings.watchingCompletedPercentage ({completed:g}), not {started:g}",
        )
    return LogicPlan()


def _excluding_watched(values: Mapping[str, Any]) -> LogicPlan:
    return LogicPlan(exclude_interacted=bool(values["excludeAlreadyWatched"]))


LOGICS = (
    Logic(
        "recombee:default",
        EVERY_RECOMMENDATION,
        "default",
        "the ensemble `default`: item-kNN (collaborative) blended with popularity (fallback)",
    ),
    Logic(
        "recombee:homepage",
        ("items-to-user",),
        "default",
        "the ensemble `default`, the user's items excluded",
        exclude_interacted=True,
    ),
    Logic(
        "recombee:personal",
        ("items-to-user",),
        "item-knn",
        "item-kNN from the user's interactions, the user's items excluded",
        exclude_interacted=True,
    ),
    Logic(
        "recombee:similar",
        ("items-to-item", "users-to-user"),
        "item-knn",
        "item-kNN neighbours of the context item (users: by the items they share)",
    ),
    Logic(
        "recombee:popular",
        ("items-to-user", "items-to-item"),
        "popularity",
        "the trained popularity model; with settings, counts over a window, users and kinds",
        settings=(
            Setting("timeWindow", int, None, "count interactions this many seconds old at most", 1),
            Setting("userFilter", str, None, "ReQL over user properties: whose interactions count"),
            Setting(
                "interactionTypes",
                list,
                None,
                "the interaction kinds that count (all by default)",
                choices=INTERACTION_KINDS,
            ),
        ),
        plan=_popular_plan,
    ),
    Logic(
        "recombee:recently-viewed",
        ("items-to-user",),
        "recently-viewed",
        "the items the user viewed (detail views, view portions)",
        settings=(
            Setting("maxAge", int, None, "views this many seconds old at most count", minimum=1),
            Setting(
                "recencyOrdering",
                bool,
                True,
                "the latest view first (false: the most viewed first, then the latest)",
            ),
        ),
        exclude_interacted=False,
        source="recently-viewed",
    ),
    Logic(
        "ecommerce:homepage",
        ("items-to-user",),
        "default",
        "the ensemble `default`, the user's items excluded",
        exclude_interacted=True,
    ),
    Logic(
        "ecommerce:similar-products",
        ("items-to-item",),
        "item-knn",
        "alternatives and up-sell: item-kNN neighbours by every interaction kind",
    ),
    Logic(
        "ecommerce:cross-sell",
        ("items-to-user", "items-to-item"),
        "purchase-knn",
        "complements: item-kNN over purchases and cart additions only, from the user's cart "
        "and purchases (items to user) or the context item",
        exclude_interacted=True,
    ),
    Logic(
        "video:continue-watching",
        ("items-to-user",),
        "recently-viewed",
        "what the user started and did not finish (view portions), the latest first",
        settings=(
            Setting(
                "watchingStartedPercentage",
                float,
                10.0,
                "watched at least this much (percent) to count as started",
                minimum=0,
                maximum=100,
            ),
            Setting(
                "watchingCompletedPercentage",
                float,
                90.0,
                "watched this much (percent) or more counts as finished",
                minimum=0,
                maximum=100,
            ),
            _asset_type("both"),
        ),
        exclude_interacted=False,
        source="continue-watching",
        plan=_continue_watching_plan,
    ),
    Logic(
        "video:personal",
        ("items-to-user",),
        "item-knn",
        "item-kNN from the user's interactions, what the user watched excluded",
        exclude_interacted=True,
    ),
    Logic(
        "video:watch-next",
        ("items-to-user", "items-to-item"),
        "item-knn",
        "the next episode of the series the user (or the context item) is in, then "
        "item-kNN's movies",
        settings=(_asset_type("both"), _exclude_watched(True)),
        source="watch-next",
        plan=_excluding_watched,
    ),
    Logic(
        "video:editorial-picks",
        ("items-to-user",),
        "item-knn",
        "the picked items in their order, or reordered by item-kNN for the user",
        settings=(
            Setting("picks", list, None, "the picked item ids", required=True),
            Setting(
                "personalizedReordering",
                bool,
                False,
                "order the picks by the user's item-kNN scores (unscored ones after, in order)",
            ),
            _exclude_watched(False),
        ),
        source="editorial-picks",
        plan=_excluding_watched,
    ),
    Logic(
        "reqo:visually-similar",
        ("items-to-item", "items-to-user", "items-to-image"),
        "visually-similar",
        "items whose pictures look alike (README, Visual similarity)",
    ),
)


@hookimpl
def register_logics() -> list[Logic]:
    return list(LOGICS)
