"""A logic: `example:under-price`, item-kNN's recommendations among the items whose `price` is
at most the request's `maxPrice` setting.

A logic names a configured model (here a default one, so that it works in any configuration)
and the pipeline settings it implies; `plan` turns its validated settings into them per request.
A ReQL filter built from a setting is safe only because the setting is validated as a number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plugins.logic import Logic, LogicPlan, Setting


def _under_price(settings: Mapping[str, Any]) -> LogicPlan:
    return LogicPlan(filter=f"'price' <= {float(settings['maxPrice'])!r}")


UNDER_PRICE = Logic(
    name="example:under-price",
    endpoints=("items-to-user", "items-to-item"),
    model="item-knn",
    description="item-kNN among the items whose price is at most the setting maxPrice",
    settings=(
        Setting("maxPrice", float, None, "the highest price recommended", minimum=0, required=True),
    ),
    plan=_under_price,
)
