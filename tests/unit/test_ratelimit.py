"""The per-user rate limit: a count per event-time window, so how many events it limits
does not depend on the order in which the clicks and purchases topics are consumed.

The demo publishes MovieLens 100K on two topics (ratings >= 4 as purchases, the rest as
clicks); two ingest consumers read them at their own pace and share one limiter. Any
interleaving of the two (each topic in its own order) must limit nothing, while a real
burst of one user is still limited.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.users.ratelimit import UserRateLimiter
from streams.cli.replay import movielens_events
from streams.settings import Settings, Topics

NOW_MS = 1_700_000_000_000  # a multiple of 10 s: aligned with the default window
Event = tuple[str, int]  # (user, ts_ms)


def demo_split(topics: Topics) -> tuple[list[Event], list[Event]]:
    """The demo's MovieLens 100K replay as its two topics, each in publish order."""
    by_topic: dict[str, list[Event]] = {topics.clicks: [], topics.purchases: []}
    for out in movielens_events(topics):
        assert out.value is not None
        ev = orjson.loads(out.value)
        by_topic[out.topic].append((ev["user_id"], ev["ts"]))
    return by_topic[topics.clicks], by_topic[topics.purchases]


def ahead(lead: list[Event], behind: list[Event], by: int) -> list[Event]:
    """The two topics merged as two consumers would read them with ``lead`` ``by`` events
    ahead of ``behind`` in the replay's publish order."""
    keyed = [(i - by, 0, ev) for i, ev in enumerate(lead)]
    keyed += [(i, 1, ev) for i, ev in enumerate(behind)]
    return [ev for *_, ev in sorted(keyed, key=lambda k: (k[0], k[1]))]


def alternating(a: list[Event], b: list[Event]) -> Iterator[Event]:
    """One event of each topic in turn, the rest of the longer one at the end."""
    for i in range(max(len(a), len(b))):
        if i < len(a):
            yield a[i]
        if i < len(b):
            yield b[i]


def limited(rl: UserRateLimiter, events: Iterable[Event]) -> int:
    return sum(not rl.allow(user, ts) for user, ts in events)


def default_limiter() -> UserRateLimiter:
    s = Settings()
    return UserRateLimiter(s.user_rate_per_s, s.user_burst, s.rate_limit_users)


@pytest.fixture(scope="module")
def split() -> tuple[list[Event], list[Event]]:
    clicks, purchases = demo_split(Settings().topics)
    assert (len(clicks), len(purchases)) == (44_625, 55_375)
    return clicks, purchases


def orders(clicks: list[Event], purchases: list[Event]) -> dict[str, list[Event]]:
    """Every interleaving of the two topics the test forces."""
    publish = [ev for _, ev in sorted(
        [(i, ev) for i, ev in enumerate(clicks)] + [(i, ev) for i, ev in enumerate(purchases)],
        key=lambda k: k[1][1])]
    return {
        "clicks first": clicks + purchases,
        "purchases first": purchases + clicks,
        "alternating": list(alternating(clicks, purchases)),
        "purchases first, then alternating": list(alternating(purchases, clicks)),
        # the consumers' skews the issue measured: one topic 500 to 20,000 events ahead
        **{f"{name} {by:,} ahead": ahead(lead, behind, by)
           for by in (500, 5_000, 20_000)
           for name, lead, behind in (("clicks", clicks, purchases),
                                      ("purchases", purchases, clicks))},
        "publish order (by ts)": publish,
    }


def test_a_movielens_replay_is_never_limited_whatever_order_the_topics_are_read_in(
        split: tuple[list[Event], list[Event]]) -> None:
    clicks, purchases = split
    counts = {name: limited(default_limiter(), events)
              for name, events in orders(clicks, purchases).items()}
    assert all(len(events) == 100_000 for events in orders(clicks, purchases).values())
    assert counts == dict.fromkeys(counts, 0)


def test_a_real_burst_is_still_limited() -> None:
    """500 events of one user in one second: 100 allowed in a window, however they
    arrive; straddling a window edge, two windows' worth at most."""
    one_second = [("bot", NOW_MS + i * 2) for i in range(500)]
    for events in (one_second, one_second[::-1], one_second[1::2] + one_second[::2]):
        rl = default_limiter()
        assert limited(rl, events) == 400
        assert limited(rl, [("bot", NOW_MS + 999)]) == 1  # the window stays full
        assert limited(rl, [("human", NOW_MS)]) == 0  # per user
    straddling = [("bot", NOW_MS - 500 + i * 2) for i in range(500)]
    assert limited(default_limiter(), straddling) == 300
    # and a steady bot at 100 events/s is held to the long-run rate, 10/s
    steady = [("bot", NOW_MS + i * 10) for i in range(60_000)]  # 10 minutes
    assert limited(default_limiter(), steady) == 60_000 - 6_000


def test_the_window_is_burst_over_rate_seconds_of_event_time() -> None:
    rl = UserRateLimiter(rate_per_s=1, burst=2)  # 2 events per 2 s window
    assert [rl.allow("u", ts) for ts in (0, 1, 1_999, 2_000, 3_999, 3_000, 0)] == [
        True, True, False, True, True, False, False]
    # an event older than the user's newest counts in its own window, not against the new
    rl = UserRateLimiter(rate_per_s=10, burst=2)
    assert rl.allow("u", 10_000) and rl.allow("u", 10_000) and not rl.allow("u", 10_100)
    assert rl.allow("u", 0) and rl.allow("u", 5_000)


def test_a_dropped_window_restarts_at_zero_so_the_bound_errs_lenient() -> None:
    rl = UserRateLimiter(rate_per_s=10, burst=2, max_windows=3)  # 200 ms windows
    assert limited(rl, [("u", 0)] * 3) == 1
    assert limited(rl, [("u", 200), ("u", 400), ("u", 600)]) == 0
    assert rl.windows_dropped == 1  # window 0, the least recently used
    assert limited(rl, [("u", 0)] * 3) == 1  # restarts at 0: 2 allowed again, not 0
    assert rl.windows_dropped == 2  # window 200 made room
    # the windows used last stay: two consumers far apart in event time each keep theirs
    assert limited(rl, [("u", 600), ("u", 0), ("u", 600)]) == 2


def test_users_dropped_from_the_lru_are_counted() -> None:
    rl = UserRateLimiter(rate_per_s=10, burst=100, max_users=3)
    for i in range(10):
        rl.allow(f"u{i}", NOW_MS)
    assert len(rl) == 3 and rl.evictions == 7
    rl.forget("u9")
    assert len(rl) == 2


def expected_limited(events: list[Event], rate: float, burst: int) -> int:
    window_ms = round(burst * 1000 / rate)
    per_window = Counter((user, ts // window_ms) for user, ts in events)
    return sum(max(0, n - burst) for n in per_window.values())


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),
                              st.integers(NOW_MS, NOW_MS + 5_999)), max_size=300),
    burst=st.integers(1, 12),
    data=st.data(),
)
def test_any_permutation_limits_the_same_number(events: list[Event], burst: int,
                                                 data: st.DataObject) -> None:
    """No window is dropped here (the events span at most 3 windows of 2 s per user):
    the number limited is the events over ``burst`` in each (user, window), in any order."""
    rate = burst / 2  # a 2 s window
    shuffled = data.draw(st.permutations(events))
    want = expected_limited(events, rate, burst)
    assert limited(UserRateLimiter(rate, burst), sorted(events, key=lambda e: e[1])) == want
    assert limited(UserRateLimiter(rate, burst), shuffled) == want
