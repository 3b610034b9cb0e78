"""The arrows between reqo's packages point inward: the host (server/) builds on storage/,
plugins/ and reql/; plugins on storage/ and reql/; reql/ on nothing else of reqo. Within the
host, the roles meet only through data: a role's package does not import another role's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ALLOWED = {
    "reql": {"reql"},
    "storage": {"storage", "reql", "plugins"},
    "plugins": {"plugins", "reql", "storage"},
}
"""Which top-level packages each package may import."""

ROLES = ("server.writer", "server.serving", "server.training")
"""Packages of the roles; none imports another's (they talk through the writer's socket, its
change feed, snapshots and artifacts). Three modules are shared: the writer's commands (servers
apply the feed with them), the artifacts' format (the trainer writes it, servers load it) and the
scenarios' model definitions (part of the configuration)."""

SHARED_ROLE_MODULES = {
    "server.writer.commands",
    "server.training.artifacts",
    "server.serving.scenarios",
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_what_is_inward_of_it(package: str) -> None:
    ours = {"reql", "storage", "plugins", "server", "tests", "bench"}
    wrong = []
    for path in (ROOT / package).rglob("*.py"):
        for name in imports(path):
            top = name.split(".")[0]
            if top in ours and top not in ALLOWED[package]:
                wrong.append(f"{module_name(path)} imports {name}")
    assert wrong == []


@pytest.mark.parametrize("role", ROLES)
def test_a_role_does_not_import_another_role(role: str) -> None:
    others = [r for r in ROLES if r != role]
    wrong = []
    for path in (ROOT / role.replace(".", "/")).rglob("*.py"):
        for name in imports(path):
            if name in SHARED_ROLE_MODULES:
                continue
            if any(name == other or name.startswith(other + ".") for other in others):
                wrong.append(f"{module_name(path)} imports {name}")
    assert wrong == []
