"""The console's sessions: the admin token, typed once into the login page, becomes a signed
session cookie; no token ever travels in a URL.

The cookie is `<expiry>.<nonce>.<signature>`, the signature an HMAC-SHA256 of the first two
parts under a key derived from the admin token. Every server process of a group derives the same
key, so a session opened on one server is valid on all; changing the admin token ends every
session. The cookie is HttpOnly and SameSite=Strict (Secure over TLS), and a request that a
session authenticates must also carry the `X-Reqo-Console` header, which another site's page
can neither send in a form nor in a cross-origin fetch without a CORS preflight that reqo
refuses: a session cannot be ridden by cross-site requests.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from typing import Any

from server.api.auth import verify_admin
from storage.errors import StorageError

COOKIE = "reqo_console"
HEADER = "x-reqo-console"
"""The header every session-authenticated request carries (the console's script sends it)."""
SESSION_SECONDS = 12 * 3600
CONSOLE_SCOPE_KEY = "reqo.console"
"""Set in a request's scope when the console's session authenticated it."""


def _key(admin_token: str) -> bytes:
    return hmac.new(admin_token.encode(), b"reqo console session v1", hashlib.sha256).digest()


def _signature(admin_token: str, text: str) -> str:
    return hmac.new(_key(admin_token), text.encode(), hashlib.sha256).hexdigest()


def new_session(admin_token: str, *, now: float | None = None) -> str:
    """A session cookie's value, valid for SESSION_SECONDS."""
    expiry = int((time.time() if now is None else now) + SESSION_SECONDS)
    text = f"{expiry}.{secrets.token_hex(16)}"
    return f"{text}.{_signature(admin_token, text)}"


def valid_session(value: str | None, admin_token: str, *, now: float | None = None) -> bool:
    """Whether a cookie's value is a session this admin token opened, not expired."""
    if not value or value.count(".") != 2:
        return False
    expiry, nonce, given = value.split(".")
    if not expiry.isdigit():
        return False
    expected = _signature(admin_token, f"{expiry}.{nonce}")
    if not hmac.compare_digest(expected, given):
        return False
    return int(expiry) > (time.time() if now is None else now)


def cookie_of(scope: Mapping[str, Any]) -> str | None:
    """The console's cookie in a request, if it has one."""
    for key, value in scope.get("headers", ()):
        if key.lower() != b"cookie":
            continue
        for part in bytes(value).decode("latin-1").split(";"):
            name, _, found = part.strip().partition("=")
            if name == COOKIE:
                return found
    return None


def has_console_header(scope: Mapping[str, Any]) -> bool:
    return any(key.lower() == HEADER.encode() for key, _ in scope.get("headers", ()))


def in_session(scope: Mapping[str, Any], admin_token: str | None) -> bool:
    """Whether the request carries a valid console session (its cookie alone: pages)."""
    return admin_token is not None and valid_session(cookie_of(scope), admin_token)


def console_admin(
    scope: Mapping[str, Any], admin_token: str | None, *, allow_unsigned: bool
) -> bool:
    """Whether the request may call the admin surface: the admin token as a bearer, or a valid
    session with the console's header (a development server without an admin token: anyone,
    as every admin operation)."""
    if in_session(scope, admin_token) and has_console_header(scope):
        return True
    try:
        verify_admin(scope, admin_token, allow_unsigned=allow_unsigned)
    except StorageError:
        return False
    return True


def session_opens(scope: Mapping[str, Any], admin_token: str | None) -> bool:
    """Whether a database request is authenticated by the console's session (cookie and
    header), in place of a signature."""
    return in_session(scope, admin_token) and has_console_header(scope)


def set_cookie_header(value: str, *, secure: bool, max_age: int = SESSION_SECONDS) -> str:
    """The Set-Cookie header of a session (an empty value and max_age 0 end it)."""
    flags = f"; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict"
    return f"{COOKIE}={value}{flags}{'; Secure' if secure else ''}"
