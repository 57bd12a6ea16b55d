"""Experiments: config validation, deterministic and independent assignment, and the
Thompson-sampling allocator of bandit mode."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from models.marketing.experiments import (
    MAX_VARIANTS,
    BanditAllocator,
    Experiment,
    ExperimentError,
    Settings,
    Variant,
    assign,
    assign_with_weights,
    assignment_draw,
    load_experiments,
)
from models.users.privacy import pseudonymize

ROOT = Path(__file__).resolve().parents[2]
KEY = b"0123456789abcdef"
# 100k pseudonymous ids, as the service sees them
USERS = [pseudonymize(f"user-{n}", KEY) for n in range(100_000)]


def _exp(name: str = "recs-2024", weights: tuple[float, ...] = (5, 3, 2),
         names: str = "ABC", salt: str = "s1", **kw: Any) -> Experiment:
    return Experiment(name, [Variant(n, w) for n, w in zip(names, weights, strict=True)],
                      control=names[0], salt=salt, **kw)


# --- assignment ------------------------------------------------------------------------


def test_assignment_is_the_documented_blake2b_draw() -> None:
    e = _exp()
    for user in USERS[:500] + ["u0", "ü-ünicode", "x" * 300]:
        digest = hashlib.blake2b(
            b"experiment\x00recs-2024\x00s1\x00" + user.encode("utf-8"), digest_size=8).digest()
        u = int.from_bytes(digest, "big") / 2**64
        assert assignment_draw(e, user) == u
        expected = "A" if u < 0.5 else "B" if u < 0.8 else "C"
        assert assign(e, user) == expected


def test_assignment_is_pinned() -> None:
    # a change here reshuffles every running experiment: it must be deliberate
    e = _exp()
    assert [assign(e, f"u{n}") for n in range(12)] == list("AACAABAAAABA")
    assert assignment_draw(e, "u0") == 0.28624780967734076


def test_assignment_is_the_same_in_another_process() -> None:
    # no Python hash(): a worker with another PYTHONHASHSEED places users identically
    e = _exp()
    code = ("import json, sys; "
            "from models.marketing.experiments import Experiment, Variant, assign;"
            "e = Experiment('recs-2024', [Variant('A', 5), Variant('B', 3), Variant('C', 2)],"
            " control='A', salt='s1');"
            "print(json.dumps([assign(e, u) for u in json.load(sys.stdin)]))")
    users = USERS[:2_000]
    for seed in ("1", "987"):
        res = subprocess.run([sys.executable, "-c", code], input=json.dumps(users), cwd=ROOT,
                             env={**os.environ, "PYTHONHASHSEED": seed},
                             capture_output=True, text=True, timeout=60, check=True)
        assert json.loads(res.stdout) == [assign(e, u) for u in users]


@pytest.mark.parametrize("weights", [(5, 3, 2), (1, 1, 1), (98, 1, 1), (0.1, 0.7, 0.2)])
def test_weights_are_respected_over_100k_users(weights: tuple[float, ...]) -> None:
    e = _exp(weights=weights)
    counts = Counter(assign(e, u) for u in USERS)
    observed = [counts[n] for n in "ABC"]
    expected = [len(USERS) * w / sum(weights) for w in weights]
    assert stats.chisquare(observed, expected).pvalue > 0.001
    # the test has power: the same counts fail against weights that move 1% of the
    # users from the largest variant to another
    big = int(np.argmax(expected))
    tilted = list(expected)
    tilted[big] -= 1_000
    tilted[(big + 1) % 3] += 1_000
    assert stats.chisquare(observed, tilted).pvalue < 0.001


def test_assignments_are_independent_across_experiments() -> None:
    first = _exp("recs-2024", weights=(1, 1), names="AB")
    second = _exp("ranking-test", weights=(1, 1, 2), names="XYZ", salt="")
    table = Counter((assign(first, u), assign(second, u)) for u in USERS)
    matrix = [[table[(a, b)] for b in "XYZ"] for a in "AB"]
    assert stats.chi2_contingency(matrix).pvalue > 0.001
    # control: the same name and salt give the same draws, so the test would catch it
    twin = _exp("recs-2024", weights=(1, 1), names="XY")
    table = Counter((assign(first, u), assign(twin, u)) for u in USERS)
    matrix = [[table[(a, b)] for b in "XY"] for a in "AB"]
    assert matrix[0][1] == matrix[1][0] == 0
    assert stats.chi2_contingency(matrix).pvalue < 1e-100


def test_changing_the_salt_reshuffles() -> None:
    before = _exp(weights=(1, 1), names="AB", salt="round-1")
    after = _exp(weights=(1, 1), names="AB", salt="round-2")
    moved = sum(assign(before, u) != assign(after, u) for u in USERS)
    # independent 50/50 draws disagree for half the users (sd 0.0016)
    assert 0.49 < moved / len(USERS) < 0.51
    table = Counter((assign(before, u), assign(after, u)) for u in USERS)
    assert stats.chi2_contingency([[table[("A", "A")], table[("A", "B")]],
                                   [table[("B", "A")], table[("B", "B")]]]).pvalue > 0.001


def test_inactive_experiment_serves_its_control() -> None:
    e = _exp(active=False)
    assert {assign(e, u) for u in USERS[:1_000]} == {"A"}
    assert assign_with_weights(e, USERS[0], {"A": 0, "B": 1, "C": 0}) == "A"


def test_single_variant_and_bad_user_ids() -> None:
    only = Experiment("rollout", [Variant("all")], control="all")
    assert {assign(only, u) for u in USERS[:100]} == {"all"}
    for bad in ("", None, 42):
        with pytest.raises(ValueError):
            assign(only, bad)  # type: ignore[arg-type]


def test_assign_with_weights() -> None:
    e = _exp(mode="bandit")
    # the configured weights give the same answer as assign
    same = {"A": 0.5, "B": 0.3, "C": 0.2}
    assert all(assign_with_weights(e, u, same) == assign(e, u) for u in USERS[:2_000])
    # a zero weight is never chosen, even for a draw at the very end of the range
    counts = Counter(assign_with_weights(e, u, {"A": 0.0, "B": 1.0, "C": 3.0})
                     for u in USERS[:20_000])
    assert counts["A"] == 0
    assert stats.chisquare([counts["B"], counts["C"]], [5_000, 15_000]).pvalue > 0.001
    for bad in ({"A": 1.0, "B": 1.0}, {"A": 1, "B": 1, "C": 1, "D": 1},
                {"A": -1.0, "B": 1.0, "C": 1.0}, {"A": float("nan"), "B": 1.0, "C": 1.0},
                {"A": 0.0, "B": 0.0, "C": 0.0}, {"A": True, "B": 1.0, "C": 1.0}):
        with pytest.raises(ValueError):
            assign_with_weights(e, USERS[0], bad)


# --- configuration ---------------------------------------------------------------------


def _config(**changes: Any) -> dict[str, Any]:
    exp: dict[str, Any] = {
        "name": "recs-2024", "control": "A", "salt": "s1", "mode": "fixed", "active": True,
        "variants": [{"name": "A", "weight": 1},
                     {"name": "B", "weight": 1, "strategy": "cooccurrence",
                      "settings": {"top_k": 5, "exploration": 0.1, "diverse": True}}],
    }
    exp.update(changes)
    return {"experiments": [exp]}


def test_load_experiments() -> None:
    loaded = load_experiments(_config())
    e = loaded["recs-2024"]
    assert e == Experiment(
        "recs-2024",
        [Variant("A", 1), Variant("B", 1, "cooccurrence",
                                  {"top_k": 5, "exploration": 0.1, "diverse": True})],
        control="A", salt="s1")
    assert e.variant("B").strategy == "cooccurrence"
    assert dict(e.variant("B").settings) == {"top_k": 5, "exploration": 0.1, "diverse": True}
    assert e.weights == (0.5, 0.5) and e.mode == "fixed" and e.active
    # defaults: weight 1, no salt, fixed mode, active
    minimal = load_experiments({"experiments": [
        {"name": "m", "control": "x", "variants": [{"name": "x"}, {"name": "y", "weight": 3}]}]})
    m = minimal["m"]
    assert m.weights == (0.25, 0.75) and m.salt == "" and m.mode == "fixed" and m.active
    assert load_experiments({"experiments": []}) == {}


@pytest.mark.parametrize(("config", "field"), [
    (_config(name="has space"), "experiments[0].name"),
    (_config(name="x" * 33), "experiments[0].name"),
    (_config(control="Z"), "experiments[0].control"),
    (_config(mode="greedy"), "experiments[0].mode"),
    (_config(active="yes"), "experiments[0].active"),
    (_config(salt=3), "experiments[0].salt"),
    (_config(variants=[]), "experiments[0].variants"),
    (_config(variants="AB"), "experiments[0].variants"),
    (_config(variants=[{"name": f"v{i}"} for i in range(MAX_VARIANTS + 1)], control="v0"),
     "experiments[0].variants"),
    (_config(variants=[{"name": "A"}, {"name": "A"}]), "experiments[0].variants"),
    (_config(variants=[{"name": "A", "weight": 0}]), "experiments[0].variants[0].weight"),
    (_config(variants=[{"name": "A", "weight": -2}]), "experiments[0].variants[0].weight"),
    (_config(variants=[{"name": "A", "weight": float("inf")}]),
     "experiments[0].variants[0].weight"),
    (_config(variants=[{"name": "A", "weight": "1"}]), "experiments[0].variants[0].weight"),
    (_config(variants=[{"name": "A", "weight": True}]), "experiments[0].variants[0].weight"),
    (_config(variants=[{"weight": 1}]), "experiments[0].variants[0].name"),
    (_config(variants=[{"name": "A", "strategy": ""}]), "experiments[0].variants[0].strategy"),
    (_config(variants=[{"name": "A", "settings": {"k": [1]}}]),
     "experiments[0].variants[0].settings.k"),
    (_config(variants=[{"name": "A", "settings": {"k": float("nan")}}]),
     "experiments[0].variants[0].settings.k"),
    (_config(variants=[{"name": "A", "settings": ["k"]}]),
     "experiments[0].variants[0].settings"),
    (_config(variants=[{"name": "A", "wieght": 2}]), "experiments[0].variants[0].wieght"),
    (_config(variants=["A"]), "experiments[0].variants[0]"),
    (_config(contol="A"), "experiments[0].contol"),
    ({"experiments": [{"name": "x", "variants": [{"name": "A"}]}]}, "experiments[0].control"),
    ({"experiments": [_config()["experiments"][0]] * 2}, "experiments[1].name"),
    ({"experiments": "none"}, "experiments"),
    ({"experiment": []}, "config.experiment"),
    ({}, "config.experiments"),
    ([], "config"),
])
def test_config_errors_name_the_field(config: Any, field: str) -> None:
    with pytest.raises(ExperimentError) as err:
        load_experiments(config)
    assert err.value.field == field
    assert str(err.value).startswith(field + ": ")
    assert isinstance(err.value, ValueError)


def test_variants_and_experiments_are_immutable_hashable_and_picklable() -> None:
    e = load_experiments(_config())["recs-2024"]
    assert isinstance(e.variants, tuple)
    assert pickle.loads(pickle.dumps(e)) == e
    assert hash(pickle.loads(pickle.dumps(e))) == hash(e)
    settings = e.variant("B").settings
    assert isinstance(settings, Settings)
    with pytest.raises(TypeError):
        settings["top_k"] = 6  # type: ignore[index]
    with pytest.raises(AttributeError):
        e.variant("B").weight = 2.0  # type: ignore[misc]
    source = {"top_k": 5}
    v = Variant("B", settings=source)
    source["top_k"] = 99  # the variant took a copy
    assert v.settings["top_k"] == 5
    with pytest.raises(KeyError):
        e.variant("nope")


# --- bandit allocation -----------------------------------------------------------------


def test_bandit_starts_even_and_respects_the_floor() -> None:
    b = BanditAllocator(["A", "B", "C"], floor=0.1)
    assert b.weights() == {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}
    b.observe("A", 0, 5_000)
    b.observe("B", 0, 5_000)
    b.observe("C", 500, 5_000)
    w = b.weights()
    assert w["A"] == pytest.approx(0.1) and w["B"] == pytest.approx(0.1)
    assert w["C"] == pytest.approx(0.8)
    assert sum(w.values()) == pytest.approx(1.0)


def test_bandit_weights_are_deterministic_and_counts_additive() -> None:
    one = BanditAllocator(["A", "B"], seed=3)
    one.observe("A", 30, 1_000)
    one.observe("B", 36, 1_000)
    # two workers exchanging deltas reach the same counts, hence the same weights
    other = BanditAllocator(["A", "B"], seed=3)
    for s, n in ((10, 400), (20, 600)):
        other.observe("A", s, n)
    other.observe("B", 36, 1_000)
    assert other.counts() == one.counts()
    assert other.weights() == one.weights()
    # close arms share traffic: neither gets almost everything
    assert 0.1 < one.weights()["A"] < 0.5 < one.weights()["B"] < 0.9


def test_probability_best_matches_exact_two_arm_integral() -> None:
    b = BanditAllocator(["A", "B"], floor=0.0, draws=200_000)
    b.observe("A", 40, 1_000)
    b.observe("B", 52, 1_000)
    # P(p_B > p_A) by numerical integration over the Beta(41, 961) density of p_A
    x = np.linspace(0, 0.15, 200_001)
    exact = np.trapezoid(stats.beta.pdf(x, 41, 961) * stats.beta.sf(x, 53, 949), x)
    assert b.probability_best()["B"] == pytest.approx(exact, abs=0.005)
    assert b.weights()["B"] == b.probability_best()["B"]


def test_bandit_moves_traffic_to_the_better_variant() -> None:
    e = _exp("bandit-test", weights=(1, 1, 1), names="ABC", mode="bandit", salt="")
    true_rate = {"A": 0.03, "B": 0.04, "C": 0.06}
    alloc = BanditAllocator.for_experiment(e, floor=0.05)
    rng = np.random.default_rng(42)
    stored: dict[str, str] = {}  # the profile's stored variant, per user
    history = []
    for day in range(15):
        weights = alloc.weights()
        history.append(weights["C"])
        new_users = USERS[day * 2_000:(day + 1) * 2_000]
        for u in new_users:
            stored[u] = assign_with_weights(e, u, weights)
        served = Counter(stored[u] for u in new_users)
        for name, n in served.items():
            alloc.observe(name, int(rng.binomial(n, true_rate[name])), n)
        assert all(w >= 0.05 - 1e-12 for w in weights.values())
        assert sum(weights.values()) == pytest.approx(1.0)
    final = alloc.weights()
    assert history[0] == pytest.approx(1 / 3)
    assert final["C"] > 0.85
    assert final["A"] == pytest.approx(0.05, abs=0.01)
    # every arm kept at least about its floor of the users
    shares = Counter(stored.values())
    assert min(shares[n] for n in "ABC") >= 0.04 * len(stored)


def test_bandit_validation() -> None:
    with pytest.raises(ValueError):
        BanditAllocator([])
    with pytest.raises(ValueError):
        BanditAllocator(["A", "A"])
    with pytest.raises(ValueError):
        BanditAllocator(["A", "B", "C"], floor=0.34)  # 3 x 0.34 > 1
    BanditAllocator(["A", "B", "C"], floor=1 / 3)  # the limit: always even
    for kw in ({"prior_successes": 0}, {"prior_failures": float("inf")}, {"draws": 10},
               {"seed": -1}, {"floor": -0.1}):
        with pytest.raises(ValueError):
            BanditAllocator(["A", "B"], **kw)
    b = BanditAllocator(["A", "B"])
    for args in (("C", 1, 2), ("A", 3, 2), ("A", -1, 2), ("A", 1, float("nan")),
                 ("A", True, 2)):
        with pytest.raises(ValueError):
            b.observe(*args)  # type: ignore[arg-type]
    assert b.counts() == {"A": (0.0, 0.0), "B": (0.0, 0.0)}
