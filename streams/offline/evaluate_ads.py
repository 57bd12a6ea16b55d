"""``persona evaluate-ads``: replay the Open Bandit Dataset through the Bidder and score pCTR.

Every logged impression becomes an ad request with one candidate, the item that was shown,
and goes through the calls the ads agent makes: ``Bidder.decide`` (its pCTR is the
prediction scored, made before the row is learned), the impression and, if logged, the
click through ``Bidder.on_event``, then ``Bidder.advance`` to the row's time, which closes
attribution windows and learns their negatives. See docs/ads.md, "Evaluation".
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from models.ads.bidding import CLOCK_STEP_MS, AdCandidate, AdRequest, Bidder, Campaign
from models.ads.pctr import PctrModel, PctrQuality, RunningMeanBaseline
from streams.offline.obd import CAMPAIGNS, Impression, Item, ObdSample

# The targets: pCTR must not lose to a constant rate, and its sum must be close
# to the clicks (bids are pCTR x value: a miscalibrated model over- or underbids).
CALIBRATION_RANGE = (0.8, 1.25)
# No budget and a ceiling no pCTR x 1.0 reaches: every request gets a bid, so every
# logged impression is scored (budgets and pacing are tested in tests/unit).
MAX_BID = 1_000.0
VALUE_PER_CLICK = 1.0
# Rows between progress reports: a smooth bar at no measurable cost.
_PROGRESS_EVERY = 500

ProgressFn = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class AdsReplayConfig:
    """What a replay may vary; the model's hyperparameters are ``PctrModel``'s defaults,
    as the service's."""

    window_ms: int = 30 * 60_000


def request_for(row: Impression, item: Item) -> AdRequest:
    """The ad request the service would get for one logged impression (docs/ads.md).

    OBD has no user ids (so no profile and an empty view); its four hashed user features
    travel as request context.

    >>> row = Impression("men", 7, 1_574_553_793_442_536, "14", 3, False, 0.03,
    ...                  ("a", "b", "c", "d"))
    >>> req = request_for(row, Item("14", 0.5, ("k1", "k2", "k3")))
    >>> req.request_id, req.slot, req.candidates[0].ad_id, req.context
    ('men-7', 'pos3', 'men:14', {'uf0': 'a', 'uf1': 'b', 'uf2': 'c', 'uf3': 'd'})
    """
    return AdRequest(
        request_id=f"{row.campaign}-{row.index}",
        user="obd",  # no user ids in OBD; the bidder stores none anyway
        ts_ms=row.ts_ms,
        slot=f"pos{row.position}",
        floor_price=0.0,
        candidates=(AdCandidate(ad_id=f"{row.campaign}:{row.item_id}",
                                campaign_id=row.campaign,
                                value_per_click=VALUE_PER_CLICK,
                                categories=item.categories),),
        context={f"uf{i}": v for i, v in enumerate(row.user_features)},
        view={},
    )


def campaigns_for(names: Iterable[str]) -> dict[str, Campaign]:
    """One campaign per OBD campaign: no budget, and a bid ceiling never reached."""
    return {name: Campaign(campaign_id=name, max_bid=MAX_BID) for name in names}


class _Scores:
    """pCTR and the baseline scored on the same rows."""

    def __init__(self) -> None:
        self.model = PctrQuality()
        self.baseline = PctrQuality()

    def add(self, pctr: float, base: float, click: bool) -> None:
        self.model.update(pctr, int(click))
        self.baseline.update(base, int(click))

    def summary(self) -> dict[str, Any]:
        m, b = self.model, self.baseline
        return {
            "impressions": m.n,
            "clicks": m.clicks,
            "ctr": m.ctr,
            "predicted_ctr": m.predicted_ctr,
            "log_loss": m.log_loss,
            "baseline_log_loss": b.log_loss,
            # relative log loss reduction over the constant: > 0 means pCTR is better
            "log_loss_gain": 1.0 - m.log_loss / b.log_loss if b.n else math.nan,
            "auc": m.auc(),
            "baseline_auc": b.auc(),
            "calibration": m.calibration,
            "baseline_calibration": b.calibration,
        }


def _ticking(rows: list[Impression], progress: ProgressFn | None) -> Iterable[Impression]:
    for n, row in enumerate(rows, start=1):
        yield row
        if progress is not None and n % _PROGRESS_EVERY == 0:
            progress(_PROGRESS_EVERY)
    if progress is not None and len(rows) % _PROGRESS_EVERY:
        progress(len(rows) % _PROGRESS_EVERY)


def replay_ads(sample: ObdSample, cfg: AdsReplayConfig | None = None,
               progress: ProgressFn | None = None) -> dict[str, Any]:
    """Prequential figures of pCTR and of the running-mean baseline, overall and per campaign.

    The baseline learns the labels the bidder learns, when it learns them (a click at
    once, a negative when its window closes), so both predict from the same information.
    """
    cfg = cfg or AdsReplayConfig()
    replay = _AdsReplay(sample, cfg)
    started = time.perf_counter()  # after the set-up: events/s times the replay alone
    for row in _ticking(sample.impressions, progress):
        replay.step(row)
    replay.close()
    return replay.figures(time.perf_counter() - started)


class _AdsReplay:
    """One replay's bidder, baseline and tallies; ``step`` plays one logged impression."""

    def __init__(self, sample: ObdSample, cfg: AdsReplayConfig) -> None:
        self.sample, self.cfg = sample, cfg
        names = [c for c in CAMPAIGNS if c in sample.items]
        model = PctrModel()
        self.baseline = RunningMeanBaseline(prior_ctr=model.prior_ctr)
        self.bidder = Bidder(campaigns_for(names), pctr=model, window_ms=cfg.window_ms)
        self.overall = _Scores()
        self.per_campaign = {name: _Scores() for name in names}
        self.no_bids: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # events the bidder did not apply (none expected)
        self.labels_learned = 0
        self.events = 0

    def step(self, row: Impression) -> None:
        """Bid on the row's request, score the bid's pCTR, then tell the bidder what the
        log says happened and move its clock to the row's time."""
        req = request_for(row, self.sample.items[row.campaign][row.item_id])
        base = self.baseline.predict_one()
        decision, _ = self.bidder.decide(req)
        self.events += 1
        if decision.ad_id is None or decision.pctr is None:
            self.no_bids[decision.no_bid_reason or "unknown"] += 1
        else:
            self.overall.add(decision.pctr, base, row.click)
            self.per_campaign[row.campaign].add(decision.pctr, base, row.click)
            self._event(req.request_id, decision.ad_id, "impression", req.ts_ms)
            self.events += 1
            if row.click:
                self._event(req.request_id, decision.ad_id, "click", req.ts_ms)
                self.events += 1
        labels, _ = self.bidder.advance(req.ts_ms)
        self._learn(labels)

    def close(self) -> None:
        """Close the last windows: every impression's label is then learned."""
        rows = self.sample.impressions
        if rows:
            # the clock moves on a CLOCK_STEP_MS grid: one step more reaches every window end
            labels, _ = self.bidder.advance(rows[-1].ts_ms + self.cfg.window_ms + CLOCK_STEP_MS)
            self._learn(labels)

    def _learn(self, labels: Iterable[Any]) -> None:
        for label in labels:
            if label.model == "pctr":
                self.baseline.learn_one(int(label.y))
                self.labels_learned += 1

    def _event(self, request_id: str, ad_id: str, kind: str, ts_ms: int) -> None:
        outcome, _ = self.bidder.on_event(f"{request_id}:{kind}", request_id, ad_id, kind,
                                          ts_ms)
        if outcome.outcome != "applied":
            self.refused[f"{kind}:{outcome.outcome}"] += 1
        self._learn(outcome.labels)

    def figures(self, seconds: float) -> dict[str, Any]:
        """The replay's figures, as ``replay_ads`` returns them."""
        sample, rows, events = self.sample, self.sample.impressions, self.events
        return {
            "policy": sample.policy,
            "campaign": sample.campaign,
            "requests": len(rows),
            "events": events,
            "no_bids": dict(self.no_bids),
            "refused_events": dict(self.refused),
            "labels_learned": self.labels_learned,  # == impressions: each learned once
            "first_ts": _iso(rows[0].ts_ms) if rows else None,
            "last_ts": _iso(rows[-1].ts_ms) if rows else None,
            "window_minutes": self.cfg.window_ms / 60_000,
            "seconds": seconds,
            "events_per_s": events / seconds if seconds > 0 else math.nan,
            "overall": self.overall.summary(),
            "campaigns": {name: s.summary() for name, s in self.per_campaign.items()},
        }


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="seconds")


def targets(overall: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's targets on the overall figures, each with whether it is met.

    >>> t = targets({"log_loss": 0.0279, "baseline_log_loss": 0.0282, "calibration": 1.3})
    >>> t["log_loss"]["met"], t["calibration"]["met"], t["calibration"]["target"]
    (True, False, 'in [0.8, 1.25]')
    """
    ll, base, cal = overall["log_loss"], overall["baseline_log_loss"], overall["calibration"]
    lo, hi = CALIBRATION_RANGE
    return {
        "log_loss": {"value": ll, "baseline": base, "target": f"<= baseline {base:.5g}",
                     "met": math.isfinite(ll) and ll <= base},
        "calibration": {"value": cal, "range": [lo, hi], "target": f"in [{lo}, {hi}]",
                        "met": math.isfinite(cal) and lo <= cal <= hi},
    }


def results_table(result: dict[str, Any], title: str) -> Any:
    """A rich Table: overall, then one row per campaign."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD)
    for name, justify in (("campaign", "left"), ("impr.", "right"), ("clicks", "right"),
                          ("CTR", "right"), ("pCTR", "right"), ("log loss", "right"),
                          ("baseline", "right"), ("gain", "right"), ("AUC", "right"),
                          ("base AUC", "right"), ("calib.", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    rows = [("overall", result["overall"]), *result["campaigns"].items()]
    for name, f in rows:
        table.add_row(
            name, f"{f['impressions']:,}", f"{f['clicks']:,}", _fmt(f["ctr"], 5),
            _fmt(f["predicted_ctr"], 5), _fmt(f["log_loss"], 5),
            _fmt(f["baseline_log_loss"], 5), _pct(f["log_loss_gain"]), _fmt(f["auc"], 4),
            _fmt(f["baseline_auc"], 4), _fmt(f["calibration"], 3),
            end_section=name == "overall",
        )
    return table


def _fmt(v: float, digits: int) -> str:
    return f"{v:.{digits}f}" if math.isfinite(v) else "-"


def _pct(v: float) -> str:
    return f"{v:+.1%}" if math.isfinite(v) else "-"
