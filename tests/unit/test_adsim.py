"""The demo's ad exchange simulator: seeded, second price, clicks that follow affinity."""

from __future__ import annotations

import doctest
from typing import Any

import orjson
import pytest

import streams.cli.adsim
from models.ads.bidding import load_campaigns
from streams.cli.adsim import (
    MAX_EVENT_DELAY_MS,
    AdExchange,
    affinity,
    demo_campaigns,
    user_genre_counts,
)
from streams.records import decode_ad_event, decode_ad_request

USERS = [f"ml-{i}" for i in range(1, 40)]
START_MS = 875_145_600_000  # 1997-09-25T00:00:00Z


def win_bid(req: dict[str, Any], amount: float = 100.0, pick: int = 0) -> dict[str, Any]:
    ad = req["candidates"][pick]
    return {"request_id": req["request_id"], "user_id": "pseudo", "ad_id": ad["ad_id"],
            "campaign_id": ad["campaign_id"], "bid": amount, "pctr": 0.01}


def run(seed: int, n: int = 200, amount: float = 0.1, aff: float = 0.3) -> list[Any]:
    ex = AdExchange(seed, demo_campaigns())
    reqs = ex.requests(USERS, n, START_MS, 1000)
    return [reqs, [ex.respond(r, win_bid(r, amount), aff) for r in reqs]]


def test_doctests() -> None:
    result = doctest.testmod(streams.cli.adsim)
    assert result.attempted > 0 and result.failed == 0


def test_same_seed_same_requests_and_events() -> None:
    assert orjson.dumps(run(11)) == orjson.dumps(run(11))
    assert orjson.dumps(run(11)) != orjson.dumps(run(12))


def test_responses_do_not_depend_on_the_order_bids_come_back() -> None:
    ex = AdExchange(3, demo_campaigns())
    reqs = ex.requests(USERS, 50, START_MS, 1000)
    forward = [ex.respond(r, win_bid(r, 0.2), 0.4) for r in reqs]
    backward = [ex.respond(r, win_bid(r, 0.2), 0.4) for r in reversed(reqs)][::-1]
    assert forward == backward


def test_requests_follow_the_contract() -> None:
    ex = AdExchange(5, demo_campaigns())
    first = ex.requests(USERS, 30, START_MS, 2500)
    more = ex.requests(USERS, 30, START_MS + 100_000, 2500)
    ids = [r["request_id"] for r in first + more]
    assert len(set(ids)) == 60  # ids continue across calls
    for i, r in enumerate(first):
        assert r["ts"] == START_MS + i * 2500
        assert r["user_id"] in USERS
        assert 3 <= len(r["candidates"]) <= 6
        msg = decode_ad_request(orjson.dumps(r))
        assert msg.request_id == r["request_id"] and msg.user_id == r["user_id"]
        assert msg.floor_price == r["floor_price"] > 0
        assert {c.ad_id for c in msg.candidates} == {c["ad_id"] for c in r["candidates"]}
    assert len({r["user_id"] for r in first}) > 10


def test_cost_is_the_clearing_price_and_never_above_the_bid() -> None:
    ex = AdExchange(9, demo_campaigns())
    wins = 0
    for r in ex.requests(USERS, 400, START_MS, 1000):
        for amount in (0.05, 0.2, 0.6, 5.0):
            events = ex.respond(r, win_bid(r, amount), 0.5)
            price = ex.clearing_price(r)
            assert price >= r["floor_price"]
            if amount < price:
                assert events == []  # lost: nothing shown, nothing charged
                continue
            wins += 1
            costs = [e["cost"] for e in events if e["type"] == "impression"]
            assert costs and all(c == price <= amount for c in costs)
            assert all(e.get("cost", 0.0) == 0.0 for e in events if e["type"] != "impression")
    assert 400 < wins < 1600  # some auctions are lost at every price tried


def test_no_events_without_a_bid() -> None:
    ex = AdExchange(1, demo_campaigns())
    req = ex.requests(USERS, 1, START_MS, 1000)[0]
    for reason in ("below_floor", "budget_exhausted", "paced", "kill_switch"):
        assert ex.respond(req, {"request_id": req["request_id"], "no_bid_reason": reason},
                          1.0) == []
    with pytest.raises(ValueError, match="did not offer"):
        ex.respond(req, {**win_bid(req), "ad_id": "not-offered"}, 0.5)
    with pytest.raises(ValueError, match="another request"):
        ex.respond(req, {**win_bid(req), "request_id": "other"}, 0.5)


def test_events_decode_and_stay_inside_the_window() -> None:
    ex = AdExchange(21, demo_campaigns())
    types: set[str] = set()
    duplicates = 0
    for r in ex.requests(USERS, 600, START_MS, 1000):
        events = ex.respond(r, win_bid(r), 0.9)
        ts = [e["ts"] for e in events]
        assert ts == sorted(ts) and r["ts"] < ts[0] and ts[-1] - r["ts"] <= MAX_EVENT_DELAY_MS
        ids = [e["event_id"] for e in events]
        duplicates += len(ids) - len(set(ids))
        for e in events:
            msg = decode_ad_event(orjson.dumps(e))
            assert msg.request_id == r["request_id"] and msg.type == e["type"]
            types.add(msg.type)
            if msg.type == "conversion":
                assert msg.revenue > 0
    assert types == {"impression", "click", "conversion"}
    assert 10 <= duplicates <= 60  # about 5% of 600 impressions delivered twice


def test_clicks_rise_with_affinity() -> None:
    ex = AdExchange(33, demo_campaigns())
    reqs = ex.requests(USERS, 3000, START_MS, 1000)

    def ctr(aff: float) -> float:
        clicks = sum(any(e["type"] == "click" for e in ex.respond(r, win_bid(r), aff))
                     for r in reqs)
        return clicks / len(reqs)

    low, mid, high = ctr(0.0), ctr(0.4), ctr(0.9)
    # expected 0.02, 0.12, 0.245; 3,000 draws give a standard error under 0.008
    assert low == pytest.approx(0.02, abs=0.01)
    assert low + 0.05 < mid < high - 0.05


def test_affinity_is_the_users_share_of_events_in_the_ads_genres() -> None:
    genres = {"1": ["Action", "Comedy"], "2": ["Comedy"], "3": [], "4": ["Drama"]}
    counts = user_genre_counts([("u", "1"), ("u", "2"), ("u", "2"), ("u", "3"), ("v", "4"),
                                ("v", "9")], genres)
    assert counts["u"] == {("Action", "Comedy"): 1, ("Comedy",): 2, (): 1}
    assert affinity(counts["u"], ["Comedy"]) == pytest.approx(3 / 4)
    assert affinity(counts["u"], ["Action"]) == pytest.approx(1 / 4)
    # an event on an Action comedy counts once for an Action-or-Comedy ad
    assert affinity(counts["u"], ["Comedy", "Action", "Comedy"]) == pytest.approx(3 / 4)
    assert affinity(counts["v"], ["Drama"]) == pytest.approx(1 / 2)
    assert affinity(counts["v"], ["Comedy"]) == 0.0
    assert affinity({}, ["Comedy"]) == 0.0
    assert affinity({"Comedy": 3, "Drama": 1}, ["Comedy"]) == pytest.approx(3 / 4)


def test_demo_campaigns_load_and_every_ad_names_one() -> None:
    obj = demo_campaigns()
    campaigns = load_campaigns(obj)
    assert 3 <= len(campaigns) <= 4
    assert {"click", "conversion"} == {c.goal for c in campaigns.values()}
    assert any(not c.target_categories for c in campaigns.values())  # an untargeted brand
    for c in campaigns.values():
        assert 0.5 <= c.max_bid <= 2.0 and c.daily_budget is not None and c.daily_budget <= 20
    ads = obj["ads"]
    assert {a["campaign_id"] for a in ads} == set(campaigns)
    assert len({a["ad_id"] for a in ads}) == len(ads)
    with pytest.raises(ValueError, match="unknown campaign"):
        AdExchange(0, {"campaigns": [], "ads": ads})
