"""Bounded per-user state counts what it drops, and the worker exports the counts as
``persona_state_evictions_total{state}`` when Prometheus scrapes."""

from __future__ import annotations

import tempfile

import pytest

from models.engine import Engine, EngineConfig
from models.recommenders.base import Context
from models.recommenders.hybrid import Hybrid
from models.recommenders.popularity import Popularity
from models.users.ratelimit import UserRateLimiter
from streams.gauges import refresh_gauges
from streams.metrics import EVICTED_STATES
from streams.runtime import Runtime
from streams.settings import Settings


def _click(engine: Engine, user: str, item: str, n: int, state: tuple,
           serve: bool = False) -> tuple:
    r = engine.process("click", user, item, 1_000 * n, event_id=f"{user}-{n}",
                       fingerprint="f", profile=state[0], dedupe=state[1], serve=serve)
    assert r.outcome == "accepted"
    return r.profile, r.dedupe


def test_the_hybrid_counts_pending_lists_it_drops() -> None:
    h = Hybrid({"popularity": Popularity(half_life=None)}, max_pending=2)
    h.learn_one("a", [])
    for user in ("u1", "u2", "u1"):  # u1 again refreshes its place: nothing dropped
        h.rank([], (), 5, Context(user=user))
    assert h.evictions == 0
    h.rank([], (), 5, Context(user="u3"))
    h.rank([], (), 5, Context(user="u4"))
    assert h.evictions == 2 and len(h._pending) == 2


def test_a_snapshot_leaves_the_count_out_and_a_restore_keeps_counting() -> None:
    e = Engine(EngineConfig(top_k=2, exploration=0.0))
    e.hybrid.max_pending = 1
    state: tuple = (None, None)
    for n, item in enumerate("abc"):  # items to recommend
        state = _click(e, "w", item, n, state)
    for n, user in enumerate(("u1", "u2", "u3")):  # each served a list, kept for the blend
        _click(e, user, "a", 10 + n, (None, None), serve=True)
    before = e.eviction_counts()["hybrid_pending"]
    assert before >= 1
    fresh = Engine(EngineConfig(top_k=2, exploration=0.0))
    fresh.restore(e.snapshot())
    assert fresh.eviction_counts()["hybrid_pending"] == 0  # a process count, not model state
    e.restore(e.snapshot())  # a rollback on a running worker: the count goes on
    assert e.eviction_counts()["hybrid_pending"] == before


def test_the_engine_counts_seen_items_and_dedupe_entries_it_drops() -> None:
    e = Engine(EngineConfig(top_k=2, exploration=0.0, seen_max=3, dedup_window=4))
    state: tuple = (None, None)
    for n, item in enumerate("abc"):
        state = _click(e, "u", item, n, state)
    assert e.eviction_counts()["seen_items"] == 0
    state = _click(e, "u", "a", 3, state)  # already seen: moves, nothing dropped
    assert e.eviction_counts() == {"hybrid_pending": 0, "seen_items": 0, "dedupe_window": 0}
    state = _click(e, "u", "d", 4, state)  # a 4th distinct item: "b" goes
    state = _click(e, "u", "e", 5, state)  # "c" goes
    assert e.eviction_counts()["seen_items"] == 2
    assert e.eviction_counts()["dedupe_window"] == 2  # 6 event ids, a window of 4
    profile = state[0]
    assert profile["s"] == ["a", "d", "e"]


def test_the_rate_limiter_counts_users_it_forgets() -> None:
    limiter = UserRateLimiter(10.0, 5, 2)
    for user in ("u1", "u2", "u3"):
        limiter.allow(user, 1_000)
    assert limiter.evictions == 1


@pytest.fixture
def rt() -> Runtime:
    settings = Settings.from_env({
        "PERSONA_SECRET_KEY": "eviction-test-secret-key-0123456789",
        "PERSONA_DATA_DIR": tempfile.mkdtemp(prefix="persona-evictions-"),
        "PERSONA_SEEN_ITEMS_MAX": "2",
    })
    return Runtime(settings)


def _exported(rt: Runtime) -> dict[str, float | None]:
    return {s: rt.metrics.registry.get_sample_value("persona_state_evictions_total",
                                                     {"state": s})
            for s in EVICTED_STATES}


def test_a_scrape_exports_what_each_structure_dropped_since_the_last(rt: Runtime) -> None:
    assert _exported(rt) == dict.fromkeys(EVICTED_STATES, 0.0)  # pre-initialized
    state: tuple = (None, None)
    for n, item in enumerate("abcd"):
        state = _click(rt.engine, "u", item, n, state)
    rt.limiter.evictions += 3  # the limiter keeps a plain count (its own test above)
    refresh_gauges(rt, 1)
    assert _exported(rt) == {**dict.fromkeys(EVICTED_STATES, 0.0),
                             "seen_items": 2.0, "rate_limit_users": 3.0}
    refresh_gauges(rt, 1)  # nothing new dropped: nothing added
    state = _click(rt.engine, "u", "e", 9, state)
    refresh_gauges(rt, 1)
    assert _exported(rt)["seen_items"] == 3.0
    # A rollback swaps in the checkpoint's hybrid: the exported count never goes back
    # nor jumps.
    rt.engine.hybrid.max_pending = 1
    for n, user in enumerate(("v1", "v2", "v3")):
        _click(rt.engine, user, "a", n, (None, None), serve=True)
    refresh_gauges(rt, 1)
    pending = _exported(rt)["hybrid_pending"]
    assert pending == rt.engine.eviction_counts()["hybrid_pending"] >= 1
    rt.engine.restore(rt.engine.snapshot())
    refresh_gauges(rt, 1)
    assert _exported(rt)["hybrid_pending"] == pending


def test_the_metric_and_its_states_are_documented() -> None:
    from streams.settings import PROJECT_ROOT

    row = next(line for line in (PROJECT_ROOT / "docs" / "metrics.md").read_text().splitlines()
               if line.startswith("| `persona_state_evictions_total`"))
    assert all(f"`{state}`" in row for state in EVICTED_STATES)
