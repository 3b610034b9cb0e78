"""README's plugin API reference is what `python -m plugins.reference` generates from the code,
and it covers every public member of the documented types."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

from plugins.reference import DOCUMENTED, api_reference

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- plugin-api-reference:start -->\n", "<!-- plugin-api-reference:end -->"


def test_the_readme_reference_is_the_generated_one() -> None:
    text = README.read_text()
    documented = text[text.index(START) + len(START) : text.index(END)]
    assert documented == api_reference(), "run python -m plugins.reference and paste its output"


def test_every_public_member_is_in_the_reference_with_a_docstring() -> None:
    reference = api_reference()
    for path, obj in DOCUMENTED:
        assert f"#### `{path}`" in reference
        assert inspect.getdoc(obj), f"{path} has no docstring"
        if not inspect.isclass(obj):
            continue
        fields = (
            {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()
        )
        for name, value in vars(obj).items():
            if name.startswith("_"):
                continue
            if inspect.isfunction(value) or isinstance(
                value, classmethod | staticmethod | property
            ):
                function = value.fget if isinstance(value, property) else value
                assert inspect.getdoc(function), f"{path}.{name} has no docstring"
                assert f"- `{name}" in reference, f"{path}.{name} is missing"
        for name in fields:
            assert f"- `{name}: " in reference, f"{path}.{name} is missing"
