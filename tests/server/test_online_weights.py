"""Online optimisation of ensemble weights: the evolution climbs toward the better member on a
seeded synthetic reward, its state is restored exactly from JSON, bad `optimize_online`
settings are refused at start-up, its states are stored with the assignments (the first of a
generation wins), and a generation ends from logged rewards and survives a restart (over HTTP:
tests/server/test_online_weights_http.py)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.config import ConfigError, parse_config
from server.experiments.bandits import Bandit, Experiments
from server.experiments.evolution import WeightEvolution
from server.experiments.generations import Evidence, StateMismatch
from server.experiments.variants import EvolutionSettings
from server.serving.scenarios import ScenarioConfig
from storage.database import Database
from storage.interactions import InteractionKind, apply_interaction_writes, parse_interaction
from storage.kpi import (
    Assignment,
    load_assignments,
    load_states,
    save_assignments,
    state_assignment,
)
from storage.recommendations import Recommendation, log_recommendations

MODELS: dict[str, Any] = {
    "ease": {"algorithm": "ease", "params": {"l2": 1.0}},
    "knn": {"algorithm": "item-knn", "params": {"neighbours": 20}},
    "blend": {
        "algorithm": "ensemble",
        "params": {"members": ["ease", "knn", "popularity"], "weights": {"popularity": 0.5}},
    },
    "solo": {"algorithm": "ensemble", "params": {"members": ["ease"]}},
}


def configured(scenario: dict[str, Any], tmp_path: Path) -> ScenarioConfig:
    data = {"databases": {"test": {"token": "t"}}, "models": MODELS, "scenarios": {"s": scenario}}
    return parse_config(data, source="reqo.yaml", base_dir=tmp_path).scenarios["s"]


def settings(**changes: Any) -> EvolutionSettings:
    base: dict[str, Any] = {
        "model": "blend",
        "members": ("a", "b", "c"),
        "start": (1.0, 1.0, 1.0),
        "population": 4,
        "recommendations_per_candidate": 150,
        "min_share": 0.05,
        "sigma": 1.0,
        "seed": 1,
    }
    return EvolutionSettings(**{**base, **changes})


def shares(weights: dict[str, float] | tuple[float, ...]) -> np.ndarray[Any, Any]:
    values = np.array(list(weights.values()) if isinstance(weights, dict) else weights)
    normalised: np.ndarray[Any, Any] = values / values.sum()
    return normalised


# -- the search ---------------------------------------------------------------------------------


def test_the_evolution_climbs_toward_the_better_member() -> None:
    """A world where a weighting's click rate grows with member a's share: from equal weights,
    Thompson sampling among each generation's variants and CMA-ES with the surrogate move
    the traffic and the search toward a."""
    evolution = WeightEvolution(settings())
    world = np.random.default_rng(7)
    stats: dict[str, Any] = {}
    bandit = Bandit(evolution.experiment, np.random.default_rng(3), stats)
    clicks = []
    while evolution.generation < 6:
        variant = bandit.choose()
        assert variant.ensemble_weights is not None
        rate = 0.02 + 0.12 * shares(dict(variant.ensemble_weights))[0]
        clicked = bool(world.random() < rate)
        bandit.served(variant.name)
        bandit.rewarded(variant.name, clicked=clicked)
        clicks.append(clicked)
        if evolution.ready({name: arm.served for name, arm in stats.items()}):
            evolution.advance(bandit.evidence())
            bandit = Bandit(evolution.experiment, bandit.rng, stats)
    assert shares(evolution.current.incumbent.weights)[0] > 0.6
    assert shares(evolution.search_mean())[0] > 0.6
    third = len(clicks) // 3
    assert np.mean(clicks[-third:]) > np.mean(clicks[:third]) + 0.01
    # Every generation served its candidates their recommendations, and the incumbent beside.
    history = evolution.observations()
    assert {number for number, _, _ in history} == set(range(6))
    for number, candidate, evidence in history:
        if candidate.point is not None:
            assert evidence.served >= 150, (number, candidate.name)


def judge(evolution: WeightEvolution, bias: float = 0.0) -> dict[str, Evidence]:
    """Deterministic evidence: member a's share, as a click rate, for every variant."""
    return {
        v.name: Evidence(0.02 + 0.1 * shares(dict(v.ensemble_weights or {}))[0] + bias, 0.01, 200)
        for v in evolution.experiment.variants
    }


def test_a_stored_evolution_is_restored_exactly() -> None:
    evolution = WeightEvolution(settings(population=3, screen=2))
    for _ in range(4):
        evolution.advance(judge(evolution))
    stored = json.loads(json.dumps(evolution.to_json()))
    assert stored["generation"] == 4
    restored = WeightEvolution.restore(settings(population=3, screen=2), stored)
    assert restored.to_json() == evolution.to_json()
    assert restored.experiment == evolution.experiment
    assert restored.variant("g1-c2") == evolution.variant("g1-c2") is not None
    # CMA-ES's internals came back too: both propose the same next generation.
    following = evolution.successor(judge(evolution, 0.01))
    assert evolution.generation == 4  # a successor leaves its origin as it was
    restored.advance(judge(restored, 0.01))
    assert restored.to_json() == following.to_json()
    assert restored.experiment.variants != evolution.experiment.variants


def test_a_generation_waits_for_its_incumbent_to_be_measured_too() -> None:
    # Every candidate is judged against the incumbent: a generation whose incumbent has not
    # served would keep it for lack of evidence, whatever the candidates earned.
    evolution = WeightEvolution(settings(population=2, recommendations_per_candidate=10))
    candidates = [c.name for c in evolution.current.candidates]
    incumbent = evolution.current.incumbent.name
    assert incumbent not in candidates
    served = dict.fromkeys(candidates, 10)
    assert not evolution.ready({**served, incumbent: 0})
    assert not evolution.ready({**served, incumbent: 9})
    assert not evolution.ready({**served, candidates[0]: 9, incumbent: 10})
    assert evolution.ready({**served, incumbent: 10})


def test_a_state_of_other_settings_is_refused() -> None:
    stored = WeightEvolution(settings()).to_json()
    for changed in (settings(seed=2), settings(members=("a", "b", "d")), settings(population=5)):
        with pytest.raises(StateMismatch):
            WeightEvolution.restore(changed, stored)
    # What does not change the search's course may change.
    restored = WeightEvolution.restore(settings(recommendations_per_candidate=10), stored)
    assert restored.generation == 0
    with pytest.raises(StateMismatch, match="unreadable"):
        WeightEvolution.restore(settings(), {**stored, "generations": [{"number": 0}]})


# -- configuration ------------------------------------------------------------------------------


def test_a_scenario_optimised_online_is_parsed(tmp_path: Path) -> None:
    scenario = configured(
        {
            "model": "blend",
            "ensemble_weights": {"ease": 2},
            "optimize_online": {"reward": "revenue", "population": 5, "min_share": 0.1},
        },
        tmp_path,
    )
    experiment = scenario.experiment
    assert experiment is not None
    assert experiment.evolution is not None
    assert experiment.method == "evolve"
    assert scenario.model == "blend"
    evolution = experiment.evolution
    assert evolution.members == ("ease", "knn", "popularity")
    assert evolution.start == (2.0, 1.0, 0.5)  # the scenario's over the model's, 1 elsewhere
    assert (evolution.reward, evolution.population, evolution.min_share) == ("revenue", 5, 0.1)
    assert experiment.names == ("g0-best",)
    assert scenario.to_json()["experiment"]["optimizeOnline"]["population"] == 5


@pytest.mark.parametrize(
    ("scenario", "key", "problem"),
    [
        ({"model": "ease", "optimize_online": {}}, "optimize_online",
         "needs a model of algorithm ensemble, not model 'ease'"),
        ({"model": "solo", "optimize_online": {}}, "optimize_online", "two or more members"),
        ({"optimize_online": {}}, "model", "is required with optimize_online"),
        ({"model": "blend", "optimize_online": [1]}, "optimize_online", "must be a mapping"),
        ({"model": "blend", "optimize_online": {"generations": 3}},
         "optimize_online.generations", "unknown key"),
        ({"model": "blend", "optimize_online": {"population": 2}},
         "optimize_online.population", "from 3 to 50"),
        ({"model": "blend", "optimize_online": {"population": 2.5}},
         "optimize_online.population", "whole number"),
        ({"model": "blend", "optimize_online": {"population": True}},
         "optimize_online.population", "whole number"),
        ({"model": "blend", "optimize_online": {"recommendations_per_candidate": 0}},
         "optimize_online.recommendations_per_candidate", "1 or more"),
        ({"model": "blend", "optimize_online": {"min_share": 0}},
         "optimize_online.min_share", "above 0"),
        ({"model": "blend", "optimize_online": {"population": 6, "min_share": 0.2}},
         "optimize_online.min_share", "at most 1/7"),
        ({"model": "blend", "optimize_online": {"sigma": -1}}, "optimize_online.sigma",
         "above 0"),
        ({"model": "blend", "optimize_online": {"reward": "clicks"}}, "optimize_online.reward",
         "ctr, revenue, profit"),
        ({"model": "blend", "optimize_online": {"seed": "one"}}, "optimize_online.seed",
         "whole number"),
        ({"model": "blend", "optimize_online": {"screen": 0}}, "optimize_online.screen",
         "from 1 to 100"),
        ({"model": "blend", "optimize_online": {"sticky_seconds": -5}},
         "optimize_online.sticky_seconds", "0 or more"),
        ({"model": "blend", "ensemble_weights": {"vae": 1}, "optimize_online": {}},
         "ensemble_weights.vae", "is not a member"),
        ({"model": "blend", "optimize_online": {}, "allocation": {"method": "split"}},
         "optimize_online", "cannot be combined with allocation"),
        ({"logic": "recombee:personal", "optimize_online": {}}, "optimize_online",
         "cannot be combined with logic"),
        ({"optimize_online": {}, "variants": [{"name": "a", "model": "ease"},
                                              {"name": "b", "model": "knn"}]},
         "optimize_online", "cannot be combined with variants"),
    ],
)  # fmt: skip
def test_bad_online_optimisation_is_refused_at_start_up(
    tmp_path: Path, scenario: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        configured(scenario, tmp_path)
    assert raised.value.key == f"scenarios.s.{key}"


# -- storage and the server's glue --------------------------------------------------------------


def test_states_are_stored_with_the_assignments_and_the_first_of_a_generation_wins(
    tmp_path: Path,
) -> None:
    database = Database("test", tmp_path / "test.duckdb")
    now = time.time()
    rows = [
        state_assignment("home", 1, '{"mine": 1}', now),
        Assignment("home", "u1", "g1-c0", now),
        state_assignment("home", 1, '{"theirs": 1}', now),  # too late: generation 1 has one
        state_assignment("other", 4, '{"other": 4}', now),
    ]
    database.write_sync(lambda ctx: save_assignments(ctx, rows))
    assert database.read_sync(load_states) == {
        "home": (1, '{"mine": 1}'),
        "other": (4, '{"other": 4}'),
    }
    users = database.read_sync(lambda ctx: load_assignments(ctx, now - 60))
    assert [(a.scenario, a.user_id) for a in users] == [("home", "u1")]
    later = [state_assignment("home", g, f'{{"g": {g}}}', now) for g in (2, 3)]
    database.write_sync(lambda ctx: save_assignments(ctx, later))
    assert database.read_sync(load_states)["home"] == (3, '{"g": 3}')
    kept = database.read_sync(
        lambda ctx: ctx.conn.execute(
            "SELECT user_id FROM variant_assignments WHERE scenario = 'home' ORDER BY user_id"
        ).fetchall()
    )
    # Generations two or more behind the newest are dropped.
    assert [row[0] for row in kept] == ["$state:0000000002", "$state:0000000003", "u1"]
    database.close()


def test_a_generation_ends_from_logged_rewards_and_is_restored_after_a_restart(
    tmp_path: Path,
) -> None:
    home = configured(
        {
            "model": "blend",
            "optimize_online": {
                "population": 3,
                "recommendations_per_candidate": 4,
                "min_share": 0.25,
                "sticky_seconds": 0,
                "seed": 5,
            },
        },
        tmp_path,
    )
    path = tmp_path / "test.duckdb"
    database = Database("test", path)
    experiments = Experiments(database, seed=1)
    now = time.time()
    records: list[Recommendation] = []
    clicks: list[Any] = []
    served: dict[str, int] = {}
    while min(served.get(f"g0-c{c}", 0) for c in range(3)) < 4:
        variant = experiments.assign(home, "u1")
        assert variant is not None
        assert variant.name in ("g0-c0", "g0-c1", "g0-c2", "g0-best")
        experiments.served(home.name, variant.name)
        served[variant.name] = served.get(variant.name, 0) + 1
        recomm_id = f"r{len(records)}"
        records.append(
            Recommendation(
                recomm_id, now, "items-to-user", "u1", None, home.name, {}, ("i1",), 0, variant.name
            )
        )
        if variant.name == "g0-c1":  # only the second candidate is clicked
            params = {"userId": "u1", "itemId": "i1", "recommId": recomm_id, "cascadeCreate": True}
            clicks.append(parse_interaction(InteractionKind.DETAIL_VIEW, params))
    database.write_sync(lambda ctx: log_recommendations(ctx, records))
    database.write_sync(lambda ctx: apply_interaction_writes(ctx, clicks))
    before = experiments.state(home)
    assert before is not None
    assert before["evolution"]["generation"] == 0

    asyncio.run(experiments.refresh())
    database.write_sync(lambda ctx: None)  # the state's write, queued before, is done
    after = experiments.state(home)
    assert after is not None
    assert after["evolution"]["generation"] == 1
    assert set(after["variants"]) == {"g1-c0", "g1-c1", "g1-c2", "g1-best"}
    judged = {entry["variant"]: entry for entry in after["evolution"]["history"]}
    assert judged["g0-c1"]["served"] == served["g0-c1"]
    assert judged["g0-c1"]["mean"] > judged["g0-c0"]["mean"]
    # The clicked candidate, the only one judged on enough recommendations that earned
    # anything, is the new incumbent.
    assert after["evolution"]["incumbent"]["weights"] == before["variants"]["g0-c1"]["weights"]
    database.close()

    reopened = Database("test", path)
    restarted = Experiments(reopened, seed=9)
    restarted.load()
    again = restarted.state(home)
    assert again is not None
    assert again["evolution"] == after["evolution"]
    assert {n: v["weights"] for n, v in again["variants"].items()} == {
        n: v["weights"] for n, v in after["variants"].items()
    }
    reopened.close()
