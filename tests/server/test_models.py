"""Model versions: `reqo models list|rollback` offline, and over HTTP on a running group of two
servers (`GET /{db}/-/models`, `POST /{db}/-/models/{model}/rollback`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from recombee_api_client.api_requests import AddDetailView

from server.cli.main import main
from server.training.artifacts import current_version, model_versions
from tests.plugins.catalog import build_catalog
from tests.serving import RunningServer


def trained_twice(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A configuration, its models directory and two versions of item-kNN (oldest first)."""
    path = tmp_path / "reqo.yaml"
    path.write_text(yaml.safe_dump({"data_dir": "data", "databases": {"shop": {"token": "tok"}}}))
    build_catalog(tmp_path / "data" / "shop.duckdb").close()
    for _ in range(2):
        assert main(["train", "--config", str(path), "--model", "item-knn"]) == 0
    directory = tmp_path / "data" / "models" / "shop"
    versions = [v.version for v in model_versions(directory, "item-knn")]
    assert len(versions) == 2
    return path, directory, versions


def test_list_and_roll_back_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, directory, (older, newer) = trained_twice(tmp_path)
    capsys.readouterr()
    assert (
        main(["models", "list", "--config", str(path), "--db", "shop", "--model", "item-knn"]) == 0
    )
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == "item-knn (item-knn): 2 version(s)"
    assert listed[1].split()[0] == older
    assert not listed[1].endswith("live")
    assert listed[2].split()[0] == newer
    assert listed[2].endswith("live")

    rollback = ["models", "rollback", "--config", str(path), "--db", "shop", "--model", "item-knn"]
    assert main(rollback) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"item-knn: {newer} -> {older}"
    assert current_version(directory, "item-knn") == older
    # Nothing older to go back to; an unknown version; then forward again by name.
    assert main(rollback) == 1
    assert "no version older than" in capsys.readouterr().err
    assert main([*rollback, "--to", "19990101T000000-000000000"]) == 1
    assert "has no version '19990101T000000-000000000'" in capsys.readouterr().err
    assert main([*rollback, "--to", newer]) == 0
    assert current_version(directory, "item-knn") == newer
    # A model the configuration does not have is a configuration error.
    assert main([*rollback[:-1], "nonesuch"]) == 2


def serving_on_each_answer(live: RunningServer, model: str, answers: int = 8) -> set[str | None]:
    found = set()
    for _ in range(answers):
        reply = live.request("GET", "/-/models")
        assert reply.status_code == 200, reply.text
        entry = next(m for m in reply.json() if m["model"] == model)
        found.add(entry["serving"])
    return found


def test_a_rollback_over_http_serves_the_older_version_on_every_server(
    live: RunningServer,
) -> None:
    client = live.client()
    for user in range(4):
        for item in range(user, 8):
            client.send(AddDetailView(f"u{user}", f"i{item}", cascade_create=True))
    for _ in range(2):
        assert live.request("POST", "/-/train?model=item-knn").status_code == 200
    listed = live.request("GET", "/-/models").json()
    versions = [
        v["version"] for v in next(m for m in listed if m["model"] == "item-knn")["versions"]
    ]
    older, newer = versions[-2:]
    # Every server serves item-kNN (recommendations load it), the newer version.
    for _ in range(8):
        assert live.request("GET", "/recomms/users/u1/items/?count=3").status_code == 200
    assert serving_on_each_answer(live, "item-knn") == {newer}

    reply = live.request("POST", "/-/models/item-knn/rollback")
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"model": "item-knn", "previous": newer, "version": older}
    assert serving_on_each_answer(live, "item-knn") == {older}

    bad = live.request("POST", "/-/models/item-knn/rollback?to=nonesuch")
    assert bad.status_code == 400
    assert bad.json()["error"].startswith(
        "parameter 'to': model 'item-knn' has no version 'nonesuch'"
    )
    assert live.request("POST", "/-/models/nonesuch/rollback").status_code == 404
