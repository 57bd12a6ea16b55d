"""Ads agent: bid on ad requests, charge spend, learn pCTR from what was served.

It consumes the one-partition ads topic (requests with the user's ad view, ad events,
control commands, clock ticks, and ``forget`` messages: a user's erase or opt_out,
forwarded by the profile agent) and owns the ``ads`` table (concurrency 1). All money
state goes through ``models.ads.bidding.Bidder``: this module only moves its writes into
the table, sends ``ad-bids`` and counts.
"""

from __future__ import annotations

import base64
import logging
import math
import time
from datetime import UTC, datetime

import orjson

from models.ads.bidding import AdCandidate, AdRequest, Decision
from streams import tables, topics
from streams.agents.deadletter import run_guarded, send_dead_letter
from streams.app import app
from streams.runtime import Runtime, current

log = logging.getLogger(__name__)

# Event outcomes that mean the event cannot be applied: dead-lettered with this code.
REFUSED = {"unknown_request": "unknown_request", "late": "late_event", "wrong_ad": "wrong_ad"}
REFUSED_DETAIL = {
    "unknown_request": "no ad request with this request_id is known (never seen, or "
                       "forgotten after PERSONA_AD_RETENTION_S)",
    "late_event": "the request's window had closed (impression window, or attribution "
                  "window after the impression): not charged",
    "wrong_ad": "the request's bid was for another ad_id, or no bid was made",
}


@app.on_partitions_assigned.connect
async def _reload_after_rebalance(app, assigned=None, **kwargs) -> None:  # type: ignore[no-untyped-def]
    # The table may have moved away and back: rebuild the bidder from it on next use.
    current().ads_loaded = False


def _ensure_loaded(rt: Runtime) -> None:
    """Rebuild the bidder's money state from the recovered ``ads`` table (once per
    assignment: Faust delivers no message before the table has recovered)."""
    if not rt.ads_loaded:
        rt.bidder.load(list(tables.ads.items()))
        rt.ad_clock.saw(rt.bidder.now_ms)  # quiet periods after a restart still close windows
        rt.ads_loaded = True
        _set_kill_gauge(rt)


def _set_kill_gauge(rt: Runtime) -> None:
    rt.metrics.ad_kill_switch.set(1 if rt.bidder.killed or rt.settings.ads_kill_switch else 0)


def _apply(writes: list) -> None:
    for key, value in writes:
        if value is None:
            if tables.ads.get(key) is not None:
                del tables.ads[key]
        else:
            tables.ads[key] = value


def request_from_wire(w: dict) -> AdRequest:
    """The model's request from the wire form the profile agent forwarded."""
    return AdRequest(
        request_id=w["request_id"],
        user=w["user_id"],
        ts_ms=int(w["ts"]),
        slot=w["slot"],
        floor_price=float(w.get("floor_price", 0.0)),
        candidates=tuple(
            AdCandidate(
                ad_id=c["ad_id"],
                campaign_id=c["campaign_id"],
                value_per_click=float(c["value_per_click"]),
                categories=tuple(c.get("categories", ())),
                value_per_conversion=c.get("value_per_conversion"),
            )
            for c in w["candidates"]
        ),
        context=w.get("context"),
        view=w.get("view") or {},
    )


def bid_record(d: Decision) -> dict:
    """The ``ad-bids`` record (docs/contract.md, Output): a bid, or the reason for none."""
    rec: dict = {
        "request_id": d.request_id,
        "user_id": d.user,
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    if d.no_bid_reason is None:
        rec.update(ad_id=d.ad_id, campaign_id=d.campaign_id, bid=round(float(d.bid or 0.0), 6),
                   pctr=round(float(d.pctr or 0.0), 8))
    else:
        rec["no_bid_reason"] = d.no_bid_reason
    return rec


def _count_labels(rt: Runtime, labels) -> None:  # type: ignore[no-untyped-def]
    metrics, tally = rt.metrics, rt.ad_tallies
    for label in labels:
        # Both models' online log loss feeds its drift monitor (persona_model_drift_total).
        q = min(max(float(label.p), 1e-12), 1 - 1e-12)
        rt.drift.observe(label.model, -math.log(q if label.y else 1 - q))
        if label.model != "pctr" or label.campaign_id not in rt.bidder.campaigns:
            continue
        p = min(max(float(label.p), 1e-12), 1 - 1e-12)
        y = int(label.y)
        campaign = label.campaign_id
        t = tally(campaign)
        t["predicted"] += p
        t["clicked"] += y
        metrics.ad_labels.labels(campaign=campaign, label="click" if y else "no_click").inc()
        metrics.ad_predicted_clicks.labels(campaign=campaign).inc(p)
        metrics.ad_log_loss.labels(campaign=campaign).inc(-math.log(p if y else 1 - p))


async def handle(wire: dict, msg) -> None:  # type: ignore[no-untyped-def]
    rt = current()
    bidder, metrics, clock = rt.bidder, rt.metrics, rt.ad_clock
    kind = wire.get("kind")
    if kind == "ad_request":
        started = time.perf_counter()
        try:
            req = request_from_wire(wire)
            decision, writes = bidder.decide(req, killed=rt.settings.ads_kill_switch)
        except ValueError:  # beyond the bidder's own limits (ingest checks most of them)
            await _refuse_invalid(rt, "ad-requests", wire, msg)
            return
        metrics.ad_bid_seconds.observe(time.perf_counter() - started)
        _apply(writes)
        clock.saw(req.ts_ms)
        metrics.events.labels(topic="ad-requests",
                              outcome="duplicate" if decision.replay else "accepted").inc()
        if not decision.replay:  # a replayed request re-sends its stored answer, once counted
            metrics.ad_bids.labels(outcome=decision.no_bid_reason or "bid").inc()
            if decision.no_bid_reason is None and decision.campaign_id in bidder.campaigns:
                rt.ad_tallies(decision.campaign_id)["bids"] += 1
                metrics.ad_bid_amount.labels(campaign=decision.campaign_id).inc(decision.bid or 0)
        await topics.ad_bids.send(key=req.user.encode("utf-8"),
                                  value=orjson.dumps(bid_record(decision)))
    elif kind == "ad_event":
        try:
            outcome, writes = bidder.on_event(
                wire["event_id"], wire["request_id"], wire["ad_id"], wire["type"],
                int(wire["ts"]), cost=float(wire.get("cost", 0.0)),
                revenue=float(wire.get("revenue", 0.0)),
            )
        except ValueError:
            await _refuse_invalid(rt, "ad-events", wire, msg)
            return
        _apply(writes)
        clock.saw(int(wire["ts"]))
        _count_event(rt, wire["type"], outcome)
        code = REFUSED.get(outcome.outcome)
        if code is not None:
            topic, partition, offset = wire.get("at") or [msg.topic, msg.partition, msg.offset]
            raw = base64.b64decode(wire["raw"]) if "raw" in wire else msg.value
            await send_dead_letter(topic, partition, offset, code, REFUSED_DETAIL[code], raw)
    elif kind == "forget":
        # Erase / opt_out: the user's stored served features and their id go from every
        # request record; the money fields stay, so spend and reservations are exact.
        writes = bidder.forget_user(wire["user_id"])
        _apply(writes)
        if writes:
            log.info("ads: dropped the stored features of %d request records", len(writes))
    elif kind == "control":
        writes = bidder.set_kill(wire["action"] == "ads_kill", int(wire["ts"]))
        _apply(writes)
        metrics.events.labels(topic="control", outcome="accepted").inc()
        log.warning("ads kill switch %s", "ON" if bidder.killed else "off")
    elif kind != "tick":
        raise ValueError(f"unknown ads message kind {kind!r}")
    labels, writes = bidder.advance(clock.now_ms())
    _apply(writes)
    _count_labels(rt, labels)
    _set_kill_gauge(rt)


async def _refuse_invalid(rt: Runtime, label: str, wire: dict, msg) -> None:  # type: ignore[no-untyped-def]
    """Dead-letter a message the bidder refused as beyond its limits (e.g. a ts more than
    a day ahead of the newest event). Its original bytes, when ingest kept them; else the
    normalized form (pseudonymous ids only). The detail names no value."""
    rt.metrics.events.labels(topic=label, outcome="invalid").inc()
    topic, partition, offset = wire.get("at") or [msg.topic, msg.partition, msg.offset]
    raw = base64.b64decode(wire["raw"]) if "raw" in wire else msg.value
    await send_dead_letter(topic, partition, offset, "out_of_range",
                           "refused by the bidder: a value beyond its limits (ids, amounts, "
                           "or ts more than a day ahead of the newest event)", raw)


def _count_event(rt: Runtime, kind: str, outcome) -> None:  # type: ignore[no-untyped-def]
    metrics = rt.metrics
    label = "counted" if outcome.first else outcome.outcome
    metrics.ad_events.labels(type=kind, outcome=label).inc()
    metrics.events.labels(topic="ad-events",
                          outcome="duplicate" if label == "duplicate" else
                          ("invalid" if label in REFUSED else "accepted")).inc()
    if not outcome.first or outcome.campaign_id not in rt.bidder.campaigns:
        return
    c = outcome.campaign_id
    t = rt.ad_tallies(c)
    if outcome.spend:
        metrics.ad_spend.labels(campaign=c).inc(outcome.spend)
        t["spend"] += outcome.spend
    if outcome.revenue:
        metrics.ad_revenue.labels(campaign=c).inc(outcome.revenue)
        t["revenue"] += outcome.revenue
    if kind == "impression":
        metrics.ad_impressions.labels(campaign=c).inc()
        t["impressions"] += 1
    elif kind == "click":
        metrics.ad_clicks.labels(campaign=c).inc()
    elif kind == "conversion":
        metrics.ad_conversions.labels(campaign=c).inc()
    _count_labels(rt, outcome.labels)


def refresh_gauges() -> None:
    """Budget, pacing, win-rate, ROI and calibration gauges, at scrape time."""
    from models.ads.bidding import utc_day

    rt = current()
    bidder, metrics = rt.bidder, rt.metrics
    today = utc_day(bidder.now_ms)
    for cid, c in bidder.campaigns.items():
        daily = -1.0 if c.daily_budget is None else (
            c.daily_budget - bidder.spend(cid, today) - bidder.reserved(cid, today))
        total = -1.0 if c.total_budget is None else (
            c.total_budget - bidder.spend(cid) - bidder.reserved(cid))
        metrics.ad_budget_remaining.labels(campaign=cid, period="daily").set(daily)
        metrics.ad_budget_remaining.labels(campaign=cid, period="total").set(total)
        metrics.ad_reserved.labels(campaign=cid).set(bidder.reserved(cid))
        metrics.ad_pacing.labels(campaign=cid).set(bidder.pacing_rate(cid))
        t = rt.ad_tallies(cid)
        metrics.ad_win_rate.labels(campaign=cid).set(
            t["impressions"] / t["bids"] if t["bids"] else 0.0)
        metrics.ad_roi.labels(campaign=cid).set(
            (t["revenue"] - t["spend"]) / t["spend"] if t["spend"] else 0.0)
    tallies = rt.ad_tallies.by_campaign.values()
    clicked = sum(t["clicked"] for t in tallies)
    metrics.ad_pctr_calibration.set(
        sum(t["predicted"] for t in tallies) / clicked if clicked else 0.0)
    _set_kill_gauge(rt)


async def _ads(msg) -> None:  # type: ignore[no-untyped-def]
    _ensure_loaded(current())
    await handle(orjson.loads(msg.value), msg)


@app.agent(topics.ads, name="persona.ads", concurrency=1)
async def ads(stream):  # type: ignore[no-untyped-def]
    await run_guarded(stream, "ads", _ads)


@app.timer(interval=1.0)
async def _tick() -> None:
    """Close attribution windows in quiet periods too: a tick through the ads topic,
    so the table changes inside the agent's stream loop as Faust requires."""
    await topics.ads.send(key=None, value=orjson.dumps({"kind": "tick"}))
