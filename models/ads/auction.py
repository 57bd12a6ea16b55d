"""The auction for one ad request: which candidates may bid (campaign, targeting, budget,
pacing), what each bids (pCTR x value, capped), and which bid wins over the floor."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import Any, Final, NamedTuple, Protocol

from models.ads import pacing
from models.ads.campaigns import CampaignLimits
from models.ads.pctr import RequestFeatures
from models.ads.requests import AdCandidate, AdRequest
from models.ads.units import DAY_MS, HOUR_MS, micros_ceil, micros_floor

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
CANDIDATE_REASONS: Final = NO_BID_REASONS[4:]
_RANK: Final = {r: i for i, r in enumerate(CANDIDATE_REASONS)}
_BELOW_FLOOR: Final = _RANK["below_floor"]

# What the auction asks of the bidder's state: the micros a campaign has left on a UTC day
# (None: no budget), and the micros it has spent that day (pacing reads them).
Remaining = Callable[[CampaignLimits, int], tuple[int | None, int]]


class ProbabilityModel(Protocol):
    """What the bidder needs of a click (or conversion) model: ``PctrModel`` fits. A
    model that also has ``predict_ads(features, ads)`` (``PctrModel.predict_ads``: the
    same predictions) is given the candidates in that form."""

    def predict_many(self, xs: Sequence[Sequence[int]]) -> list[float]: ...

    def learn_one(self, x: Sequence[int], y: bool | int, weight: float = 1.0) -> None: ...


# A candidate that may bid, with its campaign and the micros its budgets leave (a plain
# tuple: it is made for every candidate of every request).
Entrant = tuple[AdCandidate, CampaignLimits, int | None]


class Win(NamedTuple):
    """The winning bid: the ad, its bid in micros, the features and predictions behind it."""

    candidate: AdCandidate
    bid_m: int
    features: list[int]
    p: float
    q: float | None


class _User:
    """The user side of targeting; the interests are read only if a campaign asks."""

    __slots__ = ("view", "opted_out", "segment", "_interests")

    def __init__(self, view: Mapping[str, Any]) -> None:
        self.view = view
        self.opted_out = bool(view.get("np"))
        seg = view.get("s")
        self.segment = seg if isinstance(seg, str) else ""
        self._interests: frozenset[str] | None = None

    def matches(self, k: CampaignLimits) -> bool:
        """Whether targeted campaign ``k`` may show this user an ad."""
        if self.opted_out or (k.segments and self.segment not in k.segments):
            return False
        if not k.categories:
            return True
        if self._interests is None:
            self._interests = interests(self.view)
        return not k.categories.isdisjoint(self._interests)


def interests(view: Mapping[str, Any]) -> frozenset[str]:
    """The categories of a ``user_view``'s interests (malformed entries are skipped).

    >>> sorted(interests({"i": [["Comedy", 0.7], ["Drama", 0.3], "junk"]}))
    ['Comedy', 'Drama']
    """
    raw = view.get("i")
    if not isinstance(raw, (list, tuple)):
        return frozenset()
    return frozenset(
        pair[0] for pair in raw
        if isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)
    )


def probability(p: object) -> float:
    """A model's output as a usable probability: anything not in [0, 1] (NaN too) is 0.

    >>> probability(0.25), probability(float("nan")), probability(1.5)
    (0.25, 0.0, 0.0)
    """
    if type(p) is float:  # what the models give: the ABC check below is slow
        return p if 0.0 <= p <= 1.0 else 0.0
    f = float(p) if isinstance(p, Real) else math.nan
    return f if 0.0 <= f <= 1.0 else 0.0


def screen(
    req: AdRequest,
    camps: Mapping[str, CampaignLimits],
    remaining: Remaining,
    pacing_slack: float | None,
) -> tuple[list[Entrant], int]:
    """The candidates that may bid, and the rank (in ``CANDIDATE_REASONS``) of the
    furthest any other got (-1: none refused). ``pacing_slack`` None: pacing is off."""
    ts = req.ts_ms
    day = ts // DAY_MS
    user: _User | None = None  # made when a targeted campaign asks
    rank = -1
    entrants: list[Entrant] = []
    for cand in req.candidates:
        k = camps.get(cand.campaign_id)
        left: int | None = None
        if k is None:
            why: str | None = "unknown_campaign"
        elif not k.active:
            why = "inactive"
        elif k.targeted and not (user or (user := _User(req.view))).matches(k):
            why = "not_targeted"
        else:
            left, spent = remaining(k, day)
            why = None
            if left is not None and left <= 0:
                why = "budget_exhausted"
            elif pacing_slack is not None and k.daily_m is not None:
                # A campaign's candidates share the request's draw: it is keyed by the
                # request and campaign ids.
                share = pacing.rate(spent, k.daily_m, ts, pacing_slack)
                if share < 1.0 and not pacing.takes_part(share, req.request_id, k.campaign_id):
                    why = "paced"
        if why is not None:
            rank = max(rank, _RANK[why])
        else:
            assert k is not None
            entrants.append((cand, k, left))
    return entrants, rank


def predict(
    entrants: Sequence[Entrant], req: AdRequest, pctr: ProbabilityModel, pcvr: ProbabilityModel
) -> tuple[RequestFeatures, list[float], dict[int, float]]:
    """The request's features (``RequestFeatures``), the pCTR of each entrant and the
    pCVR (by entrant index) of those of conversion campaigns that give a value per
    conversion. One batch call per model."""
    hour = (req.ts_ms // HOUR_MS) % 24
    rf = RequestFeatures(req.view, req.slot, hour, req.context)
    ads: list[tuple[str, str, tuple[str, ...]]] = []
    conv: list[int] = []
    for i, (c, k, _) in enumerate(entrants):
        ads.append((c.ad_id, c.campaign_id, c.categories))
        if k.conversion and c.value_per_conversion is not None:
            conv.append(i)
    ps = list(_predict(pctr, rf, ads))
    for i, p in enumerate(ps):
        if type(p) is not float or not 0.0 <= p <= 1.0:  # probability's fast path
            ps[i] = probability(p)
    qs: dict[int, float] = {}
    if conv:
        qv = _predict(pcvr, rf, [ads[i] for i in conv])
        qs = {i: probability(q) for i, q in zip(conv, qv, strict=True)}
    return rf, ps, qs


def _predict(
    model: ProbabilityModel, rf: RequestFeatures, ads: list[tuple[str, str, tuple[str, ...]]]
) -> list[float]:
    predict_ads = getattr(model, "predict_ads", None)
    if predict_ads is not None:
        out: list[float] = predict_ads(rf, ads)
        return out
    return model.predict_many([rf.features(*ad) for ad in ads])


def pick(
    entrants: Sequence[Entrant], ps: Sequence[float], qs: Mapping[int, float], floor_m: int,
    rank: int,
) -> tuple[tuple[int, int] | None, int]:
    """The highest bid over the floor as (bid micros, entrant index), None if there is
    none; and the refusal rank updated with the entrants that fell short."""
    best: tuple[int, int] | None = None
    best_m = 0
    for i, (c, k, left) in enumerate(entrants):
        q = qs.get(i) if qs else None
        # The expected value, capped at max_bid.
        if q is not None:
            assert c.value_per_conversion is not None
            value = ps[i] * q * c.value_per_conversion
        else:
            value = ps[i] * c.value_per_click
        bid_m = micros_floor(min(value, k.max_bid))
        if bid_m > k.max_m:
            bid_m = k.max_m
        if bid_m <= 0 or bid_m < floor_m:
            rank = max(rank, _BELOW_FLOOR)
            continue
        if left is not None and left < bid_m:
            # A budget that cannot cover the whole bid bids what it has left, if that
            # still meets the floor.
            if left < floor_m:
                rank = max(rank, _RANK["budget_exhausted"])
                continue
            bid_m = left
        if best is None or bid_m > best_m:
            best, best_m = (bid_m, i), bid_m
    return best, rank


def run(
    req: AdRequest,
    camps: Mapping[str, CampaignLimits],
    remaining: Remaining,
    pacing_slack: float | None,
    pctr: ProbabilityModel,
    pcvr: ProbabilityModel,
) -> Win | str:
    """The winning bid for ``req`` (which has candidates), or the no-bid reason;
    ``pacing_slack`` None: pacing is off."""
    entrants, rank = screen(req, camps, remaining, pacing_slack)
    if entrants:
        rf, ps, qs = predict(entrants, req, pctr, pcvr)
        best, rank = pick(entrants, ps, qs, micros_ceil(req.floor_price), rank)
        if best is not None:
            bid_m, i = best
            c = entrants[i][0]
            x = rf.features(c.ad_id, c.campaign_id, c.categories)
            return Win(c, bid_m, x, ps[i], qs.get(i))
    return CANDIDATE_REASONS[rank] if rank >= 0 else "unknown_campaign"
