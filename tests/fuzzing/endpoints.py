"""An input (`FuzzRequest`), the endpoints it goes to, query strings, raw-bytes inputs."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from hypothesis import strategies as st

from tests.fuzzing.catalog import DATABASE, ITEMS, USERS


@dataclass(frozen=True)
class FuzzRequest:
    """One input: a request to `/test{path}` with a raw body (None: no body)."""

    family: str
    method: str
    path: str
    body: bytes | None = None

    def reproducer(self, base_url: str = "http://127.0.0.1:PORT", limit: int = 300) -> str:
        """A curl command line (the body cut at `limit` characters, with its full length)."""
        line = f"curl -X {self.method} '{base_url}/{DATABASE}{self.path}'"
        if self.body is not None:
            text = self.body.decode("utf-8", errors="backslashreplace")
            shown = text if len(text) <= limit else text[:limit] + f"…[{len(text)} chars]"
            line += " -H 'Content-Type: application/json' --data-binary " + repr(shown)
        return line


@dataclass(frozen=True)
class Endpoint:
    """A place to send a body: its method, its path, and what kind of endpoint it is."""

    kind: str  # write | read | recommend | batch
    method: str
    path: str


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("write", "POST", "/detailviews/"),
    Endpoint("write", "POST", "/purchases/"),
    Endpoint("write", "POST", "/ratings/"),
    Endpoint("write", "POST", "/cartadditions/"),
    Endpoint("write", "POST", "/bookmarks/"),
    Endpoint("write", "POST", "/viewportions/"),
    Endpoint("write", "DELETE", "/detailviews/"),
    Endpoint("write", "POST", f"/items/{ITEMS[0]}"),
    Endpoint("write", "POST", f"/users/{USERS[0]}"),
    Endpoint("write", "PUT", "/items/properties/fuzzprop"),
    Endpoint("write", "PUT", f"/users/{USERS[1]}/merge/{USERS[2]}"),
    Endpoint("write", "POST", "/more-items/"),
    Endpoint("write", "DELETE", "/more-items/"),
    Endpoint("read", "GET", "/items/list/"),
    Endpoint("read", "GET", "/users/list/"),
    Endpoint("read", "GET", f"/items/{ITEMS[0]}"),
    Endpoint("read", "GET", f"/users/{USERS[0]}/purchases/"),
    Endpoint("read", "GET", "/items/properties/list/"),
    Endpoint("read", "GET", "/scenarios/"),
    Endpoint("recommend", "POST", f"/recomms/users/{USERS[0]}/items/"),
    Endpoint("recommend", "POST", f"/recomms/items/{ITEMS[0]}/items/"),
    Endpoint("recommend", "POST", f"/recomms/items/{ITEMS[0]}/users/"),
    Endpoint("recommend", "POST", f"/recomms/users/{USERS[0]}/users/"),
    Endpoint("recommend", "POST", "/recomms/next/items/no-such-recomm"),
    Endpoint("batch", "POST", "/batch/"),
)
WRITE_ENDPOINTS = tuple(e for e in ENDPOINTS if e.kind == "write")


RECOMMEND_PATHS = tuple(e.path for e in ENDPOINTS if e.kind == "recommend")


@functools.cache
def endpoints() -> st.SearchStrategy[Endpoint]:
    return st.sampled_from(ENDPOINTS)


def encode_query(params: Sequence[tuple[str, str]]) -> str:
    return "&".join(
        f"{quote(k, safe='')}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}"
        for k, v in params
    )


# ---- raw bytes

SPECIAL_BYTES = (
    b"",
    b" ",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf{}",
    b"\xed\xa0\x80",  # a surrogate encoded in UTF-8 (invalid UTF-8)
    b"{",
    b"}",
    b"[]",
    b"null",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b'{"a": NaN}',
    b"1e400",
    b'"\\ud800"',
    b'{"\\udfff": 1}',
    b"{" * 10_000,
    b"[" * 100_000,
)


@functools.cache
def raw_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=512),
        st.sampled_from(SPECIAL_BYTES),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", errors="surrogatepass")),
    )


@functools.cache
@st.composite
def raw_requests(draw: st.DrawFn) -> FuzzRequest:
    endpoint = draw(endpoints())
    return FuzzRequest("raw-bytes", endpoint.method, endpoint.path, draw(raw_bodies()))
