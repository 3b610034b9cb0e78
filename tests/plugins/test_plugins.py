"""Plugins: discovery (entry points, module names, file paths), the registries' checks, every hook
exercised, the example plugin in examples/reqo-plugin-example, and the README's documentation of
the hooks.

Each hook of plugins/hookspecs.py has a test named `test_hook_<name>` somewhere under tests/ (in
the style of datasette's plugin tests): `test_every_hook_has_a_test` holds the project to that.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pluggy
import pyarrow as pa
import pytest
import scipy.sparse as sp

import reql
from plugins import hookspecs
from plugins.algorithm import Algorithm, ParameterError, UserHistory
from plugins.builtin.popularity import Popularity
from plugins.manager import PluginError, check_pending, collect, get_plugin_manager
from plugins.training import DEFAULT_WEIGHTS, TrainingData
from reql import types as t
from reql.functions import NUMBER, simple

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = "reqo-plugin-example"
EXAMPLE_PLUGIN = "example"  # the entry point's name in examples/reqo-plugin-example


@pytest.fixture(autouse=True)
def forget_plugin_modules() -> Iterator[None]:
    """Plugin files are imported as new modules; drop those a test added."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("reqo_plugin_reqo_test_plugin_", "reqo_test_plugin_")):
            del sys.modules[name]


def plugin_file(directory: Path, stem: str, body: str) -> str:
    """Write a plugin module (with the usual imports) and return its path."""
    header = (
        "from plugins.algorithm import Algorithm, Parameter, UserHistory\n"
        "from plugins.hookspecs import hookimpl\n"
        "from reql import types as t\n"
        "from reql.functions import NUMBER, simple\n\n"
    )
    path = directory / f"{stem}.py"
    path.write_text(header + textwrap.dedent(body))
    return str(path)


def algorithm_named(name: str) -> str:
    """A plugin body that registers a (trivial) algorithm called `name`."""
    return f"""
        class Trivial(Algorithm):
            name = {name!r}

            def fit(self, data): self.n_items = data.n_items
            def user_scores(self, histories): ...
            def state(self): return {{}}
            def restore(self, arrays): return None

        @hookimpl
        def register_algorithms():
            return [Trivial]
    """


# -- the example plugin, found through its entry point ------------------------------------------


def test_hook_register_algorithms() -> None:
    """The example plugin is installed (make install) and found through the group "reqo"."""
    entry_points = importlib.metadata.entry_points(group="reqo")
    assert [ep.value for ep in entry_points if ep.name == EXAMPLE_PLUGIN] == ["reqo_plugin_example"]
    registry = collect(get_plugin_manager())
    info = {plugin.name: plugin for plugin in registry.plugins}[EXAMPLE_PLUGIN]
    assert info.version == importlib.metadata.version(EXAMPLE) == "0.1.0"
    assert info.algorithms == ("co-occurrence",)
    assert info.to_json()["version"] == "0.1.0"
    algorithm = registry.algorithm("co-occurrence")
    assert issubclass(algorithm, Algorithm)
    assert algorithm.__module__.startswith("reqo_plugin_example.")
    # The built-ins come through the same hook, and have no distribution version.
    builtin = {plugin.name: plugin for plugin in registry.plugins}["plugins.builtin.popularity"]
    assert builtin.algorithms == ("popularity",)
    assert builtin.version is None


def test_hook_register_reql_functions(tmp_path: Path) -> None:
    """The example's clamp() compiles with the registry's functions and runs in a filter over
    a real DuckDB file; without the plugin's functions it is an unknown function."""
    registry = collect(get_plugin_manager())
    info = {plugin.name: plugin for plugin in registry.plugins}[EXAMPLE_PLUGIN]
    assert info.reql_functions == ("clamp",)
    assert registry.functions["clamp"].description
    assert "upper" in registry.functions  # the built-ins are there too

    catalog = reql.Catalog(
        items=reql.EntityTable(
            "item",
            "items",
            "$id",
            "$idx",
            "itemId",
            (reql.Column("price", t.DOUBLE), reql.Column("year", t.INT)),
        ),
        users=reql.EntityTable("user", "users", "$id", "$idx", "userId"),
    )
    conn = duckdb.connect(str(tmp_path / "items.duckdb"))
    conn.execute('CREATE TABLE items ("$idx" BIGINT, "$id" VARCHAR, price DOUBLE, year BIGINT)')
    conn.execute(
        "INSERT INTO items VALUES (0, 'cheap', 5, 1990), (1, 'mid', 50, 2010), "
        "(2, 'dear', 500, 2030), (3, 'unpriced', NULL, NULL)"
    )

    def passing(text: str) -> list[str]:
        compiled = reql.compile_expression(
            text, reql.Purpose.FILTER, catalog=catalog, functions=registry.functions
        )
        sql = f'SELECT c."$id" FROM items AS c WHERE {compiled.sql} ORDER BY c."$idx"'
        return [row[0] for row in conn.execute(sql, compiled.bind()).fetchall()]

    assert passing("clamp('price', 10, 100) == 10") == ["cheap"]
    assert passing("clamp('price', 10, 100) == 100") == ["dear"]
    assert passing("clamp('price', 10.5, 100) < 100") == ["cheap", "mid"]
    # A null argument gives null (DuckDB's greatest() alone would skip it), which a filter drops.
    assert passing("clamp('price', 0, 1000) >= 0") == ["cheap", "mid", "dear"]
    assert passing("clamp('price', 0, 1000) == null") == ["unpriced"]
    # Any argument may be a property; null == null holds in ReQL.
    assert passing("clamp(7, 'price', 1000) == 'price'") == ["mid", "dear", "unpriced"]
    # Three ints give an int.
    assert passing("clamp('year', 2000, 2020) == 2020 and 'year' > 2020") == ["dear"]
    compiled = reql.compile_expression(
        "clamp('year', 2000, 2020)",
        reql.Purpose.BOOSTER,
        catalog=catalog,
        functions=registry.functions,
    )
    assert compiled.type == t.INT
    conn.close()

    with pytest.raises(reql.ReqlTypeError, match=r"argument 1 of clamp\(\) needs a number"):
        reql.compile_expression(
            "clamp('itemId', 1, 2) > 1",
            reql.Purpose.FILTER,
            catalog=catalog,
            functions=registry.functions,
        )
    with pytest.raises(reql.ReqlError, match="clamp"):
        reql.compile_expression(
            "clamp('price', 1) > 1",
            reql.Purpose.FILTER,
            catalog=catalog,
            functions=registry.functions,
        )
    with pytest.raises(reql.ReqlNameError, match="unknown function 'clamp'"):
        reql.compile_expression("clamp('price', 1, 2) > 1", reql.Purpose.FILTER, catalog=catalog)


# -- the example's algorithm: what it computes --------------------------------------------------


def training_data(histories: list[list[int]], n_items: int) -> TrainingData:
    """TrainingData with one detail view per listed item, each user's in the given order."""
    users = np.asarray([u for u, items in enumerate(histories) for _ in items], dtype=np.int64)
    items = np.asarray([i for history in histories for i in history], dtype=np.int64)
    weights = np.ones(len(items), dtype=np.float32)
    indptr = np.zeros(len(histories) + 1, dtype=np.int64)
    np.cumsum([len(history) for history in histories], out=indptr[1:])
    matrix = sp.csr_matrix((weights, (users, items)), shape=(len(histories), n_items))
    return TrainingData(
        matrix=matrix,
        users=users,
        items=items,
        kinds=np.zeros(len(items), dtype=np.uint8),
        timestamps=np.arange(len(items), dtype=np.float64),
        weights=weights,
        indptr=indptr,
        item_ids=[f"i{i}" for i in range(n_items)],
        user_ids=[f"u{u}" for u in range(len(histories))],
        item_properties=pa.table({"$idx": list(range(n_items))}),
        kind_weights=DEFAULT_WEIGHTS,
    )


# u0 and u1 share 0 and 1 (u1 twice over, which counts once); 2 meets 0 and 1 in u0's history
# only, 2 interactions from 0 and next to 1; 3 meets 2 in u2's; item 4 is in no history.
HISTORIES = [[0, 1, 2], [1, 0, 1, 0], [2, 3]]


def co_occurrence(**settings: Any) -> Algorithm:
    model = collect(get_plugin_manager()).algorithm("co-occurrence")(**settings)
    model.fit(training_data(HISTORIES, 5))
    return model


def test_co_occurrence_counts_the_users_who_share_two_items() -> None:
    model = co_occurrence()
    np.testing.assert_array_equal(
        model.score_items([0, 1, 2, 3, 4], 5),
        np.asarray(
            [
                [0, 2, 1, 0, 0],
                [2, 0, 1, 0, 0],
                [1, 1, 0, 1, 0],
                [0, 0, 1, 0, 0],
                [0, 0, 0, 0, 0],
            ],
            dtype=np.float32,
        ),
    )
    # A history sums the rows of its distinct items; an item seen twice counts once.
    scores = model.score_users([UserHistory.of_items([0]), UserHistory.of_items([0, 3, 0])], 5)
    np.testing.assert_array_equal(scores, [[0, 2, 1, 0, 0], [0, 2, 2, 0, 0]])


def test_co_occurrence_window_and_min_users() -> None:
    # Next to each other only: u0 has (0, 1) and (1, 2) but not (0, 2); u1 (0, 1); u2 (2, 3).
    adjacent = co_occurrence(window=1).score_items([0, 1, 2, 3], 5)
    np.testing.assert_array_equal(
        adjacent,
        [[0, 2, 0, 0, 0], [2, 0, 1, 0, 0], [0, 1, 0, 1, 0], [0, 0, 1, 0, 0]],
    )
    # A window longer than every history is the same as anywhere in it.
    np.testing.assert_array_equal(
        co_occurrence(window=50).score_items([0, 1, 2, 3], 5),
        co_occurrence().score_items([0, 1, 2, 3], 5),
    )
    # min_users drops the pairs that only one user has.
    np.testing.assert_array_equal(
        co_occurrence(min_users=2).score_items([0, 1, 2], 5),
        [[0, 2, 0, 0, 0], [2, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
    )
    strict = collect(get_plugin_manager()).algorithm("co-occurrence")(window=1)
    strict.fit(training_data([[0, 5, 1], [0, 1]], 6))
    np.testing.assert_array_equal(strict.score_items([0], 6), [[0, 1, 0, 0, 0, 1]])


def test_co_occurrence_parameters_are_validated() -> None:
    algorithm = collect(get_plugin_manager()).algorithm("co-occurrence")
    assert algorithm(window=3).settings == {"window": 3, "min_users": 1}
    with pytest.raises(ParameterError, match="'window': -1 is below the minimum 0"):
        algorithm(window=-1)
    with pytest.raises(ParameterError, match="'window': must be int"):
        algorithm(window=1.5)
    with pytest.raises(ParameterError, match="'min_users': 0 is below the minimum 1"):
        algorithm(min_users=0)


def test_co_occurrence_without_interactions() -> None:
    algorithm = collect(get_plugin_manager()).algorithm("co-occurrence")
    for window in (0, 2):
        model = algorithm(window=window)
        model.fit(training_data([[], []], 3))
        assert not model.score_users([UserHistory.of_items([1])], 3).any()


# -- the other hooks ----------------------------------------------------------------------------


def plugin_events(manager: pluggy.PluginManager, name: str) -> list[Any]:
    plugin = manager.get_plugin(name)
    assert plugin is not None
    events: list[Any] = plugin.events
    return events


def test_hook_startup(tmp_path: Path) -> None:
    path = plugin_file(
        tmp_path,
        "reqo_test_plugin_lifecycle",
        """
        events = []

        @hookimpl
        def startup(config):
            events.append(("startup", config))
        """,
    )
    manager = get_plugin_manager([path])
    config = {"data_dir": "data"}
    manager.hook.startup(config=config)
    assert plugin_events(manager, path) == [("startup", config)]
    with pytest.raises(TypeError):
        manager.hook.startup(config)  # type: ignore[call-arg]  # keyword arguments only


def test_hook_shutdown(tmp_path: Path) -> None:
    path = plugin_file(
        tmp_path,
        "reqo_test_plugin_shutdown",
        """
        events = []

        @hookimpl
        def shutdown():
            events.append("shutdown")
        """,
    )
    manager = get_plugin_manager([path])
    manager.hook.shutdown()
    assert plugin_events(manager, path) == ["shutdown"]


# -- loading plugins from the configuration -----------------------------------------------------


def test_a_plugin_given_as_a_file_path(tmp_path: Path) -> None:
    path = plugin_file(tmp_path, "reqo_test_plugin_file", algorithm_named("from-a-file"))
    registry = collect(get_plugin_manager([path]))
    assert registry.algorithm("from-a-file").__name__ == "Trivial"
    info = {plugin.name: plugin for plugin in registry.plugins}[path]
    assert info.algorithms == ("from-a-file",)
    assert info.version is None
    assert "popularity" in registry.algorithms  # the built-ins stay


def test_a_plugin_given_as_a_module_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin_file(tmp_path, "reqo_test_plugin_module", algorithm_named("from-a-module"))
    monkeypatch.syspath_prepend(str(tmp_path))
    manager = get_plugin_manager(["reqo_test_plugin_module", "reqo_test_plugin_module"])
    registry = collect(manager)
    assert registry.algorithm("from-a-module").__module__ == "reqo_test_plugin_module"
    # Listed twice, registered once.
    names = [plugin.name for plugin in registry.plugins]
    assert names.count("reqo_test_plugin_module") == 1
    # An installed plugin that is also listed is not registered twice either.
    manager = get_plugin_manager(["reqo_plugin_example"])
    assert collect(manager).algorithm("co-occurrence").__module__.startswith("reqo_plugin_example")


def test_a_missing_plugin_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere" / "plugin.py")
    with pytest.raises(PluginError, match=f"plugin file {re.escape(missing)} does not exist"):
        get_plugin_manager([missing])
    with pytest.raises(PluginError, match="does not exist"):
        get_plugin_manager([str(tmp_path)])  # a directory is not a plugin file


def test_a_plugin_that_fails_to_import(tmp_path: Path) -> None:
    broken = plugin_file(tmp_path, "reqo_test_plugin_broken", "raise RuntimeError('no licence')\n")
    with pytest.raises(PluginError, match=f"plugin {re.escape(broken)} cannot be imported: no lic"):
        get_plugin_manager([broken])
    syntax = plugin_file(tmp_path, "reqo_test_plugin_syntax", "def (:\n")
    with pytest.raises(PluginError, match=r"reqo_test_plugin_syntax\.py cannot be imported"):
        get_plugin_manager([syntax])
    with pytest.raises(
        PluginError, match="plugin reqo_no_such_module cannot be imported: No module named"
    ):
        get_plugin_manager(["reqo_no_such_module"])


# -- what the registration hooks may return -----------------------------------------------------


class ReturnsAClass:
    @hookspecs.hookimpl
    def register_algorithms(self) -> Any:
        return Popularity  # not in a list


class ReturnsAString:
    @hookspecs.hookimpl
    def register_reql_functions(self) -> Any:
        return "clamp"


class ReturnsNotAnAlgorithm:
    @hookspecs.hookimpl
    def register_algorithms(self) -> Any:
        return [int]


class ReturnsNotAFunction:
    @hookspecs.hookimpl
    def register_reql_functions(self) -> Any:
        return [len]


class ReturnsNothing:
    @hookspecs.hookimpl
    def register_algorithms(self) -> Any:
        return None  # forgot the return: its algorithms would silently not exist


class Nameless(Algorithm):
    """An algorithm class whose author forgot `name`."""

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items

    def user_scores(self, histories: Any) -> Any:
        return np.zeros((len(histories), self.n_items))

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, arrays: Any) -> None:
        pass


class RegistersANamelessClass:
    @hookspecs.hookimpl
    def register_algorithms(self) -> Any:
        return [Nameless]


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (ReturnsAClass(), r"plugin bad: register_algorithms\(\) must return a list, not ABCMeta"),
        (ReturnsAString(), r"plugin bad: register_reql_functions\(\) must return a list, not str"),
        (ReturnsNotAnAlgorithm(), "plugin bad registers <class 'int'>, not an Algorithm class"),
        (ReturnsNotAFunction(), "plugin bad registers <built-in function len>, not a reql Func"),
        (ReturnsNothing(), r"plugin bad: register_algorithms\(\) must return a list, not NoneType"),
        (
            RegistersANamelessClass(),
            "plugin bad registers the algorithm class Nameless, which has no `name`",
        ),
    ],
)
def test_a_hook_that_returns_the_wrong_thing(plugin: object, message: str) -> None:
    manager = get_plugin_manager()
    manager.register(plugin, name="bad")
    with pytest.raises(PluginError, match=message):
        collect(manager)


def test_a_misspelt_hook_of_an_installed_plugin_is_refused_naming_it() -> None:
    class Misspelt:
        @hookspecs.hookimpl
        def register_algorithm(self) -> Any:  # register_algorithms
            return [Popularity]

    manager = get_plugin_manager()
    manager.register(Misspelt(), name="typo-plugin")
    with pytest.raises(PluginError, match=r"plugin typo-plugin: .*register_algorithm"):
        check_pending(manager)


# -- names registered twice ---------------------------------------------------------------------


def registered_twice(message: str, what: str, name: str, plugins: tuple[str, str]) -> bool:
    """The message of a name registered twice, naming both plugins (in either order)."""
    return any(
        message == f"the {what} '{name}' is registered twice: by plugin {a} and by plugin {b}"
        for a, b in (plugins, plugins[::-1])
    )


def test_an_algorithm_registered_by_two_plugins(tmp_path: Path) -> None:
    first = plugin_file(tmp_path, "reqo_test_plugin_first", algorithm_named("twin"))
    second = plugin_file(tmp_path, "reqo_test_plugin_second", algorithm_named("twin"))
    with pytest.raises(PluginError) as error:
        collect(get_plugin_manager([first, second]))
    assert registered_twice(str(error.value), "algorithm", "twin", (first, second)), error.value


def test_algorithm_names_equal_up_to_case_are_the_same_name(tmp_path: Path) -> None:
    path = plugin_file(tmp_path, "reqo_test_plugin_case", algorithm_named("Popularity"))
    with pytest.raises(PluginError) as error:
        collect(get_plugin_manager([path]))
    assert str(error.value) == (
        "the algorithm 'Popularity' is registered twice (as 'popularity'): by plugin "
        f"plugins.builtin.popularity and by plugin {path}"
    )


def test_a_builtin_name_registered_again(tmp_path: Path) -> None:
    path = plugin_file(tmp_path, "reqo_test_plugin_shadow", algorithm_named("popularity"))
    with pytest.raises(PluginError) as error:
        collect(get_plugin_manager([path]))
    builtin = "plugins.builtin.popularity"
    assert registered_twice(str(error.value), "algorithm", "popularity", (builtin, path))


def test_a_reql_function_registered_by_two_plugins(tmp_path: Path) -> None:
    # Function names are case-insensitive: CLAMP is the example plugin's clamp.
    path = plugin_file(
        tmp_path,
        "reqo_test_plugin_clamp",
        """
        @hookimpl
        def register_reql_functions():
            return [simple("CLAMP", [NUMBER, NUMBER, NUMBER], t.DOUBLE, "{0}")]
        """,
    )
    with pytest.raises(PluginError) as error:
        collect(get_plugin_manager([path]))
    plugins = (EXAMPLE_PLUGIN, path)
    assert registered_twice(str(error.value), "ReQL function", "clamp", plugins), error.value
    # The same between two objects registered on a manager directly, and for a built-in name.

    class Upper:
        @hookspecs.hookimpl
        def register_reql_functions(self) -> Any:
            return [simple("upper", [NUMBER], t.DOUBLE, "{0}")]

    manager = get_plugin_manager()
    manager.register(Upper(), name="shouting")
    with pytest.raises(PluginError) as error:
        collect(manager)
    plugins = ("plugins.builtin.reql_functions", "shouting")
    assert registered_twice(str(error.value), "ReQL function", "upper", plugins), error.value


# -- the README documents every hook, and every hook has a test ---------------------------------


def hookspec_functions() -> dict[str, Callable[..., Any]]:
    marker = f"{hookspecs.PROJECT}_spec"
    return {
        name: value
        for name, value in vars(hookspecs).items()
        if inspect.isfunction(value) and hasattr(value, marker)
    }


def _normal(annotation: str) -> str:
    return ast.unparse(ast.parse(annotation, mode="eval"))


def spec_signature(function: Callable[..., Any]) -> str:
    """`def name(arg: type, ...) -> type`, from inspect.signature (annotations are strings here,
    as hookspecs.py has `from __future__ import annotations`)."""
    signature = inspect.signature(function)

    def annotation(value: Any) -> str:
        return _normal(value if isinstance(value, str) else inspect.formatannotation(value))

    parameters = ", ".join(
        parameter.name
        if parameter.annotation is inspect.Parameter.empty
        else f"{parameter.name}: {annotation(parameter.annotation)}"
        for parameter in signature.parameters.values()
    )
    returns = signature.return_annotation
    arrow = "" if returns is inspect.Signature.empty else f" -> {annotation(returns)}"
    return f"def {function.__name__}({parameters}){arrow}"


def readme_section(text: str, title: str) -> str | None:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else None


def documented_signatures(section: str) -> dict[str, str]:
    """The functions defined in the section's python code blocks, as `def name(...) -> ...`."""
    found: dict[str, str] = {}
    for block in re.findall(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.FunctionDef):
                parameters = ", ".join(
                    f"{a.arg}: {ast.unparse(a.annotation)}" if a.annotation else a.arg
                    for a in node.args.args
                )
                arrow = f" -> {ast.unparse(node.returns)}" if node.returns else ""
                found[node.name] = f"def {node.name}({parameters}){arrow}"
    return found


def documentation_problems(readme: str, specs: dict[str, Callable[..., Any]]) -> list[str]:
    section = readme_section(readme, "Writing a plugin")
    if section is None:
        return ["README.md has no '## Writing a plugin' section"]
    documented = documented_signatures(section)
    problems = []
    for name, function in sorted(specs.items()):
        expected = spec_signature(function)
        if name not in documented:
            problems.append(f"hook {name} is not documented; expected `{expected}`")
        elif documented[name] != expected:
            problems.append(f"hook {name} is documented as `{documented[name]}`, not `{expected}`")
    return problems


def untested_hooks(tests: Path, specs: dict[str, Callable[..., Any]]) -> list[str]:
    sources = "\n".join(path.read_text() for path in sorted(tests.rglob("*.py")))
    return [name for name in sorted(specs) if f"def test_hook_{name}(" not in sources]


def test_every_hook_is_documented_with_its_signature() -> None:
    specs = hookspec_functions()
    assert set(specs) >= {"register_algorithms", "register_reql_functions", "startup", "shutdown"}
    assert spec_signature(specs["startup"]) == "def startup(config: Any) -> None"
    assert documentation_problems((ROOT / "README.md").read_text(), specs) == []


def test_every_hook_has_a_test() -> None:
    assert untested_hooks(ROOT / "tests", hookspec_functions()) == []


def test_the_documentation_check_finds_mistakes(tmp_path: Path) -> None:
    specs = hookspec_functions()
    good = (ROOT / "README.md").read_text()
    assert documentation_problems("# reqo\n\n## Layout\n", specs) == [
        "README.md has no '## Writing a plugin' section"
    ]
    wrong = good.replace("def startup(config: Any) -> None", "def startup(settings: Any) -> None")
    assert wrong != good
    assert documentation_problems(wrong, specs) == [
        "hook startup is documented as `def startup(settings: Any) -> None`, "
        "not `def startup(config: Any) -> None`"
    ]
    missing = good.replace("def shutdown() -> None", "def stop() -> None")
    assert documentation_problems(missing, specs) == [
        "hook shutdown is not documented; expected `def shutdown() -> None`"
    ]

    # A hook defined after the README was written, and not tested.
    def later(rows: list[int]) -> dict[str, int]:
        return {}

    assert documentation_problems(good, {**specs, "later": later}) == [
        "hook later is not documented; expected `def later(rows: list[int]) -> dict[str, int]`"
    ]
    (tmp_path / "test_x.py").write_text("def test_hook_startup():\n    pass\n")
    assert untested_hooks(tmp_path, specs) == [
        "register_algorithms",
        "register_embedders",
        "register_logics",
        "register_reql_functions",
        "shutdown",
    ]
