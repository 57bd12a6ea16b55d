"""Ad bidding: campaigns, exact budgets with reservations, pacing, decisions, and the
durable state (JSON table records) that lets one owner bid, charge and recover safely.

Money is kept in integer micros (1e-6 currency units), so sums are exact and the budget
invariant ``spend + reserved <= budget`` holds with no rounding slack.

**Durable state.** Every mutating call returns the writes ``[(key, value_or_None)]`` the
caller applies to its table, in order (None deletes); ``Bidder.load`` rebuilds everything
else (reservations, pacing inputs, event-id index, expiry queues) from those records:

- ``"r:<request_id>"``: one request: ``ts``, window end ``end``, the decision (``ad``,
  ``c`` campaign, ``bid`` micros, ``p`` pCTR, ``q`` pCVR or None, ``why`` no-bid reason),
  the served features ``x`` (bids only, and not for opted-out users), ``paid`` micros
  charged so far, ``ev`` the applied event types with their event ids, ``open``, and
  ``u``, the pseudonymous user id, only while ``x`` holds features of the user's
  profile (so ``forget_user`` can find them; absent otherwise: no user id is stored
  for unknown or opted-out users). Erasure (``forget_user``) drops ``x`` and ``u`` and
  keeps the money fields: spend and reservations stay exact.
- ``"$spend:<campaign_id>"``: ``total`` micros, ``days`` {UTC day index: micros} for
  today and yesterday, ``last`` = [request_id, type, event_id] of its latest charge.
- ``"$clock"``: ``{"now": ms}``, the event-time clock (``CLOCK_STEP_MS`` steps).
- ``"$kill"``: ``{"on": bool, "ts": ms}``.

Reservations are not stored anywhere: a reservation *is* an open request record's
``bid - paid``, so the decision and its reservation are one write and cannot part.

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

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any, Final, Protocol

from models.ads.pctr import HASH_BITS, PctrModel, ad_features
from models.recommenders.bandit import uniform_from_key

MICROS: Final = 1_000_000
DAY_MS: Final = 86_400_000
HOUR_MS: Final = 3_600_000
# Windows close on this grid of event time, so "$clock" is written at most once a step.
CLOCK_STEP_MS: Final = 1_000
# Sanity caps: anything beyond is refused with ValueError (the caller dead-letters it).
MAX_ID_LENGTH: Final = 256
MAX_MONEY: Final = 1e6  # a bid, floor, value per click or conversion, cost
MAX_REVENUE: Final = 1e9
MAX_BUDGET: Final = 1e9
MAX_CANDIDATES: Final = 100
MAX_CATEGORIES: Final = 32
MAX_TARGETS: Final = 256
MAX_TS_MS: Final = 4_102_444_800_000  # 2100-01-01, as streams/records.py
MAX_RETENTION_MS: Final = 7 * DAY_MS
# A request this far ahead of the clock has a broken ts: its reservation would be held
# until then.
MAX_AHEAD_MS: Final = DAY_MS

GOALS: Final = ("click", "conversion")
EVENT_TYPES: Final = ("impression", "click", "conversion")
# Request-level reasons first (checked in this order), then per-candidate reasons: when
# no candidate is eligible the request gets the reason of the candidate that got
# furthest, in this tuple's order (below_floor beats paced beats budget_exhausted ...).
NO_BID_REASONS: Final = (
    "kill_switch",  # Bidder.killed or decide(killed=True): no state is touched
    "no_candidates",
    "expired",  # the request's window had closed by the bidder's clock already
    "overloaded",  # max_records open requests: no room to track another bid
    "unknown_campaign",
    "inactive",  # Campaign.active is False
    "not_targeted",
    "budget_exhausted",  # remaining daily or total budget <= 0, or below the floor
    "paced",
    "below_floor",  # capped bid (pCTR x value, max_bid) below the floor, or zero
)
_CANDIDATE_RANK: Final = {r: i for i, r in enumerate(NO_BID_REASONS[4:])}
EVENT_OUTCOMES: Final = ("applied", "duplicate", "late", "unknown_request", "wrong_ad")

Write = tuple[str, dict[str, Any] | None]


class ProbabilityModel(Protocol):
    """What the bidder needs of a click (or conversion) model: ``PctrModel`` fits."""

    def predict_many(self, xs: Sequence[Sequence[int]]) -> list[float]: ...

    def learn_one(self, x: Sequence[int], y: bool | int, weight: float = 1.0) -> None: ...


class CampaignError(ValueError):
    """A campaign definition is invalid; the message names the campaign and the field.

    >>> try:
    ...     Campaign("c1", max_bid=-1)
    ... except CampaignError as exc:
    ...     print(exc)
    campaign 'c1': max_bid must be a finite number in (0, 1000000.0], got -1
    """


# -- validation helpers ---------------------------------------------------------------


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"{what} is {len(value)} characters, the cap is {MAX_ID_LENGTH}")
    return value


def _number(value: object, what: str, lo: float, hi: float, lo_open: bool = False) -> float:
    kind = type(value)  # float and int first: the ABC check is slow
    ok = kind is float or kind is int or (isinstance(value, Real) and not isinstance(value, bool))
    f = float(value) if ok else math.nan  # type: ignore[arg-type]
    # NaN fails both comparisons, inf fails the cap.
    if not ((f > lo if lo_open else f >= lo) and f <= hi):
        bracket = "(" if lo_open else "["
        raise ValueError(f"{what} must be a finite number in {bracket}{lo:g}, {hi}], got {value!r}")
    return f


def _check_ts(value: object, what: str = "ts_ms") -> int:
    if type(value) is int and 0 <= value <= MAX_TS_MS:  # the common case, without ABCs
        return value
    if isinstance(value, bool) or not isinstance(value, Integral) or not (
        0 <= int(value) <= MAX_TS_MS
    ):
        raise ValueError(f"{what} must be an int of epoch ms in [0, {MAX_TS_MS}], got {value!r}")
    return int(value)


def _strings(value: object, what: str, cap: int) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(f"{what} must be a list of strings, got {value!r}")
    if len(value) > cap:
        raise ValueError(f"{what} has {len(value)} entries, the cap is {cap}")
    return tuple(_check_id(v, f"each of {what}") for v in value)


def _micros_floor(x: float) -> int:
    """The largest m with m / MICROS <= x (float division, as readers will compute)."""
    m = math.floor(x * MICROS)
    while m / MICROS > x:
        m -= 1
    while (m + 1) / MICROS <= x:
        m += 1
    return m


def _micros_ceil(x: float) -> int:
    """The smallest m with m / MICROS >= x."""
    m = math.ceil(x * MICROS)
    while m / MICROS < x:
        m += 1
    while (m - 1) / MICROS >= x:
        m -= 1
    return m


def to_micros(amount: float) -> int:
    """A cost in integer micros, rounded to the nearest (how charges are counted).

    >>> to_micros(0.1234564), to_micros(2)
    (123456, 2000000)
    """
    return round(float(amount) * MICROS)


def utc_day(ts_ms: int) -> int:
    """The UTC day index of epoch-ms ``ts_ms`` (days since 1970-01-01): budgets' days.

    >>> utc_day(86_400_000 - 1), utc_day(86_400_000)
    (0, 1)
    """
    return ts_ms // DAY_MS


# -- campaigns ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Campaign:
    """An advertiser's campaign: bid cap, budgets, goal and targeting.

    ``daily_budget`` applies per UTC day (of the request's ts), ``total_budget`` over the
    campaign's life; None means no limit. ``goal="conversion"`` bids pCTR x pCVR x
    ``value_per_conversion`` (for candidates that give one). Targeting: an empty tuple
    means everyone; ``target_segments`` must contain the user's segment (``view["s"]``),
    ``target_categories`` must meet the user's interests (the categories of
    ``view["i"]``), both when both are set. Targeted campaigns never bid on opted-out or
    unknown users. Lists are accepted and stored as tuples.

    >>> c = Campaign("spring", max_bid=0.5, daily_budget=100, target_segments=["loyal"])
    >>> c.target_segments, c.goal
    (('loyal',), 'click')
    """

    campaign_id: str
    max_bid: float
    daily_budget: float | None = None
    total_budget: float | None = None
    goal: str = "click"
    target_segments: tuple[str, ...] = ()
    target_categories: tuple[str, ...] = ()
    active: bool = True

    def __post_init__(self) -> None:
        cid = self.campaign_id
        try:
            _check_id(cid, "campaign_id")
        except ValueError as exc:
            raise CampaignError(str(exc)) from None
        where = f"campaign {cid!r}"
        try:
            s = object.__setattr__
            s(self, "max_bid", _number(self.max_bid, "max_bid", 0.0, MAX_MONEY, lo_open=True))
            for name in ("daily_budget", "total_budget"):
                v = getattr(self, name)
                if v is not None:
                    s(self, name, _number(v, name, 0.0, MAX_BUDGET))
            if self.goal not in GOALS:
                raise ValueError(f"goal must be one of {', '.join(GOALS)}, got {self.goal!r}")
            for name in ("target_segments", "target_categories"):
                s(self, name, _strings(getattr(self, name), name, MAX_TARGETS))
            if not isinstance(self.active, bool):
                raise ValueError(f"active must be true or false, got {self.active!r}")
        except ValueError as exc:
            raise CampaignError(f"{where}: {exc}") from None


_CAMPAIGN_FIELDS: Final = frozenset(Campaign.__dataclass_fields__)


def load_campaigns(obj: Any) -> dict[str, Campaign]:
    """Campaigns by id from ``{"campaigns": [{...}, ...]}`` (parsed JSON or similar).

    Unknown fields are errors (a misspelt ``daily_budjet`` must not mean "no budget").

    >>> cs = load_campaigns({"campaigns": [{"campaign_id": "c1", "max_bid": 1.5}]})
    >>> cs["c1"].max_bid
    1.5
    >>> try:
    ...     load_campaigns({"campaigns": [{"campaign_id": "c1", "max_bid": 1, "budget": 5}]})
    ... except CampaignError as exc:
    ...     print(exc)
    campaigns[0] ('c1'): unknown field 'budget'
    """
    if not isinstance(obj, Mapping) or not isinstance(obj.get("campaigns"), list):
        raise CampaignError('expected an object {"campaigns": [ ... ]}')
    out: dict[str, Campaign] = {}
    for i, entry in enumerate(obj["campaigns"]):
        if not isinstance(entry, Mapping):
            raise CampaignError(f"campaigns[{i}] must be an object, got {entry!r}")
        name = f"campaigns[{i}] ({entry.get('campaign_id')!r})"
        for key in entry:
            if key not in _CAMPAIGN_FIELDS:
                raise CampaignError(f"{name}: unknown field {key!r}")
        for key in ("campaign_id", "max_bid"):
            if key not in entry:
                raise CampaignError(f"{name}: missing field {key!r}")
        camp = Campaign(**dict(entry))
        if camp.campaign_id in out:
            raise CampaignError(f"{name}: duplicate campaign_id")
        out[camp.campaign_id] = camp
    return out


# -- requests, decisions, events ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdCandidate:
    """One ad offered in a request, with the advertiser's values (currency units).

    >>> AdCandidate("ad1", "spring", 2.0, ["Comedy"]).categories
    ('Comedy',)
    """

    ad_id: str
    campaign_id: str
    value_per_click: float
    categories: tuple[str, ...] = ()
    value_per_conversion: float | None = None

    def __post_init__(self) -> None:
        s = object.__setattr__
        _check_id(self.ad_id, "ad_id")
        _check_id(self.campaign_id, "campaign_id")
        s(self, "value_per_click", _number(self.value_per_click, "value_per_click", 0, MAX_MONEY))
        s(self, "categories", _strings(self.categories, "categories", MAX_CATEGORIES))
        if self.value_per_conversion is not None:
            s(self, "value_per_conversion",
              _number(self.value_per_conversion, "value_per_conversion", 0, MAX_MONEY))


@dataclass(frozen=True, slots=True)
class AdRequest:
    """One ad slot to fill: the candidates, the floor, and the user's ``user_view``.

    >>> r = AdRequest("r1", "u1", 0, "top", 0.01, [AdCandidate("a1", "c1", 1.0)])
    >>> len(r.candidates), r.view
    (1, {})
    """

    request_id: str
    user: str
    ts_ms: int
    slot: str
    floor_price: float
    candidates: tuple[AdCandidate, ...]
    context: dict[str, Any] | None = None
    view: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = object.__setattr__
        _check_id(self.request_id, "request_id")
        _check_id(self.user, "user")
        s(self, "ts_ms", _check_ts(self.ts_ms))
        if not isinstance(self.slot, str) or len(self.slot) > MAX_ID_LENGTH:
            raise ValueError(f"slot must be a string of at most {MAX_ID_LENGTH}, got {self.slot!r}")
        s(self, "floor_price", _number(self.floor_price, "floor_price", 0, MAX_MONEY))
        if not isinstance(self.candidates, (list, tuple)):
            raise ValueError(f"candidates must be a list of AdCandidate, got {self.candidates!r}")
        if len(self.candidates) > MAX_CANDIDATES:
            raise ValueError(f"{len(self.candidates)} candidates, the cap is {MAX_CANDIDATES}")
        for c in self.candidates:
            if not isinstance(c, AdCandidate):
                raise ValueError(f"candidates must be AdCandidate, got {c!r}")
        s(self, "candidates", tuple(self.candidates))
        if self.context is not None and not isinstance(self.context, Mapping):
            raise ValueError(f"context must be an object or None, got {self.context!r}")
        if not isinstance(self.view, Mapping):
            raise ValueError(f"view must be an object (user_view), got {self.view!r}")


@dataclass(frozen=True, slots=True)
class Decision:
    """What to answer a request: an ad with its bid, or ``no_bid_reason``.

    ``ts_ms`` is the request's; ``replay`` is True when the request id was decided
    before and this is the stored decision again (count it once).

    >>> Decision("r1", "u1", 0, None, None, None, None, "paced").no_bid_reason
    'paced'
    """

    request_id: str
    user: str
    ts_ms: int
    ad_id: str | None
    campaign_id: str | None
    bid: float | None
    pctr: float | None
    no_bid_reason: str | None
    replay: bool = False


@dataclass(frozen=True, slots=True)
class Label:
    """A resolved example: learn ``model`` ("pctr" or "pcvr") on ``features`` with ``y``.

    ``p`` is what that model predicted at decide time (for log loss and calibration).
    pCTR labels come from requests that were shown: positive at the first click,
    negative when the window closes after an impression without a click. pCVR labels
    come from clicked requests of conversion campaigns when the window closes.

    >>> Label("pctr", "r1", "c1", (0, 7), 0.01, 1).y
    1
    """

    model: str
    request_id: str
    campaign_id: str
    features: tuple[int, ...]
    p: float
    y: int


@dataclass(frozen=True, slots=True)
class EventOutcome:
    """What one ad event did: ``outcome`` in ``EVENT_OUTCOMES``, the money it moved.

    ``spend`` is the charge counted (the event's cost capped at what is left of the
    bid), ``revenue`` the event's revenue if applied; ``labels`` were learned by it.

    >>> EventOutcome("late", "r1", "c1", "click").first
    False
    """

    outcome: str
    request_id: str
    campaign_id: str | None
    type: str
    spend: float = 0.0
    revenue: float = 0.0
    labels: tuple[Label, ...] = ()

    @property
    def first(self) -> bool:
        """True for the one counted event of its (request, type)."""
        return self.outcome == "applied"


# -- internal state -------------------------------------------------------------------


class _Req:
    """One request record (the JSON form is ``to_json``)."""

    __slots__ = ("rid", "ts", "end", "ad", "cid", "bid", "p", "q", "why", "x", "paid", "ev",
                 "open", "u")

    def __init__(self, rid: str, ts: int, end: int, ad: str | None, cid: str | None, bid: int,
                 p: float | None, q: float | None, why: str | None,
                 x: tuple[int, ...] | None, paid: int, ev: dict[str, str], open_: bool,
                 u: str | None = None) -> None:
        self.rid = rid
        self.ts = ts
        self.end = end
        self.ad = ad
        self.cid = cid
        self.bid = bid
        self.p = p
        self.q = q
        self.why = why
        self.x = x
        self.paid = paid
        self.ev = ev
        self.open = open_
        self.u = u  # the user whose features x holds (None once forgotten, or no x)

    def to_json(self) -> dict[str, Any]:
        d = {
            "ts": self.ts, "end": self.end, "ad": self.ad, "c": self.cid, "bid": self.bid,
            "p": self.p, "q": self.q, "why": self.why,
            "x": None if self.x is None else list(self.x), "paid": self.paid,
            "ev": dict(self.ev), "open": self.open,
        }
        if self.u is not None:
            d["u"] = self.u
        return d

    @classmethod
    def from_json(cls, rid: str, v: Mapping[str, Any]) -> _Req:
        x = v["x"]
        ev = v["ev"]
        if not isinstance(ev, Mapping) or not all(
            t in EVENT_TYPES and isinstance(e, str) for t, e in ev.items()
        ):
            raise ValueError(f"bad ev {ev!r}")
        for name in ("ad", "c", "why"):
            if v[name] is not None and not isinstance(v[name], str):
                raise ValueError(f"{name} must be a string or null, got {v[name]!r}")
        for name in ("p", "q"):
            if v[name] is not None:
                _number(v[name], name, 0.0, 1.0)
        # Stored features are learned on later: a bad index must fail here, not halfway
        # through a charge or a window close.
        if x is not None and not all(
            type(i) is int and 0 <= i < 1 << HASH_BITS for i in x
        ):
            raise ValueError("x must be feature indices")
        u = v.get("u")
        if u is not None and not isinstance(u, str):
            raise ValueError(f"u must be a string or absent, got {u!r}")
        return cls(
            rid, _check_ts(v["ts"], "ts"), int(v["end"]), v["ad"], v["c"], int(v["bid"]),
            None if v["p"] is None else float(v["p"]), None if v["q"] is None else float(v["q"]),
            v["why"], None if x is None else tuple(int(i) for i in x), int(v["paid"]),
            dict(ev), bool(v["open"]), u,
        )

    def decision(self, user: str, replay: bool) -> Decision:
        bid = self.bid / MICROS if self.ad is not None else None
        return Decision(self.rid, user, self.ts, self.ad, self.cid, bid, self.p, self.why, replay)


class _Spend:
    """One campaign's spend record: total, per UTC day, and its latest charge."""

    __slots__ = ("total", "days", "last")

    def __init__(self) -> None:
        self.total = 0
        self.days: dict[int, int] = {}
        self.last: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "days": {str(d): m for d, m in self.days.items()},
                "last": None if self.last is None else list(self.last)}


class _Camp:
    """A campaign with its limits precomputed in micros."""

    __slots__ = ("c", "max_m", "daily_m", "total_m", "segs", "cats", "targeted", "conv")

    def __init__(self, c: Campaign) -> None:
        self.c = c
        self.max_m = _micros_floor(c.max_bid)
        self.daily_m = None if c.daily_budget is None else _micros_floor(c.daily_budget)
        self.total_m = None if c.total_budget is None else _micros_floor(c.total_budget)
        self.segs = frozenset(c.target_segments)
        self.cats = frozenset(c.target_categories)
        self.targeted = bool(self.segs or self.cats)
        self.conv = c.goal == "conversion"


def _interests(view: Mapping[str, Any]) -> frozenset[str]:
    raw = view.get("i")
    if not isinstance(raw, (list, tuple)):
        return frozenset()
    return frozenset(
        pair[0] for pair in raw
        if isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)
    )


def _probability(p: object) -> float:
    """A model's output as a usable probability: anything not in [0, 1] (NaN too) is 0."""
    f = float(p) if isinstance(p, Real) else math.nan
    return f if 0.0 <= f <= 1.0 else 0.0


# -- the bidder -----------------------------------------------------------------------


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
        if isinstance(window_ms, bool) or not isinstance(window_ms, int) or not (
            CLOCK_STEP_MS <= window_ms <= DAY_MS
        ):
            # At most a day: an open request is then never older than yesterday, whose
            # spend the ledger keeps.
            raise ValueError(f"window_ms must be an int in [{CLOCK_STEP_MS}, {DAY_MS}]")
        if isinstance(retention_ms, bool) or not isinstance(retention_ms, int) or not (
            0 <= retention_ms <= MAX_RETENTION_MS
        ):
            raise ValueError(f"retention_ms must be an int in [0, {MAX_RETENTION_MS}]")
        if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1:
            raise ValueError(f"max_records must be an int >= 1, got {max_records!r}")
        self.pacing_slack = _number(pacing_slack, "pacing_slack", 0.0, 1.0)
        self.window_ms = window_ms
        if impression_window_ms is None:
            impression_window_ms = window_ms
        if isinstance(impression_window_ms, bool) or not isinstance(impression_window_ms, int) \
                or not CLOCK_STEP_MS <= impression_window_ms <= window_ms:
            raise ValueError(f"impression_window_ms must be an int in [{CLOCK_STEP_MS}, "
                             f"window_ms]")
        self.impression_window_ms = impression_window_ms
        self.retention_ms = retention_ms
        self.max_records = max_records
        self.pacing = bool(pacing)
        self.learn = bool(learn)
        self._pctr: ProbabilityModel = PctrModel() if pctr is None else pctr
        self._pcvr: ProbabilityModel = PctrModel(prior_ctr=0.05) if pcvr is None else pcvr
        self._camps: dict[str, _Camp] = {}
        self._campaigns: Mapping[str, Campaign] = MappingProxyType({})
        self.set_campaigns(campaigns)
        self._reset()

    def _reset(self) -> None:
        self._now = 0
        self._kill = False
        self._kill_ts = 0
        self._req: dict[str, _Req] = {}
        self._open_q: list[tuple[int, str]] = []  # (window end, request id), lazy
        self._closed_q: list[tuple[int, str]] = []  # (retention end, request id), lazy
        self._n_open = 0
        self._events: dict[str, str] = {}  # event id -> request id, applied events only
        self._by_user: dict[str, set[str]] = {}  # user -> ids of their records holding x
        self._ledger: dict[str, _Spend] = {}
        self._reserved: dict[str, int] = {}
        self._reserved_day: dict[tuple[str, int], int] = {}

    # -- configuration and read access ------------------------------------------------

    def set_campaigns(self, campaigns: Mapping[str, Campaign]) -> None:
        """Replace the campaign configuration (not table state: spend is kept).

        Lowering a budget below what is spent and reserved stops the campaign's bids;
        money already committed stays committed.
        """
        camps: dict[str, _Camp] = {}
        for cid, c in campaigns.items():
            if not isinstance(c, Campaign) or c.campaign_id != cid:
                raise CampaignError(f"campaigns[{cid!r}] must be a Campaign with that id")
            camps[cid] = _Camp(c)
        self._camps = camps
        self._campaigns = MappingProxyType({cid: k.c for cid, k in camps.items()})

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
    def killed(self) -> bool:
        """True while the persisted kill switch is on."""
        return self._kill

    @property
    def now_ms(self) -> int:
        """The event-time clock: the latest ``advance``, on the ``CLOCK_STEP_MS`` grid."""
        return self._now

    @property
    def n_records(self) -> int:
        """Request records held (open and closed)."""
        return len(self._req)

    @property
    def n_open(self) -> int:
        """Request records whose window is open (bids holding a reservation)."""
        return self._n_open

    def spend(self, campaign_id: str, day: int | None = None) -> float:
        """Charged spend in total, or on UTC day index ``day`` (today and yesterday kept)."""
        return self._spend_m(campaign_id, day) / MICROS

    def reserved(self, campaign_id: str, day: int | None = None) -> float:
        """Reserved by open bids in total, or by those of requests on UTC day ``day``."""
        if day is None:
            return self._reserved.get(campaign_id, 0) / MICROS
        return self._reserved_day.get((campaign_id, day), 0) / MICROS

    def _spend_m(self, campaign_id: str, day: int | None) -> int:
        led = self._ledger.get(campaign_id)
        if led is None:
            return 0
        return led.total if day is None else led.days.get(day, 0)

    def _remaining(self, k: _Camp, day: int) -> int | None:
        """Micros left under the tighter budget after spend and reservations; None: no cap."""
        cid = k.c.campaign_id
        left: int | None = None
        if k.daily_m is not None:
            led = self._ledger.get(cid)
            spent = led.days.get(day, 0) if led is not None else 0
            left = k.daily_m - spent - self._reserved_day.get((cid, day), 0)
        if k.total_m is not None:
            rest = k.total_m - self._spend_m(cid, None) - self._reserved.get(cid, 0)
            left = rest if left is None else min(left, rest)
        return left

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
        return self._rate(k, k.daily_m, self._now if ts_ms is None else _check_ts(ts_ms))

    def _rate(self, k: _Camp, daily_m: int, ts: int) -> float:
        day = ts // DAY_MS
        led = self._ledger.get(k.c.campaign_id)
        spent = led.days.get(day, 0) if led is not None else 0
        ahead = spent - daily_m * ((ts - day * DAY_MS) / DAY_MS)
        slack = self.pacing_slack * daily_m
        if ahead <= slack / 2:
            return 1.0
        if ahead >= slack:
            return 0.0
        return (slack - ahead) / (slack / 2)

    def _pace_ok(self, k: _Camp, daily_m: int, rid: str, ts: int) -> bool:
        rate = self._rate(k, daily_m, ts)
        return rate >= 1.0 or (rate > 0.0 and uniform_from_key(rid, salt=k.c.campaign_id) < rate)

    # -- decisions --------------------------------------------------------------------

    def decide(self, req: AdRequest, killed: bool = False) -> tuple[Decision, list[Write]]:
        """The decision for ``req`` and the writes recording it (and its reservation).

        A request id decided before gets its stored decision back (``replay=True``), no
        writes. Under the kill switch nothing is stored.
        """
        if not isinstance(req, AdRequest):
            raise ValueError(f"decide needs an AdRequest, got {type(req).__name__}")
        rid, ts = req.request_id, req.ts_ms

        def no_bid(reason: str) -> Decision:
            return Decision(rid, req.user, ts, None, None, None, None, reason)

        if killed or self._kill:
            return no_bid("kill_switch"), []
        if self._now and ts > self._now + MAX_AHEAD_MS:
            raise ValueError(f"ts_ms {ts} is more than a day ahead of the clock ({self._now})")
        rec = self._req.get(rid)
        if rec is not None:
            return rec.decision(req.user, replay=True), []
        writes: list[Write] = []
        if len(self._req) >= self.max_records:
            writes = self._make_room()
            if len(self._req) >= self.max_records:
                return no_bid("overloaded"), writes
        # Until an impression arrives the bid holds its reservation only this long: an
        # auction lost (never reported) must not keep money out of the budget.
        end = ts + self.impression_window_ms
        if not req.candidates:
            reason: str | None = "no_candidates"
        elif end <= self._now:
            reason = "expired"
        else:
            reason = None
        if reason is not None:
            rec = _Req(rid, ts, end, None, None, 0, None, None, reason, None, 0, {}, False)
            return self._store(rec, req.user, writes)

        day = ts // DAY_MS
        view = req.view
        opted_out = bool(view.get("np"))
        seg = view.get("s")
        if not isinstance(seg, str):
            seg = ""
        interests: frozenset[str] | None = None
        best_rank = -1
        paced: dict[str, bool] = {}
        survivors: list[tuple[AdCandidate, _Camp, int | None]] = []
        for cand in req.candidates:
            k = self._camps.get(cand.campaign_id)
            why: str | None = None
            left: int | None = None
            if k is None:
                why = "unknown_campaign"
            elif not k.c.active:
                why = "inactive"
            else:
                if k.targeted:
                    if opted_out or (k.segs and seg not in k.segs):
                        why = "not_targeted"
                    elif k.cats:
                        if interests is None:
                            interests = _interests(view)
                        if k.cats.isdisjoint(interests):
                            why = "not_targeted"
                if why is None:
                    left = self._remaining(k, day)
                    if left is not None and left <= 0:
                        why = "budget_exhausted"
                    elif self.pacing and k.daily_m is not None:
                        cid = cand.campaign_id
                        ok = paced.get(cid)
                        if ok is None:
                            ok = paced[cid] = self._pace_ok(k, k.daily_m, rid, ts)
                        if not ok:
                            why = "paced"
            if why is not None:
                best_rank = max(best_rank, _CANDIDATE_RANK[why])
            else:
                assert k is not None
                survivors.append((cand, k, left))

        best: tuple[int, int] | None = None  # (bid micros, survivor index)
        xs: list[list[int]] = []
        ps: list[float] = []
        qs: dict[int, float] = {}
        if survivors:
            hour = (ts // HOUR_MS) % 24
            xs = [
                ad_features(view, c.ad_id, c.campaign_id, c.categories, req.slot, hour,
                            req.context)
                for c, _, _ in survivors
            ]
            ps = [_probability(p) for p in self._pctr.predict_many(xs)]
            conv = [i for i, (c, k, _) in enumerate(survivors)
                    if k.conv and c.value_per_conversion is not None]
            if conv:
                qv = self._pcvr.predict_many([xs[i] for i in conv])
                qs = {i: _probability(q) for i, q in zip(conv, qv, strict=True)}
            floor_m = _micros_ceil(req.floor_price)
            for i, (c, k, left) in enumerate(survivors):
                q = qs.get(i)
                if q is not None:
                    assert c.value_per_conversion is not None
                    value = ps[i] * q * c.value_per_conversion
                else:
                    value = ps[i] * c.value_per_click
                bid_m = min(_micros_floor(min(value, k.c.max_bid)), k.max_m)
                if bid_m <= 0 or bid_m < floor_m:
                    best_rank = max(best_rank, _CANDIDATE_RANK["below_floor"])
                    continue
                if left is not None and left < bid_m:
                    if left < floor_m:
                        best_rank = max(best_rank, _CANDIDATE_RANK["budget_exhausted"])
                        continue
                    bid_m = left
                if best is None or bid_m > best[0]:
                    best = (bid_m, i)
        if best is None:
            why_not = NO_BID_REASONS[4 + best_rank] if best_rank >= 0 else "unknown_campaign"
            rec = _Req(rid, ts, end, None, None, 0, None, None, why_not, None, 0, {}, False)
            return self._store(rec, req.user, writes)
        bid_m, i = best
        cand, k, _ = survivors[i]
        cid = cand.campaign_id
        # An opted-out user's request keeps no features: nothing learns from it later.
        # The user id is kept (for forget_user) only beside features that hold
        # something of the user: those of a profile (an unknown user's are contextual).
        x = None if opted_out else tuple(xs[i])
        u = req.user if x is not None and view else None
        rec = _Req(rid, ts, end, cand.ad_id, cid, bid_m, ps[i], qs.get(i), None, x, 0, {},
                   True, u)
        self._hold(cid, ts // DAY_MS, bid_m)
        heapq.heappush(self._open_q, (end, rid))
        self._n_open += 1
        return self._store(rec, req.user, writes)

    def _store(self, rec: _Req, user: str, writes: list[Write]) -> tuple[Decision, list[Write]]:
        self._req[rec.rid] = rec
        self._index_user(rec)
        if not rec.open:
            heapq.heappush(self._closed_q, (rec.end + self.retention_ms, rec.rid))
        writes.append(("r:" + rec.rid, rec.to_json()))
        return rec.decision(user, replay=False), writes

    def _hold(self, cid: str, day: int, delta: int) -> None:
        """Change what campaign ``cid`` has reserved (in total and on UTC ``day``)."""
        self._reserved[cid] = self._reserved.get(cid, 0) + delta
        key = (cid, day)
        self._reserved_day[key] = self._reserved_day.get(key, 0) + delta

    def _make_room(self) -> list[Write]:
        """Drop closed records, earliest retention end first, until one more fits."""
        writes: list[Write] = []
        q = self._closed_q
        while q and len(self._req) >= self.max_records:
            expire, rid = heapq.heappop(q)
            if self._is_closed_entry(rid, expire):
                writes.append(self._drop(rid))
        return writes

    def _is_closed_entry(self, rid: str, expire: int) -> bool:
        rec = self._req.get(rid)
        return rec is not None and not rec.open and rec.end + self.retention_ms == expire

    def _index_user(self, rec: _Req) -> None:
        if rec.u is not None:
            self._by_user.setdefault(rec.u, set()).add(rec.rid)

    def _unindex_user(self, rec: _Req) -> None:
        if rec.u is not None:
            rids = self._by_user.get(rec.u)
            if rids is not None:
                rids.discard(rec.rid)
                if not rids:
                    del self._by_user[rec.u]

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
        writes: list[Write] = []
        for rid in sorted(self._by_user.pop(user, ())):
            rec = self._req.get(rid)
            if rec is None or rec.u != user:
                continue
            rec.x, rec.u = None, None
            writes.append(("r:" + rid, rec.to_json()))
        return writes

    def _drop(self, rid: str) -> Write:
        rec = self._req.pop(rid)
        self._unindex_user(rec)
        for eid in rec.ev.values():
            if self._events.get(eid) == rid:
                del self._events[eid]
        return ("r:" + rid, None)

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
        _check_id(event_id, "event_id")
        _check_id(request_id, "request_id")
        _check_id(ad_id, "ad_id")
        if type not in EVENT_TYPES:
            raise ValueError(f"type must be one of {', '.join(EVENT_TYPES)}, got {type!r}")
        ts = _check_ts(ts_ms)
        cost_m = to_micros(_number(cost, "cost", 0.0, MAX_MONEY))
        revenue = _number(revenue, "revenue", 0.0, MAX_REVENUE)
        rec = self._req.get(request_id)
        cid = None if rec is None else rec.cid

        def refused(outcome: str) -> tuple[EventOutcome, list[Write]]:
            return EventOutcome(outcome, request_id, cid, type), []

        if event_id in self._events:
            return refused("duplicate")
        if rec is None:
            return refused("unknown_request")
        if rec.ad is None or rec.ad != ad_id:
            return refused("wrong_ad")
        if type in rec.ev:
            return refused("duplicate")
        if not rec.open or ts >= rec.end:
            return refused("late")
        assert rec.cid is not None
        writes: list[Write] = []
        charge = min(cost_m, rec.bid - rec.paid)
        if charge > 0:
            led = self._ledger.get(rec.cid)
            if led is None:
                led = self._ledger[rec.cid] = _Spend()
            mark = [request_id, type, event_id]
            if led.last != mark:  # else: charged before a crash cut this call's writes
                day = rec.ts // DAY_MS
                led.total += charge
                led.days[day] = led.days.get(day, 0) + charge
                led.last = mark
                writes.append(("$spend:" + rec.cid, led.to_json()))
            rec.paid += charge
            self._hold(rec.cid, rec.ts // DAY_MS, -charge)
        rec.ev[type] = event_id
        self._events[event_id] = request_id
        if type == "impression" and rec.ts + self.window_ms > rec.end:
            # Shown: the attribution window (clicks, conversions, their costs) opens.
            rec.end = rec.ts + self.window_ms
            heapq.heappush(self._open_q, (rec.end, request_id))
        labels: tuple[Label, ...] = ()
        if type == "click" and rec.x is not None and rec.p is not None:
            labels = (self._label("pctr", rec, rec.p, 1),)
        writes.append(("r:" + request_id, rec.to_json()))
        return EventOutcome("applied", request_id, rec.cid, type, charge / MICROS, revenue,
                            labels), writes

    def _label(self, model: str, rec: _Req, p: float, y: int) -> Label:
        assert rec.x is not None and rec.cid is not None
        if self.learn:
            (self._pctr if model == "pctr" else self._pcvr).learn_one(rec.x, y)
        return Label(model, rec.rid, rec.cid, rec.x, p, y)

    # -- time -------------------------------------------------------------------------

    def advance(self, now_ms: int) -> tuple[list[Label], list[Write]]:
        """Move the clock to ``now_ms`` (event time; never backwards): close the windows
        that ended (release reservations, learn negatives and pCVR labels), forget records
        past retention, drop spend days older than yesterday.

        Call it on every tick (and after other messages if convenient): it is cheap when
        the clock has not moved a ``CLOCK_STEP_MS`` step.
        """
        t = _check_ts(now_ms, "now_ms")
        t -= t % CLOCK_STEP_MS
        if t <= self._now:
            return [], []
        labels: list[Label] = []
        writes: list[Write] = []
        q = self._open_q
        while q and q[0][0] <= t:
            end, rid = heapq.heappop(q)
            rec = self._req.get(rid)
            if rec is None or not rec.open or rec.end != end:
                continue
            self._close(rec, labels)
            writes.append(("r:" + rid, rec.to_json()))
        q = self._closed_q
        while q and q[0][0] <= t:
            expire, rid = heapq.heappop(q)
            if self._is_closed_entry(rid, expire):
                writes.append(self._drop(rid))
        today = t // DAY_MS
        if today != self._now // DAY_MS:
            for cid, led in self._ledger.items():
                old = [d for d in led.days if d < today - 1]
                if old:
                    for d in old:
                        del led.days[d]
                    writes.append(("$spend:" + cid, led.to_json()))
            for key in [k for k in self._reserved_day if k[1] < today - 1]:
                if self._reserved_day[key] == 0:
                    del self._reserved_day[key]
        self._now = t
        writes.append(("$clock", {"now": t}))
        return labels, writes

    def _close(self, rec: _Req, labels: list[Label]) -> None:
        rec.open = False
        self._n_open -= 1
        assert rec.cid is not None
        self._hold(rec.cid, rec.ts // DAY_MS, rec.paid - rec.bid)
        heapq.heappush(self._closed_q, (rec.end + self.retention_ms, rec.rid))
        if rec.x is None or rec.p is None:
            return
        if "click" not in rec.ev:
            # A lost auction shows nothing: only an impression makes a no-click a negative.
            if "impression" in rec.ev:
                labels.append(self._label("pctr", rec, rec.p, 0))
        elif rec.q is not None:
            labels.append(self._label("pcvr", rec, rec.q, int("conversion" in rec.ev)))

    # -- kill switch ------------------------------------------------------------------

    def set_kill(self, on: bool, ts_ms: int) -> list[Write]:
        """Turn the persisted kill switch on or off. A command older than the one in force
        (``ts_ms`` below its ts) is ignored, so a reordered resume cannot undo a kill."""
        if not isinstance(on, bool):
            raise ValueError(f"on must be a bool, got {on!r}")
        ts = _check_ts(ts_ms)
        if ts < self._kill_ts:
            return []
        self._kill, self._kill_ts = on, ts
        return [("$kill", {"on": on, "ts": ts})]

    # -- recovery ---------------------------------------------------------------------

    def load(self, records: Iterable[tuple[str, Mapping[str, Any] | None]]) -> None:
        """Rebuild the whole state from the table's records (after recovery or a crash).

        Keys this class does not write are ignored; a malformed record of its own raises
        ValueError naming the key (the state is then left empty, never half-loaded).
        """
        self._reset()
        try:
            self._load(records)
        except (KeyError, TypeError, ValueError) as exc:
            self._reset()
            raise ValueError(f"cannot load bidder state: {exc}") from exc

    def _load(self, records: Iterable[tuple[str, Mapping[str, Any] | None]]) -> None:
        for key, v in records:
            if v is None:
                continue
            try:
                if key == "$kill":
                    self._kill, self._kill_ts = bool(v["on"]), _check_ts(v["ts"], "ts")
                elif key == "$clock":
                    self._now = _check_ts(v["now"], "now")
                elif key.startswith("$spend:"):
                    led = _Spend()
                    led.total = int(v["total"])
                    led.days = {int(d): int(m) for d, m in v["days"].items()}
                    last = v["last"]
                    led.last = None if last is None else [str(s) for s in last]
                    self._ledger[key[len("$spend:"):]] = led
                elif key.startswith("r:"):
                    rec = _Req.from_json(key[2:], v)
                    self._req[rec.rid] = rec
                    self._index_user(rec)
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"record {key!r}: {exc!r}") from exc
        for rid, rec in self._req.items():
            for eid in rec.ev.values():
                self._events[eid] = rid
            if rec.open:
                if rec.cid is None:
                    raise ValueError(f"record 'r:{rid}': open without a campaign")
                self._hold(rec.cid, rec.ts // DAY_MS, rec.bid - rec.paid)
                self._open_q.append((rec.end, rid))
                self._n_open += 1
            else:
                self._closed_q.append((rec.end + self.retention_ms, rid))
        heapq.heapify(self._open_q)
        heapq.heapify(self._closed_q)
