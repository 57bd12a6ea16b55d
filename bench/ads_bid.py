"""In-process latency of one bid decision (``Bidder.decide``), one process, no broker.

20,000 synthetic requests with 20 candidate ads each (from 50 campaigns with daily and
total budgets, pacing on), realistic user views (5 interests, recency, frequency,
segment) and a context; the pCTR model is warmed on 50,000 labelled examples first.
Impressions, clicks and clock ticks are fed between requests as the agent would, so the
state (open reservations, records) is realistic; only ``decide`` is timed, the event and
tick calls are reported separately. Run from the repository root:
``python -m bench.ads_bid``.
"""

from __future__ import annotations

import gc
import os
import platform
import time
from dataclasses import replace
from typing import Any

import numpy as np

from models.ads import auction
from models.ads.bidding import DAY_MS, AdCandidate, AdRequest, Bidder, Campaign
from models.ads.pctr import PctrModel, ad_features
from models.recommenders.bandit import uniform_from_key

N_REQUESTS = 20_000
N_CANDIDATES = 20
N_CAMPAIGNS = 50
ADS_PER_CAMPAIGN = 8
N_WARM = 50_000
CATEGORIES = [f"cat{i}" for i in range(40)]
SEGMENTS = ["", "loyal", "new", "bargain", "lapsed"]
SLOTS = ["top", "side", "feed", "footer"]
DEVICES = ["mobile", "desktop", "tablet"]
START = 19_000 * DAY_MS + 8 * 3_600_000  # 08:00 UTC
GAP_MS = 50  # 20 requests/s of event time


def make_views(rng: np.random.Generator, n: int) -> list[dict]:
    views: list[dict] = []
    for _ in range(n):
        if rng.random() < 0.05:
            views.append({"np": True})
            continue
        cats = rng.choice(len(CATEGORIES), size=5, replace=False)
        shares = rng.dirichlet(np.ones(5))
        views.append({
            "i": [[CATEGORIES[c], round(float(s), 3)] for c, s in zip(cats, shares, strict=True)],
            "r": int(rng.integers(-1, 8)), "f": int(rng.integers(0, 8)),
            "s": SEGMENTS[int(rng.integers(0, len(SEGMENTS)))],
        })
    return views


def breakdown(bidder: Bidder, sample: list[AdRequest]) -> tuple[float, float]:
    """Mean us per decision in features and pCTR (``auction.predict``: one pass over the
    candidates, the features feeding the model as they are made) and in total."""
    clock = time.perf_counter
    spent = [0.0]
    real_predict = auction.predict

    def predict(*args: Any, **kw: Any) -> Any:
        start = clock()
        out = real_predict(*args, **kw)
        spent[0] += clock() - start
        return out

    auction.predict = predict
    fresh = [replace(r, request_id="again-" + r.request_id) for r in sample]
    try:
        start = clock()
        for r in fresh:
            bidder.decide(r)
        total = clock() - start
    finally:
        auction.predict = real_predict
    n = len(sample) / 1e6
    return spent[0] / n, total / n


def main() -> None:
    rng = np.random.default_rng(0)
    campaigns = {}
    for c in range(N_CAMPAIGNS):
        cid = f"camp{c}"
        kw: dict = {}
        if c % 10 == 0:
            kw["target_segments"] = ("loyal", "bargain")
        if c % 7 == 0:
            kw["goal"] = "conversion"
        # Budgets large enough that most requests go the whole way (features, pCTR of
        # every candidate); a few campaigns are small, to be paced or exhausted.
        daily = 200.0 if c % 5 == 4 else 50_000.0
        campaigns[cid] = Campaign(cid, max_bid=2.0, daily_budget=daily,
                                  total_budget=1_000_000.0, **kw)
    ads = [
        (f"ad{c}-{a}", f"camp{c}",
         tuple(CATEGORIES[int(k)] for k in rng.choice(len(CATEGORIES), 2, replace=False)))
        for c in range(N_CAMPAIGNS) for a in range(ADS_PER_CAMPAIGN)
    ]
    views = make_views(rng, 2_000)

    # Warm the model on examples drawn like the traffic, clicks from a hidden affinity.
    model = PctrModel(prior_ctr=0.02)
    for n in range(N_WARM):
        view = views[n % len(views)]
        ad_id, cid, cats = ads[int(rng.integers(0, len(ads)))]
        x = ad_features(view, ad_id, cid, cats, SLOTS[n % 4], (n // 100) % 24,
                        {"device": DEVICES[n % 3]})
        match = sum(s for c, s in view.get("i", []) if c in cats)
        model.learn_one(x, int(rng.random() < 0.01 + 0.08 * match))

    bidder = Bidder(campaigns, pctr=model, pcvr=PctrModel(prior_ctr=0.05))
    requests = []
    for i in range(N_REQUESTS):
        picks = rng.choice(len(ads), size=N_CANDIDATES, replace=False)
        cands = tuple(
            AdCandidate(ads[p][0], ads[p][1], float(rng.uniform(0.5, 20.0)), ads[p][2],
                        value_per_conversion=25.0)
            for p in picks
        )
        requests.append(AdRequest(
            f"req-{i}", f"user-{i % 5_000}", START + i * GAP_MS, SLOTS[i % 4],
            float(rng.choice([0.0, 0.01, 0.05])), cands,
            {"device": DEVICES[i % 3], "page": f"p{i % 50}"}, views[i % len(views)],
        ))

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}")
    print(f"data: {N_REQUESTS:,} requests x {N_CANDIDATES} candidates, {N_CAMPAIGNS} campaigns "
          f"({len(ads)} ads), model warmed on {N_WARM:,} examples "
          f"({model.n_weights:,} non-zero weights)\n")

    clock = time.perf_counter
    gc_pauses: list[float] = []
    gc_start = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if info["generation"] == 2:
            if phase == "start":
                gc_start[0] = clock()
            else:
                gc_pauses.append((clock() - gc_start[0]) * 1e3)

    gc.callbacks.append(on_gc)
    decide_s = np.empty(N_REQUESTS)
    is_bid = np.zeros(N_REQUESTS, dtype=bool)
    event_s: list[float] = []
    tick_s: list[float] = []
    outcomes: dict[str, int] = {}
    for i, req in enumerate(requests):
        start = clock()
        d, _ = bidder.decide(req)
        decide_s[i] = clock() - start
        outcomes[d.no_bid_reason or "bid"] = outcomes.get(d.no_bid_reason or "bid", 0) + 1
        is_bid[i] = d.bid is not None
        if d.ad_id is not None and uniform_from_key(req.request_id, "win") < 0.3:
            start = clock()
            bidder.on_event(f"i-{i}", req.request_id, d.ad_id, "impression", req.ts_ms + 100,
                            cost=round(0.7 * (d.bid or 0.0), 6))
            if uniform_from_key(req.request_id, "click") < 0.05:
                bidder.on_event(f"c-{i}", req.request_id, d.ad_id, "click", req.ts_ms + 900)
            event_s.append(clock() - start)
        if i % 20 == 0:  # the 1 s tick
            start = clock()
            bidder.advance(req.ts_ms)
            tick_s.append(clock() - start)

    gc.callbacks.remove(on_gc)
    us = decide_s * 1e6
    print(f"decide: p50 {np.percentile(us, 50):.0f} us, p99 {np.percentile(us, 99):.0f} us, "
          f"p99.9 {np.percentile(us, 99.9):.0f} us, max {us.max():.0f} us, "
          f"mean {us.mean():.0f} us -> {1 / decide_s.mean():,.0f} decisions/s")
    b = us[is_bid]
    print(f"decide, bids only ({len(b):,}): p50 {np.percentile(b, 50):.0f} us, "
          f"p99 {np.percentile(b, 99):.0f} us, p99.9 {np.percentile(b, 99.9):.0f} us")
    ev = np.asarray(event_s) * 1e6
    tk = np.asarray(tick_s) * 1e6
    print(f"events (impression + maybe click): p50 {np.percentile(ev, 50):.0f} us, "
          f"p99 {np.percentile(ev, 99):.0f} us; tick (advance): p50 {np.percentile(tk, 50):.0f} "
          f"us, p99 {np.percentile(tk, 99):.0f} us")
    print(f"outcomes: {dict(sorted(outcomes.items()))}; records {bidder.n_records:,} "
          f"({bidder.n_open:,} open)")
    pred_us, total_us = breakdown(bidder, requests[:2_000])
    print(f"where the time goes (2,000 more requests, a timer inside decide): features and "
          f"pCTR of the {N_CANDIDATES} candidates {pred_us:.0f} us, the rest (rules, "
          f"budgets, pacing, the winner's features, record) {total_us - pred_us:.0f} us, "
          f"of {total_us:.0f} us mean")
    if gc_pauses:
        print(f"gc: {len(gc_pauses)} full (generation 2) collections during the run, longest "
              f"{max(gc_pauses):.0f} ms: the max above; they grow with the heap "
              "(gc.freeze() after start-up keeps long-lived objects out of them)")


if __name__ == "__main__":
    main()
