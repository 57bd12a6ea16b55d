"""End to end on the real local Apache Kafka: a worker process, kafka-python clients.

1,000 valid events for 50 users plus 20 invalid ones and 10 redeliveries go in; one
recommendation per accepted event, every invalid event in dead-letters with its code,
matching /metrics; then a worker restart brings every profile back exactly.
"""

from __future__ import annotations

import base64
import random
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from models.engine import STRATEGIES
from models.users.privacy import pseudonymize
from streams.local.broker import ensure_topics, free_port
from streams.local.worker_proc import WorkerProcess

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-key-0123456789"
N_USERS = 50
N_VALID = 1000
BASE_TS = 1_760_000_000_000


def raw_user(i: int) -> str:
    # Distinctive, so a leak of the raw id anywhere in output is easy to find.
    return f"rawuser-{i:04d}-zq"


def make_valid_events(seed: int = 7) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    out = []
    for n in range(N_VALID):
        u = rng.randrange(N_USERS)
        item = f"item-{rng.randrange(80)}"
        ev = {"event_id": f"ev-{n}", "user_id": raw_user(u), "item_id": item,
              "ts": BASE_TS + n * 1000, "unknown_field": "dropped"}
        if rng.random() < 0.25:
            ev.update(price=round(rng.uniform(1, 50), 2), quantity=rng.randint(1, 3),
                      currency="EUR")
            out.append(("purchases", ev))
        else:
            out.append(("clicks", ev))
    return out


def _click(**over) -> bytes:
    ev = {"event_id": f"bad-{uuid.uuid4().hex[:8]}", "user_id": raw_user(1), "item_id": "i1",
          "ts": BASE_TS}
    ev.update(over)
    return orjson.dumps({k: v for k, v in ev.items() if v is not _DROP})


def _purchase(**over) -> bytes:
    ev = {"event_id": f"bad-{uuid.uuid4().hex[:8]}", "user_id": raw_user(1), "item_id": "i1",
          "ts": BASE_TS, "price": 10.0, "quantity": 1}
    ev.update(over)
    return orjson.dumps({k: v for k, v in ev.items() if v is not _DROP})


_DROP = object()


def nested(depth: int) -> dict:
    d: dict = {"x": 1}
    for _ in range(depth):
        d = {"x": d}
    return d


# (topic kind, raw value, expected error code)
INVALID: list[tuple[str, bytes | None, str]] = [
    ("clicks", None, "tombstone"),
    ("clicks", b"\xff\xfe\xfd", "not_utf8"),
    ("clicks", b'{"event_id": ', "bad_json"),
    ("clicks", b"[1, 2, 3]", "not_object"),
    ("clicks", _click(ts=_DROP), "missing_field"),
    ("clicks", _click(ts="yesterday"), "bad_timestamp"),
    ("clicks", _click(ts="2024-05-01T12:00:00"), "bad_timestamp"),
    ("clicks", _click(user_id=True), "wrong_type"),
    ("clicks", _click(item_id="   "), "empty_id"),
    ("clicks", _click(item_id="ab\u202ecd"), "bad_characters"),
    ("clicks", _click(item_id="x" * 300), "too_long"),
    ("clicks", _click(context=nested(60)), "too_deep"),
    ("clicks", _click(pad="y" * 100_000), "too_large"),
    ("purchases", _purchase(price=0), "bad_price"),
    ("purchases", _purchase(price=-5), "bad_price"),
    ("purchases", _purchase(price=1e300), "out_of_range"),
    ("purchases", _purchase(quantity=1.5), "wrong_type"),
    ("purchases", _purchase(quantity=0), "bad_quantity"),
    ("purchases", _purchase(price=_DROP), "missing_field"),
    ("purchases", _purchase(currency="euro"), "unknown_currency"),
]


def consume_all(bootstrap: str, topic: str, expect: int, timeout: float, idle: float = 3.0):
    """Read ``topic`` from the start until ``expect`` messages and ``idle`` quiet seconds."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             group_id=None, auto_offset_reset="earliest")
    parts = consumer.partitions_for_topic(topic) or set()
    consumer.assign([TopicPartition(topic, p) for p in parts])
    consumer.seek_to_beginning()
    msgs = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            for records in batch.values():
                msgs.extend(records)
                last = time.monotonic()
            if len(msgs) >= expect and time.monotonic() - last > idle:
                break
    finally:
        consumer.close()
    return msgs


@pytest.fixture(scope="module")
def service(kafka_broker, tmp_path_factory):
    sfx = uuid.uuid4().hex[:8]
    names = {k: f"{k.replace('_', '-')}-{sfx}" for k in
             ("clicks", "purchases", "items", "ad_requests", "ad_events", "privacy", "control",
              "recommendations", "ad_bids", "segments", "dead_letters")}
    env = {f"PERSONA_TOPIC_{k.upper()}": v for k, v in names.items()}
    data_dir: Path = tmp_path_factory.mktemp("worker")
    env.update({
        "PERSONA_BOOTSTRAP": kafka_broker.bootstrap,
        "PERSONA_APP_ID": f"persona-it-{sfx}",
        "PERSONA_SECRET_KEY": SECRET,
        # /users/... needs it; WorkerProcess.get_json sends it as a bearer token.
        "PERSONA_API_TOKEN": "integration-test-api-token-0123",
        "PERSONA_DATA_DIR": str(data_dir),
        "PERSONA_SESSION_TIMEOUT_S": "6",
        "PERSONA_LOG_LEVEL": "info",
        # The default exploration, spelled out: the test checks what it records.
        "PERSONA_EXPLORATION": "0.05",
        # The events carry fixed 2025 timestamps: replaying history, no age limit.
        "PERSONA_MAX_EVENT_AGE_S": "0",
    })
    counts = {n: 4 for n in [*names.values(), f"persona-it-{sfx}-events"]}
    counts[f"persona-it-{sfx}-ads"] = 1  # the ads topic has one partition
    ensure_topics(kafka_broker.bootstrap, list(counts), counts)
    worker = WorkerProcess(env=env, web_port=free_port(), log_path=data_dir / "worker.log")
    worker.start()
    try:
        worker.wait_ready(timeout=120)
        yield {"worker": worker, "topics": names, "bootstrap": kafka_broker.bootstrap}
    finally:
        worker.stop()


def test_end_to_end_and_restart(service):
    worker: WorkerProcess = service["worker"]
    topics = service["topics"]
    bootstrap = service["bootstrap"]
    valid = make_valid_events()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2,
                             max_request_size=1_048_576)
    # Keyed by the user (kafka-python's partitioner: the user's home partition) but every
    # fifth event, sent with no key to whatever partition: those take the events topic.
    unkeyed = 0
    for n, (kind, ev) in enumerate(valid):
        key = None if n % 5 == 0 else ev["user_id"].encode()
        unkeyed += key is None
        producer.send(topics[kind], key=key, value=orjson.dumps(ev))
    for kind, value, _code in INVALID:
        producer.send(topics[kind], key=raw_user(1).encode(), value=value)
    redelivered = valid[:10]
    for kind, ev in redelivered:  # at-least-once producers resend: must count once
        producer.send(topics[kind], key=ev["user_id"].encode(), value=orjson.dumps(ev))
    producer.flush()

    # --- one recommendation per accepted event, valid schema, no raw id
    recs = consume_all(bootstrap, topics["recommendations"], N_VALID, timeout=120)
    assert len(recs) == N_VALID
    by_trigger = {}
    for m in recs:
        for i in range(N_USERS):
            assert raw_user(i).encode() not in m.value
            assert raw_user(i).encode() != m.key
        rec = orjson.loads(m.value)
        by_trigger[rec["trigger_event_id"]] = rec
        assert rec["recommendation_id"].startswith("r")
        assert datetime.fromisoformat(rec["ts"]).tzinfo is not None
        assert rec["strategy"] in STRATEGIES
        # epsilon-greedy over 6 strategies at 0.05: the greedy one has 0.9583, others 1/120
        assert rec["propensity"] in (pytest.approx(1 - 0.05 + 0.05 / 6, abs=1e-6),
                                     pytest.approx(0.05 / 6, abs=1e-6))
        assert rec["variant"] == "default" and rec["model_version"]
        assert len(rec["items"]) <= 10
        for item in rec["items"]:
            assert set(item) == {"item_id", "score", "reason"}
            assert item["reason"] and isinstance(item["score"], float)
    assert set(by_trigger) == {ev["event_id"] for _, ev in valid}
    # Only the first events can come up short (few items known yet); later ones are full.
    assert all(len(by_trigger[ev["event_id"]]["items"]) == 10 for _, ev in valid[100:])
    for _, ev in valid:
        rec = by_trigger[ev["event_id"]]
        assert rec["user_id"] == pseudonymize(ev["user_id"], SECRET.encode())
    # Purchased items are never recommended back to the buyer. Clicks and purchases are
    # separate topics, so Kafka orders a user's events only after ingest re-keys them:
    # the processing order is the user's recommendation order (one key, one partition).
    purchase_item = {ev["event_id"]: ev["item_id"] for k, ev in valid if k == "purchases"}
    bought: dict[str, set] = {}
    for m in sorted(recs, key=lambda r: (r.partition, r.offset)):
        rec = orjson.loads(m.value)
        owned = bought.setdefault(rec["user_id"], set())
        if rec["trigger_event_id"] in purchase_item:
            owned.add(purchase_item[rec["trigger_event_id"]])
        assert not {i["item_id"] for i in rec["items"]} & owned
    assert sum(len(v) for v in bought.values()) > 100

    # --- every invalid event in dead-letters with the right code
    dls = consume_all(bootstrap, topics["dead_letters"], len(INVALID), timeout=60)
    assert len(dls) == len(INVALID)
    got = {}
    for m in dls:
        d = orjson.loads(m.value)
        assert {"source_topic", "partition", "offset", "error", "detail", "raw", "ts"} <= set(d)
        raw = None if d["raw"] is None else base64.b64decode(d["raw"])
        got[raw] = (d["error"], d["source_topic"])
    for kind, value, code in INVALID:
        assert got[value] == (code, topics[kind]), (value[:60] if value else value, code)

    # --- /metrics agrees
    m = worker.metrics()
    n_clicks = sum(1 for k, _ in valid if k == "clicks")
    assert m['persona_events_total{outcome="accepted",topic="clicks"}'] == n_clicks
    assert m['persona_events_total{outcome="accepted",topic="purchases"}'] == N_VALID - n_clicks
    assert m['persona_events_total{outcome="invalid",topic="clicks"}'] == sum(
        1 for k, _, _ in INVALID if k == "clicks")
    assert m['persona_events_total{outcome="invalid",topic="purchases"}'] == sum(
        1 for k, _, _ in INVALID if k == "purchases")
    dup = (m['persona_events_total{outcome="duplicate",topic="clicks"}']
           + m['persona_events_total{outcome="duplicate",topic="purchases"}'])
    assert dup == len(redelivered)
    direct = m['persona_input_routed_total{path="direct"}']
    rekeyed = m['persona_input_routed_total{path="rekeyed"}']
    assert direct + rekeyed == N_VALID + len(redelivered)
    # Every keyed event was applied where it arrived; an unkeyed one only when it
    # happened to land on its user's home partition (1 in 4 here).
    assert direct >= N_VALID + len(redelivered) - unkeyed and 0 < rekeyed <= unkeyed
    assert m['persona_ingest_anomalies_total{kind="missing_key",topic="clicks"}'] + m[
        'persona_ingest_anomalies_total{kind="missing_key",topic="purchases"}'] == unkeyed
    expected_codes: dict[str, int] = {}
    for _, _, code in INVALID:
        expected_codes[code] = expected_codes.get(code, 0) + 1
    for code, n in expected_codes.items():
        assert m[f'persona_dead_letters_total{{error="{code}"}}'] == n
    assert sum(m[f'persona_recommendations_total{{strategy="{s}",variant="default"}}']
               for s in STRATEGIES) == N_VALID

    # --- HTTP: health, recommendations computed now, and no table/router pages
    assert worker.get_json("/health") == (200, {"status": "ok"})
    status, body = worker.get_json(f"/users/{raw_user(3)}/recommendations?k=4")
    assert status == 200 and body["known_user"] is True and len(body["items"]) == 4
    assert body["user_id"] == pseudonymize(raw_user(3), SECRET.encode())
    bought3 = {ev["item_id"] for k, ev in valid
               if k == "purchases" and ev["user_id"] == raw_user(3)}
    assert not {i["item_id"] for i in body["items"]} & bought3
    assert body["strategy"] in STRATEGIES and 0 < body["propensity"] <= 1
    # a category filter no item matches (the test publishes no catalogue): nothing passes
    status, body = worker.get_json(f"/users/{raw_user(3)}/recommendations?k=4&category=Opera")
    assert status == 200 and body["items"] == []
    assert worker.get_json(f"/users/{raw_user(3)}/recommendations?k=zero")[0] == 400
    assert worker.get_json("/users/nobody-at-all/profile")[0] == 404
    for page in ("/table/", "/table/profiles/", "/router/", "/graph/", "/stats/"):
        assert worker.get_json(page)[0] == 404, page
    # --- segments: every user has one, the sizes add up, described in words
    status, body = worker.get_json("/segments")
    assert status == 200 and body["enabled"] and len(body["segments"]) == 6
    assert sum(sg["size"] for sg in body["segments"]) == N_USERS
    assert all(sg["description"] for sg in body["segments"] if sg["size"])
    cli = subprocess.run([sys.executable, "-m", "streams.cli.main", "segments", "--url",
                          worker.base_url], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "COLUMNS": "160"})
    assert cli.returncode == 0, cli.stderr
    assert "segments" in cli.stdout and body["segments"][0]["name"] in cli.stdout

    # --- restart: profiles come back exactly from the changelog
    expected: dict[str, dict] = {}
    for kind, ev in valid:
        e = expected.setdefault(ev["user_id"], {"clicks": 0, "purchases": 0, "spend": 0.0})
        if kind == "clicks":
            e["clicks"] += 1
        else:
            e["purchases"] += 1
            e["spend"] += ev["price"] * ev["quantity"]
    assert worker.stop() == 0
    worker.start()
    worker.wait_ready(timeout=120)
    for raw, e in expected.items():
        status, body = worker.get_json(f"/users/{raw}/profile")
        assert status == 200, (status, body)
        p = body["profile"]
        assert (p["clicks"], p["purchases"]) == (e["clicks"], e["purchases"])
        assert p["spend"] == pytest.approx(e["spend"], rel=1e-9)
        assert raw not in orjson.dumps(body).decode()

    # --- raw user ids never pass ingest: not in the events topic, the changelog or the log
    app_id = worker.env["PERSONA_APP_ID"]
    # The events topic holds the re-keyed events only; the changelog one write per user
    # per batch of the profile agent: at least one per user, fewer than one per event
    # when a batch holds several of a user's events.
    for internal, least in ((f"{app_id}-events", int(rekeyed)),
                            (f"{app_id}-profiles-changelog", N_USERS)):
        msgs = consume_all(bootstrap, internal, least, timeout=60, idle=1.0)
        assert len(msgs) >= least, internal
        for msg in msgs:
            blob = (msg.key or b"") + (msg.value or b"")
            assert b"rawuser-" not in blob, internal
    assert "rawuser-" not in worker.log_path.read_text(errors="replace")

    # --- after the restart, a new click gets its recommendation promptly
    ev = {"event_id": "after-restart", "user_id": raw_user(3), "item_id": "item-5",
          "ts": BASE_TS + 10_000_000}
    sent_at = time.monotonic()
    producer.send(topics["clicks"], key=ev["user_id"].encode(), value=orjson.dumps(ev))
    producer.flush()
    found = None
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False)
    parts = consumer.partitions_for_topic(topics["recommendations"])
    consumer.assign([TopicPartition(topics["recommendations"], p) for p in parts])
    consumer.seek_to_beginning()
    while found is None and time.monotonic() - sent_at < 30:
        for records in consumer.poll(timeout_ms=200).values():
            for r in records:
                rec = orjson.loads(r.value)
                if rec["trigger_event_id"] == "after-restart":
                    found = rec
    consumer.close()
    producer.close()
    assert found is not None
    assert found["user_id"] == pseudonymize(raw_user(3), SECRET.encode())
    # warm after the restart: the models came back from the shutdown checkpoint
    assert len(found["items"]) == 10
    m = worker.metrics()
    # A learned reason names the history or the user's taste; a cold model could only
    # say "popular". The hybrid explains each item by the component that put it there,
    # and its learned blend may rank MF's items first.
    learned = ("similar to",) if found["strategy"] == "cooccurrence" else (
        "similar to", "liked by people with similar taste")
    if found["strategy"] in ("hybrid", "cooccurrence"):
        assert any(i["reason"].startswith(learned) for i in found["items"]), (
            found["strategy"], [i["reason"] for i in found["items"]],
            {k: v for k, v in m.items() if "checkpoint" in k or "model_items" in k})
    assert m['persona_model_checkpoints_total{outcome="restored"}'] == 1
    assert m['persona_model_items{model="cooccurrence"}'] >= 20  # learned before the restart
