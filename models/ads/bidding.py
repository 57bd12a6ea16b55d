"""Ad bidding: the ``Bidder`` that decides requests, charges events and moves the clock,
composing the auction, pacing and the durable ledger (money in exact integer micros).

The parts: ``campaigns`` (definitions, limits), ``requests`` (requests, decisions, event
outcomes, labels), ``auction`` (the bid for one request), ``pacing`` and ``ledger`` (the
JSON table records, their format and their loading). The names callers use are
re-exported here.

**Crash safety.** The caller applies the writes of one call in order and a crash can
cut them anywhere; the same input is then processed again. Writes go to one changelog
in order, so what survives is a prefix: every earlier call is complete and at most the
last one is partial. Each call is built so that its reprocessing completes it:

- ``decide``: evictions of old closed records, then the new record. The record is the
  commit point: a replayed request id returns the stored decision, reserving nothing.
- ``on_event`` with a charge: the campaign's spend record first, carrying ``last``, then
  the request record. If the crash falls between them, the request record still says
  "not applied", the event is applied again, and ``last`` matching (request, type,
  event id) says the money is already in: the spend is not added twice, the request
  record is written. A crash before the first write loses nothing (the event comes again).
- ``advance``: window closings, expired-record deletions, spend-record trims, then
  ``$clock`` last: every step is a function of the clock and the records, so running it
  again finishes what was cut.

pCTR / pCVR weights are not part of this state (checkpoint the models separately):
after a crash a label may be learned again by the reprocessed call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

from models.ads import auction, pacing
from models.ads.auction import NO_BID_REASONS, ProbabilityModel, Win
from models.ads.campaigns import (
    GOALS,
    MAX_BUDGET,
    MAX_ID_LENGTH,
    MAX_MONEY,
    MAX_TARGETS,
    Campaign,
    CampaignError,
    CampaignLimits,
    load_campaigns,
)
from models.ads.ledger import Ledger, RequestRecord, Write
from models.ads.pctr import PctrModel
from models.ads.requests import (
    EVENT_OUTCOMES,
    EVENT_TYPES,
    MAX_CANDIDATES,
    MAX_CATEGORIES,
    AdCandidate,
    AdRequest,
    Decision,
    EventOutcome,
    Label,
)
from models.ads.units import DAY_MS, HOUR_MS, MAX_TS_MS, MICROS, to_micros, utc_day
from models.checks import check_id, check_int, check_number, check_ts

__all__ = [
    "CLOCK_STEP_MS", "DAY_MS", "EVENT_OUTCOMES", "EVENT_TYPES", "GOALS", "HOUR_MS",
    "MAX_AHEAD_MS", "MAX_BUDGET", "MAX_CANDIDATES", "MAX_CATEGORIES", "MAX_ID_LENGTH",
    "MAX_MONEY", "MAX_RETENTION_MS", "MAX_REVENUE", "MAX_TARGETS", "MAX_TS_MS", "MICROS",
    "NO_BID_REASONS", "AdCandidate", "AdRequest", "Bidder", "Campaign", "CampaignError",
    "Decision", "EventOutcome", "Label", "ProbabilityModel", "Write", "load_campaigns",
    "to_micros", "utc_day",
]

# Windows close on this grid of event time, so "$clock" is written at most once a step.
CLOCK_STEP_MS: Final = 1_000
MAX_REVENUE: Final = 1e9
MAX_RETENTION_MS: Final = 7 * DAY_MS
# A request this far ahead of the clock has a broken ts: its reservation would be held
# until then.
MAX_AHEAD_MS: Final = DAY_MS


class Bidder:
    """Bid on ad requests within floor, cap and budgets; charge events; learn from labels.

    Bid = pCTR x value_per_click (conversion campaigns: pCTR x pCVR x
    value_per_conversion), capped at ``max_bid`` and at what is left of the daily and
    total budgets after reservations; the highest eligible bid wins. A bid reserves its
    amount until its window closes: ``impression_window_ms`` of event time after the
    request (default: ``window_ms``), extended to ``window_ms`` (the attribution window
    for clicks and conversions) once its impression arrives. Events charge their
    ``cost`` against the reservation, at most the bid in all; the rest is released at
    the close. Events after the window are refused ("late"), so the impression window
    must exceed the exchange's reporting delay: that is what keeps ``spend + reserved <=
    budget`` a hard invariant. Keep it no longer than that either: a lost auction (no
    impression ever) holds its bid out of the budget until it closes. Records are kept
    ``retention_ms`` after their window (to recognise duplicates and late events), at
    most ``max_records`` of them (closed ones, oldest first, make room).

    Pacing (``pacing=True``, campaigns with a daily budget) throttles, it does not shade
    bids: against the linear target ``daily_budget x fraction of the UTC day elapsed``,
    a campaign whose charged spend today is ahead by at most ``pacing_slack / 2`` of its
    daily budget bids on every request; beyond that its participation falls linearly
    to 0 at ``pacing_slack`` ahead. The draw is ``uniform_from_key(request_id)``: no
    state, deterministic, a replay draws the same. Under light demand spend stays
    behind the target and nothing is paced.

    >>> from models.ads.pctr import PctrModel
    >>> b = Bidder({"c1": Campaign("c1", max_bid=1.0, daily_budget=10)},
    ...            pctr=PctrModel(prior_ctr=0.005))
    >>> req = AdRequest("r1", "u1", 1_000, "top", 0.1, [AdCandidate("a1", "c1", 100.0)])
    >>> d, writes = b.decide(req)
    >>> d.ad_id, d.bid, [k for k, _ in writes], b.reserved("c1")
    ('a1', 0.5, ['r:r1'], 0.5)
    >>> out, _ = b.on_event("e1", "r1", "a1", "impression", 2_000, cost=0.3)
    >>> out.outcome, b.spend("c1"), b.reserved("c1")
    ('applied', 0.3, 0.2)
    >>> labels, _ = b.advance(1_000 + b.window_ms)
    >>> [(lb.model, lb.y) for lb in labels], b.reserved("c1")
    ([('pctr', 0)], 0.0)
    """

    def __init__(
        self,
        campaigns: Mapping[str, Campaign],
        pctr: ProbabilityModel | None = None,
        pcvr: ProbabilityModel | None = None,
        window_ms: int = 1_800_000,
        retention_ms: int = 3_600_000,
        impression_window_ms: int | None = None,
        max_records: int = 200_000,
        pacing: bool = True,
        pacing_slack: float = 0.02,
        learn: bool = True,
    ) -> None:
        # At most a day: an open request is then never older than yesterday, whose spend
        # the ledger keeps.
        self.window_ms = check_int("window_ms", window_ms, CLOCK_STEP_MS, DAY_MS)
        retention_ms = check_int("retention_ms", retention_ms, 0, MAX_RETENTION_MS)
        max_records = check_int("max_records", max_records, low=1)
        self.pacing_slack = check_number("pacing_slack", pacing_slack, 0.0, 1.0)
        if impression_window_ms is None:
            impression_window_ms = window_ms
        self.impression_window_ms = check_int(
            "impression_window_ms", impression_window_ms, CLOCK_STEP_MS, window_ms
        )
        self.pacing = bool(pacing)
        self.learn = bool(learn)
        self._pctr: ProbabilityModel = PctrModel() if pctr is None else pctr
        self._pcvr: ProbabilityModel = PctrModel(prior_ctr=0.05) if pcvr is None else pcvr
        self._camps: dict[str, CampaignLimits] = {}
        self._campaigns: Mapping[str, Campaign] = MappingProxyType({})
        self.set_campaigns(campaigns)
        self._ledger = Ledger(retention_ms, max_records)

    # -- configuration and read access ------------------------------------------------

    def set_campaigns(self, campaigns: Mapping[str, Campaign]) -> None:
        """Replace the campaign configuration (not table state: spend is kept).

        Lowering a budget below what is spent and reserved stops the campaign's bids;
        money already committed stays committed.
        """
        camps: dict[str, CampaignLimits] = {}
        for cid, c in campaigns.items():
            if not isinstance(c, Campaign) or c.campaign_id != cid:
                raise CampaignError(f"campaigns[{cid!r}] must be a Campaign with that id")
            camps[cid] = CampaignLimits(c)
        self._camps = camps
        self._campaigns = MappingProxyType({cid: k.campaign for cid, k in camps.items()})

    @property
    def campaigns(self) -> Mapping[str, Campaign]:
        """The configured campaigns by id (read-only)."""
        return self._campaigns

    @property
    def pctr(self) -> ProbabilityModel:
        """The click model (the caller checkpoints it: it is not table state)."""
        return self._pctr

    @pctr.setter
    def pctr(self, model: ProbabilityModel) -> None:
        self._pctr = model

    @property
    def pcvr(self) -> ProbabilityModel:
        """The conversion model of conversion campaigns (checkpointed like ``pctr``)."""
        return self._pcvr

    @pcvr.setter
    def pcvr(self, model: ProbabilityModel) -> None:
        self._pcvr = model

    @property
    def retention_ms(self) -> int:
        """How long records are kept after their window closes."""
        return self._ledger.retention_ms

    @retention_ms.setter
    def retention_ms(self, value: int) -> None:
        self._ledger.retention_ms = value

    @property
    def max_records(self) -> int:
        """The most request records held; closed ones, oldest first, make room."""
        return self._ledger.max_records

    @max_records.setter
    def max_records(self, value: int) -> None:
        self._ledger.max_records = value

    @property
    def killed(self) -> bool:
        """True while the persisted kill switch is on."""
        return self._ledger.kill

    @property
    def now_ms(self) -> int:
        """The event-time clock: the latest ``advance``, on the ``CLOCK_STEP_MS`` grid."""
        return self._ledger.now

    @property
    def n_records(self) -> int:
        """Request records held (open and closed)."""
        return self._ledger.n_records

    @property
    def n_open(self) -> int:
        """Request records whose window is open (bids holding a reservation)."""
        return self._ledger.n_open

    def spend(self, campaign_id: str, day: int | None = None) -> float:
        """Charged spend in total, or on UTC day index ``day`` (today and yesterday kept)."""
        return self._ledger.spent(campaign_id, day) / MICROS

    def reserved(self, campaign_id: str, day: int | None = None) -> float:
        """Reserved by open bids in total, or by those of requests on UTC day ``day``."""
        return self._ledger.reserved(campaign_id, day) / MICROS

    def pacing_rate(self, campaign_id: str, ts_ms: int | None = None) -> float:
        """Share of requests the campaign takes part in at ``ts_ms`` (default: the clock)
        under pacing: 1 up to ``pacing_slack / 2`` of its daily budget ahead of the target
        spend line, falling linearly to 0 at ``pacing_slack`` ahead (what ``decide`` does).

        >>> b = Bidder({"c1": Campaign("c1", max_bid=1.0, daily_budget=10)})
        >>> b.pacing_rate("c1", 43_200_000), b.pacing_rate("nope")
        (1.0, 1.0)
        """
        k = self._camps.get(campaign_id)
        if k is None or not self.pacing or k.daily_m is None:
            return 1.0
        ts = self._ledger.now if ts_ms is None else check_ts("ts_ms", ts_ms, MAX_TS_MS)
        return self._rate(k, k.daily_m, ts)

    def _rate(self, k: CampaignLimits, daily_m: int, ts: int) -> float:
        spent = self._ledger.spent(k.campaign_id, ts // DAY_MS)
        return pacing.rate(spent, daily_m, ts, self.pacing_slack)

    # -- decisions --------------------------------------------------------------------

    def decide(self, req: AdRequest, killed: bool = False) -> tuple[Decision, list[Write]]:
        """The decision for ``req`` and the writes recording it (and its reservation).

        A request id decided before gets its stored decision back (``replay=True``), no
        writes. Under the kill switch nothing is stored.
        """
        if not isinstance(req, AdRequest):
            raise ValueError(f"decide needs an AdRequest, got {type(req).__name__}")
        led = self._ledger
        if killed or led.kill:
            return _no_bid(req, "kill_switch"), []
        if led.now and req.ts_ms > led.now + MAX_AHEAD_MS:
            raise ValueError(
                f"ts_ms {req.ts_ms} is more than a day ahead of the clock ({led.now})"
            )
        rec = led.record(req.request_id)
        if rec is not None:
            return rec.decision(req.user, replay=True), []
        writes = led.make_room()
        if led.full:
            return _no_bid(req, "overloaded"), writes
        rec = self._new_record(req)
        writes.append(led.store(rec))
        return rec.decision(req.user, replay=False), writes

    def _new_record(self, req: AdRequest) -> RequestRecord:
        """The record of a request not seen before: its bid, or why there is none."""
        rid, ts = req.request_id, req.ts_ms
        # Until an impression arrives the bid holds its reservation only this long: an
        # auction lost (never reported) must not keep money out of the budget.
        end = ts + self.impression_window_ms
        if not req.candidates:
            return RequestRecord.no_bid(rid, ts, end, "no_candidates")
        if end <= self._ledger.now:
            return RequestRecord.no_bid(rid, ts, end, "expired")
        slack = self.pacing_slack if self.pacing else None
        won = auction.run(req, self._camps, self._ledger.remaining, slack, self._pctr,
                          self._pcvr)
        if isinstance(won, str):
            return RequestRecord.no_bid(rid, ts, end, won)
        return _bid_record(req, end, won)

    def forget_user(self, user: str) -> list[Write]:
        """Erase ``user`` from the request records: drop the served features ``x`` and
        the user id ``u`` of every record holding them (rewritten, not deleted: the
        money fields stay, so spend, reservations, duplicate detection and event
        charging are unchanged; such a request teaches pCTR / pCVR nothing more).

        Returns the writes, in request id order; none for a user with no records.

        >>> from models.ads.pctr import PctrModel
        >>> b = Bidder({"c1": Campaign("c1", max_bid=1.0)}, pctr=PctrModel(prior_ctr=0.005))
        >>> _ = b.decide(AdRequest("r1", "u1", 1_000, "top", 0.1,
        ...                        [AdCandidate("a1", "c1", 100.0)], view={"s": "s1"}))
        >>> [(k, "u" in v, v["x"]) for k, v in b.forget_user("u1")], b.reserved("c1")
        ([('r:r1', False, None)], 0.5)
        >>> b.forget_user("u1")
        []
        """
        return self._ledger.forget_user(user)

    # -- events -----------------------------------------------------------------------

    def on_event(
        self,
        event_id: str,
        request_id: str,
        ad_id: str,
        type: str,
        ts_ms: int,
        cost: float = 0.0,
        revenue: float = 0.0,
    ) -> tuple[EventOutcome, list[Write]]:
        """Apply one impression, click or conversion of a served ad.

        Counted once per (request, type) and per event id; refused when the request is
        unknown (or forgotten), the ad is not the one bid, or the window has closed
        (``ts_ms`` at or after the window end, or the window closed by ``advance``).
        """
        ts, cost_m, revenue = _check_event(event_id, request_id, ad_id, type, ts_ms, cost,
                                           revenue)
        led = self._ledger
        rec = led.record(request_id)
        refused = led.refusal(event_id, rec, ad_id, type, ts)
        if refused is not None:
            return EventOutcome(refused, request_id, None if rec is None else rec.cid, type), []
        assert rec is not None and rec.cid is not None
        charge, writes = led.apply_event(rec, type, event_id, cost_m, self.window_ms)
        labels: tuple[Label, ...] = ()
        if type == "click" and rec.x is not None and rec.p is not None:
            labels = (self._label("pctr", rec, rec.p, 1),)
        writes.append(rec.write())
        return EventOutcome("applied", request_id, rec.cid, type, charge / MICROS, revenue,
                            labels), writes

    def _label(self, model: str, rec: RequestRecord, p: float, y: int) -> Label:
        assert rec.x is not None and rec.cid is not None
        if self.learn:
            (self._pctr if model == "pctr" else self._pcvr).learn_one(rec.x, y)
        return Label(model, rec.rid, rec.cid, rec.x, p, y)

    def _closing_labels(self, rec: RequestRecord) -> list[Label]:
        """What a request teaches when its window closes (learned here)."""
        if rec.x is None or rec.p is None:
            return []
        if "click" not in rec.ev:
            # A lost auction shows nothing: only an impression makes a no-click a negative.
            if "impression" in rec.ev:
                return [self._label("pctr", rec, rec.p, 0)]
            return []
        if rec.q is not None:
            return [self._label("pcvr", rec, rec.q, int("conversion" in rec.ev))]
        return []

    # -- time -------------------------------------------------------------------------

    def advance(self, now_ms: int) -> tuple[list[Label], list[Write]]:
        """Move the clock to ``now_ms`` (event time; never backwards): close the windows
        that ended (release reservations, learn negatives and pCVR labels), forget records
        past retention, drop spend days older than yesterday.

        Call it on every tick (and after other messages if convenient): it is cheap when
        the clock has not moved a ``CLOCK_STEP_MS`` step.
        """
        t = check_ts("now_ms", now_ms, MAX_TS_MS)
        t -= t % CLOCK_STEP_MS
        if t <= self._ledger.now:
            return [], []
        labels: list[Label] = []
        writes: list[Write] = []
        for rec in self._ledger.close_due(t):
            labels += self._closing_labels(rec)
            writes.append(rec.write())
        writes += self._ledger.tick(t)
        return labels, writes

    # -- kill switch ------------------------------------------------------------------

    def set_kill(self, on: bool, ts_ms: int) -> list[Write]:
        """Turn the persisted kill switch on or off. A command older than the one in force
        (``ts_ms`` below its ts) is ignored, so a reordered resume cannot undo a kill."""
        if not isinstance(on, bool):
            raise ValueError(f"on must be a bool, got {on!r}")
        return self._ledger.set_kill(on, check_ts("ts_ms", ts_ms, MAX_TS_MS))

    # -- recovery ---------------------------------------------------------------------

    def load(self, records: Iterable[tuple[str, Mapping[str, Any] | None]]) -> None:
        """Rebuild the whole state from the table's records (after recovery or a crash).

        Keys this class does not write are ignored; a malformed record of its own raises
        ValueError naming the key (the state is then left empty, never half-loaded).
        """
        self._ledger.reset()
        try:
            self._ledger.load(records)
        except (KeyError, TypeError, ValueError) as exc:
            self._ledger.reset()
            raise ValueError(f"cannot load bidder state: {exc}") from exc


def _no_bid(req: AdRequest, reason: str) -> Decision:
    """A decision without a bid that stores nothing."""
    return Decision(req.request_id, req.user, req.ts_ms, None, None, None, None, reason)


def _bid_record(req: AdRequest, end: int, won: Win) -> RequestRecord:
    """The open record of a bid, holding what later labels need."""
    # An opted-out user's request keeps no features: nothing learns from it later.
    # The user id is kept (for forget_user) only beside features that hold
    # something of the user: those of a profile (an unknown user's are contextual).
    x = None if req.view.get("np") else tuple(won.features)
    u = req.user if x is not None and req.view else None
    cand = won.candidate
    return RequestRecord(req.request_id, req.ts_ms, end, cand.ad_id, cand.campaign_id,
                         won.bid_m, won.p, won.q, None, x, 0, {}, True, u)


def _check_event(
    event_id: object, request_id: object, ad_id: object, type: object, ts_ms: object,
    cost: object, revenue: object,
) -> tuple[int, int, float]:
    """An event's fields checked: its ts, its cost in micros and its revenue."""
    check_id("event_id", event_id, MAX_ID_LENGTH)
    check_id("request_id", request_id, MAX_ID_LENGTH)
    check_id("ad_id", ad_id, MAX_ID_LENGTH)
    if type not in EVENT_TYPES:
        raise ValueError(f"type must be one of {', '.join(EVENT_TYPES)}, got {type!r}")
    ts = check_ts("ts_ms", ts_ms, MAX_TS_MS)
    cost_m = to_micros(check_number("cost", cost, 0.0, MAX_MONEY))
    return ts, cost_m, check_number("revenue", revenue, 0.0, MAX_REVENUE)
