"""Privacy against the real local Apache Kafka: a worker process, kafka-python clients.

1. No raw user id anywhere past ingest: every output, internal and changelog topic, every
   file the worker writes (checkpoints, log) and /metrics are scanned for each raw id in
   several forms. The input topics and dead-letters are left out: by contract they carry
   the producers' original bytes.
2. Erase: the profile's tombstone is in the changelog within 5 s (the latency from
   producing the privacy message to seeing the tombstone is printed), the ads table's
   request records lose the user's features and id, no checkpoint holds any user's
   pseudonym, the user is served like a stranger; all of it still true after a restart
   (a restart recovers the tables from the changelogs, as a rebalance does). When the
   broker compacts the changelogs, the user's old records are gone from them too.
3. Opt-out: a suppressed user's clicks change no model and get the non-personal list;
   after opt_in, personalization resumes.
"""

from __future__ import annotations

import base64
import json
import time
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from models.users.privacy import pseudonymize
from streams.local.worker_proc import WorkerProcess
from streams.placement import home_partition
from tests.integration.service import INPUTS, ITEMS, running_service

pytestmark = pytest.mark.integration

SECRET = "privacy-test-secret-key-0123456789"
TOKEN = "privacy-test-api-token-0123456789"
# Distinctive raw ids: mixed case, and one with non-ASCII letters (UTF-8 bytes differ from
# the characters, and NFC from NFD).
RAW = ["rawid-XYZ-123", "rawid-Qrs-456", "rawid-Ünï-789", "rawid-OPT-111", "rawid-Bee-222"]
ERASED, OPTED, OTHER = RAW[0], RAW[3], RAW[4]


def pseudo(raw: str) -> str:
    return pseudonymize(unicodedata.normalize("NFC", raw), SECRET.encode())


# Values of PII-named fields the producers send along (ingest drops the fields).
PII = ["pii.mail-7Qx@example.org", "+44-7700-900-123"]


def b64_forms(data: bytes) -> set[bytes]:
    """``data`` as it shows inside any base64 text (standard or URL-safe), whatever its
    alignment there: the characters that depend on ``data``'s bytes only."""
    out = set()
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            out.add(encode(b"\0" * shift + data)[-(-8 * shift // 6):8 * (shift + len(data)) // 6])
    return out


def forms(raw: str) -> set[bytes]:
    """The ways a raw id (or a PII value) could show up in bytes."""
    out = set()
    for text in (raw, raw.lower(), raw.upper(), unicodedata.normalize("NFD", raw),
                 json.dumps(raw)[1:-1]):  # \\u-escaped JSON
        out.add(text.encode("utf-8"))
    out.add(raw.encode("utf-16-le"))
    for data in (raw.encode("utf-8"), unicodedata.normalize("NFD", raw).encode("utf-8")):
        out.update(b64_forms(data))
        out.update((data.hex().encode(), data.hex().upper().encode()))
    return out


ALL_FORMS = {f: raw for raw in [*RAW, *PII] for f in forms(raw)}


def leaks(blob: bytes) -> list[str]:
    return sorted({raw for form, raw in ALL_FORMS.items() if form in blob})


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def service(kafka_broker, tmp_path_factory):
    data_dir: Path = tmp_path_factory.mktemp("privacy-worker")
    campaigns = data_dir / "campaigns.json"
    campaigns.write_text('{"campaigns": [{"campaign_id": "books", "max_bid": 1.0}]}')
    with running_service(kafka_broker.bootstrap, data_dir, "persona-priv", {
        "PERSONA_SECRET_KEY": SECRET,
        "PERSONA_API_TOKEN": TOKEN,
        "PERSONA_LOG_LEVEL": "info",
        "PERSONA_EXPLORATION": "0",  # one strategy, so lists are comparable
        "PERSONA_NEW_ITEM_RATE": "0",
        "PERSONA_CHECKPOINT_INTERVAL_S": "1",
        "PERSONA_CAMPAIGNS_FILE": str(campaigns),
        "PERSONA_AD_PACING": "false",
        # superseded changelog records may be compacted away 1 s after they are written
        "PERSONA_CHANGELOG_MAX_COMPACTION_LAG_S": "1",
    }) as svc:
        yield svc


class Reader:
    """Reads a topic (all partitions) from a given position on, kept open between polls."""

    def __init__(self, bootstrap: str, topic: str, from_start: bool = True) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                      enable_auto_commit=False)
        parts = None
        deadline = time.monotonic() + 30
        while not parts and time.monotonic() < deadline:
            parts = self.consumer.partitions_for_topic(topic)
            if not parts:
                time.sleep(0.2)
        assert parts, f"topic {topic} does not exist"
        self.tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(self.tps)
        if from_start:
            self.consumer.seek_to_beginning()
        else:
            self.consumer.seek_to_end()
            for tp in self.tps:  # resolve the position now, not at the first poll
                self.consumer.position(tp)

    def poll(self, timeout_ms: int = 100) -> list:
        out = []
        for records in self.consumer.poll(timeout_ms=timeout_ms).values():
            out.extend(records)
        return out

    def read_all(self, idle: float = 1.5, timeout: float = 30.0) -> list:
        """Everything up to the current end (and what comes within ``idle`` seconds)."""
        end = self.consumer.end_offsets(self.tps)
        out: list = []
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            got = self.poll(200)
            out.extend(got)
            if got:
                last = time.monotonic()
            caught_up = all(self.consumer.position(tp) >= end[tp] for tp in self.tps)
            if caught_up and time.monotonic() - last > idle:
                break
        return out

    def close(self) -> None:
        self.consumer.close()


def wait_for(reader: Reader, want: set[str], field: str, timeout: float) -> dict[str, dict]:
    """Records whose ``field`` is in ``want``, until all are seen (bounded)."""
    found: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while set(found) < want and time.monotonic() < deadline:
        for m in reader.poll(200):
            rec = orjson.loads(m.value)
            if rec.get(field) in want:
                found[rec[field]] = rec
    missing = want - set(found)
    assert not missing, f"not seen within {timeout}s: {sorted(missing)[:5]}"
    return found


def metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    key = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
                  if labels else "")
    return worker.metrics().get(key, 0.0)


def send(service, topic: str, raw_user: str | None, value: dict) -> None:
    service["producer"].send(service["topics"][topic],
                             key=None if raw_user is None else raw_user.encode(),
                             value=orjson.dumps(value))


def send_astray(service, topic: str, raw_user: str, value: dict) -> None:
    """Without a key, to a partition other than the user's home: the worker re-keys it
    through the internal events topic (streams/placement.py), whose messages the scan
    then reads too."""
    name = service["topics"][topic]
    n = len(service["producer"].partitions_for(name))
    service["producer"].send(name, key=None, value=orjson.dumps(value),
                             partition=(home_partition(raw_user, n) + 1) % n)


def scan_topics(bootstrap: str, names: Iterable[str]) -> dict[str, int]:
    """Every message (key, value, headers) of ``names``: raw ids found -> fail. Returns the
    number of messages scanned per topic."""
    scanned = {}
    for topic in names:
        reader = Reader(bootstrap, topic)
        try:
            msgs = reader.read_all(idle=0.5)
        finally:
            reader.close()
        for m in msgs:
            blob = (m.key or b"") + (m.value or b"") + b"".join(
                (k.encode() + (v or b"")) for k, v in (m.headers or []))
            assert not leaks(blob), (topic, m.partition, m.offset, leaks(blob))
        scanned[topic] = len(msgs)
    return scanned


def scan_files(root: Path) -> int:
    """Every file the worker wrote under its data dir (checkpoints, log, table stores)."""
    n = 0
    for path in root.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert not leaks(blob), (str(path.relative_to(root)), leaks(blob))
            n += 1
    return n


def key_text(key: bytes) -> str:
    """A changelog key as text (Faust writes table keys JSON-encoded)."""
    return orjson.loads(key) if key[:1] == b'"' else key.decode()


def latest_by_key(msgs: list) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for m in sorted(msgs, key=lambda m: (m.partition, m.offset)):
        out[key_text(m.key)] = m.value
    return out


def test_no_raw_id_anywhere_and_erase_is_complete_within_5s(service):
    worker: WorkerProcess = service["worker"]
    bootstrap, topics, app_id = service["bootstrap"], service["topics"], service["app_id"]
    recs = Reader(bootstrap, topics["recommendations"])
    bids = Reader(bootstrap, topics["ad_bids"])
    items = list(ITEMS)
    triggers, requests = set(), set()
    t = now_ms()
    for u, raw in enumerate(RAW):
        for n in range(6):
            eid = f"ev-{u}-{n}"
            # with PII-named fields, top level and in context: ingest drops them
            ev = {"event_id": eid, "user_id": raw, "item_id": items[(u * 3 + n) % 12],
                  "ts": t + n, "context": {"page": "home", "phone": PII[1]}, "email": PII[0]}
            if n in (2, 5):
                send(service, "purchases", raw, ev | {"price": 9.5, "quantity": 1})
            elif n == 1:
                send_astray(service, "clicks", raw, ev)
            else:
                send(service, "clicks", raw, ev)
            triggers.add(eid)
    service["producer"].flush()
    got = wait_for(recs, triggers, "trigger_event_id", timeout=60)
    assert {r["user_id"] for r in got.values()} == {pseudo(raw) for raw in RAW}
    # a fresh app's first writes did not fail (tables._Table: no PartitionsMismatch race)
    assert metric(worker, "persona_dead_letters_total", error="internal_error") == 0
    # ad requests once the profiles exist (topics are ordered only one by one), so their
    # records hold features of the users' profiles
    for u, raw in enumerate(RAW):
        for n in range(2):
            rid = f"req-{u}-{n}"
            requests.add(rid)
            (send if n == 0 else send_astray)(service, "ad_requests", raw, {
                "request_id": rid, "user_id": raw, "ts": t + 10 + n, "slot": "top",
                "floor_price": 0.0, "context": {"device": "mobile"},
                "candidates": [{"ad_id": "books-1", "campaign_id": "books",
                                "value_per_click": 20.0}]})
    service["producer"].flush()
    wait_for(bids, requests, "request_id", timeout=30)
    # a privacy round trip too (the privacy route carries raw ids): opt_out, then opt_in
    send_astray(service, "privacy", RAW[2],
                {"user_id": RAW[2], "action": "opt_out", "ts": t + 20})
    # both the same way: two requests of one user keep their order on one partition
    send_astray(service, "privacy", RAW[2],
                {"user_id": RAW[2], "action": "opt_in", "ts": t + 21})
    # Saves counted before the last learning (the ad events below): the worker's 1 s timer
    # saves whenever the models changed, so one comes after them.
    saved = metric(worker, "persona_model_checkpoints_total", outcome="saved")
    for u, raw_id in enumerate(RAW):  # shown and clicked: pCTR learns from the users' features
        for n, kind in enumerate(("impression", "click")):
            send(service, "ad_events", None, {"event_id": f"ae-{u}-{n}",
                                              "request_id": f"req-{u}-0", "ad_id": "books-1",
                                              "type": kind, "ts": t + 30 + n, "cost": 0.001,
                                              # more than the contract asks for
                                              "user_id": raw_id, "email": PII[0],
                                              "phone": PII[1]})
    # one the ads agent refuses further down (no such request), and a control command
    # with a user and a PII-named field
    send(service, "ad_events", None, {"event_id": "ae-unknown", "request_id": "req-never",
                                      "ad_id": "books-1", "type": "impression", "ts": t + 32,
                                      "user_id": RAW[1], "email": PII[0]})
    send(service, "control", None, {"action": "ads_resume", "ts": t + 33, "user_id": RAW[1],
                                    "operator_email": PII[0]})
    service["producer"].flush()
    # a checkpoint written after all that learning: the ad events counted, then a save
    # (the timer saves every second when the models changed)
    deadline = time.monotonic() + 20
    while sum(metric(worker, "persona_ad_events_total", type=kind, outcome="counted")
              for kind in ("impression", "click")) < 2 * len(RAW):
        assert time.monotonic() < deadline, "the ad events were not all counted"
        time.sleep(0.3)
    while metric(worker, "persona_model_checkpoints_total", outcome="saved") < saved + 1:
        assert time.monotonic() < deadline, "no checkpoint after learning"
        time.sleep(0.3)
    time.sleep(1.5)  # a timer round after the last learning: saved if it changed anything

    # --- 1. the scan: everything but the inputs and dead-letters
    skip = {topics[k] for k in (*INPUTS, "dead_letters")}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    every = {t for t in consumer.topics() if t.endswith(app_id.split("-")[-1]) or
             t.startswith(app_id)}
    consumer.close()
    scanned = scan_topics(bootstrap, sorted(every - skip))
    print(f"\nscanned for raw ids: {scanned}")
    # the scanner does see raw ids where they are: in an input topic (positive control)
    clicks = Reader(bootstrap, topics["clicks"])
    found = set().union(*(leaks(m.value) for m in clicks.read_all(idle=0.3)))
    clicks.close()
    assert found == set(RAW) | set(PII)
    assert leaks(base64.b64encode(b"{" + orjson.dumps({"email": PII[0]}))) == [PII[0]]
    assert leaks(RAW[2].encode().hex().encode()) == [RAW[2]]
    # a refusal after ingest dead-letters validated fields only (ingest's own dead letters
    # carry the producer's bytes by contract)
    dead = Reader(bootstrap, topics["dead_letters"])
    refused = wait_for(dead, {"unknown_request"}, "error", timeout=20)["unknown_request"]
    dead.close()
    assert refused["raw_form"] == "validated" and not leaks(orjson.dumps(refused))
    for expected in (f"{app_id}-events", f"{app_id}-ads", f"{app_id}-profiles-changelog",
                     f"{app_id}-ads-changelog", topics["recommendations"],
                     topics["ad_bids"], topics["segments"]):
        assert scanned.get(expected, 0) > 0, (expected, scanned)
    checkpoints = list((service["data_dir"] / "checkpoints" / app_id).glob("models-*"))
    assert checkpoints
    n_files = scan_files(service["data_dir"])
    print(f"scanned {n_files} files under the worker's data dir")
    assert n_files >= len(checkpoints) + 1  # and the worker log
    metrics_text = worker.metrics()
    assert not leaks(json.dumps(metrics_text).encode())
    assert not leaks(orjson.dumps(metrics_text))

    # the erased user's ad request records hold their features and id (before the erase)
    gone = pseudo(ERASED)
    ads_log = Reader(bootstrap, f"{app_id}-ads-changelog")
    ads_latest = latest_by_key(ads_log.read_all(idle=0.5))
    held = [k for k, v in ads_latest.items() if v and gone.encode() in v]
    assert sorted(held) == ["r:req-0-0", "r:req-0-1"]

    # --- 2. erase: the tombstone's latency, end to end (produce -> visible in changelog)
    changelog = Reader(bootstrap, f"{app_id}-profiles-changelog", from_start=False)
    started = time.monotonic()
    send(service, "privacy", ERASED, {"user_id": ERASED, "action": "erase", "ts": now_ms()})
    service["producer"].flush()
    tombstone_s = None
    while tombstone_s is None and time.monotonic() - started < 15:
        for m in changelog.poll(50):
            if key_text(m.key) == gone and m.value is None:
                tombstone_s = time.monotonic() - started
    changelog.close()
    print(f"\nerase latency (privacy message produced -> changelog tombstone seen): "
          f"{tombstone_s}s")
    assert tombstone_s is not None and tombstone_s < 5.0
    # the ads table: the latest record of each of the user's requests names them no more
    deadline = started + 5.0
    while True:
        ads_latest.update(latest_by_key(ads_log.read_all(idle=0.2, timeout=5)))
        held = [k for k, v in ads_latest.items() if v and gone.encode() in v]
        if not held or time.monotonic() > deadline:
            break
    ads_log.close()
    print(f"ads features forgotten (seen in the ads changelog) after "
          f"{time.monotonic() - started:.3f}s")
    assert held == [], "the ads table still holds the erased user's features"
    for key in ("r:req-0-0", "r:req-0-1"):
        rec = orjson.loads(ads_latest[key])
        assert rec["x"] is None and "u" not in rec and rec["bid"] > 0  # money kept
    assert orjson.loads(ads_latest["r:req-1-0"])["u"] == pseudo(RAW[1])  # others kept

    def check_erased() -> None:
        status, _ = worker.get_json(f"/users/{ERASED}/profile")
        assert status == 404
        status, body = worker.get_json(f"/users/{ERASED}/recommendations?k=5")
        assert status == 200 and body["known_user"] is False
        status, stranger = worker.get_json("/users/never-seen-anyone/recommendations?k=5")
        assert body["items"] == stranger["items"]  # served like anyone unknown
        for raw in RAW[1:]:
            assert worker.get_json(f"/users/{quote(raw, safe='')}/profile")[0] == 200

    check_erased()
    # --- the erase survives a restart (changelog tombstones; the ads table reloads)
    assert worker.stop() == 0
    pseudonyms = [pseudo(raw).encode() for raw in RAW]
    for path in (service["data_dir"] / "checkpoints" / app_id).glob("models-*"):
        blob = path.read_bytes()  # including the one written at shutdown
        assert not [p for p in pseudonyms if p in blob], path.name
    worker.start()
    worker.wait_ready(timeout=120)
    check_erased()
    recs.close()
    bids.close()
    # back after the erase: a new event starts a fresh profile
    recs = Reader(bootstrap, topics["recommendations"], from_start=False)
    send(service, "clicks", ERASED, {"event_id": "ev-back", "user_id": ERASED,
                                     "item_id": "item-3", "ts": now_ms()})
    service["producer"].flush()
    wait_for(recs, {"ev-back"}, "trigger_event_id", timeout=30)
    recs.close()
    status, body = worker.get_json(f"/users/{ERASED}/profile")
    assert status == 200 and (body["profile"]["clicks"], body["profile"]["purchases"]) == (1, 0)
    assert not leaks(worker.log_path.read_bytes())

    # --- 3. the old records leave the changelogs too, when the broker compacts them: for
    # the erased key only the tombstone and the new profile remain, and no ads record
    # names the user any more (the cleaner wakes every 15 s)
    deadline = time.monotonic() + 45
    while True:
        log = Reader(bootstrap, f"{app_id}-profiles-changelog")
        mine = [m.value for m in log.read_all(idle=0.3) if key_text(m.key) == gone]
        log.close()
        log = Reader(bootstrap, f"{app_id}-ads-changelog")
        named = [m.offset for m in log.read_all(idle=0.3) if m.value and gone.encode() in m.value]
        log.close()
        if (len(mine) == 2 and not named) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert mine[0] is None and mine[1] is not None and len(mine) == 2, [
        None if v is None else len(v) for v in mine]
    assert named == []


def test_opt_out_learns_nothing_and_serves_non_personal_until_opt_in(service):
    worker: WorkerProcess = service["worker"]
    bootstrap = service["bootstrap"]
    recs = Reader(bootstrap, service["topics"]["recommendations"], from_start=False)
    t = now_ms()

    def click(raw: str, eid: str, item: str) -> dict:
        send(service, "clicks", raw, {"event_id": eid, "user_id": raw, "item_id": item,
                                      "ts": now_ms()})
        service["producer"].flush()
        return wait_for(recs, {eid}, "trigger_event_id", timeout=30)[eid]

    click(OPTED, "o-1", "item-1")  # a known, personalized user first
    send(service, "privacy", OPTED, {"user_id": OPTED, "action": "opt_out", "ts": t})
    service["producer"].flush()
    deadline = time.monotonic() + 15
    while worker.get_json(f"/users/{OPTED}/profile")[1].get("profile", {}).get("clicks"):
        assert time.monotonic() < deadline, "opt_out not applied"
        time.sleep(0.2)
    updates = metric(worker, "persona_model_updates_total", model="cooccurrence")
    suppressed = metric(worker, "persona_events_total", topic="clicks", outcome="suppressed")
    sizes = {k: v for k, v in worker.metrics().items() if k.startswith("persona_model_items")}
    other_before = worker.get_json(f"/users/{OTHER}/recommendations?k=10")[1]["items"]

    served = [click(OPTED, f"o-{n}", f"opt-only-item-{n}") for n in range(2, 5)]
    assert metric(worker, "persona_model_updates_total", model="cooccurrence") == updates
    assert metric(worker, "persona_events_total", topic="clicks",
                  outcome="suppressed") == suppressed + 3
    assert {k: v for k, v in worker.metrics().items()
            if k.startswith("persona_model_items")} == sizes  # no new item in any model
    # another user with the same models gets exactly the same list as before
    assert worker.get_json(f"/users/{OTHER}/recommendations?k=10")[1]["items"] == other_before
    for rec in served:  # the non-personal list: popularity, the same for every one of them
        assert rec["strategy"] == "popularity" and rec["variant"] == "default"
        assert rec["items"] == served[0]["items"] and rec["items"]
        assert {i["reason"] for i in rec["items"]} == {"popular right now"}
        assert not any(i["item_id"].startswith("opt-only") for i in rec["items"])
    status, body = worker.get_json(f"/users/{OPTED}/profile")
    assert status == 200 and body["profile"]["clicks"] == 0  # nothing kept but the flag
    status, body = worker.get_json(f"/users/{OPTED}/recommendations?k=10")
    assert body["strategy"] == "popularity" and body["variant"] == "default"

    send(service, "privacy", OPTED, {"user_id": OPTED, "action": "opt_in", "ts": now_ms()})
    service["producer"].flush()
    back = click(OPTED, "o-9", "item-2")
    assert back["strategy"] == "hybrid"
    assert metric(worker, "persona_model_updates_total", model="cooccurrence") == updates + 1
    status, body = worker.get_json(f"/users/{OPTED}/profile")
    assert body["profile"]["clicks"] == 1 and body["profile"]["recent_items"] == ["item-2"]
    recs.close()
