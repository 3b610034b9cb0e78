"""Who may call what: Recombee's HMAC-SHA1 URL signing, reqo's stricter opt-in signing, and the
admin token.

**Recombee's scheme.** The client appends `hmac_timestamp` (whole epoch seconds) to the URL,
signs the path and query (starting at `/{databaseId}/`) with the database's private token, and
appends `hmac_sign`. The server recomputes the signature over the same bytes and accepts a
timestamp within 30 s. The scheme signs neither the method nor the body, and identical
legitimate requests within one second (every Add Detail View to `/detailviews/`, every Batch)
carry identical signatures, so a repeated signature cannot be refused. What remains exposed:
whoever captures a signed URL (it travels in the request line) can, within the window, send it
again, with another method or another body. TLS closes that: nobody on the path sees the URL.

**Strict signing** (`signatures: strict` on a database) is for clients that can send a header:
the request carries `Content-Digest: sha-256=:<base64 of the body's SHA-256>:` (RFC 9530), and
`hmac_sign` is the HMAC-SHA1 of `METHOD path?query&hmac_timestamp=T` + newline + the header's
value. A captured URL is then useless with another method or another body. `sign_strict`
builds such a request.

**The public token** (`public_token` of a database) is what Recombee's client-side SDKs sign
with: every request is a POST whose URL carries `frontend_timestamp` and `frontend_sign`, the
HMAC-SHA1 of `/{databaseId}/path?…frontend_timestamp=T` with the public token. A browser's page
holds that token, so it may only send interactions and ask for recommendations and searches
(`PUBLIC_OPERATIONS`); anything else is a 403.

**The admin token** guards reqo's own operations (`/-/reload`, `/-/plugins`, the detailed
health and readiness reports): `Authorization: Bearer <admin_token>`, which probes and
Prometheus can send.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

from storage.errors import StorageError

SIGNATURE_WINDOW_SECONDS = 30
AUTH_PARAMETERS = frozenset({"hmac_timestamp", "hmac_sign", "frontend_timestamp", "frontend_sign"})
PUBLIC_OPERATIONS = frozenset(
    {
        "add detail views",
        "add purchases",
        "add ratings",
        "add cart additions",
        "add bookmarks",
        "set view portions",
    }
)
"""Recombee's writes that a public token may send (as its client-side SDKs can)."""
PUBLIC_RECOMMENDATIONS = frozenset(
    {
        "items-to-user",
        "items-to-item",
        "search-items",
        "next-items",
        "items-to-item-segment",
        "item-segments-to-user",
        "item-segments-to-item",
        "item-segments-to-item-segment",
        "search-item-segments",
        "next-item-segments",
        "composite",
    }
)
"""The recommendations and searches that a public token may ask for (those of Recombee's
browser SDK: every one but Users to Item and Users to User)."""
PUBLIC_SCOPE_KEY = "reqo.public"
"""Set in a request's scope when its signature is the public token's."""
DIGEST_HEADER = "content-digest"
_TIMESTAMP = re.compile(rb"[0-9]{1,12}")
"""Whole epoch seconds, as the official clients send them: no sign, fraction, space or NaN."""
_DIGEST = re.compile(r"sha-256=:([A-Za-z0-9+/]{43}=):")


class Unauthorized(StorageError):
    """A request without a valid signature or token (401)."""

    status = 401


class Forbidden(StorageError):
    """A request signed with the public token for an operation it may not call (403)."""

    status = 403


def signed_publicly(scope: Mapping[str, Any]) -> bool:
    """Whether a request carries the client-side SDKs' signature (`frontend_sign`)."""
    query: bytes = scope.get("query_string", b"")
    return b"frontend_sign=" in query or b"frontend_timestamp=" in query


def verify_public(scope: Mapping[str, Any], token: str, *, now: float | None = None) -> None:
    """Raise Unauthorized unless the request carries a valid, fresh client-side signature
    (`frontend_timestamp`, `frontend_sign`) made with the public token."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    parts = query.split(b"&") if query else []
    signatures = [p for p in parts if p.startswith(b"frontend_sign=")]
    timestamps = [p for p in parts if p.startswith(b"frontend_timestamp=")]
    if len(signatures) != 1 or len(timestamps) != 1:
        raise Unauthorized(
            "a client-side request must carry frontend_timestamp and frontend_sign (HMAC-SHA1 "
            "of the URL with the database's public token)"
        )
    stamp = parse_timestamp(timestamps[0].partition(b"=")[2], "frontend_timestamp")
    current = time.time() if now is None else now
    if abs(current - stamp) > SIGNATURE_WINDOW_SECONDS:
        raise Unauthorized(
            f"frontend_timestamp is {current - stamp:+.0f} s from the server's clock; "
            f"the limit is {SIGNATURE_WINDOW_SECONDS} s"
        )
    signed_query = b"&".join(p for p in parts if p is not signatures[0])
    given = signatures[0].partition(b"=")[2].lower()
    candidates = [raw_path + b"?" + signed_query, unquote_to_bytes(raw_path) + b"?" + signed_query]
    if not any(hmac.compare_digest(_digest(token, text), given) for text in candidates):
        raise Unauthorized(
            "frontend_sign does not match the URL signed with this database's public token"
        )


def sign(url: str, token: str) -> str:
    """The signature of a URL path-and-query (for clients written in Python, and for tests)."""
    return hmac.new(token.encode(), url.encode(), hashlib.sha1).hexdigest()


def content_digest(body: bytes) -> str:
    """The `Content-Digest` header value of a body (RFC 9530, SHA-256)."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def sign_strict(
    method: str, path_and_query: str, body: bytes, token: str, *, now: float | None = None
) -> tuple[str, dict[str, str]]:
    """A request signed for a database with `signatures: strict`: the URL path-and-query to
    send, and the header to send with it."""
    stamp = int(time.time() if now is None else now)
    separator = "&" if "?" in path_and_query else "?"
    url = f"{path_and_query}{separator}hmac_timestamp={stamp}"
    digest = content_digest(body)
    signature = hmac.new(
        token.encode(), _strict_text(method.encode(), url.encode(), digest), hashlib.sha1
    ).hexdigest()
    return f"{url}&hmac_sign={signature}", {"Content-Digest": digest}


def verify_request(
    scope: Mapping[str, Any],
    token: str,
    *,
    allow_unsigned: bool,
    strict: bool = False,
    now: float | None = None,
) -> None:
    """Raise Unauthorized unless the request carries a valid, fresh signature. With `strict`,
    the signature must cover the method and the `Content-Digest` header (whose match with the
    body `check_digest` checks once the body is read)."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    parts = query.split(b"&") if query else []
    signatures = [p for p in parts if p.startswith(b"hmac_sign=")]
    timestamps = [p for p in parts if p.startswith(b"hmac_timestamp=")]
    if not signatures and not timestamps and allow_unsigned:
        return
    if len(signatures) != 1 or len(timestamps) != 1:
        raise Unauthorized(
            "the request must be signed: add hmac_timestamp and hmac_sign (HMAC-SHA1 of the URL "
            "with the database's private token)"
        )
    stamp = parse_timestamp(timestamps[0].partition(b"=")[2])
    current = time.time() if now is None else now
    if abs(current - stamp) > SIGNATURE_WINDOW_SECONDS:
        raise Unauthorized(
            f"hmac_timestamp is {current - stamp:+.0f} s from the server's clock; "
            f"the limit is {SIGNATURE_WINDOW_SECONDS} s"
        )
    signed_query = b"&".join(p for p in parts if p is not signatures[0])
    suffix = b"?" + signed_query if signed_query else b""
    given = signatures[0].partition(b"=")[2].lower()
    # Clients sign the URL as they wrote it; their HTTP library may percent-encode the path
    # afterwards (a space becomes %20), so the decoded path is an equally valid signed text.
    candidates = [raw_path + suffix, unquote_to_bytes(raw_path) + suffix]
    if strict:
        digest = _header(scope, DIGEST_HEADER)
        if digest is None or not _DIGEST.fullmatch(digest):
            raise Unauthorized(
                "this database takes strictly signed requests: send Content-Digest "
                "(sha-256=:<base64>:) and sign the method, the URL and that header"
            )
        method = str(scope.get("method", "GET")).encode()
        candidates = [_strict_text(method, url, digest) for url in candidates]
    if not any(hmac.compare_digest(_digest(token, text), given) for text in candidates):
        raise Unauthorized("hmac_sign does not match the URL signed with this database's token")


def check_digest(scope: Mapping[str, Any], body: bytes) -> None:
    """Raise Unauthorized unless the body is the one the request's `Content-Digest` names (for
    strictly signed requests, after `verify_request` passed)."""
    given = _header(scope, DIGEST_HEADER)
    if given is None or not hmac.compare_digest(given, content_digest(body)):
        raise Unauthorized("the body does not match the request's Content-Digest")


def parse_timestamp(raw: bytes, name: str = "hmac_timestamp") -> int:
    """A signature's timestamp as whole epoch seconds; Unauthorized for anything else (NaN
    passed the freshness check once: `abs(now - nan) > 30` is false)."""
    if not _TIMESTAMP.fullmatch(raw):
        raise Unauthorized(f"{name} must be whole epoch seconds (digits only)")
    return int(raw)


def verify_admin(
    scope: Mapping[str, Any], admin_token: str | None, *, allow_unsigned: bool
) -> None:
    """Raise Unauthorized unless the request carries `Authorization: Bearer <admin_token>`.
    Without an admin token in the configuration, only a development server (unsigned requests
    allowed, on loopback) serves the admin operations, to anyone."""
    if admin_token is None:
        if allow_unsigned:
            return
        raise Unauthorized("this server has no admin_token configured: admin operations are off")
    scheme, _, value = (_header(scope, "authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        value.strip().encode(), admin_token.encode()
    ):
        raise Unauthorized("send the admin token as 'Authorization: Bearer <admin_token>'")


def is_admin(scope: Mapping[str, Any], admin_token: str | None, *, allow_unsigned: bool) -> bool:
    """Whether the request carries the admin token (for reports that say more to the admin)."""
    try:
        verify_admin(scope, admin_token, allow_unsigned=allow_unsigned)
    except Unauthorized:
        return False
    return True


def _header(scope: Mapping[str, Any], name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers", ()):
        if key.lower() == wanted:
            return bytes(value).decode("latin-1")
    return None


def _strict_text(method: bytes, url: bytes, digest: str) -> bytes:
    return method.upper() + b" " + url + b"\n" + digest.encode()


def _digest(token: str, text: bytes) -> bytes:
    return hmac.new(token.encode(), text, hashlib.sha1).hexdigest().encode()
