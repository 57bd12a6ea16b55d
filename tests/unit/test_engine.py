"""The per-event engine and the dedupe window: known inputs, known outputs."""

from __future__ import annotations

import itertools

import pytest

from models.dedupe import check_and_add, event_key
from models.engine import STRATEGIES, Engine, EngineConfig, reasons
from models.profile import UserProfile

_ids = itertools.count()


def feed(engine: Engine, events, state=None):
    """events: (user, item, kind); returns per-user state and the last Result per user."""
    state = {} if state is None else state
    results = {}
    for user, item, kind in events:
        n = next(_ids)
        prof, dd = state.get(user, (None, None))
        r = engine.process(kind, user, item, 1_000 * n, event_id=f"{user}-{n}",
                           fingerprint="f", profile=prof, dedupe=dd,
                           amount=10.0 if kind == "purchase" else 0.0)
        if r.outcome == "accepted":
            state[user] = (r.profile, r.dedupe)
        results[user] = r
    return state, results


def test_cooccurrence_ranking_and_reasons() -> None:
    e = Engine(EngineConfig(top_k=3, strategy="cooccurrence", exploration=0.0,
                            new_item_rate=0.0))
    e.catalogue.upsert("b", "Blade Runner", ["scifi"])
    # two users establish a-b and a-c co-occurrence (a-b twice)
    state, _ = feed(e, [("u1", "a", "click"), ("u1", "b", "click"), ("u2", "a", "click"),
                        ("u2", "b", "click"), ("u3", "a", "click"), ("u3", "c", "click")])
    _, res = feed(e, [("new", "a", "click")], state)
    r = res["new"]
    assert r.outcome == "accepted" and r.strategy == "cooccurrence"
    # 'a' itself is excluded (already seen); popularity tops the list up
    assert [s.item_id for s in r.items][:2] == ["b", "c"]
    assert r.items[0].reason == "similar to a you viewed"
    assert r.items[0].score > r.items[1].score > 0
    wire = reasons(r.items)
    assert set(wire[0]) == {"item_id", "score", "reason"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_purchased_and_seen_items_are_never_recommended(strategy: str) -> None:
    e = Engine(EngineConfig(top_k=10, strategy=strategy, exploration=0.0))
    events = [(f"u{i}", item, "click") for i in range(5) for item in "abcdef"]
    state, _ = feed(e, events)
    state, res = feed(e, [("buyer", "a", "purchase"), ("buyer", "b", "click")], state)
    items = {s.item_id for s in res["buyer"].items}
    assert items == {"c", "d", "e", "f"}
    prof = UserProfile.from_dict(state["buyer"][0])
    assert prof.purchased == ["a"] and prof.spend == 10.0


def test_cold_start_user_gets_popularity() -> None:
    e = Engine(EngineConfig(top_k=2, exploration=0.0, new_item_rate=0.0))
    state, _ = feed(e, [("u1", "x", "click"), ("u2", "x", "click"), ("u3", "y", "click")])
    served = e.recommend(None, 2)
    assert served.item_ids == ["x", "y"] and served.strategy == "hybrid"
    assert all(s.strategy in ("popularity", "trending", "mf") and s.reason for s in served.items)


def test_duplicates_and_conflicts_change_nothing() -> None:
    e = Engine()
    r1 = e.process("click", "u", "a", 1, event_id="e1", fingerprint="f1", profile=None,
                   dedupe=None)
    dup = e.process("click", "u", "a", 1, event_id="e1", fingerprint="f1",
                    profile=r1.profile, dedupe=r1.dedupe)
    conflict = e.process("click", "u", "zz", 1, event_id="e1", fingerprint="other",
                         profile=r1.profile, dedupe=r1.dedupe)
    assert (dup.outcome, conflict.outcome) == ("duplicate", "conflict")
    assert dup.profile is None and conflict.profile is None
    # a conflict teaches the models nothing
    assert all("zz" not in e.strategy(name) for name in STRATEGIES if name != "hybrid")


def test_hit_is_judged_against_the_previous_recommendation() -> None:
    e = Engine(EngineConfig(top_k=5))
    state, _ = feed(e, [(f"u{i}", item, "click") for i in range(4) for item in "pqrs"])
    state, res = feed(e, [("v", "p", "click")], state)
    first = res["v"]
    assert first.hit is None  # nothing recommended to v before
    nxt = first.items[0].item_id
    state, res = feed(e, [("v", nxt, "click")], state)
    assert res["v"].hit is True and res["v"].hit_strategy == first.strategy
    state, res = feed(e, [("v", "never-recommended", "click")], state)
    assert res["v"].hit is False
    assert UserProfile.from_dict(state["v"][0]).last_strategy == res["v"].strategy


def test_dedupe_window_is_bounded_and_keyed() -> None:
    state = None
    for i in range(10):
        state, outcome = check_and_add(state, f"e{i}", "f", window=4)
        assert outcome == "new"
    assert len(state) == 4
    assert [k for k, _ in state] == [event_key(f"e{i}") for i in range(6, 10)]
    assert check_and_add(state, "e9", "f", window=4)[1] == "duplicate"
    assert check_and_add(state, "e0", "f", window=4)[1] == "new"  # fell out of the window
    with pytest.raises(ValueError):
        check_and_add(state, "e", "f", window=0)
