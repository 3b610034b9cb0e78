"""Models and scenarios from the YAML configuration.

```yaml
plugins: [my_plugin_module, ./path/to/plugin.py]
models:                       # trained per database; DEFAULT_MODELS exist unless redefined
  knn: {algorithm: item-knn, params: {neighbours: 50}, weights: {purchases: 5}}
scenarios:
  homepage:
    endpoint: items-to-user   # items-to-user | items-to-item | users-to-item | users-to-user
    model: knn                # or logic: recombee:personal, or {name: ..., settings: {...}}
    filter: "'in_stock'"
    booster: "if 'on_sale' then 1.5 else 1"
    diversity: 0.2            # 0..1
    rotation_rate: 0.1        # 0..1
    rotation_time: 7200       # seconds
    min_relevance: low        # low | medium | high
    exclude_interacted: true
    return_properties: false
    included_properties: [title]
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.serving.cold_start import ColdStart, ColdStartError, parse_cold_start
from server.serving.logics import (
    BUILTIN_LOGICS,
    LogicChoice,
    LogicProblem,
    logic_model,
    read_logic,
    resolve_logic,
)

if TYPE_CHECKING:
    from server.experiments.variants import Experiment

SEGMENT_SCENARIO_ENDPOINTS = (
    "items-to-item-segment",
    "item-segments-to-user",
    "item-segments-to-item",
    "item-segments-to-item-segment",
    "search-item-segments",
    "composite",
)
"""The endpoints whose scenarios name a `segmentation` (server/serving/segments.py)."""
ENDPOINTS = (
    "items-to-user",
    "items-to-item",
    "users-to-item",
    "users-to-user",
    "search-items",
    *SEGMENT_SCENARIO_ENDPOINTS,
)
LOGIC_ENDPOINT = {
    "items-to-item-segment": "items-to-item",
    "item-segments-to-user": "items-to-user",
    "item-segments-to-item": "items-to-item",
    "item-segments-to-item-segment": "items-to-item",
    "search-item-segments": "search-items",
    "composite": "items-to-user",
}
"""The item endpoint whose logics a segment endpoint takes: its items are scored as that
endpoint scores them (server/serving/segments.py)."""
COMPOSITE_PARTS = ("items", "item-segments")
"""What a composite scenario's `source` and `result` may be."""
MIN_RELEVANCE = ("low", "medium", "high")
RECOMBEE_ENDPOINTS = {
    "items-to-user": "recommendItemsToUser",
    "items-to-item": "recommendItemsToItem",
    "users-to-item": "recommendUsersToItem",
    "users-to-user": "recommendUsersToUser",
    "search-items": "searchItems",
    "items-to-item-segment": "recommendItemsToItemSegment",
    "item-segments-to-user": "recommendItemSegmentsToUser",
    "item-segments-to-item": "recommendItemSegmentsToItem",
    "item-segments-to-item-segment": "recommendItemSegmentsToItemSegment",
    "search-item-segments": "searchItemSegments",
    "composite": "compositeRecommendation",
}
DEFAULT_PERSONALISATION = 0.3
"""Search Items: the weight of the user's model against text relevance, unless configured."""

DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "popularity": {"algorithm": "popularity"},
    "item-knn": {"algorithm": "item-knn"},
    "recently-viewed": {"algorithm": "recently-viewed"},
    "visually-similar": {"algorithm": "visual-similarity"},
    # recombee:default and the homepages: collaborative, with popularity for what it cannot
    # score (the ensemble trains nothing of its own).
    "default": {
        "algorithm": "ensemble",
        "params": {"members": ["item-knn", "popularity"], "weights": {"popularity": 0.25}},
    },
    # ecommerce:cross-sell: complements, from what is bought together (views count nothing).
    "purchase-knn": {
        "algorithm": "item-knn",
        "weights": {
            "detail_views": 0,
            "view_portions": 0,
            "bookmarks": 0,
            "ratings": 0,
            "cart_additions": 1,
            "purchases": 1,
        },
    },
}
FALLBACK_MODEL = "popularity"
ENSEMBLE_ALGORITHM = "ensemble"
"""The algorithm whose models may take a scenario's `ensemble_weights`."""

_MODEL_KEYS = {"algorithm", "params", "weights"}
_SCENARIO_KEYS = {
    "endpoint",
    "model",
    "logic",
    "filter",
    "booster",
    "diversity",
    "rotation_rate",
    "rotation_time",
    "min_relevance",
    "exclude_interacted",
    "return_properties",
    "included_properties",
    "ensemble_weights",
    "variants",
    "allocation",
    "optimize_online",
    "personalisation",
    "search_fields",
    "search_mode",
    "text_embedder",
    "segmentation",
    "context_segmentation",
    "source",
    "result",
    "cold_start",
}
_SEARCH_KEYS = ("personalisation", "search_fields", "search_mode", "text_embedder")
SEARCH_MODES = ("full-text", "semantic", "hybrid")
DEFAULT_TEXT_EMBEDDER = "minilm"


class ScenarioError(ValueError):
    """A model or scenario definition that cannot be used: `key` names where, `problem` what."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class ModelConfig:
    """A named model: an algorithm, its parameters, and the interaction kind weights it learns
    from."""

    name: str
    algorithm: str
    params: Mapping[str, Any] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ScenarioConfig:
    """A placement's settings; a request's parameters override or combine with them."""

    name: str
    endpoint: str = "items-to-user"
    model: str | None = None
    filter: str | None = None
    booster: str | None = None
    diversity: float = 0.0
    rotation_rate: float = 0.0
    rotation_time: float = 7200.0
    min_relevance: str = "low"
    exclude_interacted: bool = True
    return_properties: bool = False
    included_properties: tuple[str, ...] | None = None
    ensemble_weights: Mapping[str, float] | None = None
    """Weights of the scenario's ensemble's members, over the model's own (by member name)."""
    experiment: Experiment | None = None
    """Variants that share the traffic (server/variants.py); `model` is then the first one's."""
    personalisation: float = DEFAULT_PERSONALISATION
    """Search Items: the weight of the user's model scores against text relevance (0: text
    relevance alone)."""
    search_fields: Mapping[str, float] | None = None
    """Search Items: the properties searched and their weights (None: every string and set
    property, alike)."""
    search_mode: str = "full-text"
    """Search Items: full-text, semantic (sentence embeddings), or hybrid (both, fused)."""
    text_embedder: str = DEFAULT_TEXT_EMBEDDER
    """Search Items: the text embedder of semantic and hybrid retrieval."""
    logic: LogicChoice | None = None
    """The scenario's `logic:` (its name and settings); `model` is the model it runs, or None
    for a plugin's logic, whose model the registry's catalogue gives (server.serving.logics)."""
    cold_start: ColdStart | None = None
    """How new users and new items are scored (server/serving/cold_start.py)."""
    segmentation: str | None = None
    """Segment endpoints and composites: the id of the segmentation whose segments they answer
    (Items to Item Segment: of the context segment); it is created over the API."""
    context_segmentation: str | None = None
    """Item Segments to Item Segment: the context segment's segmentation (None: `segmentation`)."""
    source: str = "item-segments"
    """Composite: what the source is, `item-segments` or `items`."""
    result: str = "items"
    """Composite: what the results are, `items` or `item-segments`."""

    def to_json(self) -> dict[str, Any]:
        """As Recombee's List Scenarios shows it (plus the model reqo serves it with)."""
        shown: dict[str, Any] = {
            "id": self.name,
            "endpoint": RECOMBEE_ENDPOINTS[self.endpoint],
            "model": self.model,
        }
        if self.experiment is not None:
            shown["experiment"] = self.experiment.to_json()
        if self.segmentation is not None:
            shown["segmentation"] = self.segmentation
        if self.context_segmentation is not None:
            shown["contextSegmentation"] = self.context_segmentation
        if self.endpoint == "composite":
            shown["composite"] = {"source": self.source, "result": self.result}
        return shown


def parse_models(
    value: object, known_algorithms: Mapping[str, Any] | None = None
) -> dict[str, ModelConfig]:
    """The default models, then the configured ones (which may redefine a default)."""
    raw: dict[str, Any] = dict(DEFAULT_MODELS)
    if value is not None:
        if not isinstance(value, Mapping):
            raise ScenarioError("models", "must be a mapping of name -> {algorithm, params}")
        raw.update(value)
    models = {}
    for name, settings in raw.items():
        key = f"models.{name}"
        if not isinstance(name, str) or not name:
            raise ScenarioError(key, "a model name must be a non-empty string")
        if not isinstance(settings, Mapping):
            raise ScenarioError(key, "must be a mapping with an algorithm")
        _check_keys(key, settings, _MODEL_KEYS)
        algorithm = settings.get("algorithm")
        if not isinstance(algorithm, str):
            raise ScenarioError(f"{key}.algorithm", "is required: the name of an algorithm")
        if known_algorithms is not None and algorithm not in known_algorithms:
            listed = ", ".join(sorted(known_algorithms))
            raise ScenarioError(f"{key}.algorithm", f"unknown algorithm '{algorithm}' ({listed})")
        params = settings.get("params") or {}
        weights = settings.get("weights") or {}
        if not isinstance(params, Mapping):
            raise ScenarioError(f"{key}.params", "must be a mapping")
        if not isinstance(weights, Mapping):
            raise ScenarioError(f"{key}.weights", "must be a mapping of interaction kind -> number")
        models[name] = ModelConfig(name, algorithm, dict(params), dict(weights))
    return models


def parse_scenarios(value: object, models: Mapping[str, ModelConfig]) -> dict[str, ScenarioConfig]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ScenarioError("scenarios", "must be a mapping of name -> settings")
    scenarios = {}
    for name, settings in value.items():
        key = f"scenarios.{name}"
        if not isinstance(name, str) or not name:
            raise ScenarioError(key, "a scenario name must be a non-empty string")
        settings = settings or {}
        if not isinstance(settings, Mapping):
            raise ScenarioError(key, "must be a mapping")
        _check_keys(key, settings, _SCENARIO_KEYS)
        endpoint = settings.get("endpoint", "items-to-user")
        if endpoint not in ENDPOINTS:
            raise ScenarioError(f"{key}.endpoint", f"must be one of {', '.join(ENDPOINTS)}")
        if "model" in settings and "logic" in settings:
            raise ScenarioError(key, "give either model or logic, not both")
        for search_key in _SEARCH_KEYS:
            if search_key in settings and endpoint not in ("search-items", "search-item-segments"):
                raise ScenarioError(
                    f"{key}.{search_key}", "is for endpoints search-items and search-item-segments"
                )
        # Imported here: server.experiments.variants builds on this module's ScenarioError and
        # models.
        from server.experiments.variants import parse_experiment

        experiment = parse_experiment(key, settings, models)
        model = settings.get("model")
        # A segment endpoint takes the logics of the item endpoint scoring its items.
        logic_endpoint = str(LOGIC_ENDPOINT.get(endpoint, endpoint))
        logic = _logic(f"{key}.logic", settings.get("logic"), logic_endpoint, models)
        if logic is not None:
            model = logic_model(logic.name) or (logic.name if logic.name in models else None)
        if experiment is not None:
            model = experiment.variants[0].model
        if model is not None and "model" in settings:
            model = resolve_model(model, models, f"{key}.model")
        scenarios[name] = ScenarioConfig(
            name=name,
            endpoint=endpoint,
            model=model,
            filter=_optional_text(f"{key}.filter", settings.get("filter")),
            booster=_optional_text(f"{key}.booster", settings.get("booster")),
            diversity=_fraction(f"{key}.diversity", settings.get("diversity", 0.0)),
            rotation_rate=_fraction(f"{key}.rotation_rate", settings.get("rotation_rate", 0.0)),
            rotation_time=_positive(f"{key}.rotation_time", settings.get("rotation_time", 7200)),
            min_relevance=_choice(
                f"{key}.min_relevance", settings.get("min_relevance", "low"), MIN_RELEVANCE
            ),
            exclude_interacted=_flag(
                f"{key}.exclude_interacted", settings.get("exclude_interacted", True)
            ),
            return_properties=_flag(
                f"{key}.return_properties", settings.get("return_properties", False)
            ),
            included_properties=_names(
                f"{key}.included_properties", settings.get("included_properties")
            ),
            ensemble_weights=_ensemble_weights(
                f"{key}.ensemble_weights", settings.get("ensemble_weights"), models.get(model or "")
            ),
            experiment=experiment,
            personalisation=_fraction(
                f"{key}.personalisation", settings.get("personalisation", DEFAULT_PERSONALISATION)
            ),
            search_fields=_field_weights(f"{key}.search_fields", settings.get("search_fields")),
            search_mode=_choice(
                f"{key}.search_mode", settings.get("search_mode", "full-text"), SEARCH_MODES
            ),
            text_embedder=_name(
                f"{key}.text_embedder", settings.get("text_embedder", DEFAULT_TEXT_EMBEDDER)
            ),
            logic=logic,
            cold_start=_cold_start(
                f"{key}.cold_start", settings.get("cold_start"), endpoint, models
            ),
            **_segment_settings(key, endpoint, settings),
        )
    return scenarios


def _cold_start(
    key: str, value: object, endpoint: str, models: Mapping[str, ModelConfig]
) -> ColdStart | None:
    """A scenario's `cold_start:`, its model resolved (a configured model or a logic name)."""
    try:
        cold_start = parse_cold_start(key, value)
    except ColdStartError as error:
        raise ScenarioError(error.key, error.problem) from None
    if cold_start is None:
        return None
    if endpoint not in ("items-to-user", "items-to-item"):
        raise ScenarioError(key, "is for endpoints items-to-user and items-to-item")
    model = resolve_model(cold_start.model, models, f"{key}.model")
    return ColdStart(model, cold_start.until)


def _segment_settings(key: str, endpoint: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A scenario's segmentation keys, checked (the segmentations themselves are created over
    the API later, so a missing one is a request's error, not the configuration's)."""
    for name, endpoints in (
        ("segmentation", SEGMENT_SCENARIO_ENDPOINTS),
        ("context_segmentation", ("item-segments-to-item-segment", "composite")),
        ("source", ("composite",)),
        ("result", ("composite",)),
    ):
        if name in settings and endpoint not in endpoints:
            raise ScenarioError(f"{key}.{name}", f"is for endpoint {' or '.join(endpoints)} only")
    found: dict[str, Any] = {
        name: _name(f"{key}.{name}", settings[name])
        for name in ("segmentation", "context_segmentation")
        if settings.get(name) is not None
    }
    if endpoint == "composite":
        for name, default in (("source", "item-segments"), ("result", "items")):
            found[name] = _choice(f"{key}.{name}", settings.get(name, default), COMPOSITE_PARTS)
        if "item-segments" in (found["source"], found["result"]) and "segmentation" not in found:
            raise ScenarioError(
                f"{key}.segmentation", "is required where the source or the result is segments"
            )
    return found


def _name(key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ScenarioError(key, f"must be a name, not {value!r}")
    return value


def _field_weights(key: str, value: object) -> dict[str, float] | None:
    """Searched properties and their weights: names -> numbers > 0."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise ScenarioError(key, "must be a mapping of property name -> weight")
    for name, weight in value.items():
        if not isinstance(name, str) or not name:
            raise ScenarioError(key, f"a property name must be a non-empty string, not {name!r}")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            raise ScenarioError(f"{key}.{name}", f"must be a number above 0, not {weight!r}")
    return {str(name): float(weight) for name, weight in value.items()}


def resolve_model(name: object, models: Mapping[str, ModelConfig], key: str) -> str:
    """A model name, or a built-in logic's name, as the name of a configured model."""
    if not isinstance(name, str):
        raise ScenarioError(key, f"must be the name of a model, not {name!r}")
    resolved = logic_model(name) or name
    if resolved not in models:
        known = ", ".join([*sorted(models), *BUILTIN_LOGICS])
        raise ScenarioError(key, f"unknown model or logic '{name}' (known: {known})")
    return resolved


def _logic(
    key: str, value: object, endpoint: str, models: Mapping[str, ModelConfig]
) -> LogicChoice | None:
    """A scenario's `logic:` (a name, or `{name, settings}`), checked against the built-in
    logics and the models; another name may be a plugin's logic, which `check_logics` checks
    against the registry at start-up."""
    if value is None:
        return None
    try:
        choice = read_logic(value)
        if choice.name in BUILTIN_LOGICS or choice.name in models:
            resolve_logic(choice, endpoint, models)
    except LogicProblem as error:
        raise ScenarioError(key, error.problem) from None
    return choice


def _ensemble_weights(
    key: str, value: object, model: ModelConfig | None
) -> dict[str, float] | None:
    """A scenario's weights of its ensemble's members: names of members, numbers >= 0."""
    if value is None:
        return None
    if model is None or model.algorithm != ENSEMBLE_ALGORITHM:
        found = "no model" if model is None else f"model '{model.name}' ({model.algorithm})"
        raise ScenarioError(key, f"needs a scenario model of algorithm ensemble, not {found}")
    if not isinstance(value, Mapping) or not value:
        raise ScenarioError(key, "must be a mapping of member -> weight")
    members = model.params.get("members")
    members = list(members) if isinstance(members, list) else []
    own = model.params.get("weights")
    weights = {**(own if isinstance(own, Mapping) else {}), **value}
    for name, weight in value.items():
        if name not in members:
            listed = ", ".join(map(str, members)) or "none"
            raise ScenarioError(
                f"{key}.{name}", f"is not a member of ensemble '{model.name}' ({listed})"
            )
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
            raise ScenarioError(f"{key}.{name}", f"must be a number >= 0, not {weight!r}")
    if all(weights.get(member, 1.0) == 0 for member in members):
        raise ScenarioError(key, "at least one member must weigh more than 0")
    return {str(name): float(weight) for name, weight in value.items()}


def _check_keys(key: str, mapping: Mapping[Any, Any], allowed: set[str]) -> None:
    for name in mapping:
        if name not in allowed:
            raise ScenarioError(
                f"{key}.{name}", f"unknown key (expected one of {', '.join(sorted(allowed))})"
            )


def _optional_text(key: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ScenarioError(key, "must be a ReQL expression in a string")


def _fraction(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ScenarioError(key, f"must be a number from 0 to 1, not {value!r}")
    return float(value)


def _positive(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ScenarioError(key, f"must be a number of seconds above 0, not {value!r}")
    return float(value)


def _choice(key: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ScenarioError(key, f"must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def _flag(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ScenarioError(key, "must be true or false")
    return value


def _names(key: str, value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScenarioError(key, "must be a list of property names")
    return tuple(value)
