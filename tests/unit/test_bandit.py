"""Epsilon-greedy strategy choice: exact propensities, keyed draws, decayed estimates."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from models.recommenders.bandit import EpsilonGreedy, uniform_from_key

ARMS = ["hybrid", "cooccurrence", "mf", "popularity"]


def test_propensities_are_exact_and_sum_to_one() -> None:
    b = EpsilonGreedy(ARMS, epsilon=0.2)
    # greedy: 1 - eps + eps/n; every other arm eps/n
    assert b.propensity("hybrid") == pytest.approx(0.85)
    for arm in ARMS[1:]:
        assert b.propensity(arm) == pytest.approx(0.05)
    assert math.fsum(b.propensity(a) for a in ARMS) == pytest.approx(1.0)
    stats = b.stats()
    assert [stats[a]["propensity"] for a in ARMS] == [b.propensity(a) for a in ARMS]


@pytest.mark.parametrize(("epsilon", "greedy_p", "other_p"),
                         [(0.0, 1.0, 0.0), (1.0, 0.25, 0.25), (0.4, 0.7, 0.1)])
def test_propensity_extremes(epsilon: float, greedy_p: float, other_p: float) -> None:
    b = EpsilonGreedy(ARMS, epsilon=epsilon)
    assert b.propensity("hybrid") == pytest.approx(greedy_p)
    assert b.propensity("mf") == pytest.approx(other_p)


def test_choose_is_deterministic_per_key_and_reports_its_propensity() -> None:
    b = EpsilonGreedy(ARMS, epsilon=0.5)
    picks = {key: b.choose(key) for key in (f"req-{n}" for n in range(200))}
    assert all(EpsilonGreedy(ARMS, epsilon=0.5).choose(k) == v for k, v in picks.items())
    assert all(p == b.propensity(arm) for arm, p in picks.values())
    # the draw is uniform_from_key(key, salt): below epsilon it is split evenly over arms
    for key, (arm, _) in picks.items():
        u = uniform_from_key(key)
        expected = "hybrid" if u >= 0.5 else ARMS[int(u / 0.5 * len(ARMS))]
        assert arm == expected
    assert len({arm for arm, _ in picks.values()}) == len(ARMS)


def test_salt_changes_the_draws() -> None:
    a = EpsilonGreedy(ARMS, epsilon=1.0, salt="one")
    b = EpsilonGreedy(ARMS, epsilon=1.0, salt="two")
    keys = [f"k{n}" for n in range(100)]
    same = sum(a.choose(k)[0] == b.choose(k)[0] for k in keys)
    assert same < 50  # independent draws agree about a quarter of the time
    assert uniform_from_key("k1", "one") != uniform_from_key("k1", "two")


def test_uniform_from_key_range() -> None:
    values = [uniform_from_key(f"k{n}") for n in range(2000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert 0.45 < sum(values) / len(values) < 0.55


@pytest.mark.parametrize("greedy_arm", ["hybrid", "mf"])
def test_empirical_frequencies_match_propensities(greedy_arm: str) -> None:
    b = EpsilonGreedy(ARMS, epsilon=0.3, half_life=None, prior=0.0)
    if greedy_arm != "hybrid":
        b.update(greedy_arm, 1.0)
    assert b.greedy() == greedy_arm
    n = 100_000
    counts = Counter(b.choose(f"event-{i}")[0] for i in range(n))
    for arm in ARMS:
        p = b.propensity(arm)
        sigma = math.sqrt(p * (1 - p) / n)
        assert abs(counts[arm] / n - p) < 5 * sigma, (arm, counts[arm] / n, p)
    assert b.propensity(greedy_arm) == pytest.approx(0.7 + 0.3 / 4)


def test_estimates_with_prior_and_decay_hand_computed() -> None:
    b = EpsilonGreedy(["a", "b"], epsilon=0.1, half_life=1.0, prior=2.0, prior_mean=0.5)
    # no data: the prior mean
    assert b.estimate("a") == b.estimate("b") == 0.5
    b.update("a", 1.0)  # a: sum 1, count 1
    assert b.estimate("a") == pytest.approx((1 + 2 * 0.5) / (1 + 2))
    assert b.estimate("b") == pytest.approx(0.5)
    b.update("b", 0.0)  # everything halves first: a: 0.5 / 0.5, b: 0 / 1
    assert b.estimate("a") == pytest.approx((0.5 + 1.0) / (0.5 + 2))
    assert b.estimate("b") == pytest.approx((0.0 + 1.0) / (1.0 + 2))
    assert b.greedy() == "a"
    b.update("b", 1.0)  # a: 0.25 / 0.25, b: 1 / 1.5
    assert b.estimate("a") == pytest.approx(1.25 / 2.25)
    assert b.estimate("b") == pytest.approx(2.0 / 3.5)
    assert b.greedy() == "b"  # 0.571 > 0.556
    assert b.stats()["b"]["observations"] == pytest.approx(1.5)


def test_plain_means_without_decay() -> None:
    b = EpsilonGreedy(["a"], half_life=None, prior=0.0)
    for r in (1.0, 0.0, 0.0, 1.0, 1.0):
        b.update("a", r)
    assert b.estimate("a") == pytest.approx(0.6)
    b.update("a", True)  # a bool reward counts as 1.0
    assert b.estimate("a") == pytest.approx(4 / 6)


def test_greedy_switches_after_rewards() -> None:
    b = EpsilonGreedy(ARMS, epsilon=0.1, half_life=None, prior=10.0)
    # a request whose draw is above epsilon gets the greedy arm
    key = next(k for k in (f"r{n}" for n in range(100)) if uniform_from_key(k) >= 0.1)
    assert b.choose(key) == ("hybrid", pytest.approx(0.925))
    for _ in range(5):
        b.update("mf", 1.0)
        b.update("hybrid", 0.0)
    assert b.greedy() == "mf"
    assert b.propensity("mf") == pytest.approx(0.925)
    assert b.propensity("hybrid") == pytest.approx(0.025)
    assert b.choose(key) == ("mf", pytest.approx(0.925))


def test_one_lucky_reward_does_not_take_over_with_a_prior() -> None:
    b = EpsilonGreedy(["a", "b"], half_life=None, prior=10.0)
    b.update("a", 0.0)
    b.update("a", 0.0)
    b.update("b", 1.0)
    assert b.greedy() == "b"  # 1/11 > 0/12
    for _ in range(30):
        b.update("a", 0.2)
        b.update("b", 0.0)
    assert b.greedy() == "a"  # 6/42 > 1/41


def test_ties_go_to_the_first_arm() -> None:
    b = EpsilonGreedy(["z", "a", "m"], half_life=None)
    assert b.greedy() == "z"
    for arm in ("z", "a", "m"):
        b.update(arm, 1.0)
    assert b.greedy() == "z"
    b.update("a", 1.0)
    assert b.greedy() == "a"


@pytest.mark.parametrize("kwargs", [
    {"arms": []}, {"arms": ["a", "a"]}, {"arms": ["a", ""]}, {"arms": ["a", 3]},
    {"epsilon": -0.1}, {"epsilon": 1.1}, {"epsilon": math.nan}, {"epsilon": "0.1"},
    {"half_life": 0}, {"half_life": -1.0}, {"half_life": math.inf}, {"half_life": math.nan},
    {"prior": -1.0}, {"prior": math.inf}, {"prior": math.nan},
    {"prior_mean": math.nan}, {"prior_mean": math.inf}, {"prior_mean": "0"},
])
def test_bad_constructor_args_rejected(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"arms": ["a", "b"], **kwargs}
    with pytest.raises(ValueError):
        EpsilonGreedy(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("reward", [math.nan, math.inf, -math.inf, "1", None])
def test_bad_rewards_rejected(reward: object) -> None:
    b = EpsilonGreedy(["a", "b"])
    with pytest.raises(ValueError):
        b.update("a", reward)  # type: ignore[arg-type]
    assert b.stats()["a"]["observations"] == 0.0


def test_unknown_arm_rejected() -> None:
    b = EpsilonGreedy(["a", "b"])
    with pytest.raises(ValueError):
        b.update("c", 1.0)
    with pytest.raises(ValueError):
        b.propensity("c")
