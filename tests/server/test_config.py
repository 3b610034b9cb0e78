"""Configuration files are validated with errors that name the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.cli import main
from server.config import ConfigError, load_config, parse_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reqo.yaml"
    path.write_text(text)
    return path


def test_a_valid_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_TOKEN", "from-env")
    path = write(
        tmp_path,
        "data_dir: store\nserver: {host: 0.0.0.0, port: 9000}\n"
        "databases:\n  shop: {token_env: SHOP_TOKEN}\n  blog: {token: abc}\n",
    )
    config = load_config(path)
    assert config.data_dir == tmp_path / "store"
    assert config.database_path("shop") == tmp_path / "store" / "shop.duckdb"
    assert (config.host, config.port) == ("0.0.0.0", 9000)
    assert config.databases["shop"].token == "from-env"
    assert config.databases["blog"].token == "abc"
    assert config.allow_unsigned is False


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        ({}, "databases", "required"),
        ({"databases": {}}, "databases", "non-empty"),
        ({"databases": {"bad name": {"token": "t"}}}, "databases.bad name", "must match"),
        ({"databases": {"d": {}}}, "databases.d.token", "must be a string"),
        ({"databases": {"d": {"token": ""}}}, "databases.d.token", "must not be empty"),
        ({"databases": {"d": {"token": "t", "colour": 1}}}, "databases.d.colour", "unknown key"),
        ({"databases": {"d": {"token_env": "REQO_UNSET_VAR"}}}, "token_env", "unset"),
        ({"databases": {"d": {"token": "t"}}, "dta_dir": "x"}, "dta_dir", "unknown key"),
        ({"databases": {"d": {"token": "t"}}, "allow_unsigned": "yes"}, "allow_unsigned", "true"),
        ({"databases": {"d": {"token": "t"}}, "server": {"port": 70000}}, "server.port", "port"),
        (
            {"databases": {"d": {"token": "t"}}, "server": {"tls": {"certfile": "c"}}},
            "server.tls.keyfile",
            "string",
        ),
    ],
)
def test_invalid_settings(data: dict[str, Any], key: str, problem: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="reqo.yaml", base_dir=tmp_path)
    message = str(caught.value)
    assert message.startswith("reqo.yaml: ")
    assert key in message
    assert problem in message


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "databases: [unclosed"))


def test_the_cli_reports_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "databases: {}\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "databases" in capsys.readouterr().err
    unsigned = write(tmp_path, "allow_unsigned: true\ndatabases: {d: {token: t}}\n")
    assert main(["serve", "--config", str(unsigned), "--host", "0.0.0.0"]) == 2
    assert "local development only" in capsys.readouterr().err


def test_models_scenarios_plugins_and_schedule(tmp_path: Path) -> None:
    data = {
        "databases": {"shop": {"token": "t"}},
        "plugins": ["some_module", "./local/plugin.py"],
        "train_every": "90m",
        "models": {"knn": {"algorithm": "item-knn", "params": {"neighbours": 5}}},
        "scenarios": {
            "home": {"endpoint": "items-to-user", "logic": "recombee:popular", "diversity": 0.5},
            "related": {"endpoint": "items-to-item", "model": "knn", "filter": "'in_stock'"},
        },
    }
    config = parse_config(data, source="x.yaml", base_dir=tmp_path)
    assert config.plugins == ("some_module", str(tmp_path / "local/plugin.py"))
    assert config.train_every == 90 * 60
    assert set(config.models) == {
        "knn",
        "popularity",
        "item-knn",
        "recently-viewed",
        "visually-similar",
    }
    assert config.scenarios["home"].model == "popularity"
    assert config.scenarios["home"].diversity == 0.5
    assert config.scenarios["related"].filter == "'in_stock'"


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ({"models": {"m": {"params": {}}}}, "models.m.algorithm", "required"),
        ({"models": {"m": {"algorithm": "x", "nope": 1}}}, "models.m.nope", "unknown key"),
        ({"scenarios": {"s": {"endpoint": "items-to-nowhere"}}}, "scenarios.s.endpoint", "one of"),
        ({"scenarios": {"s": {"model": "missing"}}}, "scenarios.s.model", "unknown model"),
        ({"scenarios": {"s": {"diversity": 2}}}, "scenarios.s.diversity", "from 0 to 1"),
        ({"scenarios": {"s": {"min_relevance": "max"}}}, "scenarios.s.min_relevance", "one of"),
        ({"scenarios": {"s": {"model": "popularity", "logic": "x"}}}, "scenarios.s", "either"),
        ({"train_every": "soon"}, "train_every", "duration"),
        ({"plugins": "one"}, "plugins", "list"),
    ],
)
def test_bad_models_and_scenarios(
    tmp_path: Path, extra: dict[str, Any], key: str, problem: str
) -> None:
    data = {"databases": {"shop": {"token": "t"}}, **extra}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="x.yaml", base_dir=tmp_path)
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_an_unknown_algorithm_stops_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "databases: {shop: {token: t}}\nmodels: {m: {algorithm: no-such-algorithm}}\n",
    )
    assert main(["plugins", "--config", str(path)]) == 2
    error = capsys.readouterr().err
    assert "models.m.algorithm" in error
    assert "unknown algorithm 'no-such-algorithm'" in error
    path = write(
        tmp_path,
        "databases: {shop: {token: t}}\n"
        "models: {m: {algorithm: item-knn, params: {neighbours: 0}}}\n",
    )
    assert main(["plugins", "--config", str(path)]) == 2
    assert "models.m.params.neighbours" in capsys.readouterr().err


def test_the_demo_configuration_is_valid() -> None:
    """The repository's reqo.yaml, which `make serve` uses, passes start-up validation against
    the built-in algorithms."""
    from plugins.manager import collect, get_plugin_manager
    from server.scenarios import parse_models

    config = load_config(Path(__file__).resolve().parents[2] / "reqo.yaml")
    assert "demo" in config.databases
    algorithms = collect(get_plugin_manager()).algorithms
    models = parse_models(
        {name: {"algorithm": m.algorithm} for name, m in config.models.items()}, algorithms
    )
    assert models["ease"].algorithm == "ease"
    assert config.scenarios["homepage"].model == "ease"


def test_the_fashion_demo_configuration_is_valid() -> None:
    """examples/fashion.yaml, which `make serve-fashion` uses, passes start-up validation, and its
    visual model's embedder is one the registry has, with valid settings."""
    from plugins.manager import collect, get_plugin_manager
    from server.models import check_models

    config = load_config(Path(__file__).resolve().parents[2] / "examples" / "fashion.yaml")
    registry = collect(get_plugin_manager())
    check_models(config, registry)
    params = config.models["visually-similar"].params
    embedder = registry.embedder(params["embedder"])(**params["embedder_settings"])
    assert embedder.trainable
    assert config.data_dir.name == "data"
    assert config.scenarios["no-bags"].model == "visually-similar"
