"""More like this picture: `POST /{databaseId}/recomms/image/items/` (reqo's extension).

The picture comes as a multipart upload (field `image`, the other parameters as form fields) or
in a JSON body (`image`: base64, or a `data:` URL). Its size and type are checked before it is
decoded; the rest of the request is Items to Item's parameters (`count`, `filter`, `booster`,
`scenario`, `logic`, `returnProperties`, …) and the response is Recombee-shaped.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.requests import Request as HttpRequest

from server.api.auth import AUTH_PARAMETERS
from server.api.body import parse_json, parse_object
from server.api.operations import Params, read_body
from storage.errors import BadParameter, InvalidInput, TooLarge

PATH = "/recomms/image/items/"
ENDPOINT = "items-to-image"
MAX_IMAGE_BYTES = 10 * 2**20
MAX_PIXELS = 40_000_000
FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP"}
_FORM_JSON_FIELDS = ("reqlExpressions", "includedProperties", "logic")


MAX_REQUEST_BYTES = MAX_IMAGE_BYTES * 4 // 3 + 2**20
"""A base64 picture of the largest size, and room for the other parameters."""


async def read_image_request(request: HttpRequest) -> tuple[Image.Image, Params]:
    """The picture and the other parameters of an image query."""
    content_type = request.headers.get("content-type", "")
    query = {k: v for k, v in request.query_params.items() if k not in AUTH_PARAMETERS}
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        # Before a multipart parse, which would read it all.
        raise TooLarge(f"the request body has {declared} bytes; the limit is {MAX_REQUEST_BYTES}")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=64)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise BadParameter("image", "is required: a file field named 'image'")
        data = await upload.read(MAX_IMAGE_BYTES + 1)
        fields: dict[str, Any] = {}
        for name, value in form.items():
            if name == "image" or not isinstance(value, str):
                continue
            fields[name] = _form_value(name, value)
        return decode_image(data), Params(query=query, body=fields)
    body = await read_body(request, MAX_REQUEST_BYTES)
    parsed = parse_object(body) if body.strip() else {}
    encoded = parsed.pop("image", None)
    if not isinstance(encoded, str) or not encoded:
        raise BadParameter(
            "image", "is required: a multipart file, or base64 (or a data: URL) in JSON"
        )
    return decode_image(_base64(encoded)), Params(query=query, body=parsed)


def decode_image(data: bytes) -> Image.Image:
    """The uploaded bytes as a loaded PIL image; a clear 400 when they are not a usable one."""
    if len(data) > MAX_IMAGE_BYTES:
        raise TooLarge(f"parameter 'image': more than {MAX_IMAGE_BYTES} bytes")
    if not data:
        raise BadParameter("image", "is empty")
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in FORMATS:
            raise BadParameter(
                "image", f"is {image.format}; expected one of {', '.join(sorted(FORMATS))}"
            )
        if image.width * image.height > MAX_PIXELS:
            raise BadParameter(
                "image", f"has {image.width}x{image.height} pixels; the limit is {MAX_PIXELS:,}"
            )
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise BadParameter("image", f"is not a readable image ({error})") from None
    return image


def _base64(encoded: str) -> bytes:
    if encoded.startswith("data:"):
        header, _, encoded = encoded.partition(",")
        if ";base64" not in header:
            raise BadParameter("image", "a data: URL must be base64-encoded")
    if len(encoded) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise TooLarge(f"parameter 'image': more than {MAX_IMAGE_BYTES} bytes")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadParameter("image", "is not valid base64") from None


def _form_value(name: str, value: str) -> Any:
    """Form fields are text: JSON-valued parameters are parsed, the rest left to the usual
    parameter readers (which accept "true", "5", "0.2")."""
    if name in _FORM_JSON_FIELDS and value[:1] in ("{", "["):
        try:
            return parse_json(value.encode())
        except InvalidInput as error:
            raise BadParameter(name, error.message) from None
    return value
