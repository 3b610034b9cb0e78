"""The logic catalogue: what a request's `logic` (a name, or `{name, settings}`) and a scenario's
`logic:` run.

The catalogue is the plugins' registered logics (`plugins.logic.Logic`; the built-in ones in
`plugins/builtin/logics.py`, registered through the same hook). A logic serves some endpoints,
runs a configured model, implies pipeline settings, and validates its `settings`. A model's name
is accepted as a logic too, as before: it runs that model, and takes no settings other than the
model's own parameters.

Scenarios are checked twice at start-up (and at each reload): the file alone (`parse_scenarios`,
against the built-in logics), then against the registry's logics and models (`check_logics`), so
that a plugin's logic can be named in YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from plugins.builtin.logics import LOGICS
from plugins.logic import LOGIC_ENDPOINTS, Logic, SettingError

if TYPE_CHECKING:
    from plugins.manager import Registry
    from server.config import Config
    from server.serving.scenarios import ModelConfig

BUILTIN_LOGICS: Mapping[str, Logic] = {logic.name: logic for logic in LOGICS}
"""The built-in logics by name (the registry has them too, with the plugins' ones)."""


class LogicProblem(ValueError):
    """A logic that cannot serve as given: `problem` says why (the caller names where)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True)
class LogicChoice:
    """A scenario's `logic:` as configured: a name and its settings as given."""

    name: str
    settings: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class LogicRun:
    """What a request with a logic runs: a model, and the pipeline settings the logic implies
    (None: the scenario's or the request's own)."""

    model: str
    exclude_interacted: bool | None = None
    filter: str | None = None
    booster: str | None = None
    source: str | None = None
    settings: tuple[tuple[str, Any], ...] = ()
    """The logic's validated settings (defaults filled in; lists as tuples), for `source`."""


def read_logic(value: object) -> LogicChoice:
    """A `logic` value's name and settings: a name, or an object `{name, settings}`."""
    if isinstance(value, str):
        return LogicChoice(value)
    if not isinstance(value, Mapping):
        raise LogicProblem(f"must be a logic name or an object with a name, not {value!r}")
    unknown = [str(key) for key in value if key not in ("name", "settings")]
    if unknown:
        raise LogicProblem(f"has an unknown key '{unknown[0]}' (expected name, settings)")
    name, settings = value.get("name"), value.get("settings")
    if not isinstance(name, str):
        raise LogicProblem(f"must have a name (the name of a logic or model), not {name!r}")
    if settings is not None and not isinstance(settings, Mapping):
        raise LogicProblem("settings must be an object of setting -> value")
    return LogicChoice(name, dict(settings) if settings is not None else None)


def resolve_logic(
    choice: LogicChoice,
    endpoint: str,
    models: Mapping[str, ModelConfig],
    logics: Mapping[str, Logic] | None = None,
) -> LogicRun:
    """What `choice` runs on `endpoint`; LogicProblem where the logic is unknown, does not
    serve the endpoint, or a setting is wrong (naming it)."""
    catalogue = BUILTIN_LOGICS if logics is None else logics
    logic = catalogue.get(choice.name)
    if logic is None:
        return _model_as_logic(choice, models, catalogue)
    # Endpoints no logic lists (the segment endpoints) run the logic's model, not its ranking.
    served = endpoint in logic.endpoints
    if not served and endpoint in LOGIC_ENDPOINTS:
        raise LogicProblem(
            f"logic '{logic.name}' does not serve {endpoint} (it serves "
            f"{', '.join(logic.endpoints)})"
        )
    if logic.model not in models:
        raise LogicProblem(
            f"logic '{logic.name}' runs model '{logic.model}', which is not configured"
        )
    try:
        values = logic.validate(choice.settings)
        plan = logic.planned(values)
    except SettingError as error:
        raise LogicProblem(f"{error} (logic '{logic.name}')") from None
    return LogicRun(
        model=logic.model,
        exclude_interacted=plan.exclude_interacted,
        filter=plan.filter,
        booster=plan.booster,
        source=plan.source if served else None,
        settings=tuple(
            (name, tuple(value) if isinstance(value, list) else value)
            for name, value in values.items()
        ),
    )


def _model_as_logic(
    choice: LogicChoice, models: Mapping[str, ModelConfig], catalogue: Mapping[str, Logic]
) -> LogicRun:
    """A configured model named as a logic: its parameters are its only settings."""
    model = models.get(choice.name)
    if model is None:
        known = ", ".join([*sorted(models), *sorted(catalogue)])
        raise LogicProblem(f"unknown model or logic '{choice.name}' (known: {known})")
    if choice.settings and dict(choice.settings) != dict(model.params):
        raise LogicProblem(
            f"settings differ from model '{model.name}''s parameters: a model takes none of its "
            "own (configure a model with them), a logic takes its settings"
        )
    return LogicRun(model=model.name)


def check_logics(config: Config, registry: Registry) -> None:
    """At start-up and each reload: every registered logic runs a configured model, and every
    scenario's `logic:` is one the registry has (or a model), serves the scenario's endpoint
    and has valid settings. ConfigError names the key and the problem."""
    from server.config import ConfigError  # server.config builds on the scenarios
    from server.serving.scenarios import LOGIC_ENDPOINT

    for name, logic in registry.logics.items():
        if logic.model not in config.models:
            plugin = next((p.name for p in registry.plugins if name in p.logics), "?")
            raise ConfigError(
                config.source,
                "plugins",
                f"logic '{name}' (plugin {plugin}) runs model '{logic.model}', which the "
                "configuration does not define: add it under models",
            )
    for scenario_name, scenario in config.scenarios.items():
        choice = getattr(scenario, "logic", None)
        if choice is None:
            continue
        try:
            # A segment endpoint takes the logics of the item endpoint scoring its items.
            endpoint = LOGIC_ENDPOINT.get(scenario.endpoint, scenario.endpoint)
            resolve_logic(choice, endpoint, config.models, registry.logics)
        except LogicProblem as error:
            raise ConfigError(
                config.source, f"scenarios.{scenario_name}.logic", error.problem
            ) from None


def logic_model(name: str, logics: Mapping[str, Logic] | None = None) -> str | None:
    """The model a logic name runs, or None where it names no logic."""
    logic = (BUILTIN_LOGICS if logics is None else logics).get(name)
    return logic.model if logic is not None else None
