"""The per-event engine and the dedupe window: known inputs, known outputs."""

from __future__ import annotations

import itertools

import pytest

from models.engine import STRATEGIES, Engine, EngineConfig, reasons
from models.users.dedupe import check_and_add, event_key, keys
from models.users.profile import UserProfile

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
    assert keys(state) == [event_key(f"e{i}") for i in range(6, 10)]
    assert check_and_add(state, "e9", "f", window=4)[1] == "duplicate"
    assert check_and_add(state, "e0", "f", window=4)[1] == "new"  # fell out of the window
    with pytest.raises(ValueError):
        check_and_add(state, "e", "f", window=0)


# -- privacy and rate limits ----------------------------------------------------------------


def _trained_engine() -> tuple[Engine, dict]:
    e = Engine(EngineConfig(top_k=4, strategy="cooccurrence", exploration=0.0,
                            new_item_rate=0.0))
    e.catalogue.upsert("a", "Alien", ["scifi"])
    state, _ = feed(e, [(f"u{i}", item, "click") for i in range(4) for item in "abcde"]
                    + [("u0", "a", "click"), ("u1", "a", "click")])
    return e, state


def test_an_opted_out_user_teaches_nothing_and_gets_the_non_personal_list() -> None:
    e, state = _trained_engine()
    opted = UserProfile(opted_out=True).to_dict()
    before, updates = e.snapshot(), e.updates
    r = e.process("click", "quiet", "z", 10**9, event_id="q1", fingerprint="f", profile=opted,
                  dedupe=None, recommendation_id="r-some")
    assert r.outcome == "suppressed"
    # data minimization: the stored profile stays the flag alone; only the id is kept
    assert r.profile == {"v": 1, "oo": True} and len(r.dedupe or []) == 1
    # no model learned: not the item, not a co-occurrence, not the bandit, not a count
    assert e.snapshot() == before and e.updates == updates
    assert "z" not in e.strategy("popularity") and not e.hybrid._pending
    assert r.attributed is None and r.hit is None
    # served: overall popularity, the same list for everyone, with non-personal reasons
    assert r.strategy == "popularity" and r.items == e.non_personal(4).items
    ids = [s.item_id for s in r.items]
    assert ids[0] == "a" and len(ids) == 4 and set(ids) < set("abcde")
    assert {s.reason for s in r.items} == {"popular right now"}
    # the same event again is a duplicate, as for anyone
    again = e.process("click", "quiet", "z", 10**9, event_id="q1", fingerprint="f",
                      profile=r.profile, dedupe=r.dedupe)
    assert again.outcome == "duplicate"
    # a stored opted-out profile with old data is reduced to the flag by its next event
    old = UserProfile(opted_out=True, recent_items=["a"], clicks=3).to_dict()
    r2 = e.process("click", "quiet", "b", 10**9, event_id="q2", fingerprint="f",
                   profile=old, dedupe=None)
    assert r2.profile == {"v": 1, "oo": True}
    # serving an opted-out profile (the HTTP view) is never personal either, whatever it holds
    assert e.recommend(old, 4, user="quiet").items == e.non_personal(4).items
    assert not e.hybrid._pending
    # opted in again (the flag gone): personal serving resumes, from their next event
    r3 = e.process("click", "back", "a", 10**9, event_id="b1", fingerprint="f", profile=None,
                   dedupe=None)
    assert r3.outcome == "accepted" and r3.strategy == "cooccurrence"
    assert "a" not in [s.item_id for s in r3.items]  # their own history is excluded
    assert e.updates == updates + 1


def test_non_personal_list_ignores_history_and_segment() -> None:
    e, state = _trained_engine()
    heavy = state["u0"][0]
    # a personal list excludes what u0 has seen; the non-personal one does not know it
    assert set(e.recommend(heavy, 4).item_ids).isdisjoint(UserProfile.from_dict(heavy).seen)
    flagged = dict(heavy, oo=True)
    listed = e.non_personal(4).item_ids
    assert e.recommend(flagged, 4).item_ids == listed and listed[0] == "a"  # u0 saw "a"
    assert e.non_personal(2, categories=["scifi"]).item_ids == ["a"]


def test_a_rate_limited_event_is_counted_but_learned_and_served_nothing() -> None:
    e, state = _trained_engine()
    prof, dd = state["u2"]
    before, updates = e.snapshot(), e.updates
    r = e.process("purchase", "u2", "zz", 5 * 10**9, event_id="bot-1", fingerprint="f",
                  profile=prof, dedupe=dd, amount=4.0, learn=False, serve=False)
    assert r.outcome == "accepted" and r.items == [] and r.strategy == ""
    assert r.hit is None and r.attributed is None
    assert e.snapshot() == before and e.updates == updates  # no model changed
    old, new = UserProfile.from_dict(prof), UserProfile.from_dict(r.profile)
    # counted exactly ...
    assert (new.purchases, new.spend) == (old.purchases + 1, old.spend + 4.0)
    assert new.last_seen_ms == 5 * 10**9 and new.clicks == old.clicks
    # ... but the item shapes nothing: no history, seen, purchased, interests
    assert (new.recent_items, new.seen, new.purchased, new.interests) == (
        old.recent_items, old.seen, old.purchased, old.interests)
    assert new.model_state == old.model_state
    # dedupe as usual: a redelivery of the rate-limited event counts once
    dup = e.process("purchase", "u2", "zz", 5 * 10**9, event_id="bot-1", fingerprint="f",
                    profile=r.profile, dedupe=r.dedupe, amount=4.0, learn=False, serve=False)
    assert dup.outcome == "duplicate"
    # the same event, not rate-limited, does change the models (the check above can fail)
    e.process("purchase", "u2", "zz", 5 * 10**9, event_id="bot-2", fingerprint="f",
              profile=r.profile, dedupe=r.dedupe, amount=4.0)
    assert e.snapshot() != before and e.updates == updates + 1


def test_user_profile_is_the_stored_profile_parsed() -> None:
    """Result.user_profile spares callers a second UserProfile.from_dict of the profile."""
    e = Engine(EngineConfig(top_k=3, exploration=0.0))
    e.upsert_item("x", "X", ["Comedy"])
    stored: dict[str, dict | None] = {}
    dedupe: dict[str, list | None] = {}
    events = [("u1", "x"), ("u2", "y"), ("u1", "y"), ("u1", "z"), ("u2", "x"), ("u1", "x")]
    for n, (user, item) in enumerate(events):
        kind = "purchase" if n % 3 == 2 else "click"
        r = e.process(kind, user, item, 1_000 * n, event_id=f"e{n}", fingerprint="f",
                      profile=stored.get(user), dedupe=dedupe.get(user),
                      amount=2.5 if kind == "purchase" else 0.0, serve_id=f"r{n}")
        assert r.profile is not None and r.user_profile is not None
        assert r.user_profile == UserProfile.from_dict(r.profile)
        r.user_profile.recent_items.append("changed")  # shares nothing with the dict
        assert "changed" not in r.profile.get("r", [])
        stored[user], dedupe[user] = r.profile, r.dedupe
    assert stored["u1"] is not None and stored["u1"]["r"] == ["y", "z", "x"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_read_only_recommendation_changes_no_model_state(strategy: str) -> None:
    """What an HTTP read serves: the learned ranking, with nothing spent or remembered (no
    new-item budget, no sync record, no list for the blend to learn from)."""
    from models.sync import Outbox

    e = Engine(EngineConfig(top_k=4, new_item_rate=1.0, new_item_budget=3, strategy=strategy))
    e.sync = Outbox(min_users=1)
    for i in range(12):
        e.upsert_item(f"i{i}", f"Title {i}", [f"c{i % 3}"], "a few words")
    state, _ = feed(e, [(f"u{n % 3}", f"i{n % 6}", "click") for n in range(12)])
    # the catalogue moves on after the last event: a read finds the text index behind
    e.upsert_item("i12", "Another title", ["c1"], "other words")
    e.upsert_item("i7", "Retitled", ["c2"], "a few words more")
    e.drain_sync("w", 1)
    before, explored = e.snapshot(), dict(e._explored)
    pending = {u: (ids, f.tobytes(), c, k) for u, (ids, f, c, k) in e.hybrid._pending.items()}
    lists = [e.recommend(state[f"u{n % 3}"][0], 4, key=f"web:{n}", user=f"u{n % 3}",
                         read_only=True) for n in range(60)]
    assert e.snapshot() == before and e._explored == explored and len(e.sync) == 0
    assert {u: (ids, f.tobytes(), c, k)
            for u, (ids, f, c, k) in e.hybrid._pending.items()} == pending
    # the same ranking a serving call gives, without the new-item slot it would explore
    plain = Engine(EngineConfig(top_k=4, new_item_rate=0.0, strategy=strategy))
    plain.restore(before)
    for n, served in enumerate(lists):
        assert served.items
        assert served.item_ids == plain.recommend(
            state[f"u{n % 3}"][0], 4, key=f"web:{n}", user=f"u{n % 3}").item_ids
    # the check above can fail: the same requests served normally change the models
    for n in range(60):
        e.recommend(state[f"u{n % 3}"][0], 4, key=f"web:{n}", user=f"u{n % 3}")
    assert e.snapshot() != before and len(e.sync) > 0


def test_popularity_serves_the_users_segment_when_the_profile_has_one() -> None:
    """docs/quality.md: popularity within the user's segment (the worker's, kept in the
    profile), topped up from overall popularity; none without a segment."""
    e = Engine(EngineConfig(top_k=2, strategy="popularity", exploration=0.0,
                            new_item_rate=0.0))
    events = [("k1", "a", "kids"), ("k2", "a", "kids"), ("g1", "b", "adults"),
              ("g2", "b", "adults"), ("g3", "b", "adults")]
    for n, (user, item, segment) in enumerate(events):
        e.process("click", user, item, 1_000 * n, event_id=f"s{n}", fingerprint="f",
                  profile={"v": 1, "sg": segment}, dedupe=None, serve=False)
    kids = e.recommend({"v": 1, "sg": "kids"}, 2)
    assert kids.item_ids == ["a", "b"] and kids.items[0].reason == "popular in kids"
    assert e.recommend(None, 2).item_ids == ["b", "a"]
