"""More like this picture, `POST /{databaseId}/recomms/image/items/`: what a bad upload gets."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from PIL import Image

from tests.serving import RunningServer, free_port

PATH = "/test/recomms/image/items/"


@pytest.fixture(scope="module")
def unsigned_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module (every test only reads): a bad upload changes nothing."""
    running = RunningServer(
        tmp_path_factory.mktemp("uploads"), free_port(), {"test": "t"}, allow_unsigned=True
    )
    running.start()
    yield running
    running.stop()


def png(size: tuple[int, int] = (28, 28), colour: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def post_files(server: RunningServer, files: Any, fields: dict[str, str]) -> requests.Response:
    return requests.post(server.url + PATH, files=files, data=fields, timeout=60)


def post_json(server: RunningServer, body: Any) -> requests.Response:
    return requests.post(server.url + PATH, json=body, timeout=60)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"count": 3}, 400, "parameter 'image': is required"),
        ({"image": "not base64!", "count": 3}, 400, "is not valid base64"),
        ({"image": base64.b64encode(b"plain text").decode(), "count": 3}, 400, "not a readable"),
        ({"image": "data:image/png,abc", "count": 3}, 400, "must be base64-encoded"),
        ({"image": base64.b64encode(png()).decode()}, 400, "count"),
        (
            {"image": base64.b64encode(png()).decode(), "count": 3, "logic": "item-knn"},
            400,
            "cannot score a picture",
        ),
        ({"image": base64.b64encode(png()).decode(), "count": 3, "nope": 1}, 400, "nope"),
    ],
)
def test_bad_uploads_are_400s_that_say_why(
    unsigned_server: RunningServer, body: Any, status: int, words: str
) -> None:
    response = post_json(unsigned_server, body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_a_tiff_is_refused_by_type(unsigned_server: RunningServer) -> None:
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="TIFF")
    files = {"image": ("x.tiff", buffer.getvalue(), "image/tiff")}
    response = requests.post(
        unsigned_server.url + PATH, files=files, data={"count": "3"}, timeout=60
    )
    assert response.status_code == 400
    assert "is TIFF; expected one of" in response.json()["error"]


def test_a_multipart_upload_without_the_image_field(unsigned_server: RunningServer) -> None:
    files = {"picture": ("x.png", png(), "image/png")}
    response = requests.post(
        unsigned_server.url + PATH, files=files, data={"count": "3"}, timeout=60
    )
    assert response.status_code == 400
    assert "a file field named 'image'" in response.json()["error"]


def test_an_oversized_upload_is_413(unsigned_server: RunningServer) -> None:
    huge = b"\x89PNG" + b"\0" * (11 * 2**20)
    files = {"image": ("x.png", huge, "image/png")}
    response = requests.post(
        unsigned_server.url + PATH, files=files, data={"count": "3"}, timeout=60
    )
    assert response.status_code == 413
    assert "image" in response.json()["error"]


def test_the_openapi_document_describes_the_endpoint(unsigned_server: RunningServer) -> None:
    """The document the server serves lists exactly the parameters the endpoint accepts."""
    from server.api.recommendations import ALLOWED

    response = requests.get(unsigned_server.url + "/-/openapi.yaml", timeout=60)
    assert response.status_code == 200
    document = yaml.safe_load(response.text)
    body = document["paths"]["/{databaseId}/recomms/image/items/"]["post"]["requestBody"]
    for media in ("multipart/form-data", "application/json"):
        documented = set(body["content"][media]["schema"]["properties"])
        assert documented == {"image", *ALLOWED["items-to-image"]}, media
