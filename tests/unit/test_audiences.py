"""Audiences: each condition kind, the combinators, config validation and membership changes."""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.marketing.audiences import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    Audience,
    AudienceError,
    Changes,
    changes,
    evaluate,
    load_audiences,
    memberships,
)
from models.users.profile import UserProfile, apply_click, apply_purchase

DAY = 86_400_000
HL = 7 * DAY
NOW = 1_000 * DAY
CATALOGUE = {"a1": ("Action",), "a2": ("Action", "Thriller"), "c1": ("Comedy",), "d1": ("Drama",)}


def categories_of(item_id: str) -> Sequence[str]:
    return CATALOGUE.get(item_id, ())


def one(rule: dict[str, Any]) -> Audience:
    return load_audiences({"audiences": [{"name": "x", **rule}]})[0]


def holds(rule: dict[str, Any], profile: UserProfile, segment: str | None = None,
          now: int = NOW) -> bool:
    return evaluate(one(rule), profile, segment, now, categories_of, half_life_ms=HL)


def bought(item: str, days_ago: float, amount: float = 10.0,
           p: UserProfile | None = None) -> UserProfile:
    return apply_purchase(p or UserProfile(), item, NOW - int(days_ago * DAY), amount,
                          CATALOGUE[item], half_life_ms=HL)


def clicked(item: str, days_ago: float, p: UserProfile | None = None) -> UserProfile:
    return apply_click(p or UserProfile(), item, NOW - int(days_ago * DAY), CATALOGUE[item],
                       half_life_ms=HL)


# --- condition kinds ----------------------------------------------------------------------


def test_segment_and_not_segment() -> None:
    p = UserProfile()
    assert holds({"segment": "s1"}, p, "s1")
    assert not holds({"segment": "s1"}, p, "s2")
    assert holds({"segment": ["s1", "s3"]}, p, "s3")
    assert not holds({"segment": "s1"}, p, None)
    assert holds({"not_segment": "s2"}, p, "s1")
    assert not holds({"not_segment": ["s1", "s2"]}, p, "s2")
    assert holds({"not_segment": "s2"}, p, None)  # no segment yet: in none of them


def test_purchased_category_any_time() -> None:
    p = bought("a2", 400)
    assert holds({"purchased_category": "Thriller"}, p)
    assert holds({"purchased_category": "Action"}, p)
    assert not holds({"purchased_category": "Comedy"}, p)
    # a click is not a purchase
    assert not holds({"purchased_category": "Comedy"}, clicked("c1", 1, p))
    # unknown items (deleted from the catalogue) count for nothing
    assert not holds({"purchased_category": "Action"}, UserProfile(purchased=["gone"]))


@pytest.mark.parametrize("days_ago, expected", [(0, True), (1, True), (29.9, True),
                                                (30.1, False), (90, False)])
def test_purchased_category_within_days(days_ago: float, expected: bool) -> None:
    assert holds({"purchased_category": "Action", "within_days": 30}, bought("a1", days_ago)) \
        is expected


def test_within_days_sees_through_later_activity_elsewhere() -> None:
    # Bought Action 60 days ago, active since in Comedy: last seen is recent, but the
    # Action interest left is what a 60-day-old purchase leaves, so not within 30 days.
    p = bought("a1", 60)
    for n in range(5):
        p = clicked("c1", n, p)
    rule = {"purchased_category": "Action", "within_days": 30}
    assert not holds(rule, p)
    assert holds({"purchased_category": "Action", "within_days": 90}, p)
    # A recent purchase in another category does not help either.
    assert not holds(rule, bought("d1", 1, p=bought("a1", 60)))
    # ... while a recent Action purchase on top does.
    assert holds(rule, bought("a2", 2, p=p))


def test_within_days_is_approximate_in_the_documented_direction() -> None:
    # Bought Action long ago, then clicked Action a lot recently: the profile cannot
    # tell this from a recent purchase, and the docstring says such users are let in.
    p = bought("a1", 200)
    for n in range(4):
        p = clicked("a1", n, p)
    assert holds({"purchased_category": "Action", "within_days": 30}, p)


def test_interest_at_least() -> None:
    p = clicked("c1", 3, p=bought("a1", 3))  # Action 3, Comedy 1
    assert holds({"interest_at_least": "Action", "share": 0.75}, p)
    assert not holds({"interest_at_least": "Action", "share": 0.76}, p)
    assert holds({"interest_at_least": "Comedy", "share": 0.25}, p)
    assert not holds({"interest_at_least": "Drama", "share": 0.01}, p)
    assert not holds({"interest_at_least": "Action", "share": 0.1}, UserProfile())
    corrupt = UserProfile(interests={"Action": math.nan, "Comedy": 1.0, "Drama": -5.0})
    assert holds({"interest_at_least": "Comedy", "share": 1.0}, corrupt)


def test_spend_at_least() -> None:
    assert holds({"spend_at_least": 100}, UserProfile(spend=100.0))
    assert not holds({"spend_at_least": 100.5}, UserProfile(spend=100.0))
    assert holds({"spend_at_least": 0}, UserProfile())
    assert not holds({"spend_at_least": 0}, UserProfile(spend=math.nan))


def test_active_within_days() -> None:
    assert holds({"active_within_days": 7}, clicked("c1", 7))
    assert not holds({"active_within_days": 7}, clicked("c1", 7.01))
    assert holds({"active_within_days": 0.5}, clicked("c1", -3))  # clock skew: seen "later"
    assert not holds({"active_within_days": 365}, UserProfile())  # never seen


# --- combinators --------------------------------------------------------------------------


def test_the_example_from_the_issue() -> None:
    cfg = {"audiences": [{"name": "action-buyers", "all": [
        {"purchased_category": "Action", "within_days": 30}, {"not_segment": "s2"}]}]}
    a = load_audiences(json.loads(json.dumps(cfg)))[0]
    p = bought("a1", 5)

    def check(profile: UserProfile, segment: str | None) -> bool:
        return evaluate(a, profile, segment, NOW, categories_of, half_life_ms=HL)

    assert check(p, "s1") and check(p, None)
    assert not check(p, "s2")
    assert not check(bought("a1", 45), "s1")


def test_all_any_not_nest() -> None:
    rich_action = bought("a1", 1, amount=500.0)
    cheap_comedy = bought("c1", 1, amount=5.0)
    rule = {"any": [
        {"all": [{"purchased_category": "Action"}, {"spend_at_least": 100}]},
        {"not": {"any": [{"active_within_days": 30}, {"segment": "vip"}]}},
    ]}
    assert holds(rule, rich_action)
    assert not holds(rule, cheap_comedy)
    assert holds(rule, bought("c1", 60))  # lapsed: the "not" branch
    assert not holds(rule, bought("c1", 60), "vip")
    assert holds({"not": {"not": {"spend_at_least": 1}}}, cheap_comedy)


profiles = st.builds(
    UserProfile,
    spend=st.floats(min_value=0, max_value=1_000),
    last_seen_ms=st.one_of(st.none(), st.integers(min_value=0, max_value=NOW)),
    purchased=st.lists(st.sampled_from(sorted(CATALOGUE)), max_size=3, unique=True),
    interests=st.dictionaries(st.sampled_from(["Action", "Comedy", "Drama"]),
                              st.floats(min_value=0.01, max_value=10), max_size=3),
)
leaves = st.sampled_from([
    {"spend_at_least": 50}, {"active_within_days": 30}, {"purchased_category": "Action"},
    {"interest_at_least": "Comedy", "share": 0.4}, {"segment": "s1"},
])


@given(p=profiles, a=leaves, b=leaves, segment=st.sampled_from([None, "s1", "s2"]))
def test_combinators_follow_boolean_logic(
    p: UserProfile, a: dict[str, Any], b: dict[str, Any], segment: str | None,
) -> None:
    x, y = holds(a, p, segment), holds(b, p, segment)
    assert holds({"all": [a, b]}, p, segment) == (x and y)
    assert holds({"any": [a, b]}, p, segment) == (x or y)
    assert holds({"not": a}, p, segment) == (not x)
    assert holds({"not": {"all": [a, b]}}, p, segment) == \
        holds({"any": [{"not": a}, {"not": b}]}, p, segment)


# --- memberships and changes --------------------------------------------------------------


def test_memberships_and_changes() -> None:
    auds = load_audiences({"audiences": [
        {"name": "spenders", "spend_at_least": 100},
        {"name": "action", "purchased_category": "Action", "within_days": 30},
        {"name": "in-s1", "segment": "s1"},
    ]})
    p = bought("a1", 1, amount=20.0)
    before = memberships(auds, p, "s1", NOW, categories_of, half_life_ms=HL)
    assert before == {"action", "in-s1"}
    p = bought("c1", 0, amount=200.0, p=p)
    after = memberships(auds, p, "s2", NOW + 40 * DAY, categories_of, half_life_ms=HL)
    assert after == {"spenders"}
    assert changes(before, after) == Changes(joined=["spenders"], left=["action", "in-s1"])
    assert changes(after, after) == Changes([], [])
    assert changes(set(), {"b", "a"}).joined == ["a", "b"]


def test_categories_of_may_return_a_string() -> None:
    a = one({"purchased_category": "Action"})
    p = UserProfile(purchased=["x"])
    assert evaluate(a, p, None, NOW, lambda i: "Action", half_life_ms=HL)
    assert not evaluate(a, p, None, NOW, lambda i: "Action Movies", half_life_ms=HL)


def test_audiences_pickle_and_compare() -> None:
    cfg = {"audiences": [{"name": "n", "all": [{"segment": ["s1", "s2"]},
                                               {"not": {"spend_at_least": 5}}]}]}
    auds = load_audiences(cfg)
    assert pickle.loads(pickle.dumps(auds)) == auds == load_audiences(cfg)


@pytest.mark.parametrize("kw, match", [
    ({"now_ms": -1}, "now_ms"), ({"now_ms": 1.5}, "now_ms"),
    ({"half_life_ms": 0}, "half_life_ms"), ({"half_life_ms": math.inf}, "half_life_ms"),
    ({"categories_of": None}, "categories_of"),
])
def test_evaluate_refuses_bad_arguments(kw: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"now_ms": NOW, "half_life_ms": HL, "categories_of": categories_of}
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        evaluate(one({"spend_at_least": 1}), UserProfile(), None, args["now_ms"],
                 args["categories_of"], half_life_ms=args["half_life_ms"])


# --- validation ---------------------------------------------------------------------------


def nested(depth: int) -> dict[str, Any]:
    rule: dict[str, Any] = {"spend_at_least": 1}
    for _ in range(depth):
        rule = {"not": rule}
    return rule


BAD: list[tuple[object, str]] = [
    ([], "config"),
    ({"audiences": [], "extra": 1}, "config"),
    ({}, "audiences"),
    ({"audiences": {"name": "x"}}, "audiences"),
    ({"audiences": [{"name": "x", "spend_at_least": 1}] * 101}, "audiences"),
    ({"audiences": ["x"]}, "audiences[0]"),
    ({"audiences": [{"spend_at_least": 1}]}, "audiences[0].name"),
    ({"audiences": [{"name": "has space", "spend_at_least": 1}]}, "audiences[0].name"),
    ({"audiences": [{"name": "-x", "spend_at_least": 1}]}, "audiences[0].name"),
    ({"audiences": [{"name": "x" * 65, "spend_at_least": 1}]}, "audiences[0].name"),
    ({"audiences": [{"name": "x", "spend_at_least": 1}, {"name": "x", "segment": "s1"}]},
     "audiences[1].name"),
    ({"audiences": [{"name": "x"}]}, "audiences[0]: needs exactly one"),
    ({"audiences": [{"name": "x", "segment": "s1", "spend_at_least": 1}]},
     "audiences[0]: needs exactly one"),
    ({"audiences": [{"name": "x", "segmnt": "s1"}]}, "audiences[0]: needs exactly one"),
    ({"audiences": [{"name": "x", "segment": "s1", "within_days": 3}]},
     "audiences[0].within_days"),
    ({"audiences": [{"name": "x", "segment": ""}]}, "audiences[0].segment"),
    ({"audiences": [{"name": "x", "segment": []}]}, "audiences[0].segment"),
    ({"audiences": [{"name": "x", "not_segment": ["s1", 2]}]}, "audiences[0].not_segment"),
    ({"audiences": [{"name": "x", "purchased_category": ""}]},
     "audiences[0].purchased_category"),
    ({"audiences": [{"name": "x", "purchased_category": "A", "within_days": 0}]},
     "audiences[0].within_days"),
    ({"audiences": [{"name": "x", "purchased_category": "A", "within_days": "30"}]},
     "audiences[0].within_days"),
    ({"audiences": [{"name": "x", "purchased_category": "A", "within_days": 1e9}]},
     "audiences[0].within_days"),
    ({"audiences": [{"name": "x", "interest_at_least": "A"}]}, "audiences[0].share"),
    ({"audiences": [{"name": "x", "interest_at_least": "A", "share": 1.5}]},
     "audiences[0].share"),
    ({"audiences": [{"name": "x", "interest_at_least": "A", "share": 0}]},
     "audiences[0].share"),
    ({"audiences": [{"name": "x", "interest_at_least": 3, "share": 0.5}]},
     "audiences[0].interest_at_least"),
    ({"audiences": [{"name": "x", "spend_at_least": math.nan}]}, "audiences[0].spend_at_least"),
    ({"audiences": [{"name": "x", "spend_at_least": True}]}, "audiences[0].spend_at_least"),
    ({"audiences": [{"name": "x", "active_within_days": -1}]},
     "audiences[0].active_within_days"),
    ({"audiences": [{"name": "x", "all": []}]}, "audiences[0].all"),
    ({"audiences": [{"name": "x", "any": {"segment": "s1"}}]}, "audiences[0].any"),
    ({"audiences": [{"name": "x", "all": [{"segment": "s1"}, {"spend_at_least": -2}]}]},
     "audiences[0].all[1].spend_at_least"),
    ({"audiences": [{"name": "x", "not": [{"segment": "s1"}]}]}, "audiences[0].not"),
    ({"audiences": [{"name": "x", "not": {"any": [{"eval": "1"}]}}]},
     "audiences[0].not.any[0]"),
    ({"audiences": [{"name": "x", **nested(MAX_DEPTH)}]}, "conditions nest at most"),
    ({"audiences": [{"name": "x", "any": [{"segment": "s1"}] * MAX_CONDITIONS}]},
     f"at most {MAX_CONDITIONS} conditions"),
]


@pytest.mark.parametrize("cfg, where", BAD, ids=[str(n) for n in range(len(BAD))])
def test_bad_configs_name_the_field(cfg: object, where: str) -> None:
    with pytest.raises(AudienceError) as info:
        load_audiences(cfg)
    assert where in str(info.value)
    assert str(info.value).startswith(info.value.path + ": ")


def test_limits_are_inclusive() -> None:
    assert load_audiences({"audiences": [{"name": "x", **nested(MAX_DEPTH - 1)}]})
    many = [{"segment": "s1"}] * (MAX_CONDITIONS - 1)
    assert load_audiences({"audiences": [{"name": "x", "any": many}]})
    assert load_audiences({"audiences": []}) == []
