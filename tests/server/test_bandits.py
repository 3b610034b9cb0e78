"""Variant allocation: Thompson sampling, the minimum exploration share, fixed splits, sticky
assignments and their expiry, and the counters rebuilt from a real database file."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.experiments.bandits import Bandit, Experiments
from server.experiments.variants import Experiment, Variant
from server.serving.scenarios import ScenarioConfig, ScenarioError, parse_models, parse_scenarios
from storage.database import Database
from storage.interactions import InteractionKind, apply_interaction_writes, parse_interaction
from storage.recommendations import Recommendation, log_recommendations

MODELS = parse_models(None)


def scenario(allocation: dict[str, Any] | None = None, name: str = "home") -> ScenarioConfig:
    settings: dict[str, Any] = {
        "variants": [
            {"name": "pop", "model": "popularity"},
            {"name": "knn", "logic": "recombee:personal"},
        ]
    }
    if allocation is not None:
        settings["allocation"] = allocation
    return parse_scenarios({name: settings}, MODELS)[name]


def three_arms(**allocation: Any) -> Experiment:
    variants = (Variant("a", "popularity"), Variant("b", "item-knn"), Variant("c", "item-knn"))
    return Experiment(variants, **allocation)


def simulate(bandit: Bandit, rates: dict[str, float], rounds: int, seed: int) -> list[str]:
    """Serve `rounds` requests; each is clicked with its variant's rate."""
    world = np.random.default_rng(seed)
    chosen = []
    for _ in range(rounds):
        name = bandit.choose().name
        bandit.served(name)
        bandit.rewarded(name, clicked=bool(world.random() < rates[name]))
        chosen.append(name)
    return chosen


def test_thompson_sampling_converges_to_the_best_variant() -> None:
    bandit = Bandit(three_arms(min_share=0.02), np.random.default_rng(7))
    chosen = simulate(bandit, {"a": 0.03, "b": 0.06, "c": 0.12}, 4000, seed=3)
    late = Counter(chosen[-1000:])
    assert late["c"] / 1000 > 0.85, late
    # Early on it explores: every variant was tried a fair number of times.
    assert all(Counter(chosen[:500])[name] >= 20 for name in "abc")
    means = {name: mean for name, (mean, _) in bandit.posterior().items()}
    assert max(means, key=lambda name: means[name]) == "c"
    assert means["c"] == pytest.approx(0.12, abs=0.02)


def test_the_minimum_share_holds_for_a_variant_that_loses() -> None:
    bandit = Bandit(three_arms(min_share=0.1), np.random.default_rng(1))
    # A settled posterior: c is far better, a and b hopeless.
    for name, clicks in (("a", 10), ("b", 20), ("c", 400)):
        bandit.served(name, 1000)
        bandit.stats[name].clicks = clicks
    counts = Counter(bandit.choose().name for _ in range(20000))
    for name in "ab":
        assert counts[name] / 20000 == pytest.approx(0.1, abs=0.01), counts
    assert counts["c"] / 20000 == pytest.approx(0.8, abs=0.015)
    shares = bandit.shares()
    assert shares["a"] == pytest.approx(0.1, abs=0.01)
    assert shares["c"] == pytest.approx(0.8, abs=0.015)


def test_without_a_minimum_share_a_hopeless_variant_starves() -> None:
    bandit = Bandit(three_arms(min_share=0.0), np.random.default_rng(1))
    for name, clicks in (("a", 10), ("b", 20), ("c", 400)):
        bandit.served(name, 1000)
        bandit.stats[name].clicks = clicks
    counts = Counter(bandit.choose().name for _ in range(5000))
    assert counts["c"] == 5000


def test_gaussian_thompson_sampling_follows_revenue_not_clicks() -> None:
    bandit = Bandit(three_arms(reward="revenue", min_share=0.02), np.random.default_rng(5))
    world = np.random.default_rng(11)
    # a is clicked (and bought) most often but cheaply; c rarely, but dearly.
    buy = {"a": (0.2, 5.0), "b": (0.1, 8.0), "c": (0.05, 60.0)}
    chosen = []
    for _ in range(5000):
        name = bandit.choose().name
        bandit.served(name)
        rate, price = buy[name]
        bought = bool(world.random() < rate)
        bandit.rewarded(name, clicked=bought, revenue=price * world.uniform(0.5, 1.5) * bought)
        chosen.append(name)
    assert Counter(chosen[-1000:])["c"] / 1000 > 0.8
    means = {name: mean for name, (mean, _) in bandit.posterior().items()}
    assert means["c"] == pytest.approx(3.0, rel=0.25)


def test_a_fixed_split_keeps_its_ratios_whatever_the_rewards() -> None:
    experiment = three_arms(method="split", split=(0.6, 0.3, 0.1))
    bandit = Bandit(experiment, np.random.default_rng(2))
    chosen = simulate(bandit, {"a": 0.0, "b": 0.0, "c": 0.5}, 20000, seed=4)
    counts = Counter(chosen)
    for name, share in (("a", 0.6), ("b", 0.3), ("c", 0.1)):
        assert counts[name] / 20000 == pytest.approx(share, abs=0.012), counts


@pytest.mark.parametrize(
    ("settings", "key", "problem"),
    [
        ({"variants": [{"name": "a", "model": "popularity"}]}, "home.variants", "two or more"),
        (
            {
                "variants": [
                    {"name": "a", "model": "popularity"},
                    {"name": "a", "model": "item-knn"},
                ]
            },
            "home.variants[1].name",
            "another variant",
        ),
        (
            {"variants": [{"name": "a", "model": "popularity"}, {"name": "b", "model": "nope"}]},
            "home.variants[1].model",
            "unknown model",
        ),
        (
            {"variants": [{"name": "a", "model": "popularity"}, {"name": "b"}]},
            "home.variants[1].model",
            "required",
        ),
        (
            {"model": "popularity", "variants": [{"name": "a"}, {"name": "b"}]},
            "home.model",
            "variant's model",
        ),
        ({"allocation": {"method": "split"}}, "home.allocation", "needs variants"),
        ({"allocation": {"method": "greedy"}}, "home.allocation.method", "thompson, split"),
        ({"allocation": {"reward": "clicks"}}, "home.allocation.reward", "ctr, revenue, profit"),
        ({"allocation": {"min_share": 0.6}}, "home.allocation.min_share", "from 0 to 1/2"),
        ({"allocation": {"sticky_seconds": -1}}, "home.allocation.sticky_seconds", "0 or more"),
        (
            {"allocation": {"method": "split", "split": {"pop": 0.5, "knn": 0.6}}},
            "home.allocation.split",
            "sum to 1",
        ),
        (
            {"allocation": {"method": "split", "split": {"pop": 1.0}}},
            "home.allocation.split.knn",
            "missing",
        ),
        (
            {"allocation": {"method": "split", "split": {"pop": 0.5, "x": 0.5}}},
            "home.allocation.split.x",
            "no such variant",
        ),
        ({"allocation": {"split": {"pop": 0.5, "knn": 0.5}}}, "home.allocation.split", "split"),
        ({"allocation": {"explore": 1}}, "home.allocation.explore", "unknown key"),
    ],
)
def test_bad_experiments_are_refused_with_their_key(
    settings: dict[str, Any], key: str, problem: str
) -> None:
    if "variants" not in settings and "allocation" in settings and key != "home.allocation":
        settings = {
            "variants": [
                {"name": "pop", "model": "popularity"},
                {"name": "knn", "model": "item-knn"},
            ],
            **settings,
        }
    with pytest.raises(ScenarioError) as raised:
        parse_scenarios({"home": settings}, MODELS)
    assert raised.value.key == f"scenarios.{key}"
    assert problem in raised.value.problem


def test_a_scenario_with_variants_lists_them() -> None:
    home = scenario({"method": "split", "split": {"pop": 0.25, "knn": 0.75}})
    assert home.experiment is not None
    assert home.experiment.variants == (Variant("pop", "popularity"), Variant("knn", "item-knn"))
    assert home.experiment.split == (0.25, 0.75)
    assert home.model == "popularity"
    shown = home.to_json()["experiment"]
    assert shown["split"] == {"pop": 0.25, "knn": 0.75}
    assert shown["variants"] == {"pop": "popularity", "knn": "item-knn"}


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return Database("test", tmp_path / "test.duckdb")


def assigned(
    experiments: Experiments, config: ScenarioConfig, user: str | None, now: float | None = None
) -> str:
    """The name of the variant that serves the user's request."""
    variant = experiments.assign(config, user, now=now)
    assert variant is not None
    return variant.name


def test_a_user_keeps_the_variant_until_the_sticky_time_passes(database: Database) -> None:
    experiments = Experiments(database, seed=1)
    first = scenario({"method": "split", "split": {"pop": 1.0, "knn": 0.0}, "sticky_seconds": 60})
    # The split now sends everyone to knn: a held user stays on pop until 60 s have passed.
    second = scenario({"method": "split", "split": {"pop": 0.0, "knn": 1.0}, "sticky_seconds": 60})
    t0 = 1_700_000_000.0
    assert assigned(experiments, first, "u1", t0) == "pop"
    assert assigned(experiments, second, "u1", t0 + 59) == "pop"
    assert assigned(experiments, second, "u2", t0 + 59) == "knn"
    assert assigned(experiments, second, "u1", t0 + 60) == "knn"
    assert experiments.assignment("home", "u1") == ("knn", t0 + 60)
    # Without a user there is nothing to hold: each request is drawn.
    assert assigned(experiments, second, None, t0) == "knn"
    database.close()


def test_without_stickiness_each_request_is_drawn(database: Database) -> None:
    experiments = Experiments(database, seed=3)
    home = scenario({"method": "split", "sticky_seconds": 0})
    drawn = Counter(assigned(experiments, home, "u1") for _ in range(400))
    assert set(drawn) == {"pop", "knn"}
    assert experiments.assignment("home", "u1") is None
    database.close()


def recommendation(recomm_id: str, variant: str | None, at: float) -> Recommendation:
    return Recommendation(
        recomm_id, at, "items-to-user", "u1", None, "home", {}, ("i1", "i2"), 0, variant
    )


def interaction(kind: InteractionKind, recomm_id: str, at: float, **extra: Any) -> Any:
    params = {"userId": "u1", "itemId": "i1", "timestamp": at, "cascadeCreate": True}
    return parse_interaction(kind, {**params, "recommId": recomm_id, **extra})


def test_counters_and_assignments_are_rebuilt_from_the_database(tmp_path: Path) -> None:
    path = tmp_path / "test.duckdb"
    database = Database("test", path)
    now = time.time()
    records = [recommendation(f"r{i}", "pop" if i < 6 else "knn", now - 100 + i) for i in range(10)]
    records.append(recommendation("r-none", None, now))
    database.write_sync(lambda ctx: log_recommendations(ctx, records))
    writes = [
        interaction(InteractionKind.DETAIL_VIEW, "r0", now - 50),
        interaction(InteractionKind.DETAIL_VIEW, "r0", now - 49),  # clicked once for CTR
        interaction(InteractionKind.DETAIL_VIEW, "r1", now - 48),
        interaction(InteractionKind.DETAIL_VIEW, "r7", now - 47),
        interaction(InteractionKind.PURCHASE, "r7", now - 46, price=30.0, profit=4.0),
        interaction(InteractionKind.PURCHASE, "unknown", now - 45, price=99.0),
    ]
    database.write_sync(lambda ctx: apply_interaction_writes(ctx, writes))
    experiments = Experiments(database, seed=2)
    home = scenario({"sticky_seconds": 3600})
    held = assigned(experiments, home, "u9", now - 10)
    database.close()

    reopened = Database("test", path)
    rebuilt = Experiments(reopened, seed=2)
    rebuilt.load(horizon=3600)
    state = rebuilt.state(home)
    assert state is not None
    pop, knn = state["variants"]["pop"], state["variants"]["knn"]
    assert (pop["served"], pop["clicks"], pop["revenue"]) == (6, 2, 0.0)
    assert (knn["served"], knn["clicks"], knn["revenue"], knn["profit"]) == (4, 1, 30.0, 4.0)
    # Beta(1 + clicks, 1 + misses): the posterior means of 2/6 and 1/4 clicks.
    assert pop["posteriorMean"] == pytest.approx(3 / 8)
    assert knn["posteriorMean"] == pytest.approx(2 / 6)
    kept = rebuilt.assignment("home", "u9")
    assert kept is not None
    assert kept[0] == held
    assert kept[1] == pytest.approx(now - 10, abs=1e-3)
    assert assigned(rebuilt, home, "u9", now) == held
    # An assignment older than the horizon has expired: it is not loaded.
    expired = Experiments(reopened, seed=2)
    expired.load(horizon=5)
    assert expired.assignment("home", "u9") is None
    reopened.close()


def test_evidence_is_each_variants_posterior_and_recommendations() -> None:
    bandit = Bandit(three_arms(), np.random.default_rng(1))
    for name, served, clicks in (("a", 100, 5), ("b", 40, 8), ("c", 0, 0)):
        bandit.served(name, served)
        bandit.stats[name].clicks = clicks
    evidence = bandit.evidence()
    posterior = bandit.posterior()
    for name, served in (("a", 100), ("b", 40), ("c", 0)):
        assert (evidence[name].mean, evidence[name].sd) == posterior[name]
        assert evidence[name].served == served
    # Beta(1 + clicks, 1 + misses): 6/102 for a.
    assert evidence["a"].mean == pytest.approx(6 / 102)


def test_a_variant_is_found_by_name_for_a_next_page(database: Database) -> None:
    experiments = Experiments(database, seed=1)
    home = scenario()
    assert experiments.variant(home, "knn") == Variant("knn", "item-knn")
    assert experiments.variant(home, "gone") is None
    assert experiments.variant(ScenarioConfig("plain", model="popularity"), "knn") is None
    database.close()
