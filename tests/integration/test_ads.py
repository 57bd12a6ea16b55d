"""Ads end to end on the real local Apache Kafka: a worker process, kafka-python clients.

A click on an ad moves the next bid for that user; spend is charged once per impression
however often it is delivered, and never past the budget; the kill switch stops bidding
within a second and stays on across a restart; bad ad input lands in dead-letters.
"""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from models.users.privacy import pseudonymize
from streams.local.broker import ensure_topics, free_port
from streams.local.worker_proc import WorkerProcess

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-key-ads-0123456789"
BASE_TS = 1_760_000_000_000  # 2025-10-09T08:53:20Z
CAMPAIGNS = {
    "campaigns": [
        {"campaign_id": "shoes", "max_bid": 2.0, "daily_budget": 100.0, "total_budget": 0.5},
        {"campaign_id": "books", "max_bid": 1.0, "daily_budget": 50.0, "total_budget": 100.0},
    ]
}


def raw_user(i: int) -> str:
    return f"adsuser-{i:03d}-qx"


class Tail:
    """Reads a topic from the start; ``until`` waits for a record matching a predicate."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                               enable_auto_commit=False, auto_offset_reset="earliest")
        deadline = time.monotonic() + 30
        parts = None
        while not parts and time.monotonic() < deadline:
            parts = self.c.partitions_for_topic(topic)
            if not parts:
                time.sleep(0.2)
        self.c.assign([TopicPartition(topic, p) for p in parts or ()])
        self.c.seek_to_beginning()
        self.seen: list = []

    def until(self, pred, timeout: float = 30.0):  # type: ignore[no-untyped-def]
        checked = 0
        deadline = time.monotonic() + timeout
        while True:
            for r in self.seen[checked:]:
                if pred(orjson.loads(r.value)):
                    return orjson.loads(r.value)
            checked = len(self.seen)
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching record within {timeout}s")
            for records in self.c.poll(timeout_ms=200).values():
                self.seen.extend(records)

    def close(self) -> None:
        self.c.close()


@pytest.fixture(scope="module")
def ads_service(kafka_broker, tmp_path_factory):
    sfx = uuid.uuid4().hex[:8]
    names = {k: f"{k.replace('_', '-')}-{sfx}" for k in
             ("clicks", "purchases", "items", "ad_requests", "ad_events", "privacy", "control",
              "recommendations", "ad_bids", "segments", "dead_letters")}
    env = {f"PERSONA_TOPIC_{k.upper()}": v for k, v in names.items()}
    data_dir: Path = tmp_path_factory.mktemp("adsworker")
    campaigns = data_dir / "campaigns.json"
    campaigns.write_bytes(orjson.dumps(CAMPAIGNS))
    app_id = f"persona-ads-{sfx}"
    env.update({
        "PERSONA_BOOTSTRAP": kafka_broker.bootstrap,
        "PERSONA_APP_ID": app_id,
        "PERSONA_SECRET_KEY": SECRET,
        "PERSONA_DATA_DIR": str(data_dir),
        "PERSONA_SESSION_TIMEOUT_S": "6",
        "PERSONA_LOG_LEVEL": "info",
        "PERSONA_CAMPAIGNS_FILE": str(campaigns),
        "PERSONA_AD_WINDOW_S": "600",
        "PERSONA_AD_PACING": "false",
        # The requests and events carry fixed 2025 timestamps: no age limit.
        "PERSONA_MAX_EVENT_AGE_S": "0",
    })
    counts = {n: 4 for n in [*names.values(), f"{app_id}-events"]}
    counts[f"{app_id}-ads"] = 1
    ensure_topics(kafka_broker.bootstrap, list(counts), counts)
    worker = WorkerProcess(env=env, web_port=free_port(), log_path=data_dir / "worker.log")
    worker.start()
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", linger_ms=1)
    bids = None
    try:
        worker.wait_ready(timeout=120)
        bids = Tail(kafka_broker.bootstrap, names["ad_bids"])
        yield {"worker": worker, "topics": names, "bootstrap": kafka_broker.bootstrap,
               "producer": producer, "bids": bids, "app_id": app_id}
    finally:
        if bids is not None:
            bids.close()
        producer.close()
        worker.stop()


def _send(svc, topic: str, payload: dict | bytes, key: str | None = None) -> None:
    value = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    svc["producer"].send(svc["topics"][topic], key=None if key is None else key.encode(),
                         value=value)
    svc["producer"].flush()


def _request(rid: str, user: str, ts: int, campaign: str = "books", floor: float = 0.0,
             value: float = 10.0) -> dict:
    return {"request_id": rid, "user_id": user, "ts": ts, "slot": "top", "floor_price": floor,
            "candidates": [{"ad_id": f"{campaign}-ad-1", "campaign_id": campaign,
                            "value_per_click": value, "categories": ["fiction"]}]}


def _bid_for(svc, rid: str, timeout: float = 30.0) -> dict:
    return svc["bids"].until(lambda r: r["request_id"] == rid, timeout)


def _wait_metric(worker: WorkerProcess, name: str, pred, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = worker.metrics().get(name, 0.0)
        if pred(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"{name} = {value} after {timeout}s")


def test_a_click_moves_the_next_bid_for_that_user(ads_service):
    svc, worker = ads_service, ads_service["worker"]
    user = raw_user(1)
    _send(svc, "ad_requests", _request("r-1", user, BASE_TS), key=user)
    first = _bid_for(svc, "r-1")
    assert first["user_id"] == pseudonymize(user, SECRET.encode())
    assert first["ad_id"] == "books-ad-1" and first["campaign_id"] == "books"
    assert 0 < first["pctr"] < 1 and 0 < first["bid"] <= 1.0  # capped at max_bid
    _send(svc, "ad_events", {"event_id": "e-1", "request_id": "r-1", "ad_id": "books-ad-1",
                             "type": "impression", "ts": BASE_TS + 100, "cost": 0.01})
    _send(svc, "ad_events", {"event_id": "e-2", "request_id": "r-1", "ad_id": "books-ad-1",
                             "type": "click", "ts": BASE_TS + 2_000})
    _wait_metric(worker, 'persona_ad_clicks_total{campaign="books"}', lambda v: v >= 1)
    _send(svc, "ad_requests", _request("r-2", user, BASE_TS + 5_000), key=user)
    second = _bid_for(svc, "r-2")
    assert second["pctr"] > first["pctr"]
    assert second["bid"] > first["bid"]
    m = worker.metrics()
    assert m['persona_ad_bids_total{outcome="bid"}'] >= 2
    assert m['persona_ad_spend_total{campaign="books"}'] == pytest.approx(0.01)
    assert m['persona_ad_pctr_labels_total{campaign="books",label="click"}'] == 1


def test_spend_counts_once_and_never_passes_the_budget(ads_service):
    svc, worker = ads_service, ads_service["worker"]
    # "shoes" has a total budget of 0.5: bids are capped by what is left of it.
    charged = 0.0
    for n in range(6):
        rid = f"s-{n}"
        _send(svc, "ad_requests", _request(rid, raw_user(2), BASE_TS + 10_000 + n,
                                           campaign="shoes", value=50.0), key=raw_user(2))
        bid = _bid_for(svc, rid)
        if "no_bid_reason" in bid:
            assert bid["no_bid_reason"] == "budget_exhausted"
            continue
        assert bid["bid"] <= 0.5 - charged + 1e-9
        impression = {"event_id": f"si-{n}", "request_id": rid, "ad_id": "shoes-ad-1",
                      "type": "impression", "ts": BASE_TS + 10_100 + n, "cost": bid["bid"]}
        for _ in range(3):  # redelivered: charged once
            _send(svc, "ad_events", impression)
        # the same impression under another event id: still once per request
        _send(svc, "ad_events", {**impression, "event_id": f"si-{n}-again"})
        charged += bid["bid"]
        _wait_metric(worker, 'persona_ad_spend_total{campaign="shoes"}',
                     lambda v, c=charged: v == pytest.approx(c))
    assert 0 < charged <= 0.5 + 1e-9
    m = worker.metrics()
    assert m['persona_ad_spend_total{campaign="shoes"}'] == pytest.approx(charged)
    assert m['persona_ad_events_total{outcome="duplicate",type="impression"}'] >= 3
    assert m['persona_ad_bids_total{outcome="budget_exhausted"}'] >= 1
    assert m['persona_ad_budget_remaining{campaign="shoes",period="total"}'] >= -1e-9


def test_bad_ad_input_is_dead_lettered(ads_service):
    svc = ads_service
    bad = [
        ("ad_requests", b'{"request_id": "x", "user_id": "u", "ts": 1, "slot": "s", '
                        b'"floor_price": NaN, "candidates": []}'),
        ("ad_events", orjson.dumps({"event_id": "bx", "request_id": "nope", "ad_id": "a",
                                    "type": "impression", "ts": BASE_TS})),
        ("ad_events", orjson.dumps({"event_id": "by", "request_id": "r-1", "ad_id": "a",
                                    "type": "bounce", "ts": BASE_TS})),
    ]
    for topic, value in bad:
        _send(svc, topic, value)
    dls = Tail(svc["bootstrap"], svc["topics"]["dead_letters"])

    def carries(r: dict, v: bytes) -> bool:
        # ingest's refusals carry the producer's bytes, the ads agent's the validated fields
        raw = base64.b64decode(r["raw"]) if r["raw"] else None
        if raw is None or r["raw_form"] == "original":
            return raw == v
        return v == bad[1][1] and orjson.loads(raw)["event_id"] == "bx"

    try:
        got = {}
        for _topic, value in bad:
            d = dls.until(lambda r, v=value: carries(r, v))
            got[value] = (d["error"], d["source_topic"])
    finally:
        dls.close()
    assert got[bad[0][1]][1] == svc["topics"]["ad_requests"]
    assert got[bad[1][1]] == ("unknown_request", svc["topics"]["ad_events"])
    assert got[bad[2][1]][1] == svc["topics"]["ad_events"]
    assert got[bad[2][1]][0] != "unknown_request"


def test_kill_switch_within_a_second_and_across_a_restart(ads_service):
    svc, worker = ads_service, ads_service["worker"]
    user = raw_user(3)
    sent = time.monotonic()
    _send(svc, "control", {"action": "ads_kill", "ts": BASE_TS + 50_000, "reason": "test"})
    _wait_metric(worker, "persona_ad_kill_switch", lambda v: v == 1, timeout=10)
    took = time.monotonic() - sent
    print(f"kill switch on {took * 1000:.0f} ms after the control message was acked")
    assert took < 1.0
    _send(svc, "ad_requests", _request("k-1", user, BASE_TS + 60_000), key=user)
    assert _bid_for(svc, "k-1")["no_bid_reason"] == "kill_switch"

    assert worker.stop() == 0
    worker.start()
    worker.wait_ready(timeout=120)
    _send(svc, "ad_requests", _request("k-2", user, BASE_TS + 70_000), key=user)
    assert _bid_for(svc, "k-2", timeout=60)["no_bid_reason"] == "kill_switch"
    assert worker.metrics()["persona_ad_kill_switch"] == 1

    _send(svc, "control", {"action": "ads_resume", "ts": BASE_TS + 80_000})
    _wait_metric(worker, "persona_ad_kill_switch", lambda v: v == 0, timeout=10)
    _send(svc, "ad_requests", _request("k-3", user, BASE_TS + 90_000), key=user)
    assert "bid" in _bid_for(svc, "k-3")
    # spend survived the restart exactly (the ads table is changelog-backed): what is left
    # plus what open bids reserve is the budget minus the one charge of 0.01
    m = worker.metrics()
    left = m['persona_ad_budget_remaining{campaign="books",period="total"}']
    reserved = m['persona_ad_budget_reserved{campaign="books"}']
    assert reserved > 0
    assert left + reserved == pytest.approx(100.0 - 0.01)


def test_no_raw_user_id_in_ad_bids_or_ads_state(ads_service):
    svc = ads_service
    app_id = svc["app_id"]
    for topic in (svc["topics"]["ad_bids"], f"{app_id}-ads", f"{app_id}-ads-changelog"):
        t = Tail(svc["bootstrap"], topic)
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                for records in t.c.poll(timeout_ms=200).values():
                    t.seen.extend(records)
            assert t.seen, topic
            for r in t.seen:
                assert b"adsuser-" not in (r.key or b"") + (r.value or b""), topic
        finally:
            t.close()
