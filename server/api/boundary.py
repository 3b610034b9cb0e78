"""The last line of defence: an exception that no handler turned into a response.

Starlette's own handler for unexpected exceptions answers 500 and then raises the exception
again, so uvicorn drops the keep-alive connection without saying so, and the client's next
request on it fails. This middleware answers the 500 itself and swallows the exception (after
logging it), so the connection stays usable. Only where the response had already begun is the
exception left to close the connection: there is no other way to tell the client.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("reqo")


class SafeJSONResponse(JSONResponse):
    """JSON that always encodes: text that is not valid Unicode (a lone surrogate echoed in an
    error message) is escaped rather than failing the response."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return text.encode("utf-8", errors="backslashreplace")


class ErrorBoundary:
    """ASGI middleware: an unhandled exception becomes a logged 500 on a connection that stays
    open."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as error:
            if started:
                raise
            logger.exception(
                "internal error on %s %s", scope.get("method"), scope.get("path"), exc_info=error
            )
            body = {"statusCode": 500, "error": f"internal error: {type(error).__name__}"}
            await SafeJSONResponse(body, status_code=500)(scope, receive, send)
