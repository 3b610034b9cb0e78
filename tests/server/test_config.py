"""Configuration files are validated with errors that name the file, the key and the problem."""

from __future__ import annotations

import errno
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from plugins.manager import PluginError, get_plugin_manager
from server.cli.main import main
from server.config import (
    Config,
    ConfigError,
    DatabaseConfig,
    Limits,
    load_config,
    parse_config,
)


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
            {"databases": {"d": {"token": "t"}}, "server": {"workers": 0}},
            "server.workers",
            "positive",
        ),
        (
            {"databases": {"d": {"token": "t"}}, "server": {"workers": "2"}},
            "server.workers",
            "positive",
        ),
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
        "default",
        "purchase-knn",
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
    from server.serving.scenarios import parse_models

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
    from server.serving.live_models import check_models

    config = load_config(Path(__file__).resolve().parents[2] / "examples" / "fashion.yaml")
    registry = collect(get_plugin_manager())
    check_models(config, registry)
    params = config.models["visually-similar"].params
    embedder = registry.embedder(params["embedder"])(**params["embedder_settings"])
    assert embedder.trainable
    assert config.data_dir.name == "data"
    assert config.scenarios["no-bags"].model == "visually-similar"


# -- files that are not UTF-8 -------------------------------------------------------------------


def test_a_file_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "reqo.yaml"
    path.write_bytes("databases: {d: {token: caf\u00e9}}\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (caught.value.source, caught.value.key) == (str(path), "(file)")
    assert "is not UTF-8 text" in caught.value.problem
    assert main(["serve", "--config", str(path)]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err


def test_an_overlay_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "o.yaml").write_bytes(b"train_every: \xff\xfe\n")
    path = write(tmp_path, "databases: {d: {token: t}}\noverlays: [o.yaml]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == "overlays[0]"
    assert f"{tmp_path / 'o.yaml'} is not UTF-8 text" in caught.value.problem


# -- data_dir -----------------------------------------------------------------------------------


def config_in(tmp_path: Path, **extra: Any) -> Config:
    return parse_config(
        {"databases": {"d": {"token": "t"}}, **extra}, source="reqo.yaml", base_dir=tmp_path
    )


def test_data_dir_is_created(tmp_path: Path) -> None:
    config = config_in(tmp_path, data_dir="a/b")
    config.check_data_dir()
    assert (tmp_path / "a" / "b").is_dir()
    config.check_data_dir()  # an existing directory is fine
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the write check leaves nothing


def test_a_data_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data").write_text("")
    with pytest.raises(ConfigError) as caught:
        config_in(tmp_path, data_dir="data").check_data_dir()
    assert caught.value.key == "data_dir"
    assert "is a file, not a directory" in caught.value.problem
    path = write(tmp_path, "data_dir: data\ndatabases: {d: {token: t}}\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "data_dir" in capsys.readouterr().err


def test_a_data_dir_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError) as caught:
        config_in(tmp_path, data_dir="file/data").check_data_dir()
    assert caught.value.key == "data_dir"
    assert "cannot be created: Not a directory" in caught.value.problem


def test_a_data_dir_that_is_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Permission bits do not bind root, so the check creates a file; refused, it fails (here
    by a stand-in, as the tests may run as root)."""

    def refused(**_: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refused)
    with pytest.raises(ConfigError) as caught:
        config_in(tmp_path, data_dir="data").check_data_dir()
    assert caught.value.key == "data_dir"
    assert caught.value.problem == f"{tmp_path / 'data'} is not writable: Permission denied"


# -- TLS files ----------------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> Path:
    """cert.pem and key.pem (a valid pair), other-key.pem (another certificate's key),
    encrypted-key.pem (key.pem under a passphrase) and junk.pem, in `tmp_path`."""
    ca = trustme.CA()
    issued, other = ca.issue_cert("localhost"), ca.issue_cert("localhost")
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    issued.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    other.private_key_pem.write_to_path(str(tmp_path / "other-key.pem"))
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), None)
    (tmp_path / "encrypted-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    (tmp_path / "junk.pem").write_text("not a PEM file\n")
    return tmp_path


def tls_config(directory: Path, certfile: str, keyfile: str) -> Config:
    return config_in(directory, server={"tls": {"certfile": certfile, "keyfile": keyfile}})


def test_valid_tls_files(tls_files: Path) -> None:
    tls_config(tls_files, "cert.pem", "key.pem").check_tls()
    config_in(tls_files).check_tls()  # no TLS, nothing to check


@pytest.mark.parametrize(
    ("certfile", "keyfile", "key", "problem"),
    [
        ("missing.pem", "key.pem", "certfile", "missing.pem does not exist"),
        ("cert.pem", "missing.pem", "keyfile", "missing.pem does not exist"),
        (".", "key.pem", "certfile", "is a directory, not a file"),
        ("junk.pem", "key.pem", "certfile", "junk.pem holds no PEM certificate"),
        ("key.pem", "key.pem", "certfile", "key.pem holds no PEM certificate"),
        ("cert.pem", "junk.pem", "keyfile", "junk.pem holds no usable PEM private key"),
        ("cert.pem", "cert.pem", "keyfile", "cert.pem holds no usable PEM private key"),
        ("cert.pem", "other-key.pem", "keyfile", "is not the private key of the certificate"),
        ("cert.pem", "encrypted-key.pem", "keyfile", "is encrypted with a passphrase"),
    ],
)
def test_unusable_tls_files(
    tls_files: Path, certfile: str, keyfile: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        tls_config(tls_files, certfile, keyfile).check_tls()
    assert caught.value.key == f"server.tls.{key}"
    assert problem in caught.value.problem


def test_serve_checks_the_tls_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path,
        "databases: {d: {token: t}}\nserver: {tls: {certfile: c.pem, keyfile: k.pem}}\n",
    )
    assert main(["serve", "--config", str(path)]) == 2
    error = capsys.readouterr().err
    assert "server.tls.certfile" in error
    assert "does not exist" in error


# -- the address to listen on -------------------------------------------------------------------


def test_the_host_must_resolve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = config_in(tmp_path)
    config.check_address("localhost", 8000)
    config.check_address("127.0.0.1", 0)
    with pytest.raises(ConfigError) as caught:
        config.check_address("no-such-host.invalid", 8000)
    assert caught.value.key == "server.host"
    assert "'no-such-host.invalid' cannot be resolved" in caught.value.problem
    with pytest.raises(ConfigError, match=r"server\.host: 'a\.\.b' cannot be resolved"):
        config.check_address("a..b", 8000)  # IDNA refuses an empty label
    path = write(tmp_path, "databases: {d: {token: t}}\nserver: {host: no-such-host.invalid}\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "server.host" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # refused before anything was created


def test_a_port_from_the_command_line_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "databases: {d: {token: t}}\n")
    assert main(["serve", "--config", str(path), "--port", "70000"]) == 2
    assert "server.port: must be a port number, got 70000" in capsys.readouterr().err


# -- plugins that implement no hook -------------------------------------------------------------


def test_a_plugin_module_without_hooks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(PluginError) as caught:
        get_plugin_manager(["os"])
    assert str(caught.value) == (
        "module 'os' implements no reqo hook (register_algorithms, register_reql_functions, "
        "register_embedders, register_logics, startup, shutdown)"
    )
    path = write(tmp_path, "databases: {d: {token: t}}\nplugins: [os]\n")
    assert main(["plugins", "--config", str(path)]) == 2
    assert "reqo.yaml: plugins: module 'os' implements no reqo hook" in capsys.readouterr().err


def test_a_plugin_file_with_a_misspelt_hook(tmp_path: Path) -> None:
    path = tmp_path / "reqo_test_plugin_typo.py"
    path.write_text(
        "from plugins.hookspecs import hookimpl\n\n"
        "@hookimpl\ndef startup(config):\n    pass\n\n"
        "@hookimpl\ndef register_algorithm():\n    return []\n"
    )
    with pytest.raises(PluginError, match=r"register_algorithm is marked @hookimpl but"):
        get_plugin_manager([str(path)])
    path.write_text("def register_algorithms():\n    return []\n")  # not marked
    with pytest.raises(PluginError, match=f"plugin file {path} implements no reqo hook"):
        get_plugin_manager([str(path)])


# -- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (1.0e-9, "must be at least 1 s, not 1e-09 s"),
        (0.5, "at least 1 s"),
        ("0.5s", "at least 1 s"),
        (0, "must be a duration"),
        (-5, "must be a duration"),
        (math.nan, "must be a duration"),
        (math.inf, "must be a duration"),
        ("9" * 400, "must be a duration"),  # inf as a float
        (True, "must be a duration"),
        ("1e3", "must be a duration"),
    ],
)
def test_train_every_is_refused(tmp_path: Path, value: object, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_in(tmp_path, train_every=value)
    assert caught.value.key == "train_every"
    assert problem in caught.value.problem


def test_train_every_from_yaml(tmp_path: Path) -> None:
    assert config_in(tmp_path, train_every=1).train_every == 1.0  # the test servers' period
    assert config_in(tmp_path, train_every="1.5h").train_every == 5400.0
    for text in ("1.0e-9", ".nan", ".inf", "true"):
        with pytest.raises(ConfigError, match="train_every"):
            load_config(write(tmp_path, f"databases: {{d: {{token: t}}}}\ntrain_every: {text}\n"))


# -- admin_token --------------------------------------------------------------------------------

ADMIN = "an-admin-secret-of-32-characters"


def test_an_admin_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_in(tmp_path).admin_token is None
    assert config_in(tmp_path, admin_token=ADMIN).admin_token == ADMIN
    monkeypatch.setenv("REQO_TEST_ADMIN", ADMIN)
    assert config_in(tmp_path, admin_token_env="REQO_TEST_ADMIN").admin_token == ADMIN


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ({"admin_token": ADMIN, "admin_token_env": "X"}, "admin_token", "not both"),
        ({"admin_token_env": "REQO_UNSET_VAR"}, "admin_token_env", "REQO_UNSET_VAR is unset"),
        ({"admin_token_env": "REQO_TEST_EMPTY"}, "admin_token_env", "is unset or empty"),
        ({"admin_token_env": 3}, "admin_token_env", "must be a string"),
        ({"admin_token": 1234567890123456789}, "admin_token", "must be a string"),
        ({"admin_token": None}, "admin_token", "must be a string"),
        ({"admin_token": ""}, "admin_token", "must not be empty"),
        ({"admin_token": "short-secret"}, "admin_token", "too short to be secret"),
        ({"admin_token": "a-database-token-too"}, "admin_token", "token of database 'd'"),
        ({"admin_token_env": "REQO_TEST_DB_TOKEN"}, "admin_token_env", "database 'd'"),
    ],
)
def test_bad_admin_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], key: str, problem: str
) -> None:
    monkeypatch.setenv("REQO_TEST_EMPTY", "")
    monkeypatch.setenv("REQO_TEST_DB_TOKEN", "a-database-token-too")
    data = {"databases": {"d": {"token": "a-database-token-too"}}, **extra}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="reqo.yaml", base_dir=tmp_path)
    assert caught.value.key == key
    assert problem in caught.value.problem


# -- signatures ---------------------------------------------------------------------------------


def test_signatures_per_database(tmp_path: Path) -> None:
    config = parse_config(
        {
            "databases": {
                "plain": {"token": "t"},
                "recombee": {"token": "t", "signatures": "recombee"},
                "strict": {"token": "t", "signatures": "strict"},
            }
        },
        source="reqo.yaml",
        base_dir=tmp_path,
    )
    assert [d.strict_signatures for d in config.databases.values()] == [False, False, True]
    assert DatabaseConfig("d", "t") == DatabaseConfig("d", "t", strict_signatures=False)


@pytest.mark.parametrize("value", ["STRICT", "hmac", True, None, ["strict"]])
def test_unknown_signatures(tmp_path: Path, value: object) -> None:
    data = {"databases": {"d": {"token": "t", "signatures": value}}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="reqo.yaml", base_dir=tmp_path)
    assert caught.value.key == "databases.d.signatures"
    assert "must be recombee" in caught.value.problem


# -- limits -------------------------------------------------------------------------------------


def test_limits(tmp_path: Path) -> None:
    assert config_in(tmp_path).limits == Limits(max_queued=256, query_timeout=2.0, retry_after=1)
    assert config_in(tmp_path, limits=None).limits == Limits()
    assert config_in(tmp_path, limits={"query_timeout": "1m"}).limits == Limits(query_timeout=60)
    limits = {"max_queued": 8, "query_timeout": 0.25, "retry_after": 5}
    assert config_in(tmp_path, limits=limits).limits == Limits(8, 0.25, 5)
    assert config_in(tmp_path, limits={"query_timeout": 600}).limits.query_timeout == 600.0


@pytest.mark.parametrize(
    ("limits", "key", "problem"),
    [
        ([1], "limits", "must be a mapping"),
        ({"max_queue": 3}, "limits.max_queue", "unknown key"),
        ({"max_queued": 0}, "limits.max_queued", "positive integer"),
        ({"max_queued": True}, "limits.max_queued", "positive integer"),
        ({"max_queued": 2.5}, "limits.max_queued", "positive integer"),
        ({"max_queued": None}, "limits.max_queued", "positive integer"),
        ({"retry_after": 0}, "limits.retry_after", "positive integer"),
        ({"retry_after": "1s"}, "limits.retry_after", "positive integer"),
        ({"query_timeout": 0}, "limits.query_timeout", "must be a duration"),
        ({"query_timeout": math.nan}, "limits.query_timeout", "must be a duration"),
        ({"query_timeout": False}, "limits.query_timeout", "must be a duration"),
        ({"query_timeout": None}, "limits.query_timeout", "must be a duration"),
        ({"query_timeout": 601}, "limits.query_timeout", "must be at most 600 s, not 601 s"),
        ({"query_timeout": "1h"}, "limits.query_timeout", "at most 600 s"),
    ],
)
def test_bad_limits(tmp_path: Path, limits: object, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_in(tmp_path, limits=limits)
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_new_keys_in_an_overlay(tmp_path: Path) -> None:
    """The new top-level keys are known to overlays too, and `limits` merges key by key."""
    (tmp_path / "o.yaml").write_text("limits: {retry_after: 7}\nadmin_token: " + ADMIN + "\n")
    path = write(
        tmp_path, "databases: {d: {token: t}}\nlimits: {max_queued: 9}\noverlays: [o.yaml]\n"
    )
    config = load_config(path)
    assert config.limits == Limits(max_queued=9, retry_after=7)
    assert config.admin_token == ADMIN


# -- client-side access -------------------------------------------------------------------------


def test_a_public_token_and_cors_origins(tmp_path: Path) -> None:
    config = parse_config(
        {
            "databases": {
                "shop": {"token": "private-token-0123456789", "public_token": "p" * 16},
                "blog": {"token": "t"},
            },
            "server": {"cors": {"origins": ["https://shop.example", "http://localhost:3000"]}},
        },
        source="reqo.yaml",
        base_dir=tmp_path,
    )
    assert config.databases["shop"].public_token == "p" * 16
    assert config.databases["blog"].public_token is None
    assert config.cors_origins == ("https://shop.example", "http://localhost:3000")
    plain = parse_config({"databases": {"d": {"token": "t"}}}, source="r", base_dir=tmp_path)
    assert plain.cors_origins == ()


@pytest.mark.parametrize(
    ("settings", "key", "problem"),
    [
        ({"public_token": "short"}, "databases.d.public_token", "at least 16"),
        ({"public_token": 1234567890123456789}, "databases.d.public_token", "string"),
        ({"public_token": "private-token-0123456789"}, "databases.d.public_token", "differ"),
        ({"server": {"cors": ["https://a.example"]}}, "server.cors", "mapping"),
        ({"server": {"cors": {"origin": ["*"]}}}, "server.cors.origin", "not a setting"),
        ({"server": {"cors": {"origins": "*"}}}, "server.cors.origins", "list"),
        ({"server": {"cors": {"origins": ["https://a.example/shop"]}}}, "origins", "no path"),
        ({"server": {"cors": {"origins": ["shop.example"]}}}, "origins", "not an origin"),
    ],
)
def test_bad_client_side_settings(
    tmp_path: Path, settings: dict[str, Any], key: str, problem: str
) -> None:
    database: dict[str, Any] = {"token": "private-token-0123456789"}
    data: dict[str, Any] = {"databases": {"d": database}}
    for name, value in settings.items():
        if name == "server":
            data["server"] = value
        else:
            database[name] = value
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="reqo.yaml", base_dir=tmp_path)
    assert key in str(caught.value)
    assert problem in str(caught.value)
