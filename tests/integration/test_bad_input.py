"""The bad-input catalogue against the real local Apache Kafka and a worker process.

One message per bad case of tests/unit/test_input_catalogue.py, interleaved with good
events, plus the valid-but-odd ones, a redelivery, a conflicting event id, out-of-order
events and a bot burst. Then: every bad message is in dead-letters with its code and its
original bytes, the worker is healthy, every good event was processed, and the consumer
group's lag on the input and events topics returns to zero. The worker runs with the
default limits (age, future, rate): the events carry the current time.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.local.broker import ensure_topics, free_port
from streams.local.chaos import group_lag
from streams.local.worker_proc import WorkerProcess
from streams.settings import Settings
from tests.unit.test_input_catalogue import accepted_catalogue, catalogue

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-key-bad-input-0123"
TOKEN = "bad-input-test-token-0123456789"
N_GOOD_USERS = 10
BURST = 300  # one user's clicks with ts spread over one second
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def good_user(i: int) -> str:
    return f"good-user-{i:02d}"


def metric(m: dict[str, float], name: str, **labels: str) -> float:
    """The sample of ``name`` with exactly ``labels`` (whatever their order), or 0."""
    for key, value in m.items():
        if key.startswith(name + "{") and dict(_LABEL.findall(key)) == labels:
            return value
    return 0.0


@pytest.fixture(scope="module")
def worker_env(kafka_broker, tmp_path_factory):
    sfx = uuid.uuid4().hex[:8]
    names = {k: f"{k.replace('_', '-')}-{sfx}" for k in
             ("clicks", "purchases", "items", "ad_requests", "ad_events", "privacy", "control",
              "recommendations", "ad_bids", "segments", "audiences", "dead_letters")}
    app_id = f"persona-bad-{sfx}"
    data_dir: Path = tmp_path_factory.mktemp("badinput")
    env = {f"PERSONA_TOPIC_{k.upper()}": v for k, v in names.items()}
    env.update({
        "PERSONA_BOOTSTRAP": kafka_broker.bootstrap,
        "PERSONA_APP_ID": app_id,
        "PERSONA_SECRET_KEY": SECRET,
        "PERSONA_API_TOKEN": TOKEN,
        "PERSONA_DATA_DIR": str(data_dir),
        "PERSONA_SESSION_TIMEOUT_S": "6",
        # Explicit, not inherited: the worker gets this process's environment, and
        # tests/agents/conftest.py switches the age limit off for the whole session.
        "PERSONA_MAX_EVENT_AGE_S": str(Settings().max_event_age_s),
        "PERSONA_MAX_FUTURE_S": str(Settings().max_future_s),
        "PERSONA_USER_RATE_PER_S": str(Settings().user_rate_per_s),
        "PERSONA_USER_BURST": str(Settings().user_burst),
        "PERSONA_LOG_LEVEL": "info",
    })
    counts = {n: 4 for n in [*names.values(), f"{app_id}-events"]}
    counts[f"{app_id}-ads"] = 1
    ensure_topics(kafka_broker.bootstrap, list(counts), counts)
    worker = WorkerProcess(env=env, web_port=free_port(), log_path=data_dir / "worker.log")
    worker.start()
    try:
        worker.wait_ready(timeout=120)
        yield {"worker": worker, "topics": names, "bootstrap": kafka_broker.bootstrap,
               "app_id": app_id}
    finally:
        worker.stop()


def _dead_letters(bootstrap: str, topic: str, expect: int, timeout: float) -> list[dict]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in parts])
        consumer.seek_to_beginning()
        out: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                out.extend(orjson.loads(r.value) for r in records)
        return out
    finally:
        consumer.close()


def _wait(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.3)


def test_bad_input_is_contained_and_good_input_flows(worker_env):
    svc = worker_env
    worker: WorkerProcess = svc["worker"]
    topics = svc["topics"]
    started = time.monotonic()
    now = int(time.time() * 1000)
    bad = [c for c in catalogue(now) if c.broker]
    odd = accepted_catalogue(now)
    producer = KafkaProducer(bootstrap_servers=svc["bootstrap"], acks="all", linger_ms=2)

    def send(topic: str, key: bytes | None, value: bytes | None) -> None:
        producer.send(topics[topic], key=key, value=value)

    good_clicks = 0

    def good(n: int) -> None:
        nonlocal good_clicks
        user = good_user(n % N_GOOD_USERS)
        ev = {"event_id": f"good-{n}", "user_id": user, "item_id": f"item-{n % 13}",
              "ts": now - 5_000 + n}
        send("clicks", user.encode(), orjson.dumps(ev))
        good_clicks += 1

    n = 0
    for case in bad:  # each bad message between two good ones
        good(n)
        send(case.topic, case.kafka_key, case.value)
        good(n + 1)
        n += 2
    for case in odd:
        send(case.topic, case.kafka_key, case.value)
    # a redelivery (counted once), the same id with another payload (a conflict), and one
    # user's events out of order (last_seen never goes back)
    send("clicks", good_user(0).encode(), orjson.dumps(
        {"event_id": "good-0", "user_id": good_user(0), "item_id": "item-0", "ts": now - 5_000}))
    send("clicks", good_user(0).encode(), orjson.dumps(
        {"event_id": "good-0", "user_id": good_user(0), "item_id": "other", "ts": now - 5_000}))
    for eid, ts in (("ooo-1", now - 1_000), ("ooo-2", now - 60_000)):
        send("clicks", b"ooo-user", orjson.dumps(
            {"event_id": eid, "user_id": "ooo-user", "item_id": "item-1", "ts": ts}))
    # a bot burst: BURST clicks for one user within one second of event time
    for i in range(BURST):
        send("clicks", b"bot-user", orjson.dumps(
            {"event_id": f"bot-{i}", "user_id": "bot-user", "item_id": f"item-{i % 7}",
             "ts": now - 3_000 + i * 1000 // BURST}))
    producer.flush()
    producer.close()

    # --- every bad message in dead-letters, with its code and its original bytes
    expect_dl = len(bad) + 1  # + the conflict
    dls = _dead_letters(svc["bootstrap"], topics["dead_letters"], expect_dl, timeout=90)
    got = sorted(d["error"] for d in dls)
    want = sorted([c.expect for c in bad] + ["event_conflict"])
    assert len(dls) == expect_dl, ("missing", sorted((Counter(want) - Counter(got)).elements()),
                                   "extra", sorted((Counter(got) - Counter(want)).elements()))
    by_raw = {(None if d["raw"] is None else base64.b64decode(d["raw"])): d for d in dls}
    for case in bad:
        d = by_raw.get(case.value)
        assert d is not None, case.name
        assert (d["error"], d["source_topic"]) == (case.expect, topics[case.topic]), case.name
        assert "good-user" not in d["detail"] and "cat-user" not in d["detail"]
    assert sorted(d["error"] for d in dls if d["error"] == "event_conflict") == [
        "event_conflict"]

    # --- the worker is healthy, and every good event was processed
    assert worker.alive() and worker.get_json("/health") == (200, {"status": "ok"})
    odd_clicks = sum(1 for c in odd if c.topic == "clicks")
    accepted_clicks = good_clicks + odd_clicks + 2 + BURST  # + the two out-of-order ones

    def clicks_done() -> bool:
        m = worker.metrics()
        return (metric(m, "persona_events_total", topic="clicks", outcome="accepted")
                + metric(m, "persona_events_total", topic="clicks", outcome="duplicate")
                >= accepted_clicks + 1)

    _wait(clicks_done, 30, "clicks processed")
    m = worker.metrics()
    assert metric(m, "persona_events_total", topic="clicks", outcome="accepted") == (
        accepted_clicks)
    assert metric(m, "persona_events_total", topic="clicks", outcome="duplicate") == 1
    for case in bad:  # and the counters agree with the topic
        assert metric(m, "persona_dead_letters_total", error=case.expect) >= 1, case.name
    limited = metric(m, "persona_events_total", topic="clicks", outcome="rate_limited")
    # 100 per 10 s window of event time (the second may straddle two, one of them then
    # holding fewer than 100 of the burst), none lost
    per_window = Counter((now - 3_000 + i * 1000 // BURST) // 10_000 for i in range(BURST))
    assert limited == sum(max(0, n - 100) for n in per_window.values())
    assert metric(m, "persona_ingest_anomalies_total", topic="clicks", kind="missing_key") == 1
    assert metric(m, "persona_pii_fields_dropped_total", topic="clicks") == 3
    status, body = worker.get_json(f"/users/{good_user(3)}/profile")
    assert status == 200 and body["profile"]["clicks"] == sum(
        1 for i in range(n) if i % N_GOOD_USERS == 3)
    status, body = worker.get_json("/users/ooo-user/profile")
    assert status == 200 and body["profile"]["last_seen_ms"] == now - 1_000
    status, body = worker.get_json("/users/bot-user/profile")
    assert status == 200 and body["profile"]["clicks"] == BURST  # counted, every one
    for raw in ("123", "Jos\u00e9"):  # numeric and string, NFC, NFD and padded: one user
        status, body = worker.get_json(f"/users/{quote(raw)}/profile")
        assert status == 200 and body["profile"]["clicks"] == 2, raw

    # --- consumer lag on the input and events topics returns to zero
    inputs = [topics[k] for k in ("clicks", "purchases", "ad_requests", "ad_events",
                                  "privacy")] + [f"{svc['app_id']}-events"]
    last: dict[str, int] = {}

    def caught_up() -> bool:
        last.update(group_lag(svc["bootstrap"], svc["app_id"], inputs))
        return not any(last.values())

    _wait(caught_up, 30, f"consumer lag back to zero (last {last})")
    assert worker.alive()
    assert time.monotonic() - started < 90  # bounded (about 15 s on the 2-core box)


def test_a_900_kb_message_is_dead_lettered_with_its_length_and_sha256(worker_env):
    # Over the producer's 1 MB request limit once base64'd into a dead letter, were it
    # carried whole: it must still arrive, as a prefix with the original's length and hash.
    svc = worker_env
    value = b'{"event_id": "huge", "user_id": "huge-user", "pad": "' + b"x" * 900_000 + b'"}'
    sha = hashlib.sha256(value).hexdigest()
    producer = KafkaProducer(bootstrap_servers=svc["bootstrap"], acks="all",
                             max_request_size=2_000_000)
    sent = producer.send(svc["topics"]["clicks"], key=b"huge-user", value=value).get(timeout=30)
    producer.close()
    at = (svc["topics"]["clicks"], sent.partition, sent.offset)
    found: list[dict] = []
    deadline = time.monotonic() + 45
    while not found and time.monotonic() < deadline:
        dls = _dead_letters(svc["bootstrap"], svc["topics"]["dead_letters"], 10**6, timeout=3)
        found = [d for d in dls if (d["source_topic"], d["partition"], d["offset"]) == at]
    assert found, "the 900 KB message's dead letter did not arrive"
    [d] = found
    prefix = base64.b64decode(d["raw"])
    assert (d["error"], d["raw_length"], d["raw_sha256"], d["raw_truncated"]) == (
        "too_large", len(value), sha, True)
    assert value.startswith(prefix) and len(prefix) < len(value)
    assert svc["worker"].alive()
