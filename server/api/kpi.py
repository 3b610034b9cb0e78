"""`GET /{databaseId}/-/kpi?scenario=…&since=…`: what the recommendations earned, per scenario and
per variant (recommendations, clicks, purchases, revenue, profit, CTR, conversion), with each
experiment's live bandit state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from server.api.operations import Params
from server.serving.scenarios import ScenarioConfig
from storage.errors import NotFound
from storage.kpi import Key, Outcomes, outcomes
from storage.params import check_known, read_str
from storage.timestamps import parse_timestamp

if TYPE_CHECKING:
    from server.serving.store import Served

PARAMETERS = ("scenario", "since")


def parse_kpi_params(params: Params) -> tuple[str | None, float | None]:
    """The scenario and the time (epoch seconds; ISO-8601 text or epoch seconds in the request)
    that a KPI request asks for; BadParameter naming the parameter otherwise."""
    merged = params.merged
    check_known(merged, PARAMETERS)
    scenario = read_str(merged, "scenario")
    raw = merged.get("since")
    since = None if raw is None else parse_timestamp(raw, "since") / 1e6
    return scenario, since


def report(
    found: Mapping[Key, Outcomes],
    scenarios: Mapping[str, ScenarioConfig],
    scenario: str | None = None,
    since: float | None = None,
    bandit_state: Callable[[ScenarioConfig], dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """The KPI document: one entry per scenario (the recommendations without one under null),
    totals and per-variant figures; every variant of a configured experiment is listed, served
    or not. `bandit_state` adds each experiment's live state."""
    names: dict[str | None, None] = {}
    for configured, settings in scenarios.items():
        if settings.experiment is not None and scenario in (None, configured):
            names[configured] = None
    for logged, _ in found:
        names[logged] = None
    if scenario is not None and scenario not in names:
        if scenario not in scenarios:
            raise NotFound(f"scenario '{scenario}' is neither configured nor in the log")
        names[scenario] = None
    entries = []
    for name in sorted(names, key=lambda n: (n is not None, n or "")):
        config = scenarios.get(name) if name is not None else None
        variants: dict[str | None, Outcomes] = {}
        if config is not None and config.experiment is not None:
            variants = {v: Outcomes() for v in config.experiment.names}
        for (of, variant), figures in found.items():
            if of == name:
                variants[variant] = figures
        total = Outcomes()
        for figures in variants.values():
            total.add(figures)
        entry: dict[str, Any] = {"scenario": name, **total.to_json()}
        entry["variants"] = [
            {"variant": variant, **figures.to_json()}
            for variant, figures in sorted(
                variants.items(), key=lambda v: (v[0] is not None, v[0] or "")
            )
        ]
        if bandit_state is not None and config is not None:
            state = bandit_state(config)
            if state is not None:
                entry["bandit"] = state
        entries.append(entry)
    return {"scenario": scenario, "since": since, "scenarios": entries}


async def kpi(
    served: Served, params: Params, scenarios: Mapping[str, ScenarioConfig]
) -> dict[str, Any]:
    """The endpoint's response: figures from the database, after every recommendation already
    answered is logged, and the bandits' state after they read the latest rewards."""
    scenario, since = parse_kpi_params(params)
    # The records of responses already sent: this server's, and the other servers', which
    # send theirs within their log's delay and reach this one through the change feed.
    await served.log.settled()
    await asyncio.sleep(2 * served.log.delay)
    await served.replica.caught_up()
    await served.replica.flush_log()
    await served.experiments.refresh()
    found = await served.database.read(lambda ctx: outcomes(ctx, scenario, since))
    return report(found, scenarios, scenario, since, served.experiments.state)
