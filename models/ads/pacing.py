"""Pacing: how far ahead of its daily budget's linear spend line a campaign is, as the
share of requests it still takes part in (docs/ads.md, "Budgets, windows and pacing").

Pacing throttles, it does not shade bids: a campaign whose charged spend today is ahead
of ``daily budget x fraction of the UTC day elapsed`` by at most ``slack / 2`` of its
daily budget bids on every request; beyond that its participation falls linearly to 0 at
``slack`` ahead. Under light demand spend stays behind the line and nothing is paced.
"""

from __future__ import annotations

from models.ads.units import DAY_MS
from models.recommenders.bandit import uniform_from_key


def rate(spent_today_m: int, daily_m: int, ts_ms: int, slack: float) -> float:
    """The share of requests a campaign takes part in at ``ts_ms``, having spent
    ``spent_today_m`` micros of its ``daily_m`` on that UTC day.

    >>> rate(0, 10_000_000, 43_200_000, 0.02)  # nothing spent at noon
    1.0
    >>> rate(5_150_000, 10_000_000, 43_200_000, 0.02)  # 1.5% of the budget ahead
    0.5
    >>> rate(5_200_000, 10_000_000, 43_200_000, 0.02)
    0.0
    """
    day = ts_ms // DAY_MS
    ahead = spent_today_m - daily_m * ((ts_ms - day * DAY_MS) / DAY_MS)
    room = slack * daily_m
    if ahead <= room / 2:
        return 1.0
    if ahead >= room:
        return 0.0
    return (room - ahead) / (room / 2)


def takes_part(share: float, request_id: str, campaign_id: str) -> bool:
    """Whether the campaign bids on this request at participation ``share``.

    The draw is ``uniform_from_key(request_id)``: no state, deterministic, so a replayed
    request draws the same.

    >>> takes_part(1.0, "r1", "c1"), takes_part(0.0, "r1", "c1")
    (True, False)
    """
    return share >= 1.0 or (
        share > 0.0 and uniform_from_key(request_id, salt=campaign_id) < share
    )
