"""Gauges read off the runtime's models when Prometheus scrapes ``/metrics``: sizes, the
bandit's estimates, blend weights, segment sizes, and the ads' budgets, pacing, win
rate, ROI and calibration."""

from __future__ import annotations

from models.ads.bidding import utc_day
from streams.runtime import Runtime


def refresh_gauges(rt: Runtime, profiles: int) -> None:
    """Set every scrape-time gauge; ``profiles``: the records in this worker's table."""
    engine, metrics = rt.engine, rt.metrics
    metrics.profiles.set(profiles)
    metrics.catalogue_items.set(len(engine.catalogue))
    for model, size in engine.model_sizes.items():
        metrics.model_items.labels(model=model).set(size)
    for strategy, stats in engine.bandit.stats().items():
        metrics.strategy_estimate.labels(strategy=strategy).set(stats["estimate"])
        metrics.strategy_propensity.labels(strategy=strategy).set(stats["propensity"])
    for context, weights in engine.hybrid.weights().items():
        for component, weight in weights.items():
            metrics.blend_weight.labels(context=context, component=component).set(weight)
    refresh_ad_gauges(rt)
    if rt.segments.model is not None:
        for entry in rt.segments.model.summary():
            metrics.segment_users.labels(segment=entry["name"]).set(entry["size"])
    count_evictions(rt)


def count_evictions(rt: Runtime) -> None:
    """Bring ``persona_state_evictions_total`` up to the models' own running counts.

    The models keep plain counts (they import no Prometheus) that only grow while the
    worker runs (``Engine.restore`` carries the hybrid's over), so what the counter
    lacks is exactly what was dropped since the last scrape."""
    counter = rt.metrics.state_evictions
    exported = {sample.labels["state"]: sample.value for family in counter.collect()
                for sample in family.samples if sample.name.endswith("_total")}
    counts = {**rt.engine.eviction_counts(), "rate_limit_users": rt.limiter.evictions}
    for state, count in counts.items():
        missing = count - exported.get(state, 0.0)
        if missing > 0:
            counter.labels(state=state).inc(missing)


def refresh_ad_gauges(rt: Runtime) -> None:
    """Budget, pacing, win-rate, ROI, calibration and kill-switch gauges."""
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
    set_kill_gauge(rt)


def set_kill_gauge(rt: Runtime) -> None:
    """1 while bidding is stopped, by the control topic or PERSONA_ADS_KILL_SWITCH."""
    rt.metrics.ad_kill_switch.set(1 if rt.bidder.killed or rt.settings.ads_kill_switch else 0)
