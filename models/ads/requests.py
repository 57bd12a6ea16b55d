"""What crosses the bidder's interface: ad requests and their candidate ads (validated on
construction), decisions, what an ad event did, and the labels learned from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from models.ads.campaigns import MAX_ID_LENGTH, MAX_MONEY
from models.ads.units import MAX_TS_MS
from models.checks import check_id, check_ids, check_number, check_ts

MAX_CANDIDATES: Final = 100
MAX_CATEGORIES: Final = 32

EVENT_TYPES: Final = ("impression", "click", "conversion")
EVENT_OUTCOMES: Final = ("applied", "duplicate", "late", "unknown_request", "wrong_ad")


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
        s = object.__setattr__  # frozen: the checked values replace the given ones once
        check_id("ad_id", self.ad_id, MAX_ID_LENGTH)
        check_id("campaign_id", self.campaign_id, MAX_ID_LENGTH)
        s(self, "value_per_click",
          check_number("value_per_click", self.value_per_click, 0, MAX_MONEY))
        s(self, "categories",
          check_ids("categories", self.categories, MAX_CATEGORIES, MAX_ID_LENGTH))
        if self.value_per_conversion is not None:
            s(self, "value_per_conversion",
              check_number("value_per_conversion", self.value_per_conversion, 0, MAX_MONEY))


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
        s = object.__setattr__  # frozen: the checked values replace the given ones once
        check_id("request_id", self.request_id, MAX_ID_LENGTH)
        check_id("user", self.user, MAX_ID_LENGTH)
        s(self, "ts_ms", check_ts("ts_ms", self.ts_ms, MAX_TS_MS))
        if not isinstance(self.slot, str) or len(self.slot) > MAX_ID_LENGTH:
            raise ValueError(f"slot must be a string of at most {MAX_ID_LENGTH}, got {self.slot!r}")
        s(self, "floor_price", check_number("floor_price", self.floor_price, 0, MAX_MONEY))
        s(self, "candidates", _check_candidates(self.candidates))
        if self.context is not None and not isinstance(self.context, Mapping):
            raise ValueError(f"context must be an object or None, got {self.context!r}")
        if not isinstance(self.view, Mapping):
            raise ValueError(f"view must be an object (user_view), got {self.view!r}")


def _check_candidates(candidates: object) -> tuple[AdCandidate, ...]:
    if not isinstance(candidates, (list, tuple)):
        raise ValueError(f"candidates must be a list of AdCandidate, got {candidates!r}")
    if len(candidates) > MAX_CANDIDATES:
        raise ValueError(f"{len(candidates)} candidates, the cap is {MAX_CANDIDATES}")
    for c in candidates:
        if not isinstance(c, AdCandidate):
            raise ValueError(f"candidates must be AdCandidate, got {c!r}")
    return tuple(candidates)


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
