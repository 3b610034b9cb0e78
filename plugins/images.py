"""Images from item property values (`image` and `imageList`): local paths, `file://` URLs and,
where the deployment has a network, `http(s)://` URLs (with a timeout, a size limit and a check of
the content type).

Each failure is an `ImageError` that names the image and the reason; `load_images` returns, per
image, either the loaded image or its error, so that one bad image never fails a whole job.
"""

from __future__ import annotations

import hashlib
import io
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

DEFAULT_TIMEOUT = 10.0
"""Seconds an http(s) image may take, connection and whole body together."""
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
"""The largest image file read (10 MiB)."""
_CHUNK = 64 * 1024
_Result = TypeVar("_Result")


class ImageError(Exception):
    """An image that cannot be loaded: which one (`source`) and why (`reason`)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"image {source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass(frozen=True)
class ImageBytes:
    """An image read but not decoded yet: where it came from, the sha256 of its bytes, the bytes.
    Hashing before decoding lets a job skip the decoding of images whose vectors are cached."""

    source: str
    sha256: str
    data: bytes

    def decode(self) -> LoadedImage:
        """The decoded image. Raises ImageError."""
        return LoadedImage(self.source, self.sha256, decode(self.source, self.data))


@dataclass(frozen=True)
class LoadedImage:
    """An image read and decoded: where it came from, the sha256 of its bytes, the picture."""

    source: str
    sha256: str
    image: Image.Image


def image_sources(value: Any) -> list[str]:
    """The image locations of a property value: an `image` string, or an `imageList`'s strings
    (empty and missing values give none)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, Iterable):
        return [item for item in value if isinstance(item, str) and item]
    return []


def read_bytes(
    source: str,
    *,
    base_dir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> bytes:
    """The bytes of an image: a local path (relative ones from `base_dir`), a `file://` URL or an
    `http(s)://` URL. Raises ImageError."""
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        return _read_http(source, timeout, max_bytes)
    if scheme == "file":
        parts = urllib.parse.urlsplit(source)
        if parts.netloc not in ("", "localhost"):
            raise ImageError(source, f"file URL on another host ({parts.netloc})")
        return _read_file(source, Path(urllib.request.url2pathname(parts.path)), max_bytes)
    if scheme and len(scheme) > 1:  # "C:" is a Windows drive, not a scheme
        raise ImageError(source, f"unsupported URL scheme '{scheme}'")
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return _read_file(source, path, max_bytes)


def _read_file(source: str, path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageError(source, f"file of {size} bytes is over the limit of {max_bytes}")
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except FileNotFoundError:
        raise ImageError(source, "no such file") from None
    except IsADirectoryError:
        raise ImageError(source, "a directory, not a file") from None
    except PermissionError:
        raise ImageError(source, "permission denied") from None
    except OSError as error:
        raise ImageError(source, f"cannot be read: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise ImageError(source, f"file is over the limit of {max_bytes} bytes")
    return data


def _read_http(url: str, timeout: float, max_bytes: int) -> bytes:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Accept": "image/*", "User-Agent": "reqo"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            content_type = response.headers.get_content_type()
            if not content_type.startswith("image/"):
                raise ImageError(url, f"content type {content_type}, not an image")
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise ImageError(url, f"body of {length} bytes is over the limit of {max_bytes}")
            chunks: list[bytes] = []
            received = 0
            while True:
                if time.monotonic() > deadline:
                    raise ImageError(url, f"timed out after {timeout:g} s")
                chunk = response.read(min(_CHUNK, max_bytes + 1 - received))
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
                if received > max_bytes:
                    raise ImageError(url, f"body is over the limit of {max_bytes} bytes")
            return b"".join(chunks)
    except ImageError:
        raise
    except urllib.error.HTTPError as error:
        raise ImageError(url, f"HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise ImageError(url, f"timed out after {timeout:g} s") from None
        raise ImageError(url, f"cannot be fetched: {error.reason}") from None
    except TimeoutError:
        raise ImageError(url, f"timed out after {timeout:g} s") from None
    except (OSError, ValueError) as error:  # connection reset, malformed URL, bad response
        raise ImageError(url, f"cannot be fetched: {error}") from None


def decode(source: str, data: bytes) -> Image.Image:
    """The decoded picture of an image's bytes. Raises ImageError (not an image, truncated, or a
    decompression bomb)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError(source, "too many pixels (a decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(source, f"not a readable image: {error}") from None
    return image


def read_image(
    source: str,
    *,
    base_dir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ImageBytes:
    """Read one image's bytes and hash them, without decoding. Raises ImageError."""
    data = read_bytes(source, base_dir=base_dir, timeout=timeout, max_bytes=max_bytes)
    return ImageBytes(source, hashlib.sha256(data).hexdigest(), data)


def load_image(
    source: str,
    *,
    base_dir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadedImage:
    """Read and decode one image. Raises ImageError."""
    return read_image(source, base_dir=base_dir, timeout=timeout, max_bytes=max_bytes).decode()


def read_images(
    sources: Sequence[str],
    *,
    base_dir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    workers: int = 8,
) -> list[ImageBytes | ImageError]:
    """Each image's bytes, or its error, in the order of `sources`; never raises for one image.
    Images are read on `workers` threads (http(s) ones wait on the network)."""
    return _each(
        sources,
        lambda source: read_image(source, base_dir=base_dir, timeout=timeout, max_bytes=max_bytes),
        workers,
    )


def load_images(
    sources: Sequence[str],
    *,
    base_dir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    workers: int = 8,
) -> list[LoadedImage | ImageError]:
    """Each image loaded (read and decoded), or its error, in the order of `sources`; never
    raises for one image."""
    return _each(
        sources,
        lambda source: load_image(source, base_dir=base_dir, timeout=timeout, max_bytes=max_bytes),
        workers,
    )


def _each(
    sources: Sequence[str], load: Callable[[str], _Result], workers: int
) -> list[_Result | ImageError]:
    def one(source: str) -> _Result | ImageError:
        try:
            return load(source)
        except ImageError as error:
            return error

    if workers <= 1 or len(sources) <= 1:
        return [one(source) for source in sources]
    with ThreadPoolExecutor(min(workers, len(sources)), thread_name_prefix="reqo-images") as pool:
        return list(pool.map(one, sources))
