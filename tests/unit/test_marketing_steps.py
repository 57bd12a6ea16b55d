"""The profile agent's marketing steps: experiment entries and revenue, segment and
audience changes, attribution and hit counts, and what forgetting a user emits; each
checked against the agent's former inline code too (same stored dicts, same counts)."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.engine import Result
from models.marketing.attribution import Attribution
from models.marketing.audiences import Audience, changes, load_audiences, memberships
from models.marketing.experiments import Assignment
from models.marketing.segments import DAY_MS, Segmenter
from models.marketing.steps import (
    NO_GROUP_CHANGE,
    AudienceChange,
    Labels,
    SegmentChange,
    account_experiment,
    credit_step,
    forget_user_step,
    group_step,
)
from models.recommenders.catalogue import Catalogue
from models.sync import Outbox
from models.users.profile import UserProfile, apply_click, apply_purchase

HL = 7 * DAY_MS
NOW = 100 * DAY_MS
NO_CATEGORIES = lambda item: ()  # noqa: E731


def arm(variant: str = "B", new: bool = False, experiment: str = "recs") -> Assignment:
    return Assignment(experiment, variant, None, new)


def credit(variant: str = "B", strategy: str = "hybrid", first_click: bool = False
           ) -> Attribution:
    return Attribution("r1", strategy, variant, "id", first_click)


def auds(cfg: list[dict[str, Any]]) -> dict[str, Audience]:
    return {a.name: a for a in load_audiences({"audiences": cfg})}


# --- experiments -------------------------------------------------------------------------


def test_a_new_user_is_kept_in_the_profile_and_counted_once() -> None:
    first = account_experiment(None, arm(new=True), None, 0.0)
    assert first.entries == {"recs": ["B", 0.0]}
    assert (first.users_added, first.revenue, first.revenue_sumsq) == (1, 0.0, 0.0)
    # Their next event: the stored variant, no new user, and no copy either.
    again = account_experiment(first.entries, arm(new=False), None, 0.0)
    assert again.entries is first.entries
    assert again.users_added == 0


def test_other_experiments_entries_are_kept() -> None:
    entries = {"old": ["A", 4.0]}
    up = account_experiment(entries, arm(new=False), None, 0.0)
    assert up.entries == {"old": ["A", 4.0], "recs": ["B", 0.0]}
    assert up.users_added == 1  # no entry for this experiment yet: a new user in it


def test_a_reassigned_user_restarts_and_is_counted_again() -> None:
    # Their stored variant left the experiment: Running.assign places them afresh.
    up = account_experiment({"recs": ["gone", 7.0]}, arm("A", new=True), None, 0.0)
    assert up.entries == {"recs": ["A", 0.0]}
    assert up.users_added == 1


@pytest.mark.parametrize(("attributed", "amount"), [
    (None, 5.0),              # not attributed to any recommendation
    (credit("A"), 5.0),       # attributed to another variant's recommendation
    (credit("B"), 0.0),       # a click: no amount
])
def test_revenue_goes_only_to_the_served_variant(attributed: Attribution | None,
                                                 amount: float) -> None:
    entries = {"recs": ["B", 3.0]}
    up = account_experiment(entries, arm("B"), attributed, amount)
    assert (up.revenue, up.revenue_sumsq) == (0.0, 0.0)
    assert up.entries is entries


def test_revenue_and_its_sum_of_squares() -> None:
    entries: dict[str, list[Any]] | None = None
    total_sumsq = 0.0
    for n, amount in enumerate((2.0, 3.0, 0.5)):
        up = account_experiment(entries, arm("B", new=n == 0), credit("B"), amount)
        assert up.revenue == amount
        total_sumsq += up.revenue_sumsq
        entries = up.entries
    assert entries == {"recs": ["B", 5.5]}
    # The per-user square telescopes to the user's total squared.
    assert total_sumsq == pytest.approx(5.5 ** 2)
    up = account_experiment({"recs": ["B", 3.0]}, arm("B"), credit("B"), 2.0)
    assert up.revenue_sumsq == 5.0 ** 2 - 3.0 ** 2


def test_account_experiment_does_not_change_its_input() -> None:
    entries = {"recs": ["B", 3.0], "old": ["A", 1.0]}
    before = copy.deepcopy(entries)
    inner = entries["recs"]
    up = account_experiment(entries, arm("B"), credit("B"), 2.0)
    assert entries == before and entries["recs"] is inner
    assert up.entries == {"recs": ["B", 5.0], "old": ["A", 1.0]}
    account_experiment(entries, arm("C", new=True), credit("C"), 2.0)
    assert entries == before


def test_account_experiment_needs_an_experiment() -> None:
    with pytest.raises(ValueError, match="experiment"):
        account_experiment(None, Assignment(None, "default", None, False), None, 0.0)


def _former_account_experiment(profile: dict, arm: Assignment, credit: Attribution | None,
                               amount: float, counts: dict) -> None:
    """The agent's code before the move, with a dict for the counters."""
    entries = profile.setdefault("ex", {})
    labels = (arm.experiment, arm.variant)
    if arm.new or arm.experiment not in entries:
        entries[arm.experiment] = [arm.variant, 0.0]
        counts[("users", *labels)] = counts.get(("users", *labels), 0) + 1
    if amount and credit is not None and credit.variant == arm.variant:
        before = float(entries[arm.experiment][1])
        after = before + amount
        entries[arm.experiment][1] = after
        counts[("revenue", *labels)] = counts.get(("revenue", *labels), 0.0) + amount
        # Counter.inc(after * after - before * before): the delta first, then the sum.
        counts[("sumsq", *labels)] = (counts.get(("sumsq", *labels), 0.0)
                                      + (after * after - before * before))


VARIANTS = st.sampled_from(["A", "B"])


@given(st.lists(st.tuples(VARIANTS, st.booleans(), st.one_of(st.none(), VARIANTS),
                          st.sampled_from([0.0, 0.01, 1.0, 9.99, 123.45])),
                min_size=1, max_size=8),
       st.dictionaries(st.sampled_from(["recs", "old"]),
                       st.tuples(VARIANTS, st.floats(0, 100)).map(list), max_size=2))
def test_account_experiment_matches_the_former_agent_code(
        events: list[tuple[str, bool, str | None, float]], start: dict) -> None:
    former_profile: dict[str, Any] = {"c": 1}
    if start:
        former_profile["ex"] = copy.deepcopy(start)
    profile = copy.deepcopy(former_profile)
    former_counts: dict = {}
    counts: dict = {}
    for variant, new, credited, amount in events:
        a = arm(variant, new)
        c = None if credited is None else credit(credited)
        _former_account_experiment(former_profile, a, c, amount, former_counts)
        up = account_experiment(profile.get("ex"), a, c, amount)
        profile["ex"] = up.entries
        labels = (a.experiment, a.variant)
        if up.users_added:
            counts[("users", *labels)] = counts.get(("users", *labels), 0) + up.users_added
        if up.revenue:
            counts[("revenue", *labels)] = counts.get(("revenue", *labels), 0.0) + up.revenue
            counts[("sumsq", *labels)] = counts.get(("sumsq", *labels), 0.0) + up.revenue_sumsq
        assert profile == former_profile
        assert list(profile) == list(former_profile)  # same key order in the stored JSON
    assert counts == former_counts


# --- segments and audiences --------------------------------------------------------------


class FakeSegmenter:
    """Answers a fixed segment, logging calls (to check the order of operations)."""

    def __init__(self, answer: str, log: list[str]) -> None:
        self.answer, self.log = answer, log

    def learn_assign(self, previous: str | None, profile: UserProfile, now_ms: int) -> str:
        self.log.append(f"learn {previous} {now_ms}")
        return self.answer


class LoggingOutbox(Outbox):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def note_segment(self, profile: UserProfile, now_ms: int, segment: str,
                     user: str) -> None:
        self.log.append(f"note {profile.segment} {now_ms} into {segment}")
        super().note_segment(profile, now_ms, segment, user)


def step(profile: dict, segmenter: Any = None, audiences: dict | None = None,
         outbox: Outbox | None = None, prof: UserProfile | None = None, ts: int = NOW):
    return group_step(profile, prof, ts, segmenter=segmenter, audiences=audiences or {},
                      categories_of=NO_CATEGORIES, half_life_ms=HL, sync_outbox=outbox)


def test_a_segment_change_only_when_the_segment_moves() -> None:
    log: list[str] = []
    up = step({"c": 1, "sg": "s0"}, FakeSegmenter("s1", log))
    assert up.segment == "s1" and up.changes == (SegmentChange("s1"),)
    assert up.audiences is None
    assert step({"c": 1, "sg": "s1"}, FakeSegmenter("s1", log)) is NO_GROUP_CHANGE
    assert log == [f"learn s0 {NOW}", f"learn s1 {NOW}"]


def test_an_unassigned_user_is_learned_with_no_previous_segment() -> None:
    log: list[str] = []
    assert step({"c": 1}, FakeSegmenter("s2", log)).segment == "s2"
    assert log == [f"learn None {NOW}"]


def test_the_segmenter_learns_then_the_outbox_notes_the_profile_as_learned() -> None:
    log: list[str] = []
    outbox = LoggingOutbox(log)
    prof = UserProfile.from_dict({"c": 3, "m": 5.0, "sg": "s0"})
    step({"c": 3, "m": 5.0, "sg": "s0"}, FakeSegmenter("s1", log), outbox=outbox, prof=prof)
    # Noted before the segment moves, with the profile's own fields, into the group of
    # the segment just assigned.
    assert log == [f"learn s0 {NOW}", f"note s0 {NOW} into s1"]
    groups = outbox._segment_sums.groups
    assert list(groups) == ["s1"] and groups["s1"].n == 1


def test_a_real_segmenter_keeps_a_settled_user_where_they_are() -> None:
    seg = Segmenter(k=2, warmup=2)
    profile = apply_click(UserProfile(), "i1", NOW, ["Action"], half_life_ms=HL).to_dict()
    first = step(profile, seg)
    assert first.segment in seg.names and first.changes == (SegmentChange(first.segment),)
    profile["sg"] = first.segment
    assert step(profile, seg) is NO_GROUP_CHANGE
    assert seg.n_learned == 2  # learned both times, changed or not


def test_audience_joins_and_leaves_in_publishing_order() -> None:
    audiences = auds([{"name": "big", "spend_at_least": 100},
                      {"name": "gold", "spend_at_least": 1_000},
                      {"name": "in-s1", "segment": "s1"},
                      {"name": "new", "active_within_days": 1}])
    profile = {"m": 150.0, "l": 0, "sg": "s0", "au": ["gold", "new"]}
    up = step(profile, FakeSegmenter("s1", []), audiences)
    assert up.segment == "s1"
    # The audience by segment sees the segment just assigned.
    assert up.audiences == ["big", "in-s1"]
    assert up.changes == (SegmentChange("s1"), AudienceChange("big", "join"),
                          AudienceChange("in-s1", "join"), AudienceChange("gold", "leave"),
                          AudienceChange("new", "leave"))


def test_unchanged_audiences_give_nothing_to_store() -> None:
    audiences = auds([{"name": "big", "spend_at_least": 100}])
    assert step({"m": 150.0, "au": ["big"]}, None, audiences) is NO_GROUP_CHANGE
    up = step({"m": 50.0, "au": ["big"]}, None, audiences)
    assert up.audiences == [] and up.changes == (AudienceChange("big", "leave"),)


def test_nothing_configured_parses_nothing() -> None:
    # A profile that would not even parse: with no segmenter and no audience it is not read.
    assert step({"c": "not a number"}) is NO_GROUP_CHANGE


def test_group_step_changes_neither_profile() -> None:
    audiences = auds([{"name": "big", "spend_at_least": 100}])
    profile = {"m": 150.0, "sg": "s0", "au": ["old"]}
    prof = UserProfile.from_dict(profile)
    before, prof_before = copy.deepcopy(profile), prof.copy()
    up = step(profile, FakeSegmenter("s1", []), audiences, prof=prof)
    assert up.segment == "s1" and up.audiences == ["big"]
    assert profile == before and prof == prof_before


def _former_update_groups(profile: dict, ts_ms: int, prof: UserProfile | None,
                          segmenter: Segmenter | None, audiences: dict, outbox: Outbox | None,
                          categories_of: Any) -> list[tuple[str, dict]]:
    """The agent's code before the move (metrics as ("metric", ...) entries)."""
    if segmenter is None and not audiences:
        return []
    if prof is None:
        prof = UserProfile.from_dict(profile)
    out: list[tuple[str, dict]] = []
    if segmenter is not None:
        segment = segmenter.learn_assign(prof.segment or None, prof, ts_ms)
        if outbox is not None:
            outbox.note_segment(prof, ts_ms, segment, "")
        if segment != prof.segment:
            prof.segment = profile["sg"] = segment
            out.append(("metric", {"segment_changes": 1}))
            out.append(("segments", {"segment": segment}))
    if audiences:
        member = memberships(list(audiences.values()), prof, prof.segment or None, ts_ms,
                             categories_of, half_life_ms=HL)
        moved = changes(set(prof.audiences), member)
        for action, names in (("join", moved.joined), ("leave", moved.left)):
            for name in names:
                out.append(("metric", {"audience": name, "action": action}))
                out.append(("audiences", {"audience": name, "action": action}))
        if moved.joined or moved.left:
            profile["au"] = sorted(member)
    return out


def _agent_update_groups(profile: dict, ts_ms: int, prof: UserProfile | None,
                         segmenter: Segmenter | None, audiences: dict, outbox: Outbox | None,
                         categories_of: Any) -> list[tuple[str, dict]]:
    """The replacement the report gives the agent, with the same stand-ins."""
    up = group_step(profile, prof, ts_ms, segmenter=segmenter, audiences=audiences,
                    categories_of=categories_of, half_life_ms=HL, sync_outbox=outbox)
    if up.segment is not None:
        profile["sg"] = up.segment
    if up.audiences is not None:
        profile["au"] = up.audiences
    out: list[tuple[str, dict]] = []
    for change in up.changes:
        if isinstance(change, SegmentChange):
            out.append(("metric", {"segment_changes": 1}))
            out.append(("segments", {"segment": change.segment}))
        else:
            out.append(("metric", {"audience": change.audience, "action": change.action}))
            out.append(("audiences", {"audience": change.audience, "action": change.action}))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_group_step_matches_the_former_agent_code(seed: int) -> None:
    rng = random.Random(seed)
    catalogue = Catalogue()
    cats = ["Action", "Comedy", "Drama", "Horror"]
    for n in range(20):
        catalogue.upsert(f"i{n}", f"t{n}", [cats[n % 4]])
    audiences = auds([
        {"name": "spender", "spend_at_least": 50},
        {"name": "action-buyers", "purchased_category": "Action", "within_days": 30},
        {"name": "comedy-fans", "interest_at_least": "Comedy", "share": 0.4},
        {"name": "in-s1", "any": [{"segment": "s1"}, {"segment": "s3"}]},
        {"name": "active", "active_within_days": 2},
    ])
    former_seg, seg = Segmenter(k=4, warmup=8, seed=seed), Segmenter(k=4, warmup=8, seed=seed)
    former_box, box = Outbox(), Outbox()
    users: dict[str, UserProfile] = {}
    former_store: dict[str, dict] = {}
    store: dict[str, dict] = {}
    ts = NOW
    emitted: list[str] = []
    for _ in range(300):
        ts += rng.randrange(0, 3 * DAY_MS)
        user = f"u{rng.randrange(25)}"
        item = f"i{rng.randrange(20)}"
        p = users.get(user, UserProfile())
        if rng.random() < 0.2:
            p = apply_purchase(p, item, ts, rng.choice([5.0, 30.0]),
                               catalogue.categories(item), half_life_ms=HL)
        else:
            p = apply_click(p, item, ts, catalogue.categories(item), half_life_ms=HL)
        # The stored groups come from the previous step (each side its own).
        former_profile = {**p.to_dict(), **{k: v for k, v in former_store.get(user, {}).items()
                                             if k in ("sg", "au")}}
        profile = {**p.to_dict(), **{k: v for k, v in store.get(user, {}).items()
                                      if k in ("sg", "au")}}
        assert profile == former_profile
        use_prof = rng.random() < 0.5
        former = _former_update_groups(
            former_profile, ts, UserProfile.from_dict(former_profile) if use_prof else None,
            former_seg, audiences, former_box, catalogue.categories)
        ours = _agent_update_groups(
            profile, ts, UserProfile.from_dict(profile) if use_prof else None,
            seg, audiences, box, catalogue.categories)
        assert ours == former
        emitted += [r.get("action", topic) for topic, r in ours if topic != "metric"]
        assert profile == former_profile and list(profile) == list(former_profile)
        former_store[user], store[user] = former_profile, profile
        users[user] = UserProfile.from_dict(profile)
    assert seg.summary() == former_seg.summary()
    assert box._segment_sums.groups == former_box._segment_sums.groups
    # Not vacuous: users moved between segments, joined and left audiences.
    assert min(emitted.count(k) for k in ("segments", "join", "leave")) > 10


# --- attribution, hits, serving ----------------------------------------------------------


def test_a_first_click_is_credited_to_the_recommendations_own_labels() -> None:
    res = Result("accepted", strategy="popularity",
                 attributed=credit("A", "cooccurrence", first_click=True))
    up = credit_step(res, arm("B"), "click", 0.0)
    assert up.clicked == Labels("cooccurrence", "A")
    assert up.converted is None and up.revenue == 0.0
    assert up.checked is None and up.hit is False
    assert up.served == Labels("popularity", "B") and up.items == 0


def test_a_repeat_click_counts_no_click() -> None:
    res = Result("accepted", strategy="popularity", attributed=credit(first_click=False))
    assert credit_step(res, arm(), "click", 0.0).clicked is None


def test_a_credited_purchase_converts_with_its_amount() -> None:
    res = Result("accepted", strategy="mf", attributed=credit("A", "hybrid"))
    up = credit_step(res, arm("B"), "purchase", 12.5)
    assert up.converted == Labels("hybrid", "A") and up.revenue == 12.5
    # Not attributed: neither conversion nor revenue, whatever the amount.
    up = credit_step(Result("accepted", strategy="mf"), arm("B"), "purchase", 12.5)
    assert up.converted is None and up.revenue == 0.0


@pytest.mark.parametrize(("hit", "hit_strategy", "expected"), [
    (True, "cooccurrence", Labels("cooccurrence", "B")),
    (False, "", Labels("mf", "B")),  # no stored strategy: the one serving now
])
def test_a_hit_check_goes_to_the_strategy_that_earned_it(
        hit: bool, hit_strategy: str, expected: Labels) -> None:
    res = Result("accepted", strategy="mf", hit=hit, hit_strategy=hit_strategy)
    up = credit_step(res, arm("B"), "click", 0.0)
    assert up.checked == expected and up.hit is hit


def test_serving_counts_the_items_served() -> None:
    res = Result("accepted", strategy="mf", items=["x", "y", "z"])  # type: ignore[list-item]
    assert credit_step(res, arm("B"), "click", 0.0).items == 3


# --- forgetting a user -------------------------------------------------------------------


class FakeHybrid:
    def __init__(self) -> None:
        self.forgotten: list[str] = []

    def forget_user(self, user: str) -> None:
        self.forgotten.append(user)


def test_forget_leaves_only_the_configured_audiences() -> None:
    hybrid = FakeHybrid()
    audiences = auds([{"name": "big", "spend_at_least": 100},
                      {"name": "vip", "spend_at_least": 1_000}])
    stored = {"m": 5_000.0, "au": ["vip", "removed-from-config", "big"]}
    before = copy.deepcopy(stored)
    left = forget_user_step("u1", stored, hybrid=hybrid, segmenter=None, audiences=audiences)
    assert left == ["vip", "big"]  # the record's order
    assert hybrid.forgotten == ["u1"] and stored == before


def test_forget_takes_the_user_out_of_their_segment() -> None:
    seg = Segmenter(k=2, warmup=2)
    name = seg.learn_assign(None, UserProfile(clicks=1), NOW)
    assert {s["name"]: s["size"] for s in seg.summary()}[name] == 1
    left = forget_user_step("u1", {"sg": name}, hybrid=FakeHybrid(), segmenter=seg,
                            audiences={})
    assert left == []
    assert {s["name"]: s["size"] for s in seg.summary()}[name] == 0


def test_forget_without_a_record_still_drops_the_hybrids_list() -> None:
    hybrid = FakeHybrid()
    seg = Segmenter(k=2, warmup=2)
    name = seg.learn_assign(None, UserProfile(clicks=1), NOW)
    assert forget_user_step("u1", None, hybrid=hybrid, segmenter=seg,
                            audiences=auds([{"name": "big", "spend_at_least": 1}])) == []
    assert hybrid.forgotten == ["u1"]
    assert {s["name"]: s["size"] for s in seg.summary()}[name] == 1
