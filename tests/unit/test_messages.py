"""The internal topics' messages (streams/messages.py): one encoding and one decoder each,
compatible with the dicts ingest has always written; the ad request's conversion to a bid."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import fields, replace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.ads.bidding import AdCandidate, AdRequest
from streams.messages import (
    AD_EVENT_TYPES,
    ADS_KINDS,
    CONTROL_ACTIONS,
    EVENTS_KINDS,
    NO_ORIGIN,
    PRIVACY_ACTIONS,
    AdBid,
    AdCandidateMsg,
    AdEventMsg,
    AdRequestMsg,
    AudienceChange,
    Click,
    ControlMsg,
    DeadLetter,
    Expire,
    Forget,
    MessageError,
    Origin,
    PrivacyMsg,
    Purchase,
    Recommendation,
    RecommendedItem,
    SegmentChange,
    Tick,
    decode_ads_message,
    decode_event_message,
    fingerprint,
    to_bid_request,
    wire_fingerprint,
)
from streams.records import (
    decode_ad_event,
    decode_ad_request,
    decode_click,
    decode_control,
    decode_privacy,
    decode_purchase,
)

TS = 1_714_564_800_000
KTS = TS + 250
USER = "u" + "3f" * 16  # a pseudonym's shape


def _old_fingerprint(payload: dict[str, Any]) -> str:
    """The fingerprint ingest has always stored: the payload without user_id, sorted keys."""
    body = orjson.dumps({k: v for k, v in payload.items() if k != "user_id"},
                        option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(body, digest_size=8).hexdigest()


# -- today's wire dicts, as ingest_one and the profile agent build them ------------------

CLICK_PAYLOAD = {"kind": "click", "event_id": "e1", "user_id": USER, "item_id": "i1", "ts": TS,
                 "context": {"page": "home", "n": 2}, "recommendation_id": "r9"}
PURCHASE_PAYLOAD = {"kind": "purchase", "event_id": "e2", "user_id": USER, "item_id": "i2",
                    "ts": TS, "price": 2.5, "quantity": 3, "currency": "EUR"}
REQUEST_PAYLOAD = {
    "kind": "ad_request", "request_id": "q1", "user_id": USER, "ts": TS, "slot": "top",
    "floor_price": 0.1,
    "candidates": [{"ad_id": "a1", "campaign_id": "c1", "value_per_click": 0.5,
                    "categories": ["books"], "value_per_conversion": 4.0},
                   {"ad_id": "a2", "campaign_id": "c1", "value_per_click": 1.5}],
    "context": {"page": "search"},
}  # fmt: skip
AD_EVENT_RAW = b'{"event_id": "v1", "request_id": "q1", "ad_id": "a1", "type": "click", "ts": 1}'
CONTROL_RAW = b'{"action": "ads_kill", "ts": 1714564800000, "reason": "runaway"}'
VIEW = {"i": [["books", 0.667], ["films", 0.333]], "r": 2, "f": 1, "s": "s0"}
REQUEST = AdRequestMsg(
    "q1", USER, TS, "top", 0.1,
    (AdCandidateMsg("a1", "c1", 0.5, ("books",), 4.0), AdCandidateMsg("a2", "c1", 1.5)),
    {"page": "search"},
)  # fmt: skip

# (name, today's dict, the record it decodes to, the topic(s) it travels)
TODAY: list[tuple[str, dict[str, Any], Any, tuple[str, ...]]] = [
    ("click, rate-limited",
     {**CLICK_PAYLOAD, "fp": _old_fingerprint(CLICK_PAYLOAD), "src": "clicks",
      "at": ["clicks", 3, 42], "kts": KTS, "rl": True},
     Click("e1", USER, "i1", TS, "r9", {"page": "home", "n": 2}, _old_fingerprint(CLICK_PAYLOAD),
           True, Origin("clicks", ("clicks", 3, 42), KTS)),
     ("events",)),
    ("purchase, no Kafka timestamp",
     {**PURCHASE_PAYLOAD, "fp": _old_fingerprint(PURCHASE_PAYLOAD), "src": "purchases",
      "at": ["purchases", 0, 7]},
     Purchase("e2", USER, "i2", TS, 2.5, 3, "EUR", None, _old_fingerprint(PURCHASE_PAYLOAD),
              False, Origin("purchases", ("purchases", 0, 7))),
     ("events",)),
    ("ad request from ingest",
     {**REQUEST_PAYLOAD, "src": "ad-requests", "at": ["ad-requests", 1, 5], "kts": KTS},
     replace(REQUEST, origin=Origin("ad-requests", ("ad-requests", 1, 5), KTS)),
     ("events",)),
    ("ad request with the user's view",
     {**REQUEST_PAYLOAD, "src": "ad-requests", "at": ["ad-requests", 1, 5], "kts": KTS,
      "view": VIEW},
     replace(REQUEST, view=VIEW, origin=Origin("ad-requests", ("ad-requests", 1, 5), KTS)),
     ("events", "ads")),
    ("ad request of an opted-out user", {**REQUEST_PAYLOAD, "view": {"np": True}},
     replace(REQUEST, view={"np": True}), ("ads",)),
    ("privacy",
     {"kind": "privacy", "event_id": "privacy:erase:5", "user_id": USER, "action": "erase",
      "ts": 5, "src": "privacy", "at": ["privacy", 2, 9], "kts": KTS},
     PrivacyMsg(USER, "erase", 5, "privacy:erase:5", Origin("privacy", ("privacy", 2, 9), KTS)),
     ("events",)),
    ("expire", {"kind": "expire", "user_id": USER, "before": TS}, Expire(USER, TS), ("events",)),
    ("ad event",
     {"kind": "ad_event", "event_id": "v1", "request_id": "q1", "ad_id": "a1", "type": "click",
      "ts": 1, "cost": 0.0, "revenue": 0.0, "src": "ad-events", "at": ["ad-events", 0, 11],
      "kts": KTS},
     AdEventMsg("v1", "q1", "a1", "click", 1, 0.0, 0.0,
                Origin("ad-events", ("ad-events", 0, 11), KTS)),
     ("ads",)),
    ("control",
     {"kind": "control", "action": "ads_kill", "ts": TS, "reason": "runaway", "src": "control",
      "at": ["control", 0, 1], "kts": KTS},
     ControlMsg("ads_kill", TS, "runaway", Origin("control", ("control", 0, 1), KTS)),
     ("ads",)),
    ("forget", {"kind": "forget", "user_id": USER, "ts": 5}, Forget(USER, 5), ("ads",)),
    ("tick", {"kind": "tick"}, Tick(), ("ads",)),
]  # fmt: skip

DECODERS = {"events": decode_event_message, "ads": decode_ads_message}


@pytest.mark.parametrize(("name", "today", "record", "topics"), TODAY, ids=[t[0] for t in TODAY])
def test_todays_dicts_decode_to_the_record_and_encode_back_the_same(
        name: str, today: dict[str, Any], record: Any, topics: tuple[str, ...]) -> None:
    raw = orjson.dumps(today)
    for topic in topics:
        assert DECODERS[topic](raw) == record
    # A worker still on the old code reads the new bytes: same keys, same values.
    assert orjson.loads(record.encode()) == today
    assert record.encode() == orjson.dumps(record.to_dict())  # compact, no spaces


def test_an_older_writers_raw_bytes_are_read_past_and_not_passed_on() -> None:
    # Ingest once put the producer's bytes on the ads topic as ``raw``; they go no further.
    old = {"kind": "ad_event", "event_id": "v1", "request_id": "q1", "ad_id": "a1",
           "type": "click", "ts": 1, "cost": 0.0, "revenue": 0.0, "at": ["ad-events", 0, 11],
           "raw": base64.b64encode(AD_EVENT_RAW).decode("ascii")}
    record = decode_ads_message(orjson.dumps(old))
    assert record.origin == Origin(at=("ad-events", 0, 11)) and b"raw" not in record.encode()


def test_the_fingerprint_ingest_stored_is_the_records_fingerprint() -> None:
    # A dedupe window written before this change still recognizes a redelivery after it.
    for payload, record in ((CLICK_PAYLOAD, TODAY[0][2]), (PURCHASE_PAYLOAD, TODAY[1][2])):
        assert fingerprint(record) == _old_fingerprint(payload) == record.fp
        assert wire_fingerprint(record.to_dict()) == record.fp
        assert fingerprint(replace(record, user_id="other", rl=False, origin=NO_ORIGIN,
                                   fp="")) == record.fp


def test_decoded_inputs_travel_unchanged() -> None:
    # What ingest does: decode, swap the user for the pseudonym, add fp and origin.
    raw = (b'{"event_id": " e1 ", "user_id": 42, "item_id": "i1", "ts": "2024-05-01T12:00:00Z",'
           b' "context": {"page": "home", "email": "x@y.z"}}')
    click = decode_click(raw)
    sent = replace(click, user_id=USER, fp=fingerprint(click),
                   origin=Origin("clicks", ("clicks", 0, 1), KTS))
    assert decode_event_message(sent.encode()) == sent
    assert sent.to_dict()["fp"] == _old_fingerprint({**click.to_dict()})
    purchase = decode_purchase(b'{"event_id": "e", "user_id": "u", "item_id": "i", "ts": 5, '
                               b'"price": 1, "quantity": 2.0}')
    assert decode_event_message(purchase.encode()) == purchase
    for msg, decode in ((decode_ad_request(orjson.dumps({**REQUEST_PAYLOAD, "user_id": "raw"})),
                         decode_event_message),
                        (decode_ad_event(AD_EVENT_RAW), decode_ads_message),
                        (decode_control(CONTROL_RAW), decode_ads_message),
                        (decode_privacy(b'{"user_id": "u", "action": "opt_in", "ts": 5}'),
                         decode_event_message)):
        assert decode(msg.encode()) == msg


def test_forms_missing_optional_keys_still_decode() -> None:
    # Hand-built forms (agent tests, older writers): no origin, no fp, no cost, no event_id.
    click = decode_event_message(b'{"kind": "click", "event_id": "e", "user_id": "u", '
                                 b'"item_id": "i", "ts": 5}')
    assert click == Click("e", "u", "i", 5) and click.origin is NO_ORIGIN and click.fp == ""
    event = decode_ads_message(b'{"kind": "ad_event", "event_id": "e", "request_id": "r", '
                               b'"ad_id": "a", "type": "impression", "ts": 5, '
                               b'"at": ["ad-events", 1, 7]}')
    assert (event.cost, event.revenue, event.origin) == (0.0, 0.0,
                                                         Origin(at=("ad-events", 1, 7)))
    privacy = decode_event_message(b'{"kind": "privacy", "user_id": "u", "action": "opt_out", '
                                   b'"ts": 5}')
    assert privacy == PrivacyMsg("u", "opt_out", 5, "privacy:opt_out:5")
    request = decode_ads_message(orjson.dumps({k: v for k, v in REQUEST_PAYLOAD.items()
                                               if k != "floor_price"}))
    assert request.floor_price == 0.0 and request.view is None


@pytest.mark.parametrize(
    ("decode", "raw", "words"),
    [
        (decode_event_message, b'{"kind": "tick"}', ["'tick'", "events", "click", "expire"]),
        (decode_ads_message, b'{"kind": "click"}', ["'click'", "ads", "ad_event", "tick"]),
        (decode_event_message, b'{"kind": "rating", "event_id": "e"}', ["'rating'"]),
        (decode_ads_message, b'{"user_id": "u"}', ["kind missing"]),
        (decode_event_message, b'[1, 2]', ["kind missing"]),
        (decode_ads_message, b'{"kind": 7}', ["kind missing"]),
        (decode_event_message, b'not json', ["not JSON"]),
        (decode_event_message, b'{"kind": "click", "event_id": "e"}', ["click", "'user_id'"]),
        (decode_ads_message, b'{"kind": "ad_request", "request_id": "r", "user_id": "u", '
                             b'"ts": 1, "slot": "s", "candidates": 5}', ["ad_request",
                                                                          "malformed"]),
    ],
)
def test_what_is_not_a_message_of_the_topic_raises_a_clear_error(
        decode: Any, raw: bytes, words: list[str]) -> None:
    with pytest.raises(MessageError) as info:
        decode(raw)
    text = str(info.value)
    assert all(w in text for w in words), text
    assert isinstance(info.value, ValueError)  # the agents' guard contains ValueErrors
    # No chained exception that could carry a value into a logged traceback.
    exc = info.value
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


def test_each_topic_knows_its_kinds() -> None:
    assert set(EVENTS_KINDS) == {"click", "purchase", "ad_request", "privacy", "expire"}
    assert set(ADS_KINDS) == {"ad_request", "ad_event", "control", "forget", "tick"}


def test_raw_bytes_stay_out_of_repr() -> None:
    secret = b'{"user_id": "SECRET-raw-user"}'
    for record in (DeadLetter("clicks", 0, 1, "bad_json", "invalid JSON", secret, "t"),
                   DeadLetter.of("clicks", 0, 1, "bad_json", "invalid JSON", secret, "t")):
        assert "SECRET" not in repr(record)


# -- the bidder's request -----------------------------------------------------------------


def test_to_bid_request_is_the_bidders_request() -> None:
    msg = replace(REQUEST, view=VIEW)
    assert to_bid_request(msg) == AdRequest(
        "q1", USER, TS, "top", 0.1,
        (AdCandidate("a1", "c1", 0.5, ("books",), 4.0), AdCandidate("a2", "c1", 1.5)),
        {"page": "search"}, VIEW)  # fmt: skip
    assert to_bid_request(REQUEST).view == {}  # no view: a contextual bid
    assert to_bid_request(decode_ads_message(msg.encode())) == to_bid_request(msg)


def test_to_bid_request_raises_value_error_beyond_the_bidders_limits() -> None:
    with pytest.raises(ValueError):
        to_bid_request(replace(REQUEST, slot="s" * 10_000))


def test_every_field_is_declared_with_a_description() -> None:
    records = {*EVENTS_KINDS.values(), *ADS_KINDS.values(), Origin, AdCandidateMsg,
               Recommendation, RecommendedItem, AdBid, SegmentChange, AudienceChange,
               DeadLetter}
    for record in records:
        for f in fields(record):
            assert f.metadata.get("doc"), f"{record.__name__}.{f.name} has no description"


# -- properties: every record survives its encoding -------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
ids = _text.filter(bool)
ts_ms = st.integers(0, 4_102_444_800_000 - 1)
scalars = st.one_of(_text, st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.booleans())
contexts = st.none() | st.dictionaries(ids, scalars, min_size=1, max_size=4)
amounts = st.floats(0.0, 1e6, exclude_min=True)
origins = st.just(NO_ORIGIN) | st.builds(
    Origin, st.none() | ids, st.none() | st.tuples(ids, st.integers(0, 99), st.integers(0, 2**40)),
    st.none() | ts_ms)
views = st.none() | st.just({}) | st.just({"np": True}) | st.fixed_dictionaries(
    {"i": st.lists(st.tuples(ids, st.floats(0.001, 1.0)).map(list), max_size=3),
     "r": st.integers(-1, 10), "f": st.integers(0, 10), "s": _text})
candidates = st.builds(AdCandidateMsg, ids, ids, amounts,
                       st.lists(ids, max_size=3, unique=True).map(tuple), st.none() | amounts)
fps = st.just("") | st.text("0123456789abcdef", min_size=16, max_size=16)

records = st.one_of(
    st.builds(Click, ids, ids, ids, ts_ms, st.none() | ids, contexts, fps, st.booleans(),
              origins),
    st.builds(Purchase, ids, ids, ids, ts_ms, amounts, st.integers(1, 10_000),
              st.none() | st.just("EUR"), st.none() | ids, fps, st.booleans(), origins),
    st.builds(AdRequestMsg, ids, ids, ts_ms, ids, st.floats(0.0, 1e6),
              st.lists(candidates, min_size=1, max_size=3).map(tuple), contexts, views, origins),
    st.builds(AdEventMsg, ids, ids, ids, st.sampled_from(AD_EVENT_TYPES), ts_ms,
              st.floats(0.0, 1e6), st.floats(0.0, 1e6), origins),
    st.builds(PrivacyMsg, ids, st.sampled_from(PRIVACY_ACTIONS), ts_ms, ids, origins),
    st.builds(ControlMsg, st.sampled_from(CONTROL_ACTIONS), ts_ms, st.none() | ids, origins),
    st.builds(Expire, ids, ts_ms),
    st.builds(Forget, ids, ts_ms),
    st.just(Tick()),
)


@settings(deadline=None, max_examples=300)
@given(records)
def test_every_record_round_trips_through_its_topics(record: Any) -> None:
    raw = record.encode()
    decoded = 0
    for kinds, decode in ((EVENTS_KINDS, decode_event_message), (ADS_KINDS, decode_ads_message)):
        if record.kind in kinds:
            back = decode(raw)
            assert back == record and type(back) is type(record)
            assert back.encode() == raw
            decoded += 1
        else:
            with pytest.raises(MessageError):
                decode(raw)
    assert decoded
