"""Hostile JSON bodies: interactions, item and user values, recommendations, batches, lists."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence

from hypothesis import strategies as st

from server.api.recommendations import ALLOWED
from tests.fuzzing.catalog import (
    INTERACTION_KINDS,
    ITEM_PROPERTIES,
    ITEMS,
    SCENARIO,
    USER_PROPERTIES,
    USERS,
    item_values,
    user_values,
)
from tests.fuzzing.endpoints import (
    ENDPOINTS,
    RECOMMEND_PATHS,
    FuzzRequest,
    encode_query,
    endpoints,
)
from tests.fuzzing.json_text import (
    INT64_EDGES,
    huge_int_text,
    json_object,
    json_values,
    jstr,
    surrogate_text,
)
from tests.fuzzing.reql_inputs import reql_texts

INTERACTION_FIELDS = {
    "detailviews": (
        "timestamp",
        "duration",
        "cascadeCreate",
        "recommId",
        "additionalData",
        "autoPresented",
    ),
    "purchases": (
        "timestamp",
        "cascadeCreate",
        "amount",
        "price",
        "profit",
        "recommId",
        "additionalData",
    ),
    "ratings": ("timestamp", "rating", "cascadeCreate", "recommId", "additionalData"),
    "cartadditions": (
        "timestamp",
        "cascadeCreate",
        "amount",
        "price",
        "recommId",
        "additionalData",
    ),
    "bookmarks": ("timestamp", "cascadeCreate", "recommId", "additionalData"),
    "viewportions": (
        "portion",
        "sessionId",
        "timestamp",
        "cascadeCreate",
        "recommId",
        "additionalData",
        "autoPresented",
        "timeSpent",
    ),
}
RECOMMEND_FIELDS = ALLOWED["items-to-item"]
"""Every parameter a recommendation takes (Items to Item's are the most)."""
GOOD_RECOMMEND = {
    "count": "3",
    "scenario": jstr(SCENARIO),
    "cascadeCreate": "true",
    "returnProperties": "true",
    "includedProperties": '["price", "tags"]',
    "filter": jstr("'price' > 1"),
    "booster": jstr("if 'in_stock' then 2 else 1"),
    "logic": jstr("recombee:popular"),
    "reqlExpressions": '{"p": "\'price\'"}',
    "diversity": "0.5",
    "minRelevance": '"medium"',
    "rotationRate": "0.2",
    "rotationTime": "3600",
    "returnAbGroup": "true",
    "targetUserId": jstr(USERS[1]),
    "userImpact": "0.3",
    "expertSettings": "{}",
}


@functools.cache
def ids() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([*ITEMS, *USERS]),
        st.from_regex(r"[a-zA-Z0-9_\-:@.]{1,12}", fullmatch=True),
    )


@functools.cache
@st.composite
def field_value(draw: st.DrawFn, good: str | None = None, tame: bool = False) -> str:
    """A field's value: usually hostile, sometimes the good one (so the rest gets checked)."""
    if good is not None and draw(st.integers(0, 3)) == 0:
        return good
    return draw(json_values(0, tame))


def tameness() -> st.SearchStrategy[bool]:
    """Whether a body's values all pass the body checks (half of the bodies): one hostile value
    refuses a whole body before any handler sees the rest."""
    return st.booleans()


GOOD_INTERACTION = {
    "timestamp": "1700000000",
    "rating": "0.5",
    "portion": "0.5",
    "amount": "1",
    "price": "1.5",
    "profit": "0.5",
    "duration": "10",
    "sessionId": '"s"',
    "cascadeCreate": "true",
    "timeSpent": "5",
    "recommId": '"no-such-recomm"',
    "additionalData": '{"a": 1}',
    "autoPresented": "true",
}


def mutated(
    draw: st.DrawFn, names: Sequence[str], good: Mapping[str, str], tame: bool
) -> list[tuple[str, str]]:
    """Values for `names`: usually good ones with one or two odd or hostile (a request one
    mistake away from valid gets past the first check), sometimes odd or hostile throughout."""
    if not names:
        return []
    if draw(st.integers(0, 3)) == 0:
        return [(name, draw(field_value(good.get(name), tame))) for name in names]
    odd = set(draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True)))
    out = []
    for name in names:
        if name in odd or name not in good:
            shaped = SHAPED.get(name)
            if shaped is not None and draw(st.booleans()):
                out.append((name, draw(shaped(tame))))
            else:
                out.append((name, draw(json_values(0, tame))))
        else:
            out.append((name, good[name]))
    return out


@functools.cache
@st.composite
def logic_values(draw: st.DrawFn, tame: bool = False) -> str:
    """A logic object of the right shape with odd parts: its name, its settings."""
    name = draw(st.one_of(st.sampled_from(LOGICS), json_values(1, tame)))
    fields = [("name", name)]
    if draw(st.booleans()):
        fields.append(("settings", draw(json_values(1, tame))))
    return json_object(fields)


LOGICS = tuple(
    jstr(name)
    for name in (
        "recombee:default",
        "recombee:personal",
        "recombee:similar",
        "recombee:popular",
        "recombee:recently-viewed",
        "item-knn",
        "popularity",
        "reqo:visually-similar",
        "",
    )
)


@functools.cache
@st.composite
def expression_maps(draw: st.DrawFn, tame: bool = False) -> str:
    """reqlExpressions: names (odd ones too) to ReQL text or to other values."""
    keys = draw(st.lists(st.text(max_size=6), max_size=3))
    values = [draw(st.one_of(reql_texts().map(jstr), json_values(1, tame))) for _ in keys]
    return json_object(list(zip(keys, values, strict=True)))


@functools.cache
@st.composite
def string_lists(draw: st.DrawFn, tame: bool = False) -> str:
    """includedProperties: property names, odd ones, other values."""
    names = st.one_of(
        st.sampled_from([*ITEM_PROPERTIES, *USER_PROPERTIES, "nosuch", "", "itemId"]),
        st.text(max_size=6),
    )
    items = draw(st.lists(st.one_of(names.map(jstr), json_values(1, tame)), max_size=4))
    return "[" + ",".join(items) + "]"


SHAPED: dict[str, Callable[[bool], st.SearchStrategy[str]]] = {
    "logic": logic_values,
    "reqlExpressions": expression_maps,
    "includedProperties": string_lists,
    "expertSettings": lambda tame: json_values(1, tame),
    "additionalData": lambda tame: json_values(1, tame),
}
"""Fields whose value has a shape: a mutation keeps the shape half of the time."""


@functools.cache
@st.composite
def interaction_bodies(draw: st.DrawFn) -> FuzzRequest:
    kind = draw(st.sampled_from(INTERACTION_KINDS))
    tame = draw(tameness())
    good = {
        **GOOD_INTERACTION,
        "userId": jstr(draw(st.sampled_from(USERS))),
        "itemId": jstr(draw(st.sampled_from(ITEMS))),
    }
    present = [key for key in ("userId", "itemId") if draw(st.integers(0, 7))]
    method = "DELETE" if draw(st.integers(0, 7)) == 0 else "POST"
    if method == "DELETE":
        # Delete takes the ids and the timestamp (view portions: the sessionId).
        key = "sessionId" if kind == "viewportions" else "timestamp"
        optional = [key] if draw(st.booleans()) else []
    else:
        optional = draw(st.lists(st.sampled_from(INTERACTION_FIELDS[kind]), unique=True))
        if kind == "ratings" and "rating" not in optional:
            optional.append("rating")
        if kind == "viewportions" and "portion" not in optional:
            optional.append("portion")
    fields = mutated(draw, [*present, *optional], good, tame)
    if draw(st.integers(0, 9)) == 0:
        fields.append((draw(st.text(max_size=8) if tame else surrogate_text()), "1"))
    return FuzzRequest("json-interaction", method, f"/{kind}/", json_object(fields).encode())


@functools.cache
@st.composite
def item_value_bodies(draw: st.DrawFn) -> FuzzRequest:
    entity, props, names = draw(
        st.sampled_from([("items", ITEM_PROPERTIES, ITEMS), ("users", USER_PROPERTIES, USERS)])
    )
    target = draw(st.one_of(st.sampled_from(names), st.just("new-one")))
    tame = draw(tameness())
    sample = item_values(3) if entity == "items" else user_values(3)
    good = {name: json.dumps(value) for name, value in sample.items()}
    odd_names = st.sampled_from(["!cascadeCreate", "nosuch", "!x", "PRICE", "itemId", "id", ""])
    keys = draw(
        st.lists(
            st.one_of(
                st.sampled_from(sorted(props)),
                odd_names,
                st.text(max_size=8) if tame else surrogate_text(),
            ),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    fields = mutated(draw, keys, good, tame)
    if draw(st.booleans()):
        fields.append(("!cascadeCreate", "true"))
    body = json_object(fields).encode()
    return FuzzRequest("json-values", "POST", f"/{entity}/{target}", body)


@functools.cache
@st.composite
def recommend_bodies(draw: st.DrawFn) -> FuzzRequest:
    path = draw(st.sampled_from(RECOMMEND_PATHS))
    tame = draw(tameness())
    if "/next/" in path:
        allowed: Sequence[str] = ("count",)
    elif "/recomms/items/" in path and path.endswith("/items/"):
        allowed = RECOMMEND_FIELDS
    else:  # targetUserId and userImpact are Items to Item's
        allowed = RECOMMEND_FIELDS[:-2]
    names = draw(st.lists(st.sampled_from(allowed), min_size=1, max_size=6, unique=True))
    if "count" not in names and draw(st.integers(0, 5)):
        names.insert(0, "count")
    if draw(st.integers(0, 19)) == 0:
        names.append(draw(st.sampled_from(RECOMMEND_FIELDS)))  # perhaps not this endpoint's
    fields = mutated(draw, names, GOOD_RECOMMEND, tame)
    return FuzzRequest("json-recommend", "POST", path, json_object(fields).encode())


@functools.cache
@st.composite
def list_queries(draw: st.DrawFn) -> FuzzRequest:
    """GET list endpoints with hostile query-string parameters."""
    path = draw(st.sampled_from(["/items/list/", "/users/list/"]))
    params: list[tuple[str, str]] = []
    for name in draw(
        st.lists(
            st.sampled_from(["count", "offset", "returnProperties", "includedProperties"]),
            min_size=1,
            unique=True,
        )
    ):
        value = draw(
            st.one_of(
                st.sampled_from(["1", "0", "-1", "1e400", "NaN", "true", "", "price,tags"]),
                st.sampled_from(INT64_EDGES),
                st.integers(300, 5000).map(huge_int_text),
                surrogate_text(),
            )
        )
        params.append((name, value))
    return FuzzRequest("query-list", "GET", path + "?" + encode_query(params))


@functools.cache
@st.composite
def sub_requests(draw: st.DrawFn) -> str:
    """One batch sub-request as JSON text, well-formed or not."""
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(json_values(0, draw(tameness())))
    if choice == 1:
        inner = draw(st.one_of(interaction_bodies(), item_value_bodies(), recommend_bodies()))
        assert inner.body is not None
        return json_object(
            [
                ("method", jstr(inner.method)),
                ("path", jstr(inner.path)),
                ("params", inner.body.decode()),
            ]
        )
    tame = draw(tameness())
    fields = [
        ("method", draw(field_value('"POST"', tame))),
        ("path", draw(field_value(jstr(draw(st.sampled_from(ENDPOINTS)).path), tame))),
    ]
    if draw(st.booleans()):
        fields.append(("params", draw(field_value("{}", tame))))
    return json_object(fields)


@functools.cache
@st.composite
def batch_bodies(draw: st.DrawFn) -> FuzzRequest:
    subs = draw(st.lists(sub_requests(), max_size=4))
    fields = [("requests", "[" + ",".join(subs) + "]")]
    if draw(st.booleans()):
        fields.append(("distinctRecomms", draw(field_value("true", draw(tameness())))))
    return FuzzRequest("json-batch", "POST", "/batch/", json_object(fields).encode())


@functools.cache
@st.composite
def generic_json(draw: st.DrawFn) -> FuzzRequest:
    """Any JSON value as the body of any endpoint."""
    endpoint = draw(endpoints())
    body = draw(json_values(0, draw(tameness()))).encode()
    return FuzzRequest("json-any", endpoint.method, endpoint.path, body)


@functools.cache
def json_requests() -> st.SearchStrategy[FuzzRequest]:
    return st.one_of(
        interaction_bodies(),
        item_value_bodies(),
        recommend_bodies(),
        batch_bodies(),
        generic_json(),
        list_queries(),
    )
