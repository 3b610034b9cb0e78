"""Frames between reqo's processes: a 4-byte big-endian length, then a JSON document.

The roles talk through data (writes, change feed entries, snapshot paths), never through shared
Python objects, so that each can run where another machine's process reaches it.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import orjson

MAX_FRAME = 512 * 2**20
"""The largest frame accepted (a batch of 10,000 writes is a few MiB)."""

_HEADER = struct.Struct(">I")


class WireError(Exception):
    """The other side sent something that is not a frame, or went away."""


def encode(message: Any) -> bytes:
    body = orjson.dumps(message)
    return _HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next frame's document; raises WireError where the stream ends or is not framed."""
    try:
        header = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(header)
        if size > MAX_FRAME:
            raise WireError(f"a frame of {size} bytes is over the limit of {MAX_FRAME}")
        body = await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError) as error:
        raise WireError(f"the connection closed: {error}") from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise WireError(f"a frame is not JSON: {error}") from None
