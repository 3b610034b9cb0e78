"""Recombee's HMAC-SHA1 URL signing.

The client appends `hmac_timestamp` (epoch seconds) to the URL, signs the path and query
(starting at `/{databaseId}/`) with the database's private token, and appends `hmac_sign`.
The server recomputes the signature over the same bytes and accepts a timestamp within 30 s.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

from storage.errors import StorageError

SIGNATURE_WINDOW_SECONDS = 30
AUTH_PARAMETERS = frozenset({"hmac_timestamp", "hmac_sign"})


class Unauthorized(StorageError):
    """A request without a valid signature (401)."""

    status = 401


def sign(url: str, token: str) -> str:
    """The signature of a URL path-and-query (for clients written in Python, and for tests)."""
    return hmac.new(token.encode(), url.encode(), hashlib.sha1).hexdigest()


def verify_request(
    scope: Mapping[str, Any], token: str, *, allow_unsigned: bool, now: float | None = None
) -> None:
    """Raise Unauthorized unless the request carries a valid, fresh signature."""
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
    try:
        stamp = float(timestamps[0].partition(b"=")[2])
    except ValueError:
        raise Unauthorized("hmac_timestamp is not a number") from None
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
    if not any(hmac.compare_digest(_digest(token, url), given) for url in candidates):
        raise Unauthorized("hmac_sign does not match the URL signed with this database's token")


def _digest(token: str, url: bytes) -> bytes:
    return hmac.new(token.encode(), url, hashlib.sha1).hexdigest().encode()
