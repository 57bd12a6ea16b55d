"""PERSONA_TABLE_STORE=rocksdb://: a real worker keeps its tables on disk (rocksdict) and
finds every profile again after a restart, on the real local Apache Kafka."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from streams.local.broker import ensure_topics, free_port
from streams.local.worker_proc import WorkerProcess

pytestmark = pytest.mark.integration

SECRET = "table-store-test-secret-key-0123456789"
TOKEN = "table-store-test-api-token-0123"
USERS = [f"store-user-{i}" for i in range(5)]
BASE_TS = 1_760_000_000_000


def _profile(worker: WorkerProcess, user: str) -> dict | None:
    status, body = worker.get_json(f"/users/{user}/profile")
    return body["profile"] if status == 200 else None


def _wait_clicks(worker: WorkerProcess, want: dict[str, int], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    seen: dict[str, int | None] = {}
    while time.monotonic() < deadline:
        seen = {u: (_profile(worker, u) or {}).get("clicks") for u in want}
        if seen == want:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"profiles {seen}, want {want}; log:\n{worker.log_tail()}")


def test_worker_keeps_profiles_in_rocksdb_across_a_restart(kafka_broker, tmp_path: Path):
    sfx = uuid.uuid4().hex[:8]
    names = {k: f"{k.replace('_', '-')}-{sfx}" for k in
             ("clicks", "purchases", "items", "ad_requests", "ad_events", "privacy", "control",
              "recommendations", "ad_bids", "segments", "audiences", "dead_letters")}
    app_id = f"persona-store-{sfx}"
    env = {f"PERSONA_TOPIC_{k.upper()}": v for k, v in names.items()}
    env.update({
        "PERSONA_BOOTSTRAP": kafka_broker.bootstrap, "PERSONA_APP_ID": app_id,
        "PERSONA_SECRET_KEY": SECRET, "PERSONA_API_TOKEN": TOKEN,
        "PERSONA_DATA_DIR": str(tmp_path), "PERSONA_SESSION_TIMEOUT_S": "6",
        "PERSONA_TABLE_STORE": "rocksdb://", "PERSONA_MAX_EVENT_AGE_S": "0",
    })
    counts = {n: 4 for n in [*names.values(), f"{app_id}-events"]}
    counts[f"{app_id}-ads"] = 1
    ensure_topics(kafka_broker.bootstrap, list(counts), counts)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")

    def click(n: int, user: str) -> None:
        ev = {"event_id": f"{sfx}-{n}", "user_id": user, "item_id": f"item-{n % 7}",
              "ts": BASE_TS + n * 1000}
        producer.send(names["clicks"], key=user.encode(), value=orjson.dumps(ev))

    worker = WorkerProcess(env=env, web_port=free_port(), log_path=tmp_path / "worker.log")
    try:
        worker.start()
        worker.wait_ready(timeout=60)
        for n in range(40):
            click(n, USERS[n % len(USERS)])
        producer.flush()
        _wait_clicks(worker, dict.fromkeys(USERS, 8), timeout=40)
    finally:
        worker.stop()
    # The profiles table is on disk: one RocksDB database per partition.
    table_dir = tmp_path / "worker" / app_id
    databases = [p.parent for p in table_dir.rglob("CURRENT") if "profiles" in str(p)]
    assert len(databases) >= 1, sorted(str(p) for p in table_dir.rglob("*"))[:40]

    restarted = WorkerProcess(env=env, web_port=free_port(), log_path=tmp_path / "worker2.log")
    try:
        restarted.start()
        restarted.wait_ready(timeout=60)
        _wait_clicks(restarted, dict.fromkeys(USERS, 8), timeout=20)  # nothing lost
        click(40, USERS[0])
        producer.flush()
        _wait_clicks(restarted, {**dict.fromkeys(USERS, 8), USERS[0]: 9}, timeout=30)
    finally:
        producer.close()
        restarted.stop()
