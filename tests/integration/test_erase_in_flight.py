"""An erase overtaking the user's older events, against the real local Apache Kafka.

The user's clicks and ad requests travel other input topics than their privacy request,
so clicks made before an erase can reach the worker after it. Here the erase is applied
first and the user's older clicks, a purchase and an ad request follow it on their own
topics: none of them may bring anything of the user back (profile, segment, audiences,
ad features), and they are counted ``erased``; a newer click starts a new profile, and
the marker that drops the stragglers survives a restart (it has its own changelog).
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from kafka import KafkaProducer

from models.users.privacy import pseudonymize
from streams.local.worker_proc import WorkerProcess
from streams.settings import Settings
from tests.integration.service import running_service
from tests.integration.test_privacy import Reader, key_text, metric, wait_for

pytestmark = pytest.mark.integration

SECRET = "erase-in-flight-secret-key-0123456789"
TOKEN = "erase-in-flight-api-token-0123456789"
RAW, OTHER = "rawid-Late-Erase-1", "rawid-Late-Other-2"


def pseudo(raw: str) -> str:
    return pseudonymize(raw, SECRET.encode())


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def service(kafka_broker, tmp_path_factory):
    data_dir: Path = tmp_path_factory.mktemp("erase-in-flight-worker")
    (data_dir / "campaigns.json").write_text(
        '{"campaigns": [{"campaign_id": "books", "max_bid": 1.0}]}')
    (data_dir / "audiences.json").write_text(
        '{"audiences": [{"name": "spenders", "spend_at_least": 5}]}')
    with running_service(kafka_broker.bootstrap, data_dir, "persona-late", {
        "PERSONA_SECRET_KEY": SECRET,
        "PERSONA_API_TOKEN": TOKEN,
        "PERSONA_EXPLORATION": "0",
        "PERSONA_CAMPAIGNS_FILE": str(data_dir / "campaigns.json"),
        "PERSONA_AUDIENCES_FILE": str(data_dir / "audiences.json"),
        "PERSONA_AD_PACING": "false",
        # the test's old ad requests are a minute old: still biddable
        "PERSONA_AD_IMPRESSION_WINDOW_S": "3600",
    }) as svc:
        yield svc


def test_older_events_behind_an_erase_bring_nothing_back(service):
    worker: WorkerProcess = service["worker"]
    bootstrap, topics, app_id = service["bootstrap"], service["topics"], service["app_id"]
    producer: KafkaProducer = service["producer"]
    gone = pseudo(RAW)
    t0 = now_ms() - 60_000  # the user's history: the last minute
    erase_ts = t0 + 10_000

    def send(topic: str, raw: str, value: dict) -> None:
        producer.send(topics[topic], key=raw.encode(), value=orjson.dumps(value))

    def click(eid: str, raw: str, item: str, ts: int) -> None:
        send("clicks", raw, {"event_id": eid, "user_id": raw, "item_id": item, "ts": ts})

    def purchase(eid: str, raw: str, item: str, ts: int) -> None:
        send("purchases", raw, {"event_id": eid, "user_id": raw, "item_id": item, "ts": ts,
                                "price": 9.0, "quantity": 1})

    def ad_request(rid: str, ts: int) -> None:
        send("ad_requests", RAW, {
            "request_id": rid, "user_id": RAW, "ts": ts, "slot": "top", "floor_price": 0.0,
            "candidates": [{"ad_id": "books-1", "campaign_id": "books",
                            "value_per_click": 20.0}]})

    def profile() -> tuple[int, dict]:
        return worker.get_json(f"/users/{quote(RAW, safe='')}/profile")

    def erased(topic: str) -> float:
        return metric(worker, "persona_events_total", topic=topic, outcome="erased")

    def wait_erased(clicks: float, purchases: float = 0.0) -> None:
        deadline = time.monotonic() + 30
        while (erased("clicks"), erased("purchases")) != (clicks, purchases):
            assert time.monotonic() < deadline, (
                f"erased counts {erased('clicks')}, {erased('purchases')}; "
                f"profile {profile()}")
            time.sleep(0.2)

    def latest(topic: str) -> dict[str, bytes | None]:
        """The last value of each key of a changelog."""
        reader = Reader(bootstrap, topic)
        try:
            msgs = reader.read_all(idle=0.3)
        finally:
            reader.close()
        return {key_text(m.key): m.value
                for m in sorted(msgs, key=lambda m: (m.partition, m.offset))}

    recs = Reader(bootstrap, topics["recommendations"])
    bids = Reader(bootstrap, topics["ad_bids"])
    # --- the user's history: clicks and a purchase (joins the audience, gets a segment)
    for n in range(4):
        click(f"o-{n}", OTHER, f"item-{n + 4}", t0 + n)
    for n in range(3):
        click(f"h-{n}", RAW, f"item-{n}", t0 + 1000 * (n + 1))
    purchase("h-3", RAW, "item-3", t0 + 3500)
    producer.flush()
    wait_for(recs, {"o-3", "h-0", "h-1", "h-2", "h-3"}, "trigger_event_id", timeout=60)
    ad_request("q-before", t0 + 3800)
    producer.flush()
    wait_for(bids, {"q-before"}, "request_id", timeout=30)
    status, body = profile()
    assert status == 200 and body["profile"]["clicks"] == 3
    for topic, want in (("segments", None), ("audiences", ("spenders", "join"))):
        reader = Reader(bootstrap, topics[topic])
        had = [r for r in (orjson.loads(m.value) for m in reader.read_all(idle=0.5))
               if r["user_id"] == gone]
        reader.close()
        assert had and (want is None or (had[-1]["audience"], had[-1]["action"]) == want)

    # --- the erase, applied before the rest of the user's events arrive
    segs = Reader(bootstrap, topics["segments"], from_start=False)
    auds = Reader(bootstrap, topics["audiences"], from_start=False)
    changelog = Reader(bootstrap, f"{app_id}-profiles-changelog")
    send("privacy", RAW, {"user_id": RAW, "action": "erase", "ts": erase_ts})
    producer.flush()
    deadline = time.monotonic() + 15
    while profile()[0] != 404:
        assert time.monotonic() < deadline, "the erase was not applied"
        time.sleep(0.1)
    assert (erased("clicks"), erased("purchases")) == (0.0, 0.0)

    # --- the user's older events, delayed behind the erase on their own topics
    for n in range(4, 9):
        click(f"h-{n}", RAW, f"item-{n}", t0 + 1000 * n)
    click("h-9", RAW, "item-9", erase_ts)  # at the erase time: from before it too
    purchase("h-10", RAW, "item-10", t0 + 9500)
    ad_request("q-late", t0 + 9800)
    producer.flush()
    wait_erased(6, 1)
    wait_for(bids, {"q-late"}, "request_id", timeout=30)
    assert profile()[0] == 404
    late = {f"h-{n}" for n in range(4, 11)}
    assert not [r for r in (orjson.loads(m.value) for m in recs.read_all(idle=1.0))
                if r["trigger_event_id"] in late]
    seg_records = [orjson.loads(m.value) for m in segs.read_all(idle=0.5)]
    assert not [r for r in seg_records if r["user_id"] == gone]  # no segment since
    aud = [(r["audience"], r["action"]) for r in (orjson.loads(m.value)
                                                  for m in auds.read_all(idle=0.5))
           if r["user_id"] == gone]
    assert aud == [("spenders", "leave")]  # the erase's leave, and no join after it
    mine = [m.value for m in changelog.read_all(idle=0.5) if key_text(m.key) == gone]
    assert mine[-1] is None  # the tombstone is still the user's last profile record
    ads_records = latest(f"{app_id}-ads-changelog")
    held = [k for k, v in ads_records.items() if v and gone.encode() in v]
    assert held == [], held  # no ad features of the user, old request included
    late_bid = orjson.loads(ads_records["r:q-late"] or b"{}")
    assert late_bid["ad"] == "books-1" and late_bid["x"]  # a bid on context only
    assert "u" not in late_bid
    markers = latest(f"{app_id}-erasures-changelog")
    marker = orjson.loads(markers[gone])
    assert set(marker) == {"t", "e", "k"}
    # the erase time, and the partition the sweep sends its expiry to: nothing else
    assert marker["e"] == erase_ts and 0 <= marker["k"] < Settings().partitions

    # --- a newer click: the user is back, with a profile of that one click
    recs.close()
    recs = Reader(bootstrap, topics["recommendations"], from_start=False)
    click("h-new", RAW, "item-11", now_ms())
    producer.flush()
    wait_for(recs, {"h-new"}, "trigger_event_id", timeout=30)
    status, body = profile()
    assert status == 200
    fresh = body["profile"]
    assert (fresh["clicks"], fresh["purchases"], fresh["recent_items"]) == (1, 0,
                                                                            ["item-11"])
    # a newer ad request carries the new profile's view; an older one still nothing
    ad_request("q-old-again", t0 + 5000)
    ad_request("q-new", now_ms())
    producer.flush()
    wait_for(bids, {"q-old-again", "q-new"}, "request_id", timeout=30)
    deadline = time.monotonic() + 10
    while True:
        ads_records = latest(f"{app_id}-ads-changelog")
        if "r:q-new" in ads_records or time.monotonic() > deadline:
            break
    assert orjson.loads(ads_records["r:q-new"]).get("u") == gone
    old_again = orjson.loads(ads_records["r:q-old-again"] or b"{}")
    assert old_again["ad"] == "books-1" and "u" not in old_again

    # --- the marker is changelog-backed: after a restart a straggler is still dropped
    assert worker.stop() == 0
    worker.start()
    worker.wait_ready(timeout=120)
    click("h-straggler", RAW, "item-8", t0 + 8500)
    producer.flush()
    wait_erased(1)
    status, body = profile()
    assert status == 200 and body["profile"]["clicks"] == 1
    assert body["profile"]["recent_items"] == ["item-11"]
    for reader in (recs, bids, segs, auds, changelog):
        reader.close()
