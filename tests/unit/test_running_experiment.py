"""Which variant serves a user: the running experiment, sticky assignments, bandit mode."""

from __future__ import annotations

from collections import Counter

from models.marketing.experiments import Running, load_experiments

CONFIG = {"experiments": [
    {"name": "old", "active": False, "control": "x",
     "variants": [{"name": "x"}, {"name": "y"}]},
    {"name": "recs", "control": "A",
     "variants": [{"name": "A", "weight": 1, "strategy": "popularity"},
                  {"name": "B", "weight": 3, "strategy": "cooccurrence"}]},
]}


def test_no_experiment_means_variant_default() -> None:
    arm = Running({}).assign("u1", None)
    assert (arm.experiment, arm.variant, arm.strategy, arm.new) == (None, "default", None, False)


def test_the_first_active_experiment_assigns_by_weight_and_keeps_assignments() -> None:
    running = Running(load_experiments(CONFIG))
    assert running.experiment is not None and running.experiment.name == "recs"
    arms = [running.assign(f"u{n}", None) for n in range(4000)]
    share_b = Counter(a.variant for a in arms)["B"] / len(arms)
    assert 0.72 < share_b < 0.78  # weight 3:1
    assert all(a.new and a.experiment == "recs" for a in arms)
    assert {(a.variant, a.strategy) for a in arms} == {("A", "popularity"),
                                                        ("B", "cooccurrence")}
    # a stored assignment wins over the hash (bandit mode relies on it) ...
    kept = running.assign("u1", {"recs": ["A", 0.0]})
    assert (kept.variant, kept.new) == ("A", False)
    # ... unless its variant is gone from the config: then the user is assigned anew
    again = running.assign("u1", {"recs": ["Z", 0.0]})
    assert again.new and again.variant == arms[1].variant


def test_bandit_mode_moves_new_users_toward_the_better_variant() -> None:
    cfg = {"experiments": [{"name": "b", "control": "A", "mode": "bandit",
                            "variants": [{"name": "A"}, {"name": "B"}]}]}
    running = Running(load_experiments(cfg))
    before = Counter(running.assign(f"n{n}", None).variant for n in range(2000))
    running.observe("A", 20, 2000)
    running.observe("B", 200, 2000)
    running._weights = None  # refresh now, not in WEIGHTS_REFRESH_S
    after = Counter(running.assign(f"m{n}", None).variant for n in range(2000))
    assert abs(before["A"] - before["B"]) < 300  # even at the start
    assert after["B"] > 3 * after["A"]
    running.observe("not-a-variant", 1, 1)  # ignored, not an error


def test_variant_settings_reach_serving_and_unknown_ones_are_refused() -> None:
    import pytest

    from models.engine import Engine, EngineConfig

    cfg = {"experiments": [{"name": "div", "control": "A", "variants": [
        {"name": "A"}, {"name": "B", "settings": {"max_per_category": 1}}]}]}
    running = Running(load_experiments(cfg))
    arms = {running.assign(f"u{n}", None).variant: running.assign(f"u{n}", None)
            for n in range(50)}
    assert arms["A"].overrides is None and arms["B"].overrides == {"max_per_category": 1}
    e = Engine(EngineConfig(top_k=4, strategy="popularity", exploration=0.0,
                            new_item_rate=0.0))
    for n, item in enumerate(["a", "b", "c", "d", "e"]):
        e.upsert_item(item, item.upper(), ["Drama"] if item in "abc" else ["Comedy"])
        for m in range(5 - n):
            e.process("click", f"x{n}{m}", item, n, event_id=f"{n}-{m}", fingerprint="",
                      profile=None, dedupe=None)
    plain = e.recommend(None, 4, strategy="popularity").item_ids
    diverse = e.recommend(None, 4, strategy="popularity", overrides=arms["B"].overrides)
    assert plain[:3] == ["a", "b", "c"]  # three Drama items first
    assert diverse.item_ids[:2] == ["a", "d"]  # at most one item per category
    bad = {"experiments": [{"name": "x", "control": "A", "variants": [
        {"name": "A", "settings": {"top_k": 3}}]}]}
    with pytest.raises(ValueError, match="top_k"):
        Running(load_experiments(bad))
