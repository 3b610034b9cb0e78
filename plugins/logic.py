"""Logics: the names that a recommendation request's `logic` (Recombee's parameter) and a
scenario's `logic:` pick, each a description of what reqo runs for it.

A logic names the model it runs (a configured model), the endpoints it serves, the pipeline
settings it implies (whether the user's own items are excluded, a ReQL filter or booster), a
ranking of the host's that replaces the model's scores (`source`), and the `settings` a request
may give it, each validated. Plugins register logics with the `register_logics` hook; the
built-in ones (`plugins/builtin/logics.py`) come through the same hook.

This module is part of the plugin contract, so it imports nothing of the host.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

LOGIC_ENDPOINTS = (
    "items-to-user",
    "items-to-item",
    "users-to-item",
    "users-to-user",
    "items-to-image",
    "search-items",
)
"""The endpoints a logic may serve (reqo's names of Recombee's recommendation endpoints)."""

SOURCES = ("popular", "recently-viewed", "continue-watching", "watch-next", "editorial-picks")
"""The host's rankings that a logic may use instead of its model's scores (README, "Logics")."""

_KINDS = (int, float, bool, str, list)


class SettingError(ValueError):
    """A logic's setting that a request or scenario gives wrongly: `setting` names it (or
    is empty for the settings as a whole), `problem` says what is wrong."""

    def __init__(self, setting: str, problem: str) -> None:
        where = f"settings.{setting}" if setting else "settings"
        super().__init__(f"{where} {problem}")
        self.setting = setting
        self.problem = problem


@dataclass(frozen=True)
class Setting:
    """One setting of a logic: `kind` is the JSON type of its value (int, float, bool, str or
    list); `minimum`, `maximum` and `choices` bound it (for a list, `choices` bounds each
    element, and `element` is the elements' type); a `default` of None means "not given"."""

    name: str
    kind: type
    default: Any = None
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    element: type = str
    required: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(
                f"setting {self.name}: kind must be one of int, float, bool, str, list"
            )

    def validate(self, value: Any) -> Any:
        """The value, converted where harmless (an int for a float); SettingError otherwise."""
        number: Any
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            raise SettingError(self.name, f"must be {_KIND_NAMES[self.kind]}, not {value!r}")
        number = value
        if self.kind is list:
            for element in number:
                if not isinstance(element, self.element) or isinstance(element, bool):
                    raise SettingError(
                        self.name,
                        f"must be a list of {_ELEMENT_NAMES.get(self.element, 'value')}s, "
                        f"not one holding {element!r}",
                    )
                self._choose(element)
            return list(number)
        if self.minimum is not None and number < self.minimum:
            raise SettingError(self.name, f"must be >= {self.minimum:g}, not {value!r}")
        if self.maximum is not None and number > self.maximum:
            raise SettingError(self.name, f"must be <= {self.maximum:g}, not {value!r}")
        self._choose(value)
        return value

    def _choose(self, value: Any) -> None:
        if self.choices and value not in self.choices:
            listed = ", ".join(str(c) for c in self.choices)
            raise SettingError(self.name, f"must be one of {listed}, not {value!r}")


_KIND_NAMES = {
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    str: "a string",
    list: "a list",
}
_ELEMENT_NAMES = {int: "whole number", float: "number", str: "string"}


@dataclass(frozen=True)
class LogicPlan:
    """What a logic's validated settings change for one request (None: the logic's own)."""

    exclude_interacted: bool | None = None
    filter: str | None = None
    booster: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Logic:
    """A `logic` name and what reqo runs for it.

    `model` is a configured model (README, "Scenarios and models"); `exclude_interacted` (None:
    the scenario's), `filter` and `booster` (ReQL, combined with the request's) are the pipeline
    settings it implies; `source` names a host ranking that replaces the model's scores (one of
    `SOURCES`, which read the settings of the same names, README "Logics"); `plan`, given the
    validated settings, may change those per request (and raise `SettingError`)."""

    name: str
    endpoints: tuple[str, ...]
    model: str
    description: str = ""
    settings: tuple[Setting, ...] = ()
    exclude_interacted: bool | None = None
    filter: str | None = None
    booster: str | None = None
    source: str | None = None
    plan: Callable[[Mapping[str, Any]], LogicPlan] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a logic's name must be a non-empty string")
        unknown = [e for e in self.endpoints if e not in LOGIC_ENDPOINTS]
        if not self.endpoints or unknown:
            raise ValueError(
                f"logic {self.name}: endpoints must be some of {', '.join(LOGIC_ENDPOINTS)}"
            )
        if self.source is not None and self.source not in SOURCES:
            raise ValueError(f"logic {self.name}: source must be one of {', '.join(SOURCES)}")
        names = [s.name for s in self.settings]
        if len(set(names)) != len(names):
            raise ValueError(f"logic {self.name}: a setting is listed twice")

    def validate(self, settings: Mapping[str, Any] | None) -> dict[str, Any]:
        """Every setting's value (the defaults filled in) after checking the given ones and the
        plan; SettingError names the first that is wrong, or one the logic does not have."""
        given = dict(settings or {})
        known = {s.name: s for s in self.settings}
        for name in given:
            if name not in known:
                listed = ", ".join(known) or "none"
                raise SettingError(
                    str(name), f"is not a setting of logic '{self.name}' (its settings: {listed})"
                )
        values: dict[str, Any] = {}
        for setting in self.settings:
            value = given.get(setting.name)
            if value is None:
                if setting.required:
                    raise SettingError(setting.name, "is required")
                values[setting.name] = setting.default
            else:
                values[setting.name] = setting.validate(value)
        self.planned(values)
        return values

    def planned(self, values: Mapping[str, Any]) -> LogicPlan:
        """The pipeline settings for validated `values`: the logic's own, with `plan`'s over
        them."""
        own = LogicPlan(self.exclude_interacted, self.filter, self.booster, self.source)
        if self.plan is None:
            return own
        changed = self.plan(values)
        return LogicPlan(
            own.exclude_interacted
            if changed.exclude_interacted is None
            else changed.exclude_interacted,
            changed.filter if changed.filter is not None else own.filter,
            changed.booster if changed.booster is not None else own.booster,
            changed.source if changed.source is not None else own.source,
        )
