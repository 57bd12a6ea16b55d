"""UserProfile: pure updates, decay math, bounds, validation and the stored form."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.users.profile import (
    CLICK_INTEREST,
    MAX_INTERESTS,
    PURCHASE_INTEREST,
    UserProfile,
    apply_click,
    apply_purchase,
    interests_at,
    top_interests,
)

HL = 1_000.0  # half-life in ms, short so the arithmetic is easy to check


def click(p: UserProfile, item: str, ts: int, cats: tuple[str, ...] = (), **kw: int) -> UserProfile:
    return apply_click(p, item, ts, cats, half_life_ms=HL, **kw)


def test_click_counts_and_lists() -> None:
    p = click(UserProfile(), "a", 10, ("Comedy",))
    assert p.clicks == 1 and p.purchases == 0
    assert p.recent_items == ["a"] and p.seen == ["a"] and p.purchased == []
    assert p.first_seen_ms == p.last_seen_ms == 10
    assert p.interests == {"Comedy": CLICK_INTEREST} and p.interest_ts_ms == 10


def test_updates_are_pure() -> None:
    p0 = click(UserProfile(), "a", 10, ("Comedy",))
    before = p0.to_dict()
    p1 = click(p0, "b", 20, ("Drama",))
    p2 = apply_purchase(p1, "c", 30, 5.0, ("Drama",), half_life_ms=HL)
    assert p0.to_dict() == before
    assert p1.purchased == [] and p2.purchased == ["c"]
    assert p1 is not p0 and p1.seen is not p0.seen and p1.interests is not p0.interests


def test_deterministic() -> None:
    events = [("a", 5), ("b", 3), ("a", 9), ("c", 1)]

    def replay() -> UserProfile:
        p = UserProfile()
        for item, ts in events:
            p = click(p, item, ts, ("x", item))
        return p

    assert replay() == replay()


def test_half_life_halves_the_score() -> None:
    p = click(UserProfile(), "a", 0, ("Comedy",))
    assert interests_at(p, int(HL), HL) == {"Comedy": pytest.approx(0.5)}
    assert interests_at(p, int(3 * HL), HL) == {"Comedy": pytest.approx(0.125)}
    # The next event decays the stored scores to its own time before adding.
    p = click(p, "b", int(HL), ("Comedy", "Drama"))
    assert p.interest_ts_ms == HL
    assert p.interests == {"Comedy": pytest.approx(1.5), "Drama": pytest.approx(1.0)}


def test_purchase_weighs_more_than_click() -> None:
    p = apply_purchase(UserProfile(), "a", 0, 9.5, ("Drama",), half_life_ms=HL)
    p = click(p, "b", 0, ("Comedy",))
    assert p.interests == {"Drama": PURCHASE_INTEREST, "Comedy": CLICK_INTEREST}
    assert p.purchases == 1 and p.clicks == 1 and p.spend == 9.5
    assert p.purchased == ["a"] and p.seen == ["a", "b"] and p.recent_items == ["a", "b"]


def test_out_of_order_event_adds_its_decayed_weight() -> None:
    p = click(UserProfile(), "a", 2_000, ("Comedy",))
    p = click(p, "b", 1_000, ("Comedy", "Drama"))  # one half-life older
    assert p.interest_ts_ms == 2_000
    assert p.interests == {"Comedy": pytest.approx(1.5), "Drama": pytest.approx(0.5)}
    assert p.first_seen_ms == 1_000 and p.last_seen_ms == 2_000
    p = click(p, "c", 1_500)
    assert p.first_seen_ms == 1_000 and p.last_seen_ms == 2_000


def test_interests_at_an_earlier_time_are_not_inflated() -> None:
    p = click(UserProfile(), "a", 5_000, ("Comedy",))
    assert interests_at(p, 0, HL) == {"Comedy": 1.0}


def test_duplicate_and_empty_categories_count_once() -> None:
    p = click(UserProfile(), "a", 0, ("Comedy", "Comedy", ""))
    assert p.interests == {"Comedy": 1.0}


def test_top_interests() -> None:
    p = UserProfile()
    for ts, cats in [(0, ("a", "b")), (0, ("b",)), (0, ("c",)), (0, ("d",))]:
        p = click(p, "x", ts, cats)
    assert top_interests(p, 0, HL, n=3) == [("b", 2.0), ("a", 1.0), ("c", 1.0)]
    top = top_interests(p, int(HL), HL, n=1)
    assert top == [("b", pytest.approx(1.0))]
    assert top_interests(p, 0, HL, n=0) == []


def test_interests_are_capped_weakest_first() -> None:
    p = click(UserProfile(), "x", 0, ("strong",))
    p = click(p, "x", 0, ("strong",))
    for n in range(MAX_INTERESTS + 10):
        p = click(p, "x", 0, (f"c{n:03d}",))
    assert len(p.interests) == MAX_INTERESTS
    assert p.interests["strong"] == 2.0


def test_negligible_interests_are_forgotten() -> None:
    p = click(UserProfile(), "a", 0, ("old",))
    p = click(p, "b", int(100 * HL), ("new",))
    assert p.interests == {"new": 1.0}


def test_recent_items_move_to_end_without_duplicates() -> None:
    p = UserProfile()
    for item in ["a", "b", "c", "a"]:
        p = click(p, item, 1)
    assert p.recent_items == ["b", "c", "a"]
    assert p.seen == ["b", "c", "a"]


def test_bounds_evict_oldest() -> None:
    p = UserProfile()
    for n in range(30):
        p = apply_purchase(p, f"i{n}", n, 1.0, half_life_ms=HL, recent_max=5, seen_max=10)
    assert p.recent_items == [f"i{n}" for n in range(25, 30)]
    assert p.seen == [f"i{n}" for n in range(20, 30)]
    assert p.purchased == [f"i{n}" for n in range(20, 30)]
    assert p.purchases == 30 and p.spend == 30.0


@pytest.mark.parametrize("amount", [-0.01, math.nan, math.inf, -math.inf, "3", None, True])
def test_bad_amount_rejected(amount: object) -> None:
    with pytest.raises(ValueError):
        apply_purchase(UserProfile(), "a", 0, amount, half_life_ms=HL)  # type: ignore[arg-type]


def test_zero_amount_accepted() -> None:
    assert apply_purchase(UserProfile(), "a", 0, 0, half_life_ms=HL).spend == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"item_id": ""},
        {"item_id": 7},
        {"ts_ms": -1},
        {"ts_ms": 1.5},
        {"ts_ms": True},
        {"half_life_ms": 0},
        {"half_life_ms": math.nan},
        {"half_life_ms": math.inf},
        {"categories": "Comedy"},
        {"categories": ["Comedy", 3]},
        {"recent_max": 0},
        {"seen_max": 0},
    ],
)
def test_bad_arguments_rejected(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"item_id": "a", "ts_ms": 0, "categories": (), "half_life_ms": HL}
    args.update(kwargs)
    with pytest.raises(ValueError):
        apply_click(UserProfile(), **args)  # type: ignore[arg-type]


def test_stored_form_is_compact_and_tolerant() -> None:
    assert UserProfile().to_dict() == {"v": 1}
    assert UserProfile.from_dict({}) == UserProfile()
    # Missing keys take defaults; unknown keys (from a newer version) are ignored.
    p = UserProfile.from_dict({"c": 2, "r": ["a"], "future_field": [1, 2], "v": 9})
    assert p == UserProfile(clicks=2, recent_items=["a"])
    with pytest.raises(ValueError):
        UserProfile.from_dict(["not", "a", "dict"])  # type: ignore[arg-type]


def test_stored_form_shares_no_containers() -> None:
    p = click(UserProfile(), "a", 0, ("Comedy",))
    d = p.to_dict()
    d["r"].append("zzz")
    d["i"]["Comedy"] = 99.0
    assert p.recent_items == ["a"] and p.interests == {"Comedy": 1.0}


ids = st.text(min_size=1, max_size=12)
ms = st.integers(min_value=0, max_value=2**53)
finite = st.floats(allow_nan=False, allow_infinity=False)
profiles = st.builds(
    UserProfile,
    clicks=st.integers(min_value=0, max_value=2**62),
    purchases=st.integers(min_value=0, max_value=2**62),
    interests=st.dictionaries(ids, finite, max_size=8),
    interest_ts_ms=ms,
    recent_items=st.lists(ids, max_size=8, unique=True),
    seen=st.lists(ids, max_size=8, unique=True),
    purchased=st.lists(ids, max_size=8, unique=True),
    spend=finite,
    first_seen_ms=st.none() | ms,
    last_seen_ms=st.none() | ms,
    last_recommended=st.lists(ids, max_size=8),
)


@given(profiles)
def test_stored_form_round_trips_through_json(p: UserProfile) -> None:
    stored = json.loads(json.dumps(p.to_dict(), allow_nan=False))
    assert UserProfile.from_dict(stored) == p


@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 10_000),
                          st.lists(st.sampled_from(["x", "y", "z"]), max_size=3)),
                max_size=40))
def test_invariants_hold_for_any_click_sequence(
    events: list[tuple[str, int, list[str]]],
) -> None:
    p = UserProfile()
    for item, ts, cats in events:
        before = p
        p = apply_click(p, item, ts, cats, half_life_ms=HL, recent_max=3, seen_max=4)
        assert p.interest_ts_ms >= before.interest_ts_ms
        assert p.last_seen_ms is not None and p.first_seen_ms is not None
        assert before.last_seen_ms is None or p.last_seen_ms >= before.last_seen_ms
        assert before.first_seen_ms is None or p.first_seen_ms <= before.first_seen_ms
        assert p.recent_items[-1] == item and len(set(p.recent_items)) == len(p.recent_items)
        assert len(p.recent_items) <= 3 and len(p.seen) <= 4
        assert all(s > 0 and math.isfinite(s) for s in p.interests.values())
    assert p.clicks == len(events)
    assert UserProfile.from_dict(p.to_dict()) == p


def test_in_place_updates_give_the_same_profile_without_a_copy() -> None:
    p = apply_click(UserProfile(), "a", 0, ["Comedy"], half_life_ms=HL)
    p = apply_purchase(p, "b", 500, 9.5, ["Drama"], half_life_ms=HL)
    steps = [("click", "c", 1_000, ["Comedy", "War"]), ("purchase", "a", 1_200, ["Drama"]),
             ("click", "b", 900, []), ("click", "c", 5_000, ["Comedy"])]
    copied, owned = p, p.copy()
    for kind, item, ts, cats in steps:
        before = copied.copy()
        if kind == "click":
            new = apply_click(copied, item, ts, cats, half_life_ms=HL, recent_max=2)
            same = apply_click(owned, item, ts, cats, half_life_ms=HL, recent_max=2,
                               in_place=True)
        else:
            new = apply_purchase(copied, item, ts, 2.0, cats, half_life_ms=HL, recent_max=2)
            same = apply_purchase(owned, item, ts, 2.0, cats, half_life_ms=HL, recent_max=2,
                                  in_place=True)
        assert copied == before and new is not copied  # the default still copies
        assert same is owned and same == new
        copied = new
    with pytest.raises(ValueError):
        apply_purchase(owned, "x", 1, -1.0, half_life_ms=HL, in_place=True)
    assert owned == copied  # a refused update changes nothing, in place or not


def test_from_dict_reads_every_stored_type() -> None:
    p = UserProfile.from_dict({"v": 1, "i": {"A": 1, "B": 2.5}, "r": ["a", 7], "s": ["a"],
                               "lr": ("x",), "c": 2})
    assert p.interests == {"A": 1.0, "B": 2.5} and type(p.interests["A"]) is float
    assert p.recent_items == ["a", "7"] and p.seen == ["a"] and p.last_recommended == ["x"]
    stored = {"v": 1, "r": ["a"], "i": {"A": 1.0}}
    q = UserProfile.from_dict(stored)
    q.recent_items.append("b")
    q.interests["B"] = 1.0
    assert stored == {"v": 1, "r": ["a"], "i": {"A": 1.0}}  # nothing shared with the dict
