"""Ad campaigns: their definition (bid cap, budgets, goal, targeting), validated and loaded
from JSON, and their limits in micros as the auction and the ledger read them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from models.ads.units import micros_floor
from models.checks import check_id, check_ids, check_number

# Sanity caps: anything beyond is refused with ValueError (the caller dead-letters it).
MAX_ID_LENGTH: Final = 256
MAX_MONEY: Final = 1e6  # a bid, floor, value per click or conversion, cost
MAX_BUDGET: Final = 1e9
MAX_TARGETS: Final = 256

GOALS: Final = ("click", "conversion")


class CampaignError(ValueError):
    """A campaign definition is invalid; the message names the campaign and the field.

    >>> try:
    ...     Campaign("c1", max_bid=-1)
    ... except CampaignError as exc:
    ...     print(exc)
    campaign 'c1': max_bid must be a number in (0, 1e+06], got -1
    """


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
            check_id("campaign_id", cid, MAX_ID_LENGTH)
        except ValueError as exc:
            raise CampaignError(str(exc)) from None
        try:
            self._check_fields()
        except ValueError as exc:
            raise CampaignError(f"campaign {cid!r}: {exc}") from None

    def _check_fields(self) -> None:
        s = object.__setattr__  # frozen: the checked values replace the given ones once
        s(self, "max_bid", check_number("max_bid", self.max_bid, 0.0, MAX_MONEY, low_open=True))
        for name in ("daily_budget", "total_budget"):
            v = getattr(self, name)
            if v is not None:
                s(self, name, check_number(name, v, 0.0, MAX_BUDGET))
        if self.goal not in GOALS:
            raise ValueError(f"goal must be one of {', '.join(GOALS)}, got {self.goal!r}")
        for name in ("target_segments", "target_categories"):
            s(self, name, check_ids(name, getattr(self, name), MAX_TARGETS, MAX_ID_LENGTH))
        if not isinstance(self.active, bool):
            raise ValueError(f"active must be true or false, got {self.active!r}")


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


class CampaignLimits:
    """A campaign with its limits precomputed in micros and its targeting as sets, as the
    auction (every candidate of every request) and the ledger read it.

    >>> k = CampaignLimits(Campaign("c1", max_bid=0.5, daily_budget=10))
    >>> k.max_m, k.daily_m, k.total_m, k.targeted
    (500000, 10000000, None, False)
    """

    __slots__ = ("campaign", "campaign_id", "active", "max_m", "max_bid", "daily_m",
                 "total_m", "segments", "categories", "targeted", "conversion")

    def __init__(self, c: Campaign) -> None:
        self.campaign = c
        self.campaign_id = c.campaign_id
        self.active = c.active
        self.max_bid = c.max_bid
        # Floors: a bid or budget in micros never exceeds what was configured.
        self.max_m = micros_floor(c.max_bid)
        self.daily_m = None if c.daily_budget is None else micros_floor(c.daily_budget)
        self.total_m = None if c.total_budget is None else micros_floor(c.total_budget)
        self.segments = frozenset(c.target_segments)
        self.categories = frozenset(c.target_categories)
        self.targeted = bool(self.segments or self.categories)
        self.conversion = c.goal == "conversion"
