"""Co-occurrence decay and Pearson, segment popularity, and the engine's serving policy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from models.engine import STRATEGIES, Engine, EngineConfig, Served
from models.recommenders import cooccurrence
from models.recommenders.base import Context, ScoredItem
from models.recommenders.cooccurrence import ItemCooccurrence
from models.recommenders.popularity import SegmentPopularity


def learn_sessions(m: ItemCooccurrence, sessions: Sequence[Sequence[str]]) -> ItemCooccurrence:
    for session in sessions:
        for pos, item in enumerate(session):
            m.learn_one(item, session[:pos])
    return m


# -- co-occurrence time decay -------------------------------------------------------------------


def decayed(h: float | None) -> ItemCooccurrence:
    m = ItemCooccurrence(window=5, half_life=h, fallback=None)
    m.learn_one("a", [])     # step 1
    m.learn_one("b", ["a"])  # step 2: the pair a-b
    m.learn_one("x", [])     # steps 3 and 4: unrelated
    m.learn_one("y", [])
    m.learn_one("c", ["a"])  # step 5: the pair a-c, h = 3 events after a-b
    return m


def test_a_pair_learned_half_life_events_earlier_weighs_half() -> None:
    m = decayed(3.0)
    assert m.neighbours("a") == pytest.approx({"b": 0.5, "c": 1.0}, rel=1e-6)
    assert m.neighbours("b") == pytest.approx({"a": 0.5}, rel=1e-6)
    # counts learned at step s are g**s (g = 2 ** (1/h)) up to a common factor:
    # n_a = g, n_b = co_ab = g**2, n_c = co_ac = g**5
    g = 2.0 ** (1 / 3)
    assert m.similarity("a", "b") == pytest.approx(g**2 / math.sqrt(g * g**2), rel=1e-6)
    assert m.similarity("a", "c") == pytest.approx(g**5 / math.sqrt(g * g**5), rel=1e-6)
    # the recent pair is the stronger one, though both were seen once
    assert [s.item_id for s in m.rank(["a"], (), 2)] == ["c", "b"]


def test_without_half_life_counts_do_not_decay() -> None:
    m = decayed(None)
    assert m.neighbours("a") == {"b": 1.0, "c": 1.0}
    assert m.similarity("a", "b") == m.similarity("a", "c") == 1.0


def test_decay_lowers_old_counts_as_events_go_by() -> None:
    m = decayed(3.0)
    for n in range(6):  # two more half-lives of unrelated events
        m.learn_one(f"other{n}", [])
    assert m.neighbours("a") == pytest.approx({"b": 0.125, "c": 0.25}, rel=1e-6)


SESSIONS = [[f"i{(7 * n + d) % 23}" for d in range(6)] for n in range(40)]


@pytest.mark.parametrize("similarity", ["cosine", "pearson"])
def test_renormalization_keeps_similarities(monkeypatch: pytest.MonkeyPatch,
                                            similarity: str) -> None:
    def build() -> ItemCooccurrence:
        m = ItemCooccurrence(window=4, half_life=2.0, fallback=None, similarity=similarity)
        return learn_sessions(m, SESSIONS)

    # 240 events at half-life 2 scale counts by 2**120 ~ 1e36 > 1e20: both renormalize
    reference = build()
    calls: list[float] = []
    original = ItemCooccurrence._renormalize

    def counting(self: ItemCooccurrence) -> None:
        calls.append(self._unit)
        original(self)

    monkeypatch.setattr(cooccurrence, "_RENORMALIZE_ABOVE", 8.0)
    monkeypatch.setattr(ItemCooccurrence, "_renormalize", counting)
    often = build()
    assert len(calls) > 30  # every few events
    pairs = [(f"i{a}", f"i{b}") for a in range(23) for b in range(23) if a != b]
    for a, b in pairs:
        assert often.similarity(a, b) == pytest.approx(reference.similarity(a, b),
                                                       rel=1e-4, abs=1e-9)
    for item in ("i0", "i5", "i22"):
        assert often.neighbours(item) == pytest.approx(reference.neighbours(item), rel=1e-4)
        assert [s.item_id for s in often.rank([item, "i3"], (), 5)] == [
            s.item_id for s in reference.rank([item, "i3"], (), 5)]


# -- Pearson --------------------------------------------------------------------------------------


def pearson_toy() -> ItemCooccurrence:
    # N = 7 events; n: a 2, b 3, c 1, d 1; co (window 2): ab 2, ac 1, bc 1, bd 1
    m = ItemCooccurrence(window=2, half_life=None, similarity="pearson", fallback=None)
    return learn_sessions(m, [["a", "b", "c"], ["a", "b"], ["b", "d"]])


def test_pearson_hand_computed() -> None:
    m = pearson_toy()

    def r(n_co: float, ni: float, nj: float, n: float = 7.0) -> float:
        return (n * n_co - ni * nj) / math.sqrt(ni * (n - ni) * nj * (n - nj))

    assert m.similarity("a", "b") == pytest.approx(r(2, 2, 3))  # 8 / sqrt(120)
    assert m.similarity("b", "a") == pytest.approx(r(2, 2, 3))
    assert m.similarity("a", "c") == pytest.approx(r(1, 2, 1))  # 5 / sqrt(60)
    assert m.similarity("b", "d") == pytest.approx(r(1, 3, 1))  # 4 / sqrt(72)
    assert m.similarity("c", "d") == 0.0  # never together
    got = {s.item_id: s.score for s in m.rank(["a"], (), 5)}
    assert got == pytest.approx({"b": r(2, 2, 3), "c": r(1, 2, 1)})
    # two history items, recency 0.8 for the older one; a-d was never seen: no term
    out = m.rank(["a", "b"], (), 5)
    assert [(s.item_id, s.reason) for s in out] == [
        ("c", "similar to a you viewed"), ("d", "similar to b you viewed")]
    assert [s.score for s in out] == pytest.approx(
        [r(1, 3, 1) + 0.8 * r(1, 2, 1), r(1, 3, 1)])


def test_pearson_counts_weights_in_n() -> None:
    m = ItemCooccurrence(window=2, half_life=None, similarity="pearson", fallback=None)
    m.learn_one("a", [], 2.0)
    m.learn_one("b", ["a"])
    m.learn_one("c", [])
    # N = 4, n_a = 2, n_b = 1, co = 1
    assert m.similarity("a", "b") == pytest.approx((4 * 1 - 2 * 1) / math.sqrt(2 * 2 * 1 * 3))


def test_pearson_discounts_a_pair_explained_by_popularity() -> None:
    # P is everywhere: a meets it 6 times; Q meets a twice and never appears elsewhere.
    sessions = [["a", "P"]] * 6 + [["a", "Q"]] * 2 + [[f"x{n}", "P"] for n in range(10)]
    cos = learn_sessions(ItemCooccurrence(window=5, half_life=None, fallback=None), sessions)
    pear = learn_sessions(ItemCooccurrence(window=5, half_life=None, fallback=None,
                                           similarity="pearson"), sessions)
    # cosine: 6 / sqrt(8 * 16) = 0.53 > 2 / sqrt(8 * 2) = 0.5
    assert [s.item_id for s in cos.rank(["a"], (), 2)] == ["P", "Q"]
    # Pearson, N = 36: P (36*6 - 8*16) / sqrt(8*28*16*20) = 0.33 < Q 56 / sqrt(8*28*2*34) = 0.45
    assert [s.item_id for s in pear.rank(["a"], (), 2)] == ["Q", "P"]
    assert pear.similarity("a", "P") == pytest.approx(88 / math.sqrt(8 * 28 * 16 * 20))
    assert pear.similarity("a", "Q") == pytest.approx(56 / math.sqrt(8 * 28 * 2 * 34))


def test_pearson_ranks_only_positively_correlated_items() -> None:
    # a meets b once, but both are common enough that the pair is below chance
    sessions = ([["a", "b"]] + [[f"x{n}", "b"] for n in range(5)] + [["a", "c"]]
                + [["a", f"y{n}"] for n in range(5)])
    m = learn_sessions(ItemCooccurrence(window=5, half_life=None, fallback=None,
                                        similarity="pearson"), sessions)
    # N = 24, n_a = 7, n_b = 6, co = 1
    assert m.similarity("a", "b") == pytest.approx((24 - 42) / math.sqrt(7 * 17 * 6 * 18))
    assert "b" in m.neighbours("a")
    ranked = m.rank(["a"], (), 10)
    assert [s.item_id for s in ranked] == ["c", "y0", "y1", "y2", "y3", "y4"]
    assert ranked[0].score == pytest.approx((24 - 7) / math.sqrt(7 * 17 * 1 * 23))


# -- segment popularity ---------------------------------------------------------------------------


def segment_model(max_segments: int = 64) -> SegmentPopularity:
    sp = SegmentPopularity(half_life=None, max_segments=max_segments)
    for item, segment, times in [("a", "kids", 2), ("b", "kids", 1), ("c", "adults", 3),
                                 ("d", None, 4)]:
        for _ in range(times):
            sp.learn_one(item, [], context=Context(segment=segment))
    return sp


def pairs(items: list[ScoredItem]) -> list[tuple[str, float, str]]:
    return [(s.item_id, s.score, s.reason) for s in items]


def test_segment_ranking_with_overall_fallback() -> None:
    sp = segment_model()
    kids = Context(segment="kids")
    assert pairs(sp.rank([], (), 4, kids)) == [
        ("a", 2.0, "popular in kids"), ("b", 1.0, "popular in kids"),
        ("d", 4.0, "popular"), ("c", 3.0, "popular")]
    assert pairs(sp.rank([], (), 2, Context(segment="adults"))) == [
        ("c", 3.0, "popular in adults"), ("d", 4.0, "popular")]
    assert [s.item_id for s in sp.rank(["a"], {"d"}, 4, kids)] == ["b", "c"]
    for anonymous in (None, Context(), Context(segment="unknown"), Context(segment="")):
        assert [s.item_id for s in sp.rank([], (), 4, anonymous)] == ["d", "c", "a", "b"]
    assert all(s.strategy == "popularity" for s in sp.rank([], (), 4, kids))
    assert len(sp) == 4 and "a" in sp and "zz" not in sp


def test_segments_are_bounded_least_recently_learned_first_out() -> None:
    sp = segment_model(max_segments=2)
    assert sp.segments() == ["kids", "adults"]
    sp.learn_one("e", [], context=Context(segment="teens"))
    assert sp.segments() == ["adults", "teens"]
    # kids is gone: its users get the overall ranking
    assert pairs(sp.rank([], (), 2, Context(segment="kids")))[0] == ("d", 4.0, "popular")
    sp.learn_one("c", [], context=Context(segment="adults"))  # adults is now the latest
    sp.learn_one("f", [], context=Context(segment="seniors"))
    assert sp.segments() == ["adults", "seniors"]
    assert sp.rank([], (), 1, Context(segment="adults"))[0].score == 4.0  # c, 3 + 1


# -- the engine's serving policy -------------------------------------------------------------------

CATALOGUE = {  # item: (categories, clicks from other users)
    "a": (["Drama"], 9), "b": (["Drama"], 8), "c": (["Comedy"], 7), "d": (["Comedy"], 6),
    "e": (["Action", "Drama"], 5), "f": (["Action"], 5),
}


def engine(**kw: object) -> Engine:
    cfg: dict[str, object] = {"top_k": 3, "exploration": 0.0, "new_item_rate": 0.0, **kw}
    e = Engine(EngineConfig(**cfg))  # type: ignore[arg-type]
    for item, (cats, _) in CATALOGUE.items():
        e.upsert_item(item, f"Film {item.upper()}", cats)
    n = 0
    for item, (_, clicks) in CATALOGUE.items():
        for _ in range(clicks):
            n += 1
            e.process("click", f"crowd{n % 7}", item, n, event_id=f"c{n}", fingerprint="",
                      profile=None, dedupe=None, serve=False)
    return e


def click(e: Engine, user: str, item: str, profile: dict | None) -> dict:
    r = e.process("click", user, item, 10_000, event_id=f"{user}-{item}", fingerprint="",
                  profile=profile, dedupe=None, serve=False)
    assert r.profile is not None
    return r.profile


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_serves_itself_with_propensity_one(strategy: str) -> None:
    e = engine(strategy=strategy)
    profile = click(e, "me", "a", None)
    for key in ("k1", "k2", "k3"):
        served = e.recommend(profile, 3, key=key, user="me")
        assert served.strategy == strategy and served.propensity == 1.0
        assert len(served.items) == 3 and "a" not in served.item_ids


def test_exploration_propensities_match_the_bandit() -> None:
    e = engine(exploration=0.2)
    profile = click(e, "me", "a", None)
    chosen = []
    for n in range(300):
        served = e.recommend(profile, 3, key=f"req{n}", user="me")
        assert (served.strategy, served.propensity) == e.bandit.choose(f"req{n}")
        assert served.propensity == pytest.approx(
            1 - 0.2 + 0.2 / 6 if served.strategy == "hybrid" else 0.2 / 6)
        chosen.append(served.strategy)
    assert set(chosen) == set(STRATEGIES)
    assert 0.75 < chosen.count("hybrid") / len(chosen) < 0.92  # expected 0.833
    # the same key is served the same way
    again = e.recommend(profile, 3, key="req7", user="me")
    assert again.strategy == chosen[7]


@pytest.mark.parametrize("strategy", ["hybrid", "popularity", "cooccurrence"])
def test_category_filter(strategy: str) -> None:
    e = engine(strategy=strategy)
    profile = click(e, "me", "c", None)
    served = e.recommend(profile, 3, key="k", categories=["Drama"])
    assert sorted(served.item_ids) == ["a", "b", "e"]
    only_action = e.recommend(profile, 3, key="k", categories=["Action"])
    assert sorted(only_action.item_ids) == ["e", "f"]


def test_max_repeats_stops_re_serving_after_n_showings() -> None:
    e = engine(strategy="popularity", max_repeats=2)
    profile = click(e, "me", "f", None)
    lists = []
    for n in range(3):
        served = e.recommend(profile, 2, key=f"k{n}")
        lists.append(served.item_ids)
        profile = e.note_served(profile, served)
    assert lists == [["a", "b"], ["a", "b"], ["c", "d"]]
    assert profile["sc"] == {"a": 2, "b": 2, "c": 1, "d": 1}


def test_without_max_repeats_the_same_list_is_served_again() -> None:
    e = engine(strategy="popularity")
    profile = click(e, "me", "f", None)
    for n in range(3):
        served = e.recommend(profile, 2, key=f"k{n}")
        assert served.item_ids == ["a", "b"]
        profile = e.note_served(profile, served)


def test_max_per_category_limits_a_list() -> None:
    e = engine(strategy="popularity", max_per_category=1)
    # a (Drama), b over Drama, c (Comedy), d over Comedy, e (Action+Drama) over Drama, f
    assert e.recommend(None, 3, key="k").item_ids == ["a", "c", "f"]
    e2 = engine(strategy="popularity", max_per_category=2)
    assert e2.recommend(None, 5, key="k").item_ids == ["a", "b", "c", "d", "f"]


def test_new_item_exploration_fills_the_last_slot_within_its_budget() -> None:
    e = engine(strategy="popularity", new_item_rate=1.0, new_item_budget=2)
    e.upsert_item("n", "Brand New Drama", ["Drama"])     # never clicked, matches
    e.upsert_item("m", "Newer Western", ["Western"])     # never clicked, does not match
    profile = click(e, "me", "a", None)  # interest: Drama
    served = [e.recommend(profile, 3, key=f"k{n}").items for n in range(5)]
    for items in served[:2]:
        assert [s.item_id for s in items] == ["b", "c", "n"]
        assert items[-1].reason.startswith("new: ")
    # n's budget is spent: m, the newest arrival, takes the slot for its own budget
    for items in served[2:4]:
        assert [(s.item_id, s.reason) for s in items][-1] == ("m", "new arrival")
    assert [s.item_id for s in served[4]] == ["b", "c", "d"]


def test_no_new_item_exploration_at_rate_zero() -> None:
    e = engine(strategy="popularity", new_item_rate=0.0)
    e.upsert_item("n", "Brand New Drama", ["Drama"])
    profile = click(e, "me", "a", None)
    assert e.recommend(profile, 3, key="k").item_ids == ["b", "c", "d"]


def test_snapshot_restore_keeps_recommendations_identical() -> None:
    config = {"exploration": 0.3, "new_item_rate": 0.5}
    e = engine(**config)
    e.upsert_item("n", "Brand New Drama", ["Drama"])
    profiles = {"me": click(e, "me", "a", None), "you": click(e, "you", "c", None)}
    e.recommend(profiles["me"], 3, key="warm-up", user="me")
    blob = e.snapshot()
    fresh = Engine(EngineConfig(top_k=3, **config))  # type: ignore[arg-type]
    fresh.restore(blob)
    assert fresh.updates == e.updates
    for n in range(20):
        for user, profile in profiles.items():
            got: list[Served] = [m.recommend(profile, 3, key=f"{user}{n}", user=user)
                                 for m in (e, fresh)]
            assert got[0] == got[1]
    # and both keep learning the same way
    results = [m.process("click", "me", "d", 20_000, event_id="after", fingerprint="",
                         profile=profiles["me"], dedupe=None) for m in (e, fresh)]
    assert results[0].items == results[1].items and results[0].profile == results[1].profile
