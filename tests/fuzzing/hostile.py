"""The named hostile inputs every run sends first, and the families drawn after them."""

from __future__ import annotations

import functools
from collections.abc import Callable

from hypothesis import strategies as st

from tests.fuzzing.endpoints import FuzzRequest, encode_query, raw_requests
from tests.fuzzing.json_inputs import json_requests
from tests.fuzzing.json_text import deep_json, json_object, jstr
from tests.fuzzing.reql_inputs import reql_requests

# Inputs every run sends first, whatever Hypothesis draws: the hostile cases by name.
KNOWN_HOSTILE = [
    FuzzRequest("known", "POST", "/detailviews/", deep_json(5000).encode()),
    FuzzRequest("known", "POST", "/batch/", b'{"requests": ' + deep_json(5000).encode() + b"}"),
    FuzzRequest(
        "known",
        "POST",
        "/purchases/",
        b'{"userId": "user-1", "itemId": "item-1", "amount": ' + b"9" * 400 + b"}",
    ),
    FuzzRequest(
        "known",
        "POST",
        "/ratings/",
        b'{"userId": "user-1", "itemId": "item-1", "rating": 1e400}',
    ),
    FuzzRequest(
        "known",
        "POST",
        "/detailviews/",
        b'{"userId": "user-1", "itemId": "item-1", "timestamp": ' + b"9" * 5000 + b"}",
    ),
    FuzzRequest("known", "POST", "/detailviews/", b'{"userId": "\\ud800", "itemId": "item-1"}'),
    FuzzRequest("known", "POST", "/items/item-1", b'{"\\ud800": 1}'),
    FuzzRequest("known", "POST", "/items/item-1", b'{"title": "\\ud800"}'),
    FuzzRequest("known", "POST", "/items/item-1", b'{"stock": ' + b"9" * 300 + b"}"),
    FuzzRequest("known", "POST", "/items/item-1", b'{"price": 1e400}'),
    FuzzRequest("known", "POST", "/items/item-1", b'{"released": 1e400}'),
    FuzzRequest("known", "POST", "/recomms/users/user-1/items/", b'{"count": ' + b"9" * 400 + b"}"),
    FuzzRequest(
        "known", "POST", "/recomms/users/user-1/items/", b'{"count": 2, "rotationTime": 1e400}'
    ),
    FuzzRequest(
        "known", "POST", "/recomms/users/user-1/items/", b'{"count": 2, "diversity": 1e400}'
    ),
    FuzzRequest(
        "known",
        "POST",
        "/recomms/items/item-1/items/",
        b'{"count": 2, "userImpact": ' + b"9" * 400 + b"}",
    ),
    FuzzRequest(
        "known",
        "POST",
        "/recomms/users/user-1/items/",
        b'{"count": 2, "filter": "\\"\\\\ud800\\" in \'tags\'"}',
    ),
    FuzzRequest(
        "known", "POST", "/recomms/users/user-1/items/", b'{"count": 2, "scenario": "\\ud800"}'
    ),
    FuzzRequest(
        "known",
        "POST",
        "/recomms/users/user-1/items/",
        json_object(
            [("count", "2"), ("filter", jstr("(" * 5000 + "'price'" + ")" * 5000))]
        ).encode(),
    ),
    FuzzRequest(
        "known",
        "POST",
        "/recomms/users/user-1/items/",
        json_object([("count", "2"), ("booster", jstr("'stock' * " + "9" * 5000))]).encode(),
    ),
    FuzzRequest(
        "known",
        "POST",
        "/recomms/users/user-1/items/",
        b'{"count": 2, "logic": {"name": "recombee:default", "settings": [1]}}',
    ),
    FuzzRequest(
        "known",
        "POST",
        "/recomms/users/user-1/items/",
        b'{"count": 2, "rotationRate": 0.5, "rotationTime": 1e15}',
    ),
    FuzzRequest("known", "GET", "/items/list/?" + encode_query([("count", "9" * 400)])),
    FuzzRequest(
        "known", "GET", "/items/list/?" + encode_query([("filter", "'title' == \"\ud800\"")])
    ),
    FuzzRequest(
        "known",
        "POST",
        "/batch/",
        b'{"requests": [{"method": "POST", "path": "/ratings/", "params": '
        b'{"userId": "user-1", "itemId": "item-1", "rating": 1e400}}]}',
    ),
]


FAMILIES: dict[str, Callable[[], st.SearchStrategy[FuzzRequest]]] = {
    "raw-bytes": raw_requests,
    "json": json_requests,
    "reql": reql_requests,
}


@functools.cache
def all_requests() -> st.SearchStrategy[FuzzRequest]:
    return st.one_of(raw_requests(), json_requests(), reql_requests())
