"""What leaves ingest for the internal topics, and what a dead letter carries.

Internal topics carry validated fields only: the producer's bytes of an ad event or a
control command (a user id, PII-named fields) stop at ingest. A refusal further down
dead-letters the validated fields with the input's position. A dead letter keeps the
original whole up to a cap, and beyond it a prefix with the original's length and sha256,
so it always fits in one produce request.
"""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest

from streams import messages
from streams.agents.ads import ads as ads_agent
from streams.agents.deadletter import dead_letter_record
from streams.agents.ingest import ingest_one
from streams.app import app, settings

T = settings.topics
ADS = settings.ads_topic
TS = 1_760_000_000_000
RAW_USER = "raw-Zed-4242"
PII = ("zed.pii@example.org", "+44-7700-900123")


def _b64_forms(data: bytes) -> set[bytes]:
    """``data`` as it shows inside any base64 text, whatever its alignment there."""
    out = set()
    for shift in range(3):
        enc = base64.b64encode(b"\0" * shift + data)
        out.add(enc[-(-8 * shift // 6):8 * (shift + len(data)) // 6])
    return out


def _forms(text: str) -> set[bytes]:
    data = text.encode("utf-8")
    return {data, data.hex().encode(), data.hex().upper().encode(), *_b64_forms(data)}


SECRETS = {f: s for s in (RAW_USER, *PII) for f in _forms(s)}


def _leaks(blob: bytes) -> list[str]:
    return sorted({s for f, s in SECRETS.items() if f in blob})


def test_the_scan_sees_every_form() -> None:  # positive control of _leaks
    for s in (RAW_USER, *PII):
        for pad in (b"", b"x", b"xy"):
            assert _leaks(base64.b64encode(pad + s.encode() + b"!")) == [s]
        assert _leaks(b"{" + s.encode().hex().encode() + b"}") == [s]


AD_EVENT = orjson.dumps({"event_id": "ev-1", "request_id": "never-asked", "ad_id": "a1",
                         "type": "impression", "ts": TS, "user_id": RAW_USER,
                         "email": PII[0], "phone": PII[1]})
CONTROL = orjson.dumps({"action": "ads_resume", "ts": TS, "operator_email": PII[0],
                        "user_id": RAW_USER})


@pytest.mark.parametrize(("topic", "value"), [(T.ad_events, AD_EVENT), (T.control, CONTROL)])
def test_ads_topic_messages_carry_validated_fields_only(topic: str, value: bytes) -> None:
    assert _leaks(value)  # the input does hold them
    destination, key, out = ingest_one(topic, value, TS, 2, 31)
    assert destination == "ads" and key is None
    assert _leaks(out) == []
    wire = orjson.loads(out)
    assert "raw" not in wire and wire["at"] == [topic, 2, 31]


def _dead_letters(sent: list) -> list[dict]:
    return [orjson.loads(v) for t, _, v in sent if t == T.dead_letters]


def test_a_refusal_after_ingest_dead_letters_the_validated_fields(loop, sent) -> None:
    _, _, forwarded = ingest_one(T.ad_events, AD_EVENT, TS, 3, 44)

    async def run() -> None:
        async with ads_agent.test_context() as agent:
            await agent.put(forwarded)

    loop.run_until_complete(run())
    [d] = _dead_letters(sent)
    assert (d["error"], d["source_topic"], d["partition"], d["offset"]) == (
        "unknown_request", T.ad_events, 3, 44)
    carried = base64.b64decode(d["raw"])
    assert _leaks(orjson.dumps(d)) == []
    assert d["raw_form"] == "validated" and d["raw_truncated"] is False
    assert (d["raw_length"], d["raw_sha256"]) == (len(carried),
                                                  hashlib.sha256(carried).hexdigest())
    got = orjson.loads(carried)
    assert (got["event_id"], got["request_id"], got["type"]) == ("ev-1", "never-asked",
                                                                 "impression")


def test_a_refused_ad_request_is_dead_lettered_without_the_users_ad_view(loop, sent) -> None:
    view = {"cats": {"fiction": 0.9}, "n": 12}
    request = {"kind": "ad_request", "request_id": "q-long", "user_id": "u" + "0" * 32,
               "ts": TS, "slot": "s" * 10_000, "floor_price": 0.0, "view": view,
               "candidates": [{"ad_id": "a1", "campaign_id": "books", "value_per_click": 1.0}],
               "src": "ad-requests", "at": [T.ad_requests, 1, 9]}

    async def run() -> None:
        async with ads_agent.test_context() as agent:
            await agent.put(orjson.dumps(request))

    loop.run_until_complete(run())
    [d] = _dead_letters(sent)
    assert (d["error"], d["source_topic"], d["offset"], d["raw_form"]) == (
        "out_of_range", T.ad_requests, 9, "validated")
    got = orjson.loads(base64.b64decode(d["raw"]))
    assert got["request_id"] == "q-long" and "view" not in got


def test_an_agents_failure_on_an_internal_message_says_which_form_it_keeps(loop, sent) -> None:
    async def run() -> None:
        async with ads_agent.test_context() as agent:
            await agent.put(b'{"kind": "not-a-kind"}')

    loop.run_until_complete(run())
    [d] = _dead_letters(sent)
    assert (d["error"], d["source_topic"], d["raw_form"]) == ("internal_error", ADS,
                                                              "validated")


def test_a_small_original_is_kept_whole() -> None:
    raw = b'{"event_id": "e", "user_id": 5' + b" " * 1000
    d = orjson.loads(dead_letter_record(T.clicks, 0, 1, "bad_json", "x", raw).encode())
    assert base64.b64decode(d["raw"]) == raw
    assert (d["raw_form"], d["raw_truncated"], d["raw_length"], d["raw_sha256"]) == (
        "original", False, len(raw), hashlib.sha256(raw).hexdigest())
    tomb = orjson.loads(dead_letter_record(T.clicks, 0, 2, "tombstone", "x", None).encode())
    assert (tomb["raw"], tomb["raw_truncated"], tomb["raw_length"], tomb["raw_sha256"]) == (
        None, False, None, None)


def test_a_900_kb_original_is_cut_to_a_prefix_that_fits_one_produce_request() -> None:
    raw = bytes(range(256)) * (900_000 // 256) + b"tail"
    record = dead_letter_record(T.clicks, 3, 8, "too_large", "900000 bytes", raw)
    wire = record.encode()
    assert len(wire) < app.conf.producer_max_request_size, len(wire)
    d = orjson.loads(wire)
    prefix = base64.b64decode(d["raw"])
    assert d["raw_truncated"] is True and raw.startswith(prefix) and 0 < len(prefix) < len(raw)
    assert (d["raw_length"], d["raw_sha256"]) == (len(raw), hashlib.sha256(raw).hexdigest())


def test_the_largest_dead_letter_fits_one_produce_request_with_room() -> None:
    cap = messages.MAX_DEAD_LETTER_RAW
    # Every message ingest could accept is kept whole: an operator can replay it.
    from streams.records import MAX_MESSAGE_BYTES
    assert cap >= MAX_MESSAGE_BYTES
    for size in (cap, cap + 1, 1_048_588):  # up to the broker's default message limit
        record = dead_letter_record("t" * 249, 2**31 - 1, 2**63 - 1, "internal_error",
                                    "d" * 1000, b"\xff" * size)
        assert len(record.encode()) < 0.8 * app.conf.producer_max_request_size
