"""Ads agent: bid on ad requests, charge spend, learn pCTR from what was served.

It consumes the one-partition ads topic (requests with the user's ad view, ad events,
control commands, clock ticks, and ``forget`` messages: a user's erase or opt_out,
forwarded by the profile agent) and owns the ``ads`` table (concurrency 1). All money
state goes through ``models.ads.bidding.Bidder``: this module only moves its writes into
the table, sends ``ad-bids`` and counts.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace

from models.ads.bidding import Decision
from streams import tables, topics
from streams.agents.deadletter import run_guarded, send_dead_letter
from streams.app import app
from streams.gauges import set_kill_gauge
from streams.messages import (
    AdBid,
    AdEventMsg,
    AdRequestMsg,
    AdsMessage,
    ControlMsg,
    Forget,
    Tick,
    decode_ads_message,
    now_iso,
    to_bid_request,
)
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
        set_kill_gauge(rt)


def _apply(writes: list) -> None:
    for key, value in writes:
        if value is None:
            if tables.ads.get(key) is not None:
                del tables.ads[key]
        else:
            tables.ads[key] = value


def bid_record(d: Decision) -> AdBid:
    """The ``ad-bids`` record (docs/contract.md, Output): a bid, or the reason for none."""
    ts = now_iso()
    if d.no_bid_reason is not None:
        return AdBid(d.request_id, d.user, ts, no_bid_reason=d.no_bid_reason)
    return AdBid(d.request_id, d.user, ts, ad_id=d.ad_id, campaign_id=d.campaign_id,
                 bid=round(float(d.bid or 0.0), 6), pctr=round(float(d.pctr or 0.0), 8))


def _count_labels(rt: Runtime, labels) -> None:  # type: ignore[no-untyped-def]
    metrics, tally = rt.metrics, rt.ad_tallies
    for label in labels:
        p = min(max(float(label.p), 1e-12), 1 - 1e-12)
        y = int(label.y)
        loss = -math.log(p if y else 1 - p)
        # Both models' online log loss feeds its drift monitor (persona_model_drift_total).
        rt.drift.observe(label.model, loss)
        if label.model != "pctr" or label.campaign_id not in rt.bidder.campaigns:
            continue
        campaign = label.campaign_id
        t = tally(campaign)
        t["predicted"] += p
        t["clicked"] += y
        metrics.ad_labels.labels(campaign=campaign, label="click" if y else "no_click").inc()
        metrics.ad_predicted_clicks.labels(campaign=campaign).inc(p)
        metrics.ad_log_loss.labels(campaign=campaign).inc(loss)


async def handle(m: AdsMessage, msg) -> None:  # type: ignore[no-untyped-def]
    """Apply one ads-topic message (``msg``: the Kafka message it came in), then close
    the attribution windows that are due."""
    rt = current()
    if isinstance(m, AdRequestMsg):
        await _on_request(rt, m, msg)
    elif isinstance(m, AdEventMsg):
        await _on_event(rt, m, msg)
    elif isinstance(m, Forget):
        # Erase / opt_out: the user's stored served features and their id go from every
        # request record; the money fields stay, so spend and reservations are exact.
        writes = rt.bidder.forget_user(m.user_id)
        _apply(writes)
        if writes:
            log.info("ads: dropped the stored features of %d request records", len(writes))
    elif isinstance(m, ControlMsg):
        _apply(rt.bidder.set_kill(m.action == "ads_kill", int(m.ts_ms)))
        rt.metrics.events.labels(topic="control", outcome="accepted").inc()
        log.warning("ads kill switch %s", "ON" if rt.bidder.killed else "off")
    labels, writes = rt.bidder.advance(rt.ad_clock.now_ms())  # a Tick does only this
    _apply(writes)
    _count_labels(rt, labels)
    set_kill_gauge(rt)


async def _on_request(rt: Runtime, m: AdRequestMsg, msg) -> None:  # type: ignore[no-untyped-def]
    bidder, metrics = rt.bidder, rt.metrics
    started = time.perf_counter()
    try:
        req = to_bid_request(m)
        decision, writes = bidder.decide(req, killed=rt.settings.ads_kill_switch)
    except ValueError:  # beyond the bidder's own limits (ingest checks most of them)
        await _refuse_invalid(rt, "ad-requests", m, msg)
        return
    metrics.ad_bid_seconds.observe(time.perf_counter() - started)
    _apply(writes)
    rt.ad_clock.saw(req.ts_ms)
    metrics.events.labels(topic="ad-requests",
                          outcome="duplicate" if decision.replay else "accepted").inc()
    if not decision.replay:  # a replayed request re-sends its stored answer, once counted
        metrics.ad_bids.labels(outcome=decision.no_bid_reason or "bid").inc()
        if decision.no_bid_reason is None and decision.campaign_id in bidder.campaigns:
            rt.ad_tallies(decision.campaign_id)["bids"] += 1
            metrics.ad_bid_amount.labels(campaign=decision.campaign_id).inc(decision.bid or 0)
    await topics.ad_bids.send(key=req.user.encode("utf-8"), value=bid_record(decision).encode())


async def _on_event(rt: Runtime, m: AdEventMsg, msg) -> None:  # type: ignore[no-untyped-def]
    try:
        outcome, writes = rt.bidder.on_event(
            m.event_id, m.request_id, m.ad_id, m.type, int(m.ts_ms), cost=float(m.cost),
            revenue=float(m.revenue))
    except ValueError:
        await _refuse_invalid(rt, "ad-events", m, msg)
        return
    _apply(writes)
    rt.ad_clock.saw(int(m.ts_ms))
    _count_event(rt, m.type, outcome)
    code = REFUSED.get(outcome.outcome)
    if code is not None:
        topic, partition, offset, kept = _source(m, msg)
        await send_dead_letter(topic, partition, offset, code, REFUSED_DETAIL[code], kept,
                               "validated")


def _source(m: AdRequestMsg | AdEventMsg, msg) -> tuple[str, int, int, bytes]:  # type: ignore[no-untyped-def]
    """Where a refused message came from (the input topic, when ingest said so) and its
    validated fields, as ingest forwarded them: the producer's bytes stop at ingest, and
    the user's ad view (the profile agent's) is no part of the request."""
    topic, partition, offset = m.origin.at or (msg.topic, msg.partition, msg.offset)
    kept = replace(m, view=None) if isinstance(m, AdRequestMsg) else m
    return topic, partition, offset, kept.encode()


async def _refuse_invalid(rt: Runtime, label: str, m: AdRequestMsg | AdEventMsg, msg) -> None:  # type: ignore[no-untyped-def]
    """Dead-letter a message the bidder refused as beyond its limits (e.g. a ts more than
    a day ahead of the newest event), with its validated fields (pseudonymous ids only).
    The detail names no value."""
    rt.metrics.events.labels(topic=label, outcome="invalid").inc()
    topic, partition, offset, kept = _source(m, msg)
    await send_dead_letter(topic, partition, offset, "out_of_range",
                           "refused by the bidder: a value beyond its limits (ids, amounts, "
                           "or ts more than a day ahead of the newest event)", kept,
                           "validated")


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


async def _ads(msg) -> None:  # type: ignore[no-untyped-def]
    _ensure_loaded(current())
    await handle(decode_ads_message(msg.value), msg)


@app.agent(topics.ads, name="persona.ads", concurrency=1)
async def ads(stream):  # type: ignore[no-untyped-def]
    await run_guarded(stream, "ads", _ads)


@app.timer(interval=1.0)
async def _tick() -> None:
    """Close attribution windows in quiet periods too: a tick through the ads topic,
    so the table changes inside the agent's stream loop as Faust requires."""
    await topics.ads.send(key=None, value=Tick().encode())
