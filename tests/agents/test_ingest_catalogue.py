"""The bad-input catalogue through the real ingest agents (Faust test_context()).

Each case of tests/unit/test_input_catalogue.py goes into its topic's agent with a Kafka
timestamp of now and the default time limits: a bad one must come out as one dead letter
with its code and its original bytes, a valid-but-odd one on the events topic, normalized
and counted. Then a bot burst, duplicates, conflicts and out-of-order events for one user,
and a flood of never-seen ids.
"""

from __future__ import annotations

import base64
import hashlib
import random
import time

import orjson
import pytest

from models.users.privacy import pseudonymize
from models.users.ratelimit import UserRateLimiter
from streams import tables, topics
from streams.agents.ingest import ingest_ad_events, ingest_one
from streams.agents.profile import profile as profile_agent
from streams.app import settings
from streams.messages import MAX_DEAD_LETTER_RAW
from streams.profile_view import profile_summary
from streams.runtime import TimeLimits, current
from streams.settings import Settings
from tests.agents.wire import input_agent
from tests.unit.test_input_catalogue import (
    USER,
    Case,
    accepted_catalogue,
    catalogue,
)

rt = current()
metrics = rt.metrics
state_pseudonymize = rt.pseudonymize
KEY = rt.settings.require_secret_key()
T = settings.topics
EVENTS = settings.events_topic
# Where each input topic's messages go in: the profile agent reads the topics that name
# a user itself.
AGENTS = {"clicks": lambda: input_agent(topics.clicks),
          "purchases": lambda: input_agent(topics.purchases),
          "ad_requests": lambda: input_agent(topics.ad_requests),
          "ad_events": ingest_ad_events.test_context,
          "privacy": lambda: input_agent(topics.privacy)}
LABELS = {"clicks": "clicks", "purchases": "purchases", "ad_requests": "ad-requests",
          "ad_events": "ad-events", "privacy": "privacy"}


def _value(name: str, **labels: str) -> float:
    v = metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


@pytest.fixture
def default_limits(monkeypatch):
    """The worker's defaults (conftest switches the age limit off for the other tests)."""
    d = Settings()
    monkeypatch.setattr(rt, "time_limits", TimeLimits(int(d.max_event_age_s * 1000),
                                                          int(d.max_future_s * 1000)))
    monkeypatch.setattr(rt, "limiter", UserRateLimiter(d.user_rate_per_s, d.user_burst,
                                                           d.rate_limit_users))


def _run(loop, cases: list[Case]) -> None:
    async def go():
        for case in cases:
            async with AGENTS[case.topic]() as agent:
                # partition 3, so the dead letter's position is checked too
                await agent.put(case.value, key=case.kafka_key, partition=3,
                                timestamp=time.time())

    loop.run_until_complete(go())


BAD = catalogue(int(time.time() * 1000))


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_bad_case_is_dead_lettered_with_its_code_and_original_bytes(
        loop, sent, default_limits, case: Case) -> None:
    label = LABELS[case.topic]
    before = _value("persona_dead_letters_total", error=case.expect)
    invalid = _value("persona_events_total", topic=label, outcome="invalid")
    # built now, so the time cases are relative to this test's clock
    case = next(c for c in catalogue(int(time.time() * 1000)) if c.name == case.name)
    _run(loop, [case])
    assert len(sent) == 1, [t for t, _, _ in sent]
    topic, key, value = sent[0]
    assert topic == T.dead_letters and key is None
    dl = orjson.loads(value)
    assert dl["error"] == case.expect
    assert dl["source_topic"] == getattr(T, case.topic) and dl["partition"] == 3
    raw = None if dl["raw"] is None else base64.b64decode(dl["raw"])
    if case.value is not None and len(case.value) > MAX_DEAD_LETTER_RAW:  # a prefix
        assert raw is not None and case.value.startswith(raw) and dl["raw_truncated"]
        assert (dl["raw_length"], dl["raw_sha256"]) == (
            len(case.value), hashlib.sha256(case.value).hexdigest())
    else:
        assert raw == case.value and not dl["raw_truncated"]
    assert USER not in dl["detail"] and "someone-else" not in dl["detail"]
    assert _value("persona_dead_letters_total", error=case.expect) == before + 1
    assert _value("persona_events_total", topic=label, outcome="invalid") == invalid + 1


def test_valid_but_odd_input_is_normalized_and_counted(loop, sent, default_limits) -> None:
    cases = accepted_catalogue(int(time.time() * 1000))
    missing = _value("persona_ingest_anomalies_total", topic="clicks", kind="missing_key")
    pii = _value("persona_pii_fields_dropped_total", topic="clicks")
    _run(loop, cases)
    assert [t for t, _, _ in sent] == [EVENTS] * len(cases)
    users = {}
    for case, (_, key, value) in zip(cases, sent, strict=True):
        wire = orjson.loads(value)
        assert key == wire["user_id"].encode() and "rl" not in wire
        users[case.name] = wire["user_id"]
        for leak in (b"example.com", b"15550100", b"192.0.2.1", b"Jos"):
            assert leak not in value, case.name
    # 123 and "123" are one user; so are NFC, NFD and a trailing space
    assert users["user_id 123 (number)"] == users['user_id "123" (string)'] == pseudonymize(
        "123", KEY)
    assert users["user_id in NFD"] == users["user_id with a trailing space"] == pseudonymize(
        "Jos\u00e9", KEY)
    pii_wire = orjson.loads(sent[[c.name for c in cases].index("PII fields in the payload")][2])
    assert "email" not in pii_wire and "phone" not in pii_wire
    assert pii_wire["context"] == {"page": "home"}
    assert _value("persona_ingest_anomalies_total", topic="clicks",
                  kind="missing_key") == missing + 1
    assert _value("persona_pii_fields_dropped_total", topic="clicks") == pii + 3


def test_a_bot_burst_is_forwarded_flagged_and_counted_never_lost(loop, sent,
                                                                   default_limits) -> None:
    n = 10_000
    now = int(time.time() * 1000)
    start = (now // 10_000 - 1) * 10_000  # a 10 s window's edge, 10-20 s ago
    limited_before = _value("persona_events_total", topic="clicks", outcome="rate_limited")

    async def go():
        async with input_agent(topics.clicks) as agent:
            for i in range(n):  # 10k events for one user, their ts spread over 1 s
                ev = {"event_id": f"bot-{i}", "user_id": "bot-7", "item_id": f"i{i % 50}",
                      "ts": start + i // 10}
                await agent.put(orjson.dumps(ev), key=b"bot-7", timestamp=now / 1000)

    loop.run_until_complete(go())
    assert [t for t, _, _ in sent] == [EVENTS] * n  # none lost
    flags = [orjson.loads(v).get("rl", False) for _, _, v in sent]
    unflagged = flags.count(False)
    assert unflagged == 100  # at most 100 in a 10 s window of event time
    assert not any(flags[:100])
    limited = _value("persona_events_total", topic="clicks", outcome="rate_limited")
    assert limited - limited_before == n - unflagged


def test_duplicates_conflicts_and_out_of_order_events_for_one_user(loop, sent,
                                                                     default_limits) -> None:
    """Through ingest and the profile agent: a redelivery counts once, the same event_id
    with another payload is event_conflict, and last_seen never goes back."""
    now = int(time.time() * 1000)
    user = "ooo-user-3"

    def click(eid: str, item: str, ts: int) -> bytes:
        return orjson.dumps({"event_id": eid, "user_id": user, "item_id": item, "ts": ts})

    dup_before = _value("persona_events_total", topic="clicks", outcome="duplicate")
    conflicts = _value("persona_dead_letters_total", error="event_conflict")
    msgs = [click("o1", "a", now - 1_000), click("o2", "b", now - 60_000),  # out of order
            click("o1", "a", now - 1_000),  # redelivered
            click("o1", "zzz", now - 1_000)]  # same id, other payload

    async def go():
        async with input_agent(topics.clicks) as agent:
            for raw in msgs:
                await agent.put(raw, key=user.encode(), timestamp=now / 1000)
        forwarded = [(k, v) for t, k, v in sent if t == EVENTS]
        assert len(forwarded) == len(msgs)
        async with profile_agent.test_context() as agent:
            for k, v in forwarded:
                await agent.put(v, key=k)
        return tables.stored_profile(tables.profiles[pseudonymize(user, KEY)])

    stored = loop.run_until_complete(go())
    p = profile_summary(stored)
    assert p["clicks"] == 2
    assert p["last_seen_ms"] == now - 1_000 and p["first_seen_ms"] == now - 60_000
    assert _value("persona_events_total", topic="clicks", outcome="duplicate") == dup_before + 1
    assert _value("persona_dead_letters_total", error="event_conflict") == conflicts + 1


def test_a_flood_of_never_seen_ids_keeps_ingest_memory_bounded(monkeypatch) -> None:
    monkeypatch.setattr(rt, "limiter", UserRateLimiter(10, 100, max_users=500))
    rng = random.Random(11)
    cap = state_pseudonymize.cache_info().maxsize
    assert cap is not None
    for i in range(cap + 5_000):
        raw = orjson.dumps({"event_id": f"f{i}", "user_id": f"rnd-{rng.getrandbits(64):x}",
                            "item_id": "i", "ts": 1_000 + i})
        ingest_one(T.clicks, raw, None, key=None)
    assert len(rt.limiter) == 500
    assert state_pseudonymize.cache_info().currsize <= cap


def test_an_erase_leaves_no_rate_limit_bucket_behind(monkeypatch) -> None:
    monkeypatch.setattr(rt, "limiter", UserRateLimiter(10, 100))
    click = {"event_id": "e1", "user_id": "erase-me", "item_id": "i", "ts": 1_000}
    ingest_one(T.clicks, orjson.dumps(click), None, key=b"erase-me")
    ingest_one(T.clicks, orjson.dumps({**click, "user_id": "stays"}), None, key=b"stays")
    assert len(rt.limiter) == 2
    erase = {"user_id": "erase-me", "action": "erase", "ts": 2_000}
    ingest_one(T.privacy, orjson.dumps(erase), None, key=b"erase-me")
    assert len(rt.limiter) == 1


def test_an_erase_drops_the_raw_id_from_the_pseudonym_cache() -> None:
    click = {"event_id": "e1", "user_id": "cached-raw-id", "item_id": "i", "ts": 1_000}
    ingest_one(T.clicks, orjson.dumps(click), None, key=b"cached-raw-id")
    assert state_pseudonymize.cache_info().currsize >= 1
    erase = {"user_id": "cached-raw-id", "action": "erase", "ts": 2_000}
    ingest_one(T.privacy, orjson.dumps(erase), None, key=b"cached-raw-id")
    assert state_pseudonymize.cache_info().currsize == 0
