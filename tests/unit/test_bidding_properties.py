"""Bidder invariants under random traffic (Hypothesis): duplicated and replayed requests and
events, late events, clock moves across midnight, the kill switch, and crashes that cut a
call's writes anywhere, followed by a rebuild from the table and reprocessing.

Checked after every step: floor <= bid <= max_bid and finite; spend + reserved <= every
budget (daily and total); spend equals the sum of distinct capped charges computed by an
independent reference ledger in this file; a rebuilt bidder answers and writes exactly as
the original does.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from models.ads.bidding import (
    CLOCK_STEP_MS,
    DAY_MS,
    MICROS,
    AdCandidate,
    AdRequest,
    Bidder,
    Campaign,
    Write,
    to_micros,
)
from models.ads.pctr import PctrModel

T0 = 19_000 * DAY_MS
WINDOW = 10_000
# Until its impression a bid's window is this short (a lost auction frees its money
# early); the impression extends it to WINDOW.
IMPRESSION_WINDOW = 4_000
RETENTION = 15_000
CAMPAIGNS = {
    c.campaign_id: c
    for c in (
        Campaign("c1", max_bid=0.6, daily_budget=2.0, total_budget=3.0),
        Campaign("c2", max_bid=0.3, daily_budget=1.0),
        Campaign("cv", max_bid=0.8, total_budget=2.5, goal="conversion"),
        Campaign("tg", max_bid=0.5, daily_budget=1.5, target_segments=("loyal",)),
        Campaign("off", max_bid=0.5, active=False),
    )
}
ADS = (("a1", "c1"), ("a2", "c1"), ("a3", "c2"), ("a4", "cv"), ("a5", "tg"), ("a6", "zz"),
       ("a7", "off"))
VIEWS = (
    {},
    {"np": True},
    {"s": "loyal", "i": [["Sport", 0.6], ["Music", 0.4]], "r": 1, "f": 2},
    {"s": "new", "i": [["Drama", 1.0]], "r": 3, "f": 0},
)


class HashModel:
    """Deterministic, varied probabilities in (0, 0.5] from the features; never learns."""

    def predict_many(self, xs: Sequence[Sequence[int]]) -> list[float]:
        return [((sum(x) * 2_654_435_761) % 1000 + 1) / 2000 for x in xs]

    def learn_one(self, x: Sequence[int], y: bool | int, weight: float = 1.0) -> None:
        raise AssertionError("learn=False must not learn")


def apply(table: dict[str, Any], writes: list[Write]) -> None:
    for key, value in writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = json.loads(json.dumps(value, allow_nan=False))


# -- the reference ledger: what must have been charged, computed independently ---------


@dataclass
class RefRequest:
    ts: int
    bid_m: int | None
    ad: str | None
    cid: str | None
    floor: float
    decision: tuple[Any, ...]
    paid: int = 0
    types: set[str] = field(default_factory=set)
    eids: set[str] = field(default_factory=set)
    closed: bool = False

    @property
    def end(self) -> int:
        return self.ts + (WINDOW if "impression" in self.types else IMPRESSION_WINDOW)


@dataclass
class Reference:
    reqs: dict[str, RefRequest] = field(default_factory=dict)
    applied: dict[str, str] = field(default_factory=dict)  # event id -> request id
    spend: dict[str, int] = field(default_factory=dict)
    spend_day: dict[tuple[str, int], int] = field(default_factory=dict)
    clock: int = 0

    def advance(self, now: int) -> None:
        t = now - now % CLOCK_STEP_MS
        if t <= self.clock:
            return
        self.clock = t
        for rid, r in list(self.reqs.items()):
            if r.end <= t:
                r.closed = True
            if r.closed and r.end + RETENTION <= t:
                del self.reqs[rid]
                for eid in r.eids:
                    self.applied.pop(eid, None)

    def event(
        self, eid: str, rid: str, ad: str, kind: str, ts: int, cost: float
    ) -> tuple[str, int]:
        r = self.reqs.get(rid)
        if eid in self.applied:
            return "duplicate", 0
        if r is None:
            return "unknown_request", 0
        if r.ad is None or r.ad != ad:
            return "wrong_ad", 0
        if kind in r.types:
            return "duplicate", 0
        if r.closed or ts >= r.end:
            return "late", 0
        assert r.bid_m is not None and r.cid is not None
        charge = min(to_micros(cost), r.bid_m - r.paid)
        r.paid += charge
        r.types.add(kind)
        r.eids.add(eid)
        self.applied[eid] = rid
        self.spend[r.cid] = self.spend.get(r.cid, 0) + charge
        key = (r.cid, r.ts // DAY_MS)
        self.spend_day[key] = self.spend_day.get(key, 0) + charge
        return "applied", charge

    def make_room(self, max_records: int) -> bool:
        """Drop closed requests, earliest retention end first, until one more fits."""
        while len(self.reqs) >= max_records:
            closed = [(r.end + RETENTION, rid) for rid, r in self.reqs.items() if r.closed]
            if not closed:
                return False
            rid = min(closed)[1]
            for eid in self.reqs.pop(rid).eids:
                self.applied.pop(eid, None)
        return True

    def decided(self, d: Any, req: AdRequest, max_records: int) -> None:
        """Account the bidder's decision ``d`` for ``req``."""
        if d.replay:
            assert (d.ad_id, d.bid, d.ts_ms) == self.reqs[req.request_id].decision
            return
        if d.no_bid_reason == "kill_switch":
            return
        assert req.request_id not in self.reqs
        room = self.make_room(max_records)
        assert room == (d.no_bid_reason != "overloaded")
        if room:
            self.reqs[req.request_id] = RefRequest(
                req.ts_ms, None if d.bid is None else round(d.bid * MICROS), d.ad_id,
                d.campaign_id, req.floor_price, (d.ad_id, d.bid, d.ts_ms),
                closed=d.bid is None)

    def reserved(self, cid: str, day: int | None = None) -> int:
        return sum(
            r.bid_m - r.paid for r in self.reqs.values()
            if r.cid == cid and not r.closed and r.bid_m is not None
            and (day is None or r.ts // DAY_MS == day)
        )


# -- the traffic ----------------------------------------------------------------------

requests = st.tuples(
    st.just("req"),
    st.integers(0, 40),  # request id: reuse = replay
    st.integers(-3_000, 5_000),  # ts jitter around the clock
    st.lists(st.integers(0, len(ADS) - 1), min_size=1, max_size=4),
    st.sampled_from([0.0, 0.0, 0.01, 0.05, 0.2]),
    st.integers(0, len(VIEWS) - 1),
    st.sampled_from([0.5, 1.0, 2.0, 5.0]),
)
events = st.tuples(
    st.just("evt"),
    st.integers(0, 1_000),  # which request: mostly one we bid on (see World.make)
    st.sampled_from(["impression", "impression", "click", "conversion"]),
    st.integers(0, 40),  # event id: reuse = duplicate, also across requests
    st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.7, 0.0000004]),
    st.integers(-1_000, 14_000),  # delay after the request: late beyond WINDOW
    st.sampled_from([False] * 5 + [True]),  # the wrong ad
    st.sampled_from([True] * 5 + [False]),  # a request we bid on, else any id
)
advances = st.tuples(st.just("adv"), st.integers(0, 20_000))
kills = st.tuples(st.just("kill"), st.sampled_from([True, False, False]))


def _op(k: int) -> st.SearchStrategy[tuple[Any, ...]]:
    # Weights in percent (one_of would give the rare kinds an equal share).
    return requests if k < 40 else events if k < 88 else advances if k < 97 else kills


ops_strategy = st.lists(st.integers(0, 99).flatmap(_op), min_size=20, max_size=120)
# Just before midnight (days roll over), just after (pacing bites: the target is ~0), later.
starts = st.sampled_from([T0 + DAY_MS - 40_000, T0 + 10_000, T0 + 6 * 3_600_000])


class World:
    """Turns the abstract ops into calls, with the clock the test keeps."""

    def __init__(self, start: int) -> None:
        self.now = start
        self.kill_ts = start

    def make(self, op: tuple[Any, ...], ref: Reference) -> tuple[str, Any]:
        kind = op[0]
        if kind == "req":
            _, i, jitter, cands, floor, v, value = op
            candidates = tuple(
                AdCandidate(ADS[c][0], ADS[c][1], value, ("Sport",),
                            value_per_conversion=10 * value)
                for c in cands
            )
            ts = max(0, self.now + jitter)
            return "decide", AdRequest(f"r{i}", "u", ts, "top", floor, candidates, None,
                                       dict(VIEWS[v]))
        if kind == "evt":
            _, pick, etype, e, cost, delay, wrong, known = op
            bids = [rid for rid, r in ref.reqs.items() if r.bid_m is not None]
            rid = bids[pick % len(bids)] if known and bids else f"r{pick % 45}"
            r = ref.reqs.get(rid)
            ad = r.ad if r is not None and r.ad is not None else "a1"
            if wrong:
                ad = "a3" if ad != "a3" else "a1"
            ts = (r.ts if r is not None else self.now) + delay
            return "event", (f"e{e}", rid, ad, etype, max(0, ts), cost)
        if kind == "adv":
            self.now += op[1]
            return "advance", self.now
        self.kill_ts += 1
        return "kill", (op[1], self.kill_ts)


def call(b: Bidder, kind: str, arg: Any) -> tuple[Any, list[Write]]:
    if kind == "decide":
        return b.decide(arg)
    if kind == "event":
        eid, rid, ad, etype, ts, cost = arg
        return b.on_event(eid, rid, ad, etype, ts, cost=cost, revenue=1.0)
    if kind == "advance":
        return b.advance(arg)
    return None, b.set_kill(*arg)


def check_decision(d: Any, req: AdRequest) -> None:
    if d.replay:  # the stored decision of another request message: checked by the caller
        return
    if d.bid is None:
        assert d.no_bid_reason is not None and d.ad_id is None
        return
    assert d.no_bid_reason is None and math.isfinite(d.bid) and d.bid > 0
    camp = CAMPAIGNS[d.campaign_id]
    assert req.floor_price <= d.bid <= camp.max_bid
    assert camp.active
    cand = next(c for c in req.candidates if c.ad_id == d.ad_id)
    assert cand.campaign_id == d.campaign_id
    if camp.target_segments:
        assert not req.view.get("np") and req.view.get("s") in camp.target_segments


def check_money(b: Bidder, ref: Reference, now: int) -> None:
    days = {now // DAY_MS + k for k in (-1, 0, 1)}
    days |= {r.ts // DAY_MS for r in ref.reqs.values()}
    for cid, camp in CAMPAIGNS.items():
        spend = round(b.spend(cid) * MICROS)
        reserved = round(b.reserved(cid) * MICROS)
        assert spend == ref.spend.get(cid, 0), cid
        assert reserved == ref.reserved(cid), cid
        if camp.total_budget is not None:
            assert spend + reserved <= round(camp.total_budget * MICROS), cid
        for day in days:
            s_day = round(b.spend(cid, day) * MICROS)
            r_day = round(b.reserved(cid, day) * MICROS)
            assert r_day == ref.reserved(cid, day)
            if day >= b.now_ms // DAY_MS - 1:  # older days leave the ledger
                assert s_day == ref.spend_day.get((cid, day), 0)
            if camp.daily_budget is not None:
                assert s_day + r_day <= round(camp.daily_budget * MICROS), (cid, day)


def make_bidder(**kw: Any) -> Bidder:
    kw.setdefault("pctr", HashModel())
    kw.setdefault("pcvr", HashModel())
    kw.setdefault("learn", False)
    return Bidder(CAMPAIGNS, window_ms=WINDOW, retention_ms=RETENTION,
                  impression_window_ms=IMPRESSION_WINDOW, **kw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy, start=starts, crash_k=st.integers(0, 80),
       crash_mode=st.sampled_from(["any", "decide", "event", "advance"]),
       crash_cut=st.integers(0, 9), max_records=st.sampled_from([100_000, 100_000, 6]))
def test_invariants_and_crash_recovery(
    ops: list[tuple[Any, ...]], start: int, crash_k: int, crash_mode: str, crash_cut: int,
    max_records: int,
) -> None:
    """Crash mode "any": the crash hits op number ``crash_k`` and keeps ``crash_cut`` of its
    writes (modulo their number + 1: none, some or all). Otherwise it hits the
    ``crash_k % 4``-th call of that kind that made several writes, strictly inside them."""
    world, ref = World(start), Reference()
    original = make_bidder(max_records=max_records)
    original.advance(start)
    ref.advance(start)
    table: dict[str, Any] = {}
    apply(table, [("$clock", {"now": original.now_ms})])
    rebuilt: Bidder | None = None
    rebuilt_table: dict[str, Any] = {}
    multi = 0
    cut = 0
    for n, op in enumerate(ops):
        kind, arg = world.make(op, ref)
        before = dict(table)
        result, writes = call(original, kind, arg)
        apply(table, writes)

        # The reference ledger, built from the calls only.
        event(f"{kind}: {getattr(result, 'no_bid_reason', None) or getattr(result, 'outcome', '')}"
              + (" (replay)" if getattr(result, "replay", False) else ""))
        if kind == "decide":
            check_decision(result, arg)
            ref.decided(result, arg, max_records)
        elif kind == "event":
            outcome, charge = ref.event(*arg)
            assert (result.outcome, round(result.spend * MICROS)) == (outcome, charge), arg
        elif kind == "advance":
            ref.advance(arg)
        check_money(original, ref, world.now)

        # The twin: rebuilt after a crash that kept a prefix of this call's writes.
        if crash_mode == "any":
            crash_now = n == crash_k % len(ops)
            cut = crash_cut % (len(writes) + 1)
        else:
            crash_now = kind == crash_mode and len(writes) > 1 and multi == crash_k % 4
            multi += kind == crash_mode and len(writes) > 1
            cut = 1 + crash_cut % max(1, len(writes) - 1)
        if rebuilt is None and crash_now:
            event(f"crash: {kind}, {'partial' if 0 < cut < len(writes) else 'edge'} cut")
            rebuilt_table = dict(before)
            apply(rebuilt_table, writes[:cut])
            rebuilt = make_bidder(max_records=max_records)
            rebuilt.load(copy.deepcopy(list(rebuilt_table.items())))
            _, again = call(rebuilt, kind, arg)  # the same input, processed again
            apply(rebuilt_table, again)
            assert rebuilt_table == table
        elif rebuilt is not None:
            twin, twin_writes = call(rebuilt, kind, arg)
            apply(rebuilt_table, twin_writes)
            assert twin == result
            assert twin_writes == writes
    if rebuilt is not None:
        assert rebuilt_table == table
        check_money(rebuilt, ref, world.now)
    final = make_bidder(max_records=max_records)
    final.load(table.items())
    check_money(final, ref, world.now)
    for twin in (final, rebuilt):
        if twin is not None:
            assert (twin.n_records, twin.n_open, twin.killed, twin.now_ms) == (
                original.n_records, original.n_open, original.killed, original.now_ms)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy, start=starts)
def test_invariants_while_learning_with_the_real_model(
    ops: list[tuple[Any, ...]], start: int
) -> None:
    world, ref = World(start), Reference()
    b = make_bidder(pctr=PctrModel(alpha=0.5, prior_ctr=0.2), pcvr=PctrModel(prior_ctr=0.3),
                    learn=True)
    b.advance(start)
    ref.advance(start)
    for op in ops:
        kind, arg = world.make(op, ref)
        result, _ = call(b, kind, arg)
        if kind == "decide":
            check_decision(result, arg)
            ref.decided(result, arg, 100_000)
        elif kind == "event":
            assert (result.outcome, round(result.spend * MICROS)) == ref.event(*arg)
            for label in result.labels:
                assert label.y == 1 and label.model == "pctr"
        elif kind == "advance":
            ref.advance(arg)
            for label in result:
                assert 0.0 < label.p < 1.0 and label.y in (0, 1)
        check_money(b, ref, world.now)
