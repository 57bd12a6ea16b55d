"""The demo's MovieLens 100K replay through ``ingest_one`` with the worker's default rate
limit, its two topics consumed in the orders two ingest agents can take: nothing is
counted ``rate_limited``. A real burst of one user still is.

(tests/unit/test_ratelimit.py runs more interleavings against the limiter alone.)
"""

from __future__ import annotations

import time

import orjson
import pytest

from models.users.ratelimit import UserRateLimiter
from streams.agents.ingest import ingest_one
from streams.cli.replay import Outgoing, movielens_events
from streams.runtime import current
from streams.settings import Settings

rt = current()
T = rt.settings.topics


def _limited() -> float:
    return sum(rt.metrics.registry.get_sample_value(
        "persona_events_total", {"topic": topic, "outcome": "rate_limited"}) or 0.0
        for topic in ("clicks", "purchases"))


def _ingest(messages: list[Outgoing]) -> float:
    """rate_limited counted while ingesting ``messages`` with a fresh default limiter."""
    d = Settings()
    rt.limiter = UserRateLimiter(d.user_rate_per_s, d.user_burst, d.rate_limit_users)
    before = _limited()
    for m in messages:
        destination, _, _ = ingest_one(m.topic, m.value, None, key=m.key, rt=rt)
        assert destination == "events"
    return _limited() - before


def _alternating(a: list[Outgoing], b: list[Outgoing]) -> list[Outgoing]:
    out = []
    for i in range(max(len(a), len(b))):
        out += a[i:i + 1] + b[i:i + 1]
    return out


@pytest.fixture
def own_limiter(monkeypatch):
    monkeypatch.setattr(rt, "limiter", rt.limiter)  # restored after the test


def test_a_movielens_replay_is_never_rate_limited_whichever_topic_is_read_first(
        own_limiter) -> None:
    events = movielens_events(T)
    clicks = [m for m in events if m.topic == T.clicks]
    purchases = [m for m in events if m.topic == T.purchases]
    assert len(clicks) + len(purchases) == 100_000
    counted = {
        "clicks first": _ingest(clicks + purchases),
        "purchases first": _ingest(purchases + clicks),
        "alternating": _ingest(_alternating(clicks, purchases)),
    }
    assert counted == {"clicks first": 0, "purchases first": 0, "alternating": 0}


def test_a_burst_of_500_events_of_one_user_in_one_second_is_rate_limited(own_limiter) -> None:
    start = (int(time.time() * 1000) // 10_000 - 2) * 10_000  # on a 10 s window's edge
    burst = [Outgoing(T.clicks if i % 2 else T.purchases, b"burst-user", orjson.dumps(
        {"event_id": f"b{i}", "user_id": "burst-user", "item_id": f"i{i % 7}",
         "ts": start + i * 2, "price": 5.0, "quantity": 1})) for i in range(500)]
    assert _ingest(burst) == 400
    assert _ingest(burst[::-1]) == 400
