"""A real server whose visual models use embedders that are not pretrained networks: a small CNN
that training fits on the catalog's images (and that picture queries use with the same weights,
after the model is loaded from disk), and an embedder that only the configuration's `plugins:`
list provides."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from server.api.auth import sign
from storage import fashion_mnist
from storage.database import Database
from tests.serving import RunningServer, free_port

PLUGIN = """
from plugins.builtin.image_embedders import Pixels
from plugins.hookspecs import hookimpl


class CoarsePixels(Pixels):
    name = "coarse-pixels"
    description = "pixels at 7 x 7 (a test plugin from the configuration)"


@hookimpl
def register_embedders():
    return [CoarsePixels]
"""


def config(plugin: Path) -> dict[str, Any]:
    return {
        "plugins": [str(plugin)],
        "models": {
            "cnn": {
                "algorithm": "visual-similarity",
                "params": {"embedder": "small-cnn", "embedder_settings": {"epochs": 4}},
            },
            "coarse": {
                "algorithm": "visual-similarity",
                "params": {"embedder": "coarse-pixels", "embedder_settings": {"size": 7}},
            },
        },
        "scenarios": {
            "cnn": {"endpoint": "items-to-item", "model": "cnn"},
            "coarse": {"endpoint": "items-to-item", "model": "coarse"},
        },
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("visual-trained")
    database = Database("test", directory / "data" / "test.duckdb")
    fashion_mnist.load(database, progress=False, limit=400)
    database.close()
    plugin = directory / "coarse_pixels.py"
    plugin.write_text(PLUGIN)
    running = RunningServer(directory, free_port(), {"test": "visual-token"}, extra=config(plugin))
    running.start()
    # Models are fitted by the trainer role, as `reqo train --model` asks it: the two under
    # test and the fallback.
    for model in ("cnn", "coarse", "popularity"):
        trained = running.request("POST", f"/-/train?model={model}", json={})
        assert trained.status_code == 200, trained.text
    yield running
    running.stop()


def picture_query(server: RunningServer, scenario: str, png: bytes) -> requests.Response:
    path = f"/test/recomms/image/items/?hmac_timestamp={int(time.time())}"
    url = server.url + path + f"&hmac_sign={sign(path, server.tokens['test'])}"
    body = {
        "image": base64.b64encode(png).decode(),
        "count": 10,
        "scenario": scenario,
        "returnProperties": True,
        "includedProperties": "category",
    }
    return requests.post(url, json=body, timeout=120)


def test_picture_queries_by_trained_and_config_plugin_embedders(server: RunningServer) -> None:
    images = fashion_mnist.read_idx(fashion_mnist.DEBIAN_DIRECTORY / "t10k-images-idx3-ubyte.gz")
    labels = fashion_mnist.read_idx(fashion_mnist.DEBIAN_DIRECTORY / "t10k-labels-idx1-ubyte.gz")
    shares: dict[str, list[float]] = {"cnn": [], "coarse": []}
    for index in range(600, 620):
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(images[index], dtype=np.uint8), "L").save(buffer, "PNG")
        wanted = fashion_mnist.CATEGORIES[int(labels[index])]
        for scenario, found in shares.items():
            response = picture_query(server, scenario, buffer.getvalue())
            assert response.status_code == 200, response.text
            categories = [r["values"]["category"] for r in response.json()["recomms"]]
            assert len(categories) == 10
            found.append(sum(c == wanted for c in categories) / 10)
    # Chance is 0.1; a small CNN trained on 400 catalog images gets most of them right.
    assert np.mean(shares["cnn"]) > 0.6
    assert np.mean(shares["coarse"]) > 0.3


def test_the_trained_model_keeps_its_weights_on_disk(server: RunningServer) -> None:
    models = server.directory / "data" / "models" / "test" / "cnn"
    version = (models / "current").read_text().strip()
    saved = sorted(p.name for p in (models / version).glob("embedder.*.npy"))
    assert "embedder.classes.npy" in saved
    assert len(saved) > 5
