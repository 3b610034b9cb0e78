"""Loading images from property values: local files, file URLs, and http(s) against a real
HTTP server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from plugins.images import (
    ImageBytes,
    ImageError,
    LoadedImage,
    image_sources,
    load_image,
    load_images,
    read_bytes,
    read_images,
)


def png(colour: tuple[int, int, int] = (10, 200, 30), size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png()
LIMIT = 4096


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/ok.png":
            self.reply(200, "image/png", PNG)
        elif self.path == "/big.png":
            self.reply(200, "image/png", b"\0" * (LIMIT + 1))
        elif self.path == "/big-unannounced.png":  # no Content-Length: read until the close
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Connection", "close")
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(b"\0" * (LIMIT * 4))
        elif self.path == "/page.html":
            self.reply(200, "text/html; charset=utf-8", b"<html>not a picture</html>")
        elif self.path == "/not-really.png":
            self.reply(200, "image/png", b"GIF? no, just text")
        elif self.path == "/slow.png":
            time.sleep(1.5)
            self.reply(200, "image/png", PNG)
        else:
            self.reply(404, "text/plain", b"missing")

    def reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)  # unless the client gave up (its timeout or size limit)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_image_sources_of_property_values() -> None:
    assert image_sources("a.png") == ["a.png"]
    assert image_sources(["a.png", "", "b.jpg"]) == ["a.png", "b.jpg"]
    assert image_sources(None) == []
    assert image_sources("") == []
    assert image_sources(42) == []


def test_local_paths_and_file_urls(tmp_path: Path) -> None:
    path = tmp_path / "pictures" / "a b.png"
    path.parent.mkdir()
    path.write_bytes(PNG)
    for source in (str(path), path.as_uri()):
        loaded = load_image(source)
        assert loaded.sha256 == hashlib.sha256(PNG).hexdigest()
        assert loaded.image.size == (8, 6)
        assert loaded.image.getpixel((0, 0)) == (10, 200, 30)
        assert loaded.source == source
    assert read_bytes("pictures/a b.png", base_dir=tmp_path) == PNG


def test_local_failures_name_the_file_and_the_reason(tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "large.png").write_bytes(PNG + b"\0" * LIMIT)
    cases = {
        str(tmp_path / "missing.png"): "no such file",
        str(tmp_path): "a directory",
        str(tmp_path / "text.png"): "not a readable image",
        "ftp://example.com/a.png": "unsupported URL scheme 'ftp'",
        "file://elsewhere/a.png": "file URL on another host",
    }
    for source, reason in cases.items():
        with pytest.raises(ImageError, match=reason) as caught:
            load_image(source)
        assert caught.value.source == source
        assert str(caught.value).startswith(f"image {source}: ")
    with pytest.raises(ImageError, match="over the limit of 4096"):
        load_image(str(tmp_path / "large.png"), max_bytes=LIMIT)


def test_http_images(http_url: str) -> None:
    loaded = load_image(f"{http_url}/ok.png", timeout=5)
    assert loaded.sha256 == hashlib.sha256(PNG).hexdigest()
    assert loaded.image.size == (8, 6)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/big.png", "body of 4097 bytes is over the limit of 4096"),
        ("/big-unannounced.png", "body is over the limit of 4096 bytes"),
        ("/page.html", "content type text/html, not an image"),
        ("/not-really.png", "not a readable image"),
        ("/missing.png", "HTTP 404"),
        ("/slow.png", "timed out after 0.3 s"),
    ],
)
def test_http_failures_name_the_url_and_the_reason(http_url: str, path: str, reason: str) -> None:
    url = f"{http_url}{path}"
    started = time.monotonic()
    with pytest.raises(ImageError, match=reason) as caught:
        load_image(url, timeout=0.3, max_bytes=LIMIT)
    assert caught.value.source == url
    assert time.monotonic() - started < 1.4  # the slow one gave up at its timeout


def test_load_images_returns_each_image_or_its_error(tmp_path: Path, http_url: str) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(png((1, 2, 3)))
    sources = [
        str(good),
        f"{http_url}/page.html",
        f"{http_url}/ok.png",
        str(tmp_path / "gone.png"),
        f"{http_url}/slow.png",
    ]
    results = load_images(sources, timeout=0.3, workers=4)
    assert [type(r) for r in results] == [
        LoadedImage,
        ImageError,
        LoadedImage,
        ImageError,
        ImageError,
    ]
    assert [r.source for r in results] == sources
    assert load_images(sources[:2], workers=1)[1].source == sources[1]


def test_read_images_hashes_without_decoding(tmp_path: Path) -> None:
    """Reading gives the bytes and their hash; only decoding finds that a file is no picture
    (so a job can skip decoding images whose vectors are cached)."""
    (tmp_path / "good.png").write_bytes(png())
    (tmp_path / "junk.png").write_bytes(b"not a picture")
    good, junk, missing = read_images(["good.png", "junk.png", "gone.png"], base_dir=tmp_path)
    assert isinstance(good, ImageBytes)
    assert isinstance(junk, ImageBytes)
    assert junk.sha256 == hashlib.sha256(b"not a picture").hexdigest()
    assert isinstance(missing, ImageError)
    assert missing.reason == "no such file"
    assert good.decode().image.size == (8, 6)
    with pytest.raises(ImageError, match=r"junk\.png: not a readable image"):
        junk.decode()
