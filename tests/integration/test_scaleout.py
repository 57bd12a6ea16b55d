"""Two workers on the real broker: the catalogue is complete on both, and what each worker
learns reaches the other as summed deltas on the model-updates topic (docs/scaling.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from streams.local.broker import LocalBroker
from streams.local.chaos import Rig, read_topic
from streams.local.worker_proc import WorkerProcess

pytestmark = pytest.mark.integration

N_ITEMS = 12
CLICKED = [f"i{n}" for n in range(1, 7)]


@pytest.fixture
def rig(kafka_broker: LocalBroker, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(kafka_broker.bootstrap, tmp_path, session_timeout_s=6.0,
            extra_env={"PERSONA_MAX_EVENT_AGE_S": "0", "PERSONA_MODEL_SYNC": "true",
                       "PERSONA_CHECKPOINT_INTERVAL_S": "0"}).setup()
    try:
        yield r
    finally:
        r.close()


def _value(w: WorkerProcess, name: str, **labels: str) -> float:
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in w.metrics().items()
               if k.split("{", 1)[0] == name and all(x in k for x in want))


def _wait(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _split(workers: list[WorkerProcess], partitions: int) -> bool:
    held = []
    for w in workers:
        status, body = w.get_json("/ready")
        held.append(body.get("assigned_partitions", 0) if status == 200 else 0)
    return all(held) and sum(held) >= 8 * partitions


def test_two_workers_share_the_catalogue_and_what_each_learns(rig: Rig) -> None:
    workers = [rig.worker("w1"), rig.worker("w2")]
    for w in workers:
        w.start()
    for w in workers:
        w.wait_ready(timeout=90)
    _wait(lambda: _split(workers, rig.partitions), 40, "the partitions to be split")

    producer = KafkaProducer(bootstrap_servers=rig.bootstrap, acks="all")
    topics = rig.topics
    for n in range(1, N_ITEMS + 1):
        item = {"item_id": f"i{n}", "title": f"Film {n}", "categories": ["Drama"]}
        producer.send(topics["items"], key=f"i{n}".encode(), value=orjson.dumps(item))
    producer.flush()
    # Each worker's items agent owns half the partitions; the broadcast reader sees all.
    _wait(lambda: all(_value(w, "persona_catalogue_items") == N_ITEMS for w in workers),
          30, "the whole catalogue on both workers")

    # Users on both workers' partitions, enough on each for its deltas to leave (a delta
    # waits for MIN_USERS distinct users' events: 30 users split in two leave fewer than
    # five on one side with a chance near 1e-4).
    now = int(time.time() * 1000)
    users = [f"user-{n}" for n in range(30)]
    for n, user in enumerate(users):
        for k, item in enumerate((CLICKED[n % 6], CLICKED[(n + 1) % 6])):
            event = {"event_id": f"{user}-{k}", "user_id": user, "item_id": item,
                     "ts": now + 2 * n + k}
            producer.send(topics["clicks"], key=user.encode(), value=orjson.dumps(event))
    producer.flush()
    total = 2 * len(users)

    def learned() -> bool:
        sent = [_value(w, "persona_model_sync_steps_total", outcome="sent") for w in workers]
        applied = [_value(w, "persona_model_sync_steps_total", outcome="applied")
                   for w in workers]
        return sum(sent) >= total and applied == sent[::-1] and all(sent)

    # The last few users' events of a burst wait in the outbox until later events bring
    # enough users: more traffic (a click each from 20 more users) lets them go.
    time.sleep(1.0)
    for n in range(20):
        user = f"later-{n}"
        event = {"event_id": user, "user_id": user, "item_id": CLICKED[n % 6], "ts": now + n}
        producer.send(topics["clicks"], key=user.encode(), value=orjson.dumps(event))
    producer.flush()
    producer.close()
    _wait(learned, 30, "each worker's clicks summed, sent and applied on the other")
    # Each worker's item models hold what both learned: the same items.
    for w in workers:
        for model in ("cooccurrence", "mf", "popularity", "trending"):
            assert _value(w, "persona_model_items", model=model) == len(CLICKED), model
    other = workers[1]
    # A new user asking the other worker gets what is popular there: the clicked items.
    status, body = other.get_json("/users/newcomer/recommendations?k=3")
    assert status == 200, body
    assert {i["item_id"] for i in body["items"]} & set(CLICKED)

    # Nothing on the sync topic names a user, raw or pseudonymous.
    records = read_topic(rig.bootstrap, f"{rig.app_id}-model-updates", timeout=30)
    raw = b"".join(r.value or b"" for r in records)
    assert raw and b'"i1"' in raw
    for user in users:
        assert user.encode() not in raw and rig.user_key(user).encode() not in raw
