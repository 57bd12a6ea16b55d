"""Bidder: hand-computed bids, budgets and reservations, events, pacing, durable state."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pytest

from models.ads.bidding import (
    DAY_MS,
    NO_BID_REASONS,
    AdCandidate,
    AdRequest,
    Bidder,
    Campaign,
    CampaignError,
    Write,
    load_campaigns,
)
from models.ads.pctr import PctrModel, hash_feature
from models.recommenders.bandit import uniform_from_key

T0 = 19_000 * DAY_MS  # a UTC midnight (2022-01-08)
W = 60_000  # window_ms in most tests


class StubModel:
    """Fixed probabilities per ad (found by the ad's feature), recording what it learns."""

    def __init__(self, p: float = 0.01, by_ad: dict[str, float] | None = None) -> None:
        self.p = p
        self.by_feature = {hash_feature("a=" + a): q for a, q in (by_ad or {}).items()}
        self.learned: list[tuple[tuple[int, ...], int]] = []

    def predict_many(self, xs: Sequence[Sequence[int]]) -> list[float]:
        out = []
        for x in xs:
            p = self.p
            for i in x:
                if i in self.by_feature:
                    p = self.by_feature[i]
            out.append(p)
        return out

    def learn_one(self, x: Sequence[int], y: bool | int, weight: float = 1.0) -> None:
        self.learned.append((tuple(x), int(y)))


class Table:
    """The agent's table: writes applied in order, values through JSON like a changelog."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def apply(self, writes: list[Write]) -> None:
        for key, value in writes:
            if value is None:
                self.data.pop(key, None)
            else:
                text = json.dumps(value, allow_nan=False)
                back = json.loads(text)
                assert back == value, f"{key} does not survive JSON (tuple or set?): {value!r}"
                self.data[key] = back


def camp(cid: str = "c1", **kw: Any) -> Campaign:
    kw.setdefault("max_bid", 10.0)
    return Campaign(cid, **kw)


def bidder(*campaigns: Campaign, pctr: Any = None, pcvr: Any = None, **kw: Any) -> Bidder:
    kw.setdefault("window_ms", W)
    kw.setdefault("retention_ms", W)
    return Bidder({c.campaign_id: c for c in campaigns or (camp(),)},
                  pctr=pctr if pctr is not None else StubModel(0.01),
                  pcvr=pcvr, **kw)


def request(rid: str = "r1", *cands: AdCandidate, ts: int = T0 + 1_000, floor: float = 0.0,
            view: dict[str, Any] | None = None, user: str = "u1") -> AdRequest:
    if not cands:
        cands = (AdCandidate("a1", "c1", 2.0),)
    return AdRequest(rid, user, ts, "top", floor, cands, {"device": "mobile"}, view or {})


# -- bids -----------------------------------------------------------------------------


def test_bid_is_pctr_times_value_and_reserves_it() -> None:
    b = bidder(pctr=StubModel(0.02))
    d, writes = b.decide(request())
    assert (d.ad_id, d.campaign_id, d.bid, d.pctr, d.no_bid_reason) == ("a1", "c1", 0.04, 0.02,
                                                                          None)
    assert [k for k, _ in writes] == ["r:r1"]
    assert b.reserved("c1") == 0.04 and b.spend("c1") == 0.0
    assert b.reserved("c1", day=T0 // DAY_MS) == 0.04
    rec = writes[0][1]
    assert rec is not None and rec["bid"] == 40_000 and rec["open"] is True
    assert "u1" not in json.dumps(rec)  # no user id in the table


def test_highest_bid_wins_and_ties_go_to_the_first() -> None:
    model = StubModel(0.01, by_ad={"a1": 0.01, "a2": 0.03, "a3": 0.03})
    b = bidder(camp("c1"), camp("c2"), pctr=model)
    cands = (AdCandidate("a1", "c1", 5.0), AdCandidate("a2", "c2", 1.0),
             AdCandidate("a3", "c1", 1.0))
    d, _ = b.decide(request("r1", *cands))
    assert (d.ad_id, d.bid) == ("a1", 0.05)
    cands = (AdCandidate("a1", "c1", 1.0), AdCandidate("a2", "c2", 2.0),
             AdCandidate("a3", "c1", 2.0))
    d, _ = b.decide(request("r2", *cands))
    assert (d.ad_id, d.campaign_id, d.bid) == ("a2", "c2", 0.06)


def test_bid_capped_at_max_bid() -> None:
    b = bidder(camp(max_bid=1.2), pctr=StubModel(0.5))
    d, _ = b.decide(request("r1", AdCandidate("a1", "c1", 10.0)))
    assert d.bid == 1.2


def test_floor_price() -> None:
    b = bidder(pctr=StubModel(0.02))
    assert b.decide(request("r1", floor=0.04))[0].bid == 0.04  # equal to the floor is fine
    d, writes = b.decide(request("r2", floor=0.0400001))
    assert d.no_bid_reason == "below_floor" and d.bid is None
    assert writes[0][1] is not None and writes[0][1]["why"] == "below_floor"
    assert b.reserved("c1") == 0.04  # only the first reserved


def test_zero_value_is_no_bid_even_at_zero_floor() -> None:
    b = bidder(pctr=StubModel(0.02))
    d, _ = b.decide(request("r1", AdCandidate("a1", "c1", 0.0)))
    assert d.no_bid_reason == "below_floor"


def test_bid_capped_at_remaining_daily_budget_then_exhausted() -> None:
    b = bidder(camp(daily_budget=1.0), pctr=StubModel(0.5), pacing=False)
    bids = [b.decide(request(f"r{i}", AdCandidate("a1", "c1", 0.8)))[0] for i in range(4)]
    assert [d.bid for d in bids[:3]] == [0.4, 0.4, 0.2]
    assert bids[3].no_bid_reason == "budget_exhausted"
    assert b.reserved("c1") == 1.0
    # The next UTC day has its own daily budget.
    d, _ = b.decide(request("r9", AdCandidate("a1", "c1", 0.8), ts=T0 + DAY_MS + 5))
    assert d.bid == 0.4


def test_remaining_budget_below_floor_is_budget_exhausted() -> None:
    b = bidder(camp(daily_budget=0.5), pctr=StubModel(0.5), pacing=False)
    assert b.decide(request("r1", AdCandidate("a1", "c1", 0.8)))[0].bid == 0.4
    d, _ = b.decide(request("r2", AdCandidate("a1", "c1", 0.8), floor=0.2))
    assert d.no_bid_reason == "budget_exhausted"
    assert b.decide(request("r3", AdCandidate("a1", "c1", 0.8), floor=0.1))[0].bid == 0.1


def test_total_budget_spans_days() -> None:
    b = bidder(camp(total_budget=0.6), pctr=StubModel(0.5), pacing=False)
    assert b.decide(request("r1", AdCandidate("a1", "c1", 0.8)))[0].bid == 0.4
    d, _ = b.decide(request("r2", AdCandidate("a1", "c1", 0.8), ts=T0 + DAY_MS + 1))
    assert d.bid == pytest.approx(0.2)


def test_targeting_segments_interests_and_opt_out() -> None:
    seg = camp("seg", target_segments=("loyal",))
    cat = camp("cat", target_categories=("Sport", "Music"))
    both = camp("both", target_segments=("loyal",), target_categories=("Sport",))
    b = bidder(seg, cat, both, camp("open"), pctr=StubModel(0.1))

    def reason(cid: str, view: dict[str, Any], rid: str) -> str | None:
        return b.decide(request(rid, AdCandidate("a", cid, 1.0, ("Sport",)), view=view))[0] \
            .no_bid_reason

    loyal_music = {"i": [["Music", 1.0]], "s": "loyal"}
    assert reason("seg", loyal_music, "r1") is None
    assert reason("seg", {"i": [["Music", 1.0]], "s": "new"}, "r2") == "not_targeted"
    assert reason("seg", {"s": ["unhashable"]}, "r2b") == "not_targeted"
    # Categories target the user's interests, not the ad's own categories.
    assert reason("cat", loyal_music, "r3") is None
    assert reason("cat", {"i": [["Drama", 1.0]], "s": "loyal"}, "r4") == "not_targeted"
    assert reason("both", loyal_music, "r5") == "not_targeted"
    assert reason("both", {"i": [["Sport", 1.0]], "s": "loyal"}, "r6") is None
    for i, view in enumerate(({"np": True}, {})):
        assert reason("seg", view, f"o{i}") == "not_targeted"
        assert reason("cat", view, f"p{i}") == "not_targeted"


def test_opted_out_user_gets_a_contextual_bid_and_stores_nothing_to_learn_from() -> None:
    model = StubModel(0.02)
    b = bidder(pctr=model)
    d, writes = b.decide(request(view={"np": True}))
    assert d.bid == 0.04  # a contextual bid: pCTR of the request's context and the ad
    rec = writes[0][1]
    assert rec is not None and rec["x"] is None and "u" not in rec  # nothing of the user
    # opt-out stops learning: the click that follows teaches the model nothing
    out, _ = b.on_event("e1", "r1", "a1", "impression", T0 + 2_000)
    out, _ = b.on_event("e2", "r1", "a1", "click", T0 + 3_000)
    assert out.outcome == "applied" and out.labels == () and model.learned == []


def test_conversion_campaign_bids_pctr_times_pcvr_times_value() -> None:
    b = bidder(camp("conv", goal="conversion"), camp("click"), pctr=StubModel(0.1),
               pcvr=StubModel(0.05))
    d, writes = b.decide(request("r1", AdCandidate("a1", "conv", 0.1, value_per_conversion=20)))
    assert d.bid == pytest.approx(0.1 * 0.05 * 20) and d.pctr == 0.1
    assert writes[0][1] is not None and writes[0][1]["q"] == 0.05
    # Without a value per conversion the candidate bids on its value per click.
    d, writes = b.decide(request("r2", AdCandidate("a1", "conv", 0.3)))
    assert d.bid == pytest.approx(0.03) and writes[0][1] is not None and writes[0][1]["q"] is None
    # A click campaign never uses pCVR.
    d, _ = b.decide(request("r3", AdCandidate("a1", "click", 0.3, value_per_conversion=20)))
    assert d.bid == pytest.approx(0.03)


def test_pcvr_learns_on_clicked_conversion_requests_when_the_window_closes() -> None:
    pcvr = StubModel(0.05)
    b = bidder(camp("conv", goal="conversion"), pctr=StubModel(0.1), pcvr=pcvr)
    for rid in ("r1", "r2", "r3"):
        b.decide(request(rid, AdCandidate("a1", "conv", 0.1, value_per_conversion=20)))
    for rid in ("r1", "r2"):
        b.on_event(f"i-{rid}", rid, "a1", "impression", T0 + 2_000)
        b.on_event(f"c-{rid}", rid, "a1", "click", T0 + 3_000)
    b.on_event("v-r1", "r1", "a1", "conversion", T0 + 4_000)
    labels, _ = b.advance(T0 + 1_000 + W)
    got = sorted((lb.model, lb.request_id, lb.y, lb.p) for lb in labels)
    # r1, r2 clicked: pCVR labels (their pCTR labels came at the click); r3 never shown.
    assert got == [("pcvr", "r1", 1, 0.05), ("pcvr", "r2", 0, 0.05)]
    assert [y for _, y in pcvr.learned] == [1, 0]


def test_invalid_model_output_never_makes_a_bid() -> None:
    for p in (math.nan, math.inf, -0.5, 1.5):
        b = bidder(pctr=StubModel(p))
        d, _ = b.decide(request())
        assert d.no_bid_reason == "below_floor", p


# -- no-bid reasons -------------------------------------------------------------------


def test_every_no_bid_reason_is_reachable() -> None:
    seen: dict[str, str] = {}

    def note(d: Any) -> None:
        assert d.no_bid_reason in NO_BID_REASONS
        seen[d.no_bid_reason] = d.request_id

    b = bidder(camp("c1", daily_budget=1.0), camp("off", active=False),
               camp("seg", target_segments=("x",)), camp("tiny", daily_budget=0.0),
               pctr=StubModel(0.01))
    note(b.decide(request("k"), killed=True)[0])
    note(b.decide(AdRequest("n", "u", T0, "top", 0.0, ()))[0])
    note(b.decide(request("u", AdCandidate("a", "nope", 1.0)))[0])
    note(b.decide(request("i", AdCandidate("a", "off", 1.0)))[0])
    note(b.decide(request("t", AdCandidate("a", "seg", 1.0)))[0])
    note(b.decide(request("b", AdCandidate("a", "tiny", 1.0)))[0])
    note(b.decide(request("f", floor=5.0))[0])
    b.advance(T0 + 10 * W)
    note(b.decide(request("e", ts=T0))[0])
    # paced: charged spend far ahead of the target curve at 00:00:01
    b.decide(request("p0", AdCandidate("a1", "c1", 50.0), ts=T0 + 10 * W))
    b.on_event("x", "p0", "a1", "impression", T0 + 10 * W + 1, cost=0.5)
    note(b.decide(request("p1", ts=T0 + 10 * W + 2))[0])
    small = bidder(pctr=StubModel(0.01), max_records=1)
    small.decide(request("o0"))
    note(small.decide(request("o1"))[0])
    assert set(seen) == set(NO_BID_REASONS), set(NO_BID_REASONS) - set(seen)


def test_request_reason_is_the_furthest_candidate_stage() -> None:
    b = bidder(camp("c1", daily_budget=0.0), camp("seg", target_segments=("x",)),
               pctr=StubModel(0.01))
    cands = (AdCandidate("a", "nope", 1.0), AdCandidate("b", "seg", 1.0),
             AdCandidate("c", "c1", 1.0))
    assert b.decide(request("r1", *cands))[0].no_bid_reason == "budget_exhausted"
    assert b.decide(request("r2", *cands[:2]))[0].no_bid_reason == "not_targeted"
    b2 = bidder(camp("c1"), camp("z", daily_budget=0.0), pctr=StubModel(0.01))
    cands = (AdCandidate("a", "z", 1.0), AdCandidate("b", "c1", 1.0))
    assert b2.decide(request("r3", *cands, floor=1.0))[0].no_bid_reason == "below_floor"


def test_kill_switch_persists_and_stores_nothing() -> None:
    table = Table()
    b = bidder()
    table.apply(b.set_kill(True, ts_ms=100))
    assert b.killed
    d, writes = b.decide(request())
    assert d.no_bid_reason == "kill_switch" and writes == [] and b.n_records == 0
    assert b.set_kill(False, ts_ms=99) == []  # an older command cannot undo a newer one
    assert b.killed
    rebuilt = bidder()
    rebuilt.load(table.data.items())
    assert rebuilt.killed and rebuilt.decide(request())[0].no_bid_reason == "kill_switch"
    table.apply(rebuilt.set_kill(False, ts_ms=200))
    assert rebuilt.decide(request())[0].bid is not None
    assert rebuilt.decide(request("r2"), killed=True)[0].no_bid_reason == "kill_switch"


# -- money: reservations, charges, releases -------------------------------------------


def test_reservation_charge_and_release_arithmetic() -> None:
    b = bidder(camp(daily_budget=10.0), pctr=StubModel(0.25), pacing=False)
    b.decide(request("r1"))  # bid 0.5
    b.decide(request("r2"))  # bid 0.5, will lose the auction
    assert b.reserved("c1") == 1.0
    out, writes = b.on_event("e1", "r1", "a1", "impression", T0 + 2_000, cost=0.3)
    assert (out.outcome, out.spend, out.first) == ("applied", 0.3, True)
    assert [k for k, _ in writes] == ["$spend:c1", "r:r1"]  # spend record first
    assert (b.spend("c1"), b.reserved("c1")) == (0.3, 0.7)
    out, _ = b.on_event("e2", "r1", "a1", "click", T0 + 3_000, cost=0.4)
    assert out.spend == pytest.approx(0.2)  # capped: 0.5 bid in all
    assert (b.spend("c1"), b.reserved("c1")) == (0.5, 0.5)
    out, writes = b.on_event("e3", "r1", "a1", "conversion", T0 + 4_000, cost=1.0, revenue=7.5)
    assert (out.outcome, out.spend, out.revenue) == ("applied", 0.0, 7.5)
    assert [k for k, _ in writes] == ["r:r1"]  # nothing charged: no spend write
    assert b.spend("c1", day=T0 // DAY_MS) == 0.5
    labels, writes = b.advance(T0 + 1_000 + W)
    assert b.reserved("c1") == 0.0 and b.spend("c1") == 0.5 and b.n_open == 0
    assert labels == []  # r1 clicked (labelled at the click), r2 never shown
    assert {k for k, _ in writes} == {"r:r1", "r:r2", "$clock"}


def test_lost_auction_releases_at_the_impression_window_and_a_shown_ad_stays_open() -> None:
    b = bidder(camp(daily_budget=10.0), pctr=StubModel(0.25), pacing=False,
               impression_window_ms=5_000)  # attribution window W = 60 s
    b.decide(request("won"))  # bid 0.5 at T0 + 1 s
    b.decide(request("lost"))  # bid 0.5, never shown
    b.on_event("i1", "won", "a1", "impression", T0 + 2_000, cost=0.2)
    b.advance(T0 + 6_000)  # the impression window of both has passed
    # the lost auction's 0.5 is back in the budget; the shown one keeps 0.3 for clicks
    assert b.reserved("c1") == pytest.approx(0.3) and b.n_open == 1
    out, _ = b.on_event("c1", "won", "a1", "click", T0 + 30_000, cost=0.1)
    assert (out.outcome, out.spend) == ("applied", pytest.approx(0.1))
    # an impression reported after its impression window is refused, never charged
    out, _ = b.on_event("i2", "lost", "a1", "impression", T0 + 7_000, cost=0.2)
    assert out.outcome == "late" and b.spend("c1") == pytest.approx(0.3)
    b.advance(T0 + 1_000 + W)
    assert b.reserved("c1") == 0.0 and b.n_open == 0


def test_impression_window_is_checked() -> None:
    with pytest.raises(ValueError, match="impression_window_ms"):
        bidder(impression_window_ms=W + 1)
    with pytest.raises(ValueError, match="impression_window_ms"):
        bidder(impression_window_ms=10)


def test_click_is_a_positive_label_learned_once_on_the_served_features() -> None:
    model = StubModel(0.02)
    b = bidder(pctr=model)
    _, writes = b.decide(request(view={"i": [["Sport", 1.0]], "s": "fan"}))
    served = writes[0][1]["x"]  # type: ignore[index]
    out, _ = b.on_event("c1", "r1", "a1", "click", T0 + 2_000)
    assert [(lb.model, lb.y, lb.p, list(lb.features)) for lb in out.labels] == [
        ("pctr", 1, 0.02, served)]
    assert model.learned == [(tuple(served), 1)]
    out, _ = b.on_event("c2", "r1", "a1", "click", T0 + 2_500)
    assert out.outcome == "duplicate" and out.labels == ()
    assert b.advance(T0 + 1_000 + W)[0] == []
    assert len(model.learned) == 1


def test_impression_without_click_is_a_negative_at_the_window_close() -> None:
    model = StubModel(0.02)
    b = bidder(pctr=model)
    b.decide(request())
    b.on_event("i1", "r1", "a1", "impression", T0 + 2_000)
    assert b.advance(T0 + W)[0] == []  # still open: 1_000 + W is the end
    labels, _ = b.advance(T0 + 1_000 + W)
    assert [(lb.request_id, lb.y) for lb in labels] == [("r1", 0)]
    assert [y for _, y in model.learned] == [0]


def test_learn_false_returns_labels_without_learning() -> None:
    model = StubModel(0.02)
    b = bidder(pctr=model, learn=False)
    b.decide(request())
    out, _ = b.on_event("c", "r1", "a1", "click", T0 + 2_000)
    assert len(out.labels) == 1 and model.learned == []


def test_duplicates_replays_and_refusals() -> None:
    b = bidder(pctr=StubModel(0.25), pacing=False)
    d1, _ = b.decide(request("r1"))
    d2, writes = b.decide(request("r1", ts=T0 + 9_999, user="other"))
    assert writes == [] and d2.replay and not d1.replay
    assert (d2.ad_id, d2.bid, d2.ts_ms, d2.user) == ("a1", 0.5, T0 + 1_000, "other")
    assert b.reserved("c1") == 0.5
    b.decide(request("r2", floor=9.0))  # no bid
    assert b.on_event("e1", "r1", "a1", "impression", T0 + 2_000, cost=0.1)[0].outcome == "applied"
    cases = [
        (("e1", "r1", "a1", "impression"), "duplicate"),  # same event again
        (("e2", "r1", "a1", "impression"), "duplicate"),  # same (request, type), new id
        (("e1", "r1", "a1", "click"), "duplicate"),  # event id reused for another type
        (("e9", "nope", "a1", "click"), "unknown_request"),
        (("e9", "r1", "a2", "click"), "wrong_ad"),
        (("e9", "r2", "a1", "impression"), "wrong_ad"),  # we did not bid
    ]
    for (eid, rid, ad, kind), expected in cases:
        out, writes = b.on_event(eid, rid, ad, kind, T0 + 3_000, cost=0.2)
        assert (out.outcome, out.spend, writes) == (expected, 0.0, []), (eid, rid, ad, kind)
    assert b.spend("c1") == 0.1


def test_late_events_are_refused_and_not_charged() -> None:
    b = bidder(pctr=StubModel(0.25), pacing=False)
    b.decide(request("r1"))
    b.decide(request("r2"))
    out, _ = b.on_event("e1", "r1", "a1", "impression", T0 + 1_000 + W, cost=0.1)
    assert out.outcome == "late"  # event time at the window end: closed
    b.advance(T0 + 1_000 + W)
    out, _ = b.on_event("e2", "r2", "a1", "impression", T0 + 5_000, cost=0.1)
    assert out.outcome == "late"  # in time by its ts, but the window was closed
    assert b.spend("c1") == 0.0 and b.reserved("c1") == 0.0


def test_request_already_expired_by_the_clock() -> None:
    b = bidder()
    b.advance(T0 + 2 * W)
    d, writes = b.decide(request(ts=T0 + W - 1))
    assert d.no_bid_reason == "expired" and writes[0][1]["open"] is False  # type: ignore[index]


# -- bounded memory -------------------------------------------------------------------


def test_records_expire_after_retention_and_old_days_leave_the_ledger() -> None:
    b = bidder(pctr=StubModel(0.25), pacing=False, retention_ms=2 * W)
    b.decide(request("r1"))
    b.on_event("e1", "r1", "a1", "impression", T0 + 2_000, cost=0.2)
    b.advance(T0 + 1_000 + W)
    assert b.n_records == 1  # closed, kept to recognise late or duplicate events
    assert b.on_event("e2", "r1", "a1", "click", T0 + W + 5_000)[0].outcome == "late"
    _, writes = b.advance(T0 + 1_000 + 3 * W)
    assert ("r:r1", None) in writes and b.n_records == 0
    assert b.on_event("e1", "r1", "a1", "impression", T0 + 2_000)[0].outcome == "unknown_request"
    day = T0 // DAY_MS
    b.advance(T0 + DAY_MS + 5)
    assert b.spend("c1", day) == 0.2  # yesterday kept
    _, writes = b.advance(T0 + 2 * DAY_MS + 5)
    assert b.spend("c1", day) == 0.0 and b.spend("c1") == 0.2  # total kept
    spend_write = dict(writes)["$spend:c1"]
    assert spend_write == {"total": 200_000, "days": {}, "last": ["r1", "impression", "e1"]}


def test_a_request_and_event_id_used_again_after_their_record_left_are_charged() -> None:
    # The spend record remembers its latest charge ([request, type, event]) to spot the
    # replay of a call a crash cut; the same ids coming back in this process, after
    # their record left, are a new charge, not that replay.
    b = bidder(pctr=StubModel(0.25), pacing=False, retention_ms=2 * W)
    b.decide(request("r1"))
    b.on_event("e1", "r1", "a1", "impression", T0 + 2_000, cost=0.2)
    b.advance(T0 + 1_000 + 3 * W)
    assert b.n_records == 0
    b.decide(request("r1", ts=T0 + 4 * W))
    assert b.on_event("e1", "r1", "a1", "impression", T0 + 4 * W + 10,
                      cost=0.2)[0].outcome == "applied"
    assert b.spend("c1") == pytest.approx(0.4)


def test_max_records_drops_closed_records_first_then_refuses() -> None:
    b = bidder(pctr=StubModel(0.25), pacing=False, max_records=3)
    b.decide(request("a", ts=T0 + 100, floor=9.0))  # closed at once (no bid)
    b.decide(request("b", ts=T0 + 500, floor=9.0))
    b.decide(request("c"))  # open
    _, writes = b.decide(request("d"))
    assert writes[0] == ("r:a", None) and b.n_records == 3
    _, writes = b.decide(request("e"))
    assert writes[0] == ("r:b", None)
    d, writes = b.decide(request("f"))
    assert d.no_bid_reason == "overloaded" and writes == [] and b.n_records == 3
    assert b.reserved("c1") == 1.5  # open bids are never dropped


# -- durable state --------------------------------------------------------------------


def run_script(b: Bidder, table: Table, start: int = 0) -> list[Any]:
    """A small busy script; returns what each call answered."""
    out: list[Any] = []
    steps: list[Any] = [
        ("decide", request("r1", AdCandidate("a1", "c1", 2.0), AdCandidate("a2", "c2", 1.0))),
        ("decide", request("r2", AdCandidate("a2", "c2", 3.0), ts=T0 + 2_000)),
        ("event", ("e1", "r1", "a1", "impression", T0 + 3_000, 0.01)),
        ("event", ("e2", "r2", "a2", "impression", T0 + 3_000, 0.02)),
        ("event", ("e3", "r2", "a2", "click", T0 + 4_000, 0.05)),
        ("advance", T0 + 30_000),
        ("decide", request("r3", AdCandidate("a2", "c2", 3.0), ts=T0 + 31_000)),
        ("event", ("e4", "r3", "a2", "impression", T0 + 32_000, 0.03)),
        ("advance", T0 + 62_000),
        ("decide", request("r1")),
        ("event", ("e5", "r3", "a2", "click", T0 + 33_000, 0.01)),
        ("advance", T0 + 5 * W),
        ("decide", request("r4", ts=T0 + 5 * W)),
    ]
    for kind, arg in steps[start:]:
        if kind == "decide":
            res, writes = b.decide(arg)
        elif kind == "event":
            res, writes = b.on_event(*arg[:5], cost=arg[5])
        else:
            res, writes = b.advance(arg)
        table.apply(writes)
        out.append(res)
    return out


def test_load_rebuilds_everything() -> None:
    cs = (camp("c1", daily_budget=1.0, total_budget=2.0), camp("c2", daily_budget=0.5))
    original, table = bidder(*cs, pctr=StubModel(0.02), learn=False), Table()
    run_script(original, table)
    rebuilt = bidder(*cs, pctr=StubModel(0.02), learn=False)
    rebuilt.load(table.data.items())
    for cid in ("c1", "c2"):
        assert rebuilt.spend(cid) == original.spend(cid) > 0
        assert rebuilt.reserved(cid) == original.reserved(cid)
    assert (rebuilt.n_records, rebuilt.n_open, rebuilt.now_ms) == (
        original.n_records, original.n_open, original.now_ms)
    # Both continue identically, and write the same table.
    t1, t2 = Table(), Table()
    t1.data, t2.data = dict(table.data), dict(table.data)
    for b, t in ((original, t1), (rebuilt, t2)):
        t.apply(b.on_event("e6", "r4", "a1", "impression", T0 + 5 * W + 10, cost=0.01)[1])
        t.apply(b.decide(request("r5", ts=T0 + 5 * W + 20))[1])
        t.apply(b.advance(T0 + 7 * W)[1])
    assert t1.data == t2.data


@pytest.mark.parametrize("cut", range(0, 3))
def test_crash_inside_a_charge_counts_it_once(cut: int) -> None:
    b, table = bidder(pctr=StubModel(0.25), learn=False), Table()
    table.apply(b.decide(request("r1"))[1])
    _, writes = b.on_event("e1", "r1", "a1", "impression", T0 + 2_000, cost=0.3)
    assert len(writes) == 2
    table.apply(writes[:cut])  # the crash: only a prefix reached the changelog
    again = bidder(pctr=StubModel(0.25), learn=False)
    again.load(table.data.items())
    out, writes = again.on_event("e1", "r1", "a1", "impression", T0 + 2_000, cost=0.3)
    table.apply(writes)
    expected = "duplicate" if cut == 2 else "applied"
    assert out.outcome == expected
    assert (again.spend("c1"), again.reserved("c1")) == (0.3, pytest.approx(0.2))
    final = bidder(pctr=StubModel(0.25), learn=False)
    final.load(table.data.items())
    assert (final.spend("c1"), final.reserved("c1")) == (0.3, pytest.approx(0.2))


def test_load_refuses_malformed_records_and_stays_empty() -> None:
    b = bidder()
    b.decide(request())
    with pytest.raises(ValueError, match="r:bad"):
        b.load([("$kill", {"on": True, "ts": 1}), ("r:bad", {"ts": "x"})])
    assert b.n_records == 0 and not b.killed
    b.load([("other", {"whatever": 1}), ("r:gone", None)])  # foreign keys, deletions
    assert b.n_records == 0


# -- pacing ---------------------------------------------------------------------------


def simulate_day(daily_budget: float, pacing: bool = True) -> dict[str, Any]:
    """A UTC day of steady demand: a request every 10 s, one ad bidding 0.02; a second-
    price exchange whose clearing price is uniform in [0, 0.03) (fixed by the request id)
    reports the impression 2 s later. Unthrottled this spends about 57.6 a day."""
    b = bidder(camp("c1", max_bid=1.0, daily_budget=daily_budget), pctr=StubModel(0.02),
               window_ms=1_800_000, retention_ms=600_000, pacing=pacing)
    day = T0 // DAY_MS
    pending: list[tuple[int, str, float]] = []
    at: dict[int, float] = {}
    first_exhausted: int | None = None
    reasons: dict[str, int] = {}
    for i in range(8_640):
        ts = T0 + i * 10_000
        while pending and pending[0][0] <= ts:
            t, rid, cost = pending.pop(0)
            out, _ = b.on_event("i" + rid, rid, "a1", "impression", t, cost=cost)
            assert out.outcome == "applied"
        b.advance(ts)
        if i % 360 == 0:
            at[i // 360] = b.spend("c1", day)
        rid = f"r{i}"
        d, _ = b.decide(request(rid, AdCandidate("a1", "c1", 1.0), ts=ts))
        reasons[d.no_bid_reason or "bid"] = reasons.get(d.no_bid_reason or "bid", 0) + 1
        if d.no_bid_reason == "budget_exhausted" and first_exhausted is None:
            first_exhausted = ts - T0
        if d.bid is not None:
            clearing = 0.03 * uniform_from_key(rid, salt="exchange")
            if clearing <= d.bid:
                pending.append((ts + 2_000, rid, round(clearing, 6)))
        assert b.spend("c1", day) + b.reserved("c1", day) <= daily_budget + 1e-9
    return {"at": at, "first_exhausted": first_exhausted, "reasons": reasons,
            "end": b.spend("c1", day)}


def test_pacing_spreads_a_heavy_day_along_the_target_line() -> None:
    budget = 15.0  # demand is ~3.8x the budget
    sim = simulate_day(budget)
    noon, eight_pm = sim["at"][12] / budget, sim["at"][20] / budget
    # Tolerance: 3% of the daily budget (slack 2% plus the impressions' reporting delay).
    assert abs(noon - 0.5) <= 0.03, noon
    assert abs(eight_pm - 20 / 24) <= 0.03, eight_pm
    for h in range(1, 24):
        assert abs(sim["at"][h] / budget - h / 24) <= 0.03, (h, sim["at"][h] / budget)
    assert sim["first_exhausted"] is None or sim["first_exhausted"] >= 20 * 3_600_000
    assert sim["end"] >= 0.93 * budget
    assert sim["reasons"]["paced"] > 4_000


def test_without_pacing_a_heavy_day_is_spent_by_morning() -> None:
    sim = simulate_day(15.0, pacing=False)
    assert sim["at"][8] >= 0.9 * 15.0
    # Bids shrink to what is left (spend + reservations never pass the budget).
    assert sim["reasons"] == {"bid": 8_640} and sim["end"] <= 15.0


def test_pacing_does_not_touch_light_demand() -> None:
    sim = simulate_day(150.0)
    assert sim["reasons"] == {"bid": 8_640}
    assert 50 < sim["end"] < 65


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cost": math.nan}, {"cost": math.inf}, {"cost": -0.01}, {"cost": 1e7},
        {"cost": True}, {"revenue": math.nan}, {"revenue": -1.0}, {"revenue": 1e12},
        {"ts_ms": -1}, {"ts_ms": 1.5}, {"ts_ms": True}, {"ts_ms": 10**16},
        {"type": "view"}, {"event_id": ""}, {"event_id": "e" * 300},
        {"request_id": None}, {"ad_id": 7},
    ],
)
def test_bad_events_raise_before_touching_state(kwargs: dict[str, Any]) -> None:
    b = bidder(pctr=StubModel(0.25))
    b.decide(request())
    args: dict[str, Any] = {"event_id": "e1", "request_id": "r1", "ad_id": "a1",
                            "type": "impression", "ts_ms": T0 + 2_000, "cost": 0.1}
    args.update(kwargs)
    with pytest.raises(ValueError):
        b.on_event(**args)
    assert b.spend("c1") == 0.0 and b.reserved("c1") == 0.5


@pytest.mark.parametrize(
    "make",
    [
        lambda: AdCandidate("a1", "c1", math.nan),
        lambda: AdCandidate("a1", "c1", -1.0),
        lambda: AdCandidate("a1", "c1", 1e9),
        lambda: AdCandidate("a1", "c1", 1.0, value_per_conversion=math.inf),
        lambda: AdCandidate("", "c1", 1.0),
        lambda: AdCandidate("a1", "c" * 257, 1.0),
        lambda: AdCandidate("a1", "c1", 1.0, "Sport"),  # type: ignore[arg-type]
        lambda: AdRequest("r1", "u1", T0, "top", math.nan, ()),
        lambda: AdRequest("r1", "u1", T0, "top", -1.0, ()),
        lambda: AdRequest("r1", "u1", -5, "top", 0.0, ()),
        lambda: AdRequest("r1", "u1", T0, "top", 0.0, ("not a candidate",)),  # type: ignore
        lambda: AdRequest("r1", "u1", T0, "top", 0.0, (AdCandidate("a", "c", 1.0),) * 101),
        lambda: AdRequest("r1", "u1", T0, "top", 0.0, (), view=[]),  # type: ignore[arg-type]
        lambda: AdRequest("r" * 300, "u1", T0, "top", 0.0, ()),
        lambda: Bidder({}, window_ms=DAY_MS + 1),
        lambda: Bidder({}, pacing_slack=math.nan),
    ],
)
def test_bad_requests_and_settings_raise(make: Any) -> None:
    with pytest.raises(ValueError):
        make()


def test_request_a_day_ahead_of_the_clock_raises() -> None:
    b = bidder()
    b.advance(T0)
    assert b.decide(request(ts=T0 + DAY_MS))[0].bid is not None
    with pytest.raises(ValueError, match="ahead of the clock"):
        b.decide(request("r2", ts=T0 + DAY_MS + 1))


@pytest.mark.parametrize(("field", "value"), [("x", [2**20]), ("x", [1.5]), ("p", math.nan),
                                              ("q", 2.0), ("ev", {"view": "e"}), ("c", 5)])
def test_load_refuses_bad_stored_values(field: str, value: Any) -> None:
    b, table = bidder(), Table()
    table.apply(b.decide(request())[1])
    table.data["r:r1"][field] = value
    with pytest.raises(ValueError, match="r:r1"):
        bidder().load(table.data.items())


def test_bad_advance_and_kill_raise() -> None:
    b = bidder()
    for bad in (math.nan, -1, "5", None):
        with pytest.raises(ValueError):
            b.advance(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        b.set_kill("yes", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        b.decide("request")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"campaign_id": "c", "max_bid": 0}, "max_bid"),
        ({"campaign_id": "c", "max_bid": math.nan}, "max_bid"),
        ({"campaign_id": "c", "max_bid": 1, "daily_budget": -5}, "daily_budget"),
        ({"campaign_id": "c", "max_bid": 1, "total_budget": math.inf}, "total_budget"),
        ({"campaign_id": "c", "max_bid": 1, "goal": "views"}, "goal"),
        ({"campaign_id": "c", "max_bid": 1, "target_segments": "loyal"}, "target_segments"),
        ({"campaign_id": "c", "max_bid": 1, "active": "yes"}, "active"),
        ({"campaign_id": "c", "max_bid": 1, "daily_budjet": 5}, "daily_budjet"),
        ({"campaign_id": "", "max_bid": 1}, "campaign_id"),
        ({"max_bid": 1}, "campaign_id"),
    ],
)
def test_load_campaigns_names_the_bad_field(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(CampaignError, match=message):
        load_campaigns({"campaigns": [entry]})


def test_load_campaigns() -> None:
    cs = load_campaigns({"campaigns": [
        {"campaign_id": "a", "max_bid": 1, "daily_budget": 50, "goal": "conversion",
         "target_categories": ["Sport"]},
        {"campaign_id": "b", "max_bid": 0.5, "active": False},
    ]})
    assert cs["a"].target_categories == ("Sport",) and cs["a"].daily_budget == 50.0
    assert not cs["b"].active
    with pytest.raises(CampaignError, match="duplicate"):
        load_campaigns({"campaigns": [{"campaign_id": "a", "max_bid": 1}] * 2})
    with pytest.raises(CampaignError):
        load_campaigns([])
    with pytest.raises(CampaignError):
        Bidder({"x": Campaign("y", max_bid=1.0)})


def test_real_pctr_model_round_trip() -> None:
    """With the real FTRL model: the decision, learning and the JSON state go together."""
    model = PctrModel(prior_ctr=0.01)
    b, table = Bidder({"c1": camp()}, pctr=model, window_ms=W), Table()
    for i in range(50):
        d, writes = b.decide(request(f"r{i}", ts=T0 + i))
        table.apply(writes)
        assert d.bid is not None and 0 < d.bid <= 10.0
        table.apply(b.on_event(f"i{i}", f"r{i}", "a1", "impression", T0 + i + 5)[1])
        if i % 5 == 0:
            table.apply(b.on_event(f"c{i}", f"r{i}", "a1", "click", T0 + i + 9)[1])
    labels, writes = b.advance(T0 + 2 * W)
    table.apply(writes)
    assert len(labels) == 40 and {lb.y for lb in labels} == {0}
    assert model.n_updates == 50


def test_pacing_rate_falls_when_spend_runs_ahead_of_the_target_line() -> None:
    day0 = (T0 // DAY_MS) * DAY_MS
    b = bidder(camp(daily_budget=100.0), pctr=StubModel(0.5))
    assert b.pacing_rate("c1", day0 + 6 * 3_600_000) == 1.0  # nothing spent yet
    b.decide(request("r1", AdCandidate("a1", "c1", 20.0), ts=day0 + 3_600_000))  # bid 10
    b.on_event("i1", "r1", "a1", "impression", day0 + 3_600_500, cost=10.0)
    # at 01:00 the target is 100/24 = 4.17: 10 spent is 5.8 ahead, beyond the 2% slack
    assert b.pacing_rate("c1", day0 + 3_600_000) == 0.0
    # at 02:00 the target is 8.33: 1.67 ahead, between 1 and 2 (half and full slack)
    assert b.pacing_rate("c1", day0 + 7_200_000) == pytest.approx((2 - 10 + 8.3333333) / 1)
    assert b.pacing_rate("c1", day0 + 12 * 3_600_000) == 1.0  # behind the line by noon
    assert bidder(camp(daily_budget=100.0), pacing=False).pacing_rate("c1", day0) == 1.0
    assert b.pacing_rate("unknown") == 1.0
