"""Scenario ReQL and property names checked before they serve: `reqo check`, start-up, and a
reload refused while the old scenarios serve on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from recombee_api_client.api_requests import RecommendItemsToUser

from server.cli.main import main
from tests.plugins.catalog import build_catalog
from tests.serving import RunningServer, free_port

GOOD = {"endpoint": "items-to-user", "filter": "'genre' != \"g0\"", "booster": "1.5"}
MISTAKES: dict[str, tuple[dict[str, Any], str, str]] = {
    "unknown property": (
        {"filter": "'colour' == \"red\""},
        "scenarios.home.filter",
        "'colour'",
    ),
    "syntax error": ({"filter": "'genre' =="}, "scenarios.home.filter", "^"),
    "filter that is not boolean": ({"filter": "'genre'"}, "scenarios.home.filter", "boolean"),
    "booster that is a string": ({"booster": '"high"'}, "scenarios.home.booster", "number"),
    "unknown included property": (
        {"included_properties": ["genre", "colour"]},
        "scenarios.home.included_properties[1]",
        "no item property 'colour'",
    ),
}


def write_config(path: Path, scenario: dict[str, Any], **extra: Any) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": "data",
                "databases": {"shop": {"token": "check-token-0123456789"}},
                "scenarios": {"home": {**GOOD, **scenario}},
                **extra,
            }
        )
    )


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_reqo_check_names_the_key_and_the_reql_error(
    mistake: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_catalog(tmp_path / "data" / "shop.duckdb").close()
    path = tmp_path / "reqo.yaml"
    write_config(path, {})
    assert main(["check", "--config", str(path)]) == 0
    assert "ok: 1 database(s)" in capsys.readouterr().out
    change, key, detail = MISTAKES[mistake]
    write_config(path, change)
    assert main(["check", "--config", str(path)]) == 1
    error = capsys.readouterr().err
    assert f"{path}: {key}: " in error
    assert detail in error


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[RunningServer]:
    build_catalog(tmp_path / "data" / "shop.duckdb").close()
    running = RunningServer(
        tmp_path,
        free_port(),
        {"shop": "check-token-0123456789"},
        admin_token="check-admin-token-0123456789",
        extra={"scenarios": {"home": GOOD}},
    )
    running.start()
    for model in ("item-knn", "popularity"):
        trained = running.request("POST", f"/-/train?model={model}", database="shop")
        assert trained.status_code == 200, trained.text
    yield running
    running.stop()


def test_a_reload_with_each_reql_mistake_is_refused_and_the_old_scenario_serves(
    shop: RunningServer,
) -> None:
    client = shop.client("shop")
    assert client.send(RecommendItemsToUser("u1", 3, scenario="home"))["recomms"]
    config = yaml.safe_load(shop.config_path.read_text())
    for change, key, detail in MISTAKES.values():
        config["scenarios"]["home"] = {**GOOD, **change}
        shop.config_path.write_text(yaml.safe_dump(config))
        refused = shop.admin("POST", "reload", json={})
        assert refused.status_code == 400, refused.text
        assert f"{key}: " in refused.json()["error"]
        assert detail in refused.json()["error"]
        # The scenario as it was still serves.
        assert client.send(RecommendItemsToUser("u1", 3, scenario="home"))["recomms"]


def test_serve_refuses_to_start_with_a_scenario_that_does_not_compile(tmp_path: Path) -> None:
    build_catalog(tmp_path / "data" / "shop.duckdb").close()
    running = RunningServer(
        tmp_path,
        free_port(),
        {"shop": "check-token-0123456789"},
        extra={"scenarios": {"home": {**GOOD, "filter": "'colour' == \"red\""}}},
    )
    with pytest.raises(RuntimeError, match="exited with 2"):
        running.start(timeout=60)
    assert "scenarios.home.filter: does not compile on database 'shop'" in running.output()


def test_a_scenario_broken_by_a_schema_change_blames_the_configuration(
    shop: RunningServer,
) -> None:
    from recombee_api_client.api_requests import DeleteItemProperty
    from recombee_api_client.exceptions import ResponseException

    client = shop.client("shop")
    client.send(DeleteItemProperty("genre"))
    for _ in range(2):
        with pytest.raises(ResponseException) as caught:
            client.send(RecommendItemsToUser("u1", 3, scenario="home"))
        assert caught.value.status_code == 409
        assert "configuration is at fault, not this request" in caught.value.description
        assert "scenarios.home.filter" in caught.value.description
    # The same mistake in a request's own filter is the request's (400).
    with pytest.raises(ResponseException) as caught:
        client.send(RecommendItemsToUser("u1", 3, filter="'genre' != \"g0\""))
    assert caught.value.status_code == 400
    assert shop.output().count("scenarios.home.filter no longer compiles") == 1
