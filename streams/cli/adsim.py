"""A seeded ad exchange for the demo and the tests: ad requests for known users, and the
impressions, clicks and conversions that answer the worker's bids. No Kafka here.

Every draw comes from ``random.Random`` seeded with the exchange's seed (requests) or with
the seed and a request id (auction and user response), so two runs give the same events,
whatever order the bids come back in.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from streams.settings import PROJECT_ROOT

CAMPAIGNS_FILE = PROJECT_ROOT / "ops" / "campaigns.demo.json"

# Ad slots and how much dearer than the median the competition bids for each.
SLOT_PRICE: dict[str, float] = {"top": 1.4, "feed": 1.0, "sidebar": 0.6}
DEVICES = ("mobile", "desktop", "tablet")

# Every event lands within this many ms of its request (impression <= 0.3 s, click 1-8 s
# after it, conversion 1-5 s after the click): an attribution window of 30 s or more
# sees them all, even with a few seconds of processing delay on top.
MAX_EVENT_DELAY_MS = 13_300


def demo_campaigns() -> dict[str, Any]:
    """The demo's campaigns and their ads, as in ``ops/campaigns.demo.json``.

    ``campaigns`` is what ``PERSONA_CAMPAIGNS_FILE`` gives the worker; ``ads`` is what the
    exchange offers as candidates (the worker learns of ads only from requests).
    """
    obj: dict[str, Any] = orjson.loads(CAMPAIGNS_FILE.read_bytes())
    return obj


def user_genre_counts(
    pairs: Iterable[tuple[str, str]], item_genres: Mapping[str, Sequence[str]]
) -> dict[str, Counter[tuple[str, ...]]]:
    """``(user_id, item_id)`` events to, per user, event counts by the item's genres (a
    sorted tuple: the combination, so an event counts once however many genres it has).

    >>> user_genre_counts([("u", "1"), ("u", "2")], {"1": ["Drama", "Comedy"], "2": []})
    {'u': Counter({('Comedy', 'Drama'): 1, (): 1})}
    """
    out: dict[str, Counter[tuple[str, ...]]] = {}
    for user, item in pairs:
        out.setdefault(user, Counter())[tuple(sorted(item_genres.get(item, ())))] += 1
    return out


def affinity(
    user_genre_counts: Mapping[tuple[str, ...], float] | Mapping[str, float],
    ad_categories: Iterable[str],
) -> float:
    """The user's share of events on items in any of the ad's categories, in [0, 1].

    Keys are genre combinations as ``user_genre_counts`` makes them (a plain genre name
    counts as a combination of one). 0.0 for a user without history or an ad without
    categories.

    >>> affinity({("Comedy",): 3, ("Action", "Drama"): 1}, ["Drama", "Action"])
    0.25
    >>> affinity({("Comedy",): 3}, [])
    0.0
    """
    cats = set(ad_categories)
    total = hit = 0.0
    for genres, n in user_genre_counts.items():
        if not n > 0:
            continue
        total += n
        if cats.intersection((genres,) if isinstance(genres, str) else genres):
            hit += n
    return hit / total if total else 0.0


class AdExchange:
    """Requests for a set of users, and second-price auctions against simulated rivals.

    The bid wins when it reaches the clearing price: the highest rival bid (lognormal
    around ``median_price``, dearer for better slots) or the floor, whichever is higher;
    the winner pays the clearing price, never more than its bid. A shown ad is clicked
    with probability ``base_ctr + ctr_lift * affinity``, a click converts with
    ``base_cvr + cvr_lift * affinity``. A share ``duplicate_rate`` of impressions is
    delivered twice (the same message again), as an at-least-once pipeline does.

    >>> ex = AdExchange(7, demo_campaigns())
    >>> req = ex.requests(["ml-1"], 1, start_ms=0, spacing_ms=1000)[0]
    >>> ad = req["candidates"][0]
    >>> ex.respond(req, {"request_id": req["request_id"], "no_bid_reason": "paced"}, 0.5)
    []
    >>> events = ex.respond(req, {"request_id": req["request_id"], "ad_id": ad["ad_id"],
    ...                           "campaign_id": ad["campaign_id"], "bid": 5.0}, 0.5)
    >>> events[0]["type"], events[0]["cost"] == ex.clearing_price(req) <= 5.0
    ('impression', True)
    """

    def __init__(
        self,
        seed: int,
        campaigns_json: Mapping[str, Any],
        *,
        median_price: float = 0.25,
        price_sigma: float = 0.6,
        floor_range: tuple[float, float] = (0.05, 0.15),
        candidates_range: tuple[int, int] = (3, 6),
        base_ctr: float = 0.02,
        ctr_lift: float = 0.25,
        base_cvr: float = 0.10,
        cvr_lift: float = 0.40,
        duplicate_rate: float = 0.05,
    ) -> None:
        campaigns = {c["campaign_id"] for c in campaigns_json.get("campaigns", ())}
        ads: list[dict[str, Any]] = []
        for ad in campaigns_json.get("ads", ()):
            if ad["campaign_id"] not in campaigns:
                raise ValueError(f"ad {ad['ad_id']!r} names unknown campaign "
                                 f"{ad['campaign_id']!r}")
            cand: dict[str, Any] = {
                "ad_id": str(ad["ad_id"]),
                "campaign_id": str(ad["campaign_id"]),
                "value_per_click": float(ad["value_per_click"]),
                "categories": [str(c) for c in ad.get("categories", ())],
            }
            if ad.get("value_per_conversion") is not None:
                cand["value_per_conversion"] = float(ad["value_per_conversion"])
            ads.append(cand)
        lo, hi = candidates_range
        if not ads or not 1 <= lo <= hi:
            raise ValueError("the exchange needs ads and 1 <= candidates_range[0] <= [1]")
        self.seed = seed
        self.ads: tuple[dict[str, Any], ...] = tuple(ads)
        self.median_price = median_price
        self.price_sigma = price_sigma
        self.floor_range = floor_range
        self.candidates_range = (lo, min(hi, len(ads)))
        self.base_ctr, self.ctr_lift = base_ctr, ctr_lift
        self.base_cvr, self.cvr_lift = base_cvr, cvr_lift
        self.duplicate_rate = duplicate_rate
        self._rng = random.Random(seed)
        self._issued = 0

    def _draws(self, request_id: str, purpose: str) -> random.Random:
        # str seeds hash with SHA-512 (not hash()), so these are stable across processes.
        return random.Random(f"{self.seed}/{request_id}/{purpose}")

    def requests(
        self, users: Sequence[str], n: int, start_ms: int, spacing_ms: int
    ) -> list[dict[str, Any]]:
        """``n`` ad-requests payloads (docs/contract.md) for users drawn from ``users``, the i-th
        at ``start_ms + i * spacing_ms``. Request ids continue across calls."""
        if n and not users:
            raise ValueError("requests need at least one user")
        out = []
        lo, hi = self.candidates_range
        for i in range(n):
            rng = self._rng
            slot = rng.choice(tuple(SLOT_PRICE))
            picked = rng.sample(range(len(self.ads)), rng.randint(lo, hi))
            out.append({
                "request_id": f"adreq-{self.seed}-{self._issued:06d}",
                "user_id": users[rng.randrange(len(users))],
                "ts": int(start_ms + i * spacing_ms),
                "slot": slot,
                "floor_price": round(rng.uniform(*self.floor_range), 4),
                "candidates": [dict(self.ads[j], categories=list(self.ads[j]["categories"]))
                               for j in sorted(picked)],
                "context": {"device": rng.choice(DEVICES)},
            })
            self._issued += 1
        return out

    def clearing_price(self, request: Mapping[str, Any]) -> float:
        """What the winner pays: the best rival bid or the floor, whichever is higher."""
        rng = self._draws(str(request["request_id"]), "price")
        rival = (self.median_price * SLOT_PRICE.get(str(request.get("slot")), 1.0)
                 * math.exp(self.price_sigma * rng.gauss(0.0, 1.0)))
        return round(max(float(request.get("floor_price") or 0.0), rival), 6)

    def click_probability(self, affinity: float) -> float:
        return min(1.0, self.base_ctr + self.ctr_lift * max(0.0, min(1.0, affinity)))

    def respond(
        self, request: Mapping[str, Any], bid: Mapping[str, Any], affinity: float
    ) -> list[dict[str, Any]]:
        """The ad-events payloads that follow the worker's ``ad-bids`` record: none for a
        no-bid or a lost auction; else an impression (maybe delivered twice), maybe a
        click, maybe a conversion. ``affinity`` is the user's, for the bid ad's categories.
        """
        if bid.get("no_bid_reason") is not None or bid.get("bid") is None:
            return []
        if bid.get("request_id", request["request_id"]) != request["request_id"]:
            raise ValueError("the bid answers another request")
        ad = next((c for c in request["candidates"] if c["ad_id"] == bid.get("ad_id")), None)
        if ad is None:
            raise ValueError(f"bid for ad {bid.get('ad_id')!r}, which the request did not offer")
        amount = float(bid["bid"])
        price = self.clearing_price(request)
        if not amount >= price:  # also refuses a NaN bid
            return []
        rid, ad_id = str(request["request_id"]), str(ad["ad_id"])
        rng = self._draws(rid, "outcome")
        ts = int(request["ts"]) + rng.randint(20, 300)
        impression = {"event_id": f"{rid}:impression", "request_id": rid, "ad_id": ad_id,
                      "type": "impression", "ts": ts, "cost": min(price, amount)}
        events = [impression]
        if rng.random() < self.duplicate_rate:
            events.append(dict(impression))
        if rng.random() < self.click_probability(affinity):
            ts += rng.randint(1_000, 8_000)
            events.append({"event_id": f"{rid}:click", "request_id": rid, "ad_id": ad_id,
                           "type": "click", "ts": ts})
            cvr = self.base_cvr + self.cvr_lift * max(0.0, min(1.0, affinity))
            if rng.random() < cvr:
                ts += rng.randint(1_000, 5_000)
                # A click is worth value_per_click on average: at a conversion rate
                # around 0.2 that makes a conversion worth about 5 clicks.
                value = ad.get("value_per_conversion") or 5.0 * float(ad["value_per_click"])
                events.append({"event_id": f"{rid}:conversion", "request_id": rid,
                               "ad_id": ad_id, "type": "conversion", "ts": ts,
                               "revenue": round(float(value) * rng.uniform(0.8, 1.2), 2)})
        return events
