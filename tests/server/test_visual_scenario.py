"""A real server on a small Fashion-MNIST catalog: Items to Item with the logic
`reqo:visually-similar`, and from a scenario whose filter holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from recombee_api_client.api_requests import RecommendItemsToItem

from storage import fashion_mnist
from storage.database import Database
from tests.serving import RunningServer, free_port

CONFIG: dict[str, Any] = {
    # Raw pixels embed in milliseconds; the default model is the same algorithm.
    "models": {
        "visually-similar": {"algorithm": "visual-similarity", "params": {"embedder": "pixels"}}
    },
    "scenarios": {
        "no-bags": {
            "endpoint": "items-to-item",
            "logic": "reqo:visually-similar",
            "filter": "'category' != \"Bag\"",
        },
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("visual")
    database = Database("test", directory / "data" / "test.duckdb")
    fashion_mnist.load(database, progress=False, limit=200)
    database.close()
    running = RunningServer(directory, free_port(), {"test": "visual-token"}, extra=CONFIG)
    running.start()
    # Models are fitted by the trainer role, as `reqo train` (or train_every) asks it.
    trained = running.request("POST", "/-/train", json={})
    assert trained.status_code == 200, trained.text
    yield running
    running.stop()


def category(item_id: str, server: RunningServer) -> str:
    response = server.request("GET", f"/items/{item_id}")
    assert response.status_code == 200, response.text
    value: str = response.json()["category"]
    return value


def test_visually_similar_items_share_the_category(server: RunningServer) -> None:
    shares = []
    for item in ("train-00000", "train-00001", "train-00003", "test-00000"):
        response = server.client().send(
            RecommendItemsToItem(
                item,
                "u1",
                10,
                logic="reqo:visually-similar",
                return_properties=True,
                cascade_create=True,
            )
        )
        recomms = response["recomms"]
        assert len(recomms) == 10
        assert item not in [r["id"] for r in recomms]
        wanted = category(item, server)
        shares.append(sum(r["values"]["category"] == wanted for r in recomms) / 10)
    assert sum(shares) / len(shares) > 0.5


def test_a_scenario_filter_holds(server: RunningServer) -> None:
    # A bag: its nearest neighbours are bags, which the scenario filters out.
    bag = "train-00035"
    assert category(bag, server) == "Bag"
    response = server.client().send(
        RecommendItemsToItem(
            bag, "u1", 10, scenario="no-bags", return_properties=True, cascade_create=True
        )
    )
    categories = [r["values"]["category"] for r in response["recomms"]]
    assert len(categories) == 10
    assert "Bag" not in categories


def _signed_url(server: RunningServer, path: str) -> str:
    import time

    from server.api.auth import sign

    path = f"/test{path}?hmac_timestamp={int(time.time())}"
    return server.url + path + f"&hmac_sign={sign(path, server.tokens['test'])}"


def test_more_like_this_picture(server: RunningServer) -> None:
    """Test pictures (not in the catalog) uploaded as files and as base64: the recommended items
    are mostly of the picture's own category, and the scenario's filter holds."""
    import base64
    import io

    import numpy as np
    import requests
    from PIL import Image

    images = fashion_mnist.read_idx(fashion_mnist.DEBIAN_DIRECTORY / "t10k-images-idx3-ubyte.gz")
    labels = fashion_mnist.read_idx(fashion_mnist.DEBIAN_DIRECTORY / "t10k-labels-idx1-ubyte.gz")
    names = fashion_mnist.CATEGORIES
    same = total = 0
    for index in range(500, 510):
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(images[index], dtype=np.uint8), "L").save(buffer, "PNG")
        picture = buffer.getvalue()
        if index % 2:
            response = requests.post(
                _signed_url(server, "/recomms/image/items/"),
                files={"image": ("query.png", picture, "image/png")},
                data={"count": "5", "returnProperties": "true", "includedProperties": "category"},
                timeout=60,
            )
        else:
            response = requests.post(
                _signed_url(server, "/recomms/image/items/"),
                json={
                    "image": base64.b64encode(picture).decode(),
                    "count": 5,
                    "scenario": "no-bags",
                    "returnProperties": True,
                },
                timeout=60,
            )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["recommId"]
        categories = [r["values"]["category"] for r in body["recomms"]]
        assert len(categories) == 5
        if index % 2 == 0:
            assert "Bag" not in categories
        same += sum(c == names[int(labels[index])] for c in categories)
        total += len(categories)
    assert same / total > 0.4  # chance is 0.1


def test_image_vectors_the_trainer_embeds_are_cached_in_the_database(tmp_path: Path) -> None:
    """The trainer fits on a copy of a snapshot, which goes when training ends: the image
    vectors it embedded reach the writer's file (`image-vectors` writes), so that the next
    round, or a restarted group, embeds only images it has not seen."""
    database_path = tmp_path / "data" / "test.duckdb"
    database = Database("test", database_path)
    fashion_mnist.load(database, progress=False, limit=40)
    database.close()
    running = RunningServer(tmp_path, free_port(), {"test": "visual-token"}, extra=CONFIG)
    running.start()
    try:
        trained = running.request("POST", "/-/train", json={"model": "visually-similar"})
        assert trained.status_code == 200, trained.text
    finally:
        running.stop()
    with duckdb.connect(str(database_path), read_only=True) as conn:
        cached = conn.execute(
            "SELECT count(*), count(DISTINCT image_sha256) FROM image_embeddings "
            "WHERE embedder = 'pixels'"
        ).fetchone()
        images = conn.execute("SELECT count(DISTINCT image) FROM items").fetchone()
    assert cached is not None
    assert images is not None
    assert cached[0] == cached[1] == images[0] > 0
