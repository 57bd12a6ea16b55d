"""The ad path under Faust's test_context(): ingest routing, the profile agent's ad view,
the ads agent's bids, charges, refusals and kill switch."""

from __future__ import annotations

import base64

import orjson
import pytest

from models.users.privacy import pseudonymize
from streams import tables, topics
from streams.agents.ads import ads as ads_agent
from streams.agents.ingest import ingest_ad_events, ingest_control
from streams.agents.profile import profile as profile_agent
from streams.app import settings
from streams.gauges import refresh_ad_gauges
from streams.runtime import current
from tests.agents.wire import input_agent

rt = current()
bidder, metrics = rt.bidder, rt.metrics
KEY = rt.settings.require_secret_key()
T = settings.topics
EVENTS = f"{settings.app_id}-events"
ADS = settings.ads_topic
TS = 1_760_000_000_000


def _value(name: str, **labels: str) -> float:
    v = metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def request(rid: str, user: str, campaign: str = "books", ts: int = TS, **over) -> dict:
    d = {"request_id": rid, "user_id": user, "ts": ts, "slot": "top", "floor_price": 0.0,
         "candidates": [{"ad_id": f"{campaign}-1", "campaign_id": campaign,
                         "value_per_click": 20.0, "categories": ["fiction"]}]}
    d.update(over)
    return d


def forwarded(rid: str, user_raw: str, campaign: str = "books", ts: int = TS,
              view: dict | None = None) -> bytes:
    """An ad request as the profile agent forwards it to the ads topic."""
    d = request(rid, pseudonymize(user_raw, KEY), campaign, ts)
    d.update(kind="ad_request", view=view or {})
    return orjson.dumps(d)


def ad_event(eid: str, rid: str, ad: str, kind: str, ts: int, cost: float = 0.0) -> bytes:
    return orjson.dumps({"kind": "ad_event", "event_id": eid, "request_id": rid, "ad_id": ad,
                         "type": kind, "ts": ts, "cost": cost, "revenue": 0.0,
                         "at": [T.ad_events, 1, 7]})


def test_ingest_routes_ad_requests_by_user_and_ad_events_to_the_ads_topic(loop, sent):
    async def run():
        async with input_agent(topics.ad_requests) as agent:
            await agent.put(orjson.dumps(request("q1", "raw-ann")), key=b"raw-ann")
        async with ingest_ad_events.test_context() as agent:
            await agent.put(orjson.dumps({"event_id": "e1", "request_id": "q1",
                                          "ad_id": "books-1", "type": "impression",
                                          "ts": TS}), key=None)
        async with ingest_control.test_context() as agent:
            await agent.put(b'{"action": "ads_kill", "ts": 5}', key=None)

    loop.run_until_complete(run())
    assert [t for t, _, _ in sent] == [EVENTS, ADS, ADS]
    _, key, value = sent[0]
    assert key == pseudonymize("raw-ann", KEY).encode() and b"raw-ann" not in value
    wire = orjson.loads(value)
    assert wire["kind"] == "ad_request" and wire["user_id"] == key.decode()
    assert wire["at"] == [T.ad_requests, 0, 0]
    assert orjson.loads(sent[1][2])["kind"] == "ad_event"
    assert orjson.loads(sent[2][2])["kind"] == "control"


def test_profile_agent_adds_the_ad_view_and_consent(loop, sent):
    user = pseudonymize("raw-bea", KEY)
    wire = request("q2", user) | {"kind": "ad_request"}
    opt_out = {"kind": "privacy", "user_id": user, "action": "opt_out", "ts": TS,
               "event_id": "p1"}

    async def run():
        async with profile_agent.test_context() as agent:
            await agent.put(orjson.dumps(wire), key=user.encode())
            await agent.put(orjson.dumps(opt_out), key=user.encode())
            await agent.put(orjson.dumps(wire | {"request_id": "q3"}), key=user.encode())
            return tables.stored_profile(tables.profiles[user])

    stored = loop.run_until_complete(run())
    assert [t for t, _, _ in sent] == [ADS, ADS, ADS]
    first, forget, second = (orjson.loads(v) for _, _, v in sent)
    assert forget == {"kind": "forget", "user_id": user, "ts": TS}  # opt_out: drop features
    assert not first["view"].get("np")
    assert second["view"].get("np") is True  # opted out: a contextual, non-personal bid
    assert stored is not None and stored.get("oo") is True


def test_ads_agent_bids_charges_once_and_learns_from_a_click(loop, sent):
    drift = rt.drift

    bids_before = _value("persona_ad_bids_total", outcome="bid")
    pctr_observed = drift.monitors["pctr"].n_observed

    async def run():
        async with ads_agent.test_context() as agent:
            await agent.put(forwarded("a1", "raw-cy", ts=TS))
            await agent.put(ad_event("i1", "a1", "books-1", "impression", TS + 10, cost=0.02))
            await agent.put(ad_event("i1", "a1", "books-1", "impression", TS + 10, cost=0.02))
            await agent.put(ad_event("c1", "a1", "books-1", "click", TS + 20))
            await agent.put(forwarded("a2", "raw-cy", ts=TS + 30))
            return tables.ads.get("r:a1")

    record = loop.run_until_complete(run())
    bids = [orjson.loads(v) for t, _, v in sent if t == T.ad_bids]
    assert [b["request_id"] for b in bids] == ["a1", "a2"]
    assert bids[0]["user_id"] == pseudonymize("raw-cy", KEY)
    assert bids[1]["pctr"] > bids[0]["pctr"] and bids[1]["bid"] > bids[0]["bid"]
    assert _value("persona_ad_bids_total", outcome="bid") == bids_before + 2
    assert bidder.spend("books") >= 0.02 and record is not None
    assert _value("persona_ad_events_total", type="impression", outcome="duplicate") >= 1
    assert _value("persona_ad_pctr_labels_total", campaign="books", label="click") >= 1
    assert drift.monitors["pctr"].n_observed > pctr_observed  # the label's log loss
    # the scrape-time gauges derive from what was counted
    refresh_ad_gauges(rt)
    clicks = _value("persona_ad_pctr_labels_total", campaign="books", label="click")
    predicted = _value("persona_ad_pctr_predicted_clicks_total", campaign="books")
    assert _value("persona_ad_pctr_calibration") == pytest.approx(predicted / clicks)
    assert _value("persona_ad_budget_remaining", campaign="books", period="total") == -1
    assert _value("persona_ad_budget_reserved", campaign="books") == pytest.approx(
        bidder.reserved("books"))
    # the state kept for the request holds no user id, raw or pseudonymous
    assert b"raw-cy" not in orjson.dumps(record)
    assert pseudonymize("raw-cy", KEY).encode() not in orjson.dumps(record)


def test_ads_agent_refuses_unknown_requests_into_dead_letters(loop, sent):
    async def run():
        async with ads_agent.test_context() as agent:
            await agent.put(ad_event("x1", "never-asked", "books-1", "impression", TS))

    loop.run_until_complete(run())
    assert [t for t, _, _ in sent] == [T.dead_letters]
    d = orjson.loads(sent[0][2])
    assert (d["error"], d["source_topic"], d["partition"], d["offset"]) == (
        "unknown_request", T.ad_events, 1, 7)
    assert base64.b64decode(d["raw"])  # the event is kept, not lost


def test_kill_switch_stops_bids_and_is_stored(loop, sent):
    async def run():
        async with ads_agent.test_context() as agent:
            await agent.put(b'{"kind": "control", "action": "ads_kill", "ts": 100}')
            await agent.put(forwarded("k1", "raw-dee", ts=TS + 100))
            killed = tables.ads.get("$kill")
            await agent.put(b'{"kind": "control", "action": "ads_resume", "ts": 200}')
            await agent.put(forwarded("k2", "raw-dee", ts=TS + 200))
            return killed

    killed = loop.run_until_complete(run())
    bids = [orjson.loads(v) for t, _, v in sent if t == T.ad_bids]
    assert bids[0]["no_bid_reason"] == "kill_switch" and "bid" not in bids[0]
    assert "bid" in bids[1]
    assert killed is not None and killed["on"] is True
    assert _value("persona_ad_kill_switch") == 0


def test_a_request_far_ahead_of_the_clock_is_dead_lettered_not_lost(loop, sent):
    async def run():
        async with ads_agent.test_context() as agent:
            await agent.put(forwarded("f1", "raw-eve", ts=TS))
            await agent.put(forwarded("f2", "raw-eve", ts=TS + 3 * 86_400_000))  # 3 days on

    loop.run_until_complete(run())
    assert [t for t, _, _ in sent] == [T.ad_bids, T.dead_letters]
    d = orjson.loads(sent[1][2])
    assert d["error"] == "out_of_range" and b"raw-eve" not in sent[1][2]


def test_opt_in_lifts_opt_out_and_erase_removes_the_profile(loop, sent):
    user = pseudonymize("raw-fay", KEY)
    stranger = pseudonymize("raw-never-seen", KEY)

    def privacy(who: str, action: str, n: int) -> bytes:
        return orjson.dumps({"kind": "privacy", "user_id": who, "action": action,
                             "ts": TS + n, "event_id": f"p{n}"})

    async def run():
        async with profile_agent.test_context() as agent:
            await agent.put(privacy(user, "opt_out", 1), key=user.encode())
            opted = tables.stored_profile(tables.profiles[user])
            await agent.put(privacy(user, "opt_in", 2), key=user.encode())
            back = tables.stored_profile(tables.profiles[user])
            await agent.put(privacy(user, "erase", 3), key=user.encode())
            await agent.put(privacy(stranger, "opt_in", 4), key=stranger.encode())
            return opted, back, tables.profiles.get(user), tables.profiles.get(stranger)

    opted, back, erased, stranger_record = loop.run_until_complete(run())
    assert opted["oo"] is True and "oo" not in back
    assert erased is None
    assert stranger_record is None  # opting in creates nothing
    # opt_out and erase tell the ads agent to forget the user's stored features
    assert [(t, orjson.loads(v)["kind"], orjson.loads(v)["ts"]) for t, _, v in sent] == [
        (ADS, "forget", TS + 1), (ADS, "forget", TS + 3)]


def test_forget_drops_a_users_stored_ad_features_and_keeps_the_money(loop, sent):
    gone, stays = pseudonymize("raw-gil", KEY), pseudonymize("raw-hal", KEY)
    view = {"i": [["fiction", 1.0]], "r": 1, "f": 1, "s": ""}
    labels_before = _value("persona_ad_pctr_labels_total", campaign="books", label="click")

    async def run():
        async with ads_agent.test_context() as agent:
            await agent.put(forwarded("g1", "raw-gil", ts=TS + 400, view=view))
            await agent.put(forwarded("g2", "raw-hal", ts=TS + 400, view=view))
            await agent.put(ad_event("gi", "g1", "books-1", "impression", TS + 410, cost=0.01))
            kept = (tables.ads.get("r:g1"), bidder.spend("books"), bidder.reserved("books"))
            await agent.put(orjson.dumps({"kind": "forget", "user_id": gone, "ts": TS + 420}))
            forgot = (tables.ads.get("r:g1"), tables.ads.get("r:g2"), bidder.spend("books"),
                      bidder.reserved("books"))
            await agent.put(ad_event("gc", "g1", "books-1", "click", TS + 430, cost=0.01))
            return kept, forgot, bidder.spend("books")

    kept, forgot, spend_after = loop.run_until_complete(run())
    record, spend, reserved = kept
    assert record["u"] == gone and record["x"]  # a known user's features, named
    record, other, spend2, reserved2 = forgot
    assert record["x"] is None and "u" not in record and gone not in orjson.dumps(record).decode()
    assert record["paid"] == 10_000 and record["open"] is True  # the money is all still there
    assert (spend2, reserved2) == (spend, reserved)
    assert other["u"] == stays and other["x"]  # another user's records are untouched
    # the forgotten request still charges, but teaches pCTR nothing
    assert spend_after == pytest.approx(spend + 0.01)
    assert _value("persona_ad_pctr_labels_total", campaign="books", label="click") == (
        labels_before)
    assert [orjson.loads(v)["request_id"] for t, _, v in sent if t == T.ad_bids] == [
        "g1", "g2"]
