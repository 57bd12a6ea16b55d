"""The agents' real wire forms against streams/messages.py: what ingest writes decodes to
the declared records and encodes back the same; what the agents emit has exactly the
fields docs/contract.md and ``persona schema`` declare."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from models.ads.bidding import Decision
from models.recommenders.base import ScoredItem
from streams.agents.ads import bid_record
from streams.agents.deadletter import dead_letter_record
from streams.agents.ingest import ingest_one
from streams.agents.profile import forward_to_ads, recommendation_record
from streams.app import settings
from streams.messages import (
    Click,
    Forget,
    Origin,
    PrivacyMsg,
    Purchase,
    decode_ads_message,
    decode_event_message,
    fingerprint,
)
from streams.schema import topic_schema
from tests.unit.test_schema import errors

T = settings.topics
TS = 1_760_000_000_000
DECODE = {"events": decode_event_message, "ads": decode_ads_message}

INPUTS: list[tuple[str, str, dict[str, Any]]] = [
    (T.clicks, "clicks", {"event_id": "e1", "user_id": "raw-ann", "item_id": "i1", "ts": TS,
                          "context": {"page": "home", "email": "a@b.c"},
                          "recommendation_id": "r1"}),
    (T.purchases, "purchases", {"event_id": "e2", "user_id": "raw-ann", "item_id": "i1",
                                "ts": TS, "price": 3, "quantity": 2, "currency": "EUR"}),
    (T.ad_requests, "ad-requests", {
        "request_id": "q1", "user_id": "raw-ann", "ts": TS, "slot": "top",
        "candidates": [{"ad_id": "a1", "campaign_id": "books", "value_per_click": 2,
                        "categories": ["fiction"]}]}),
    (T.privacy, "privacy", {"user_id": "raw-ann", "action": "opt_in", "ts": TS}),
    (T.ad_events, "ad-events", {"event_id": "v1", "request_id": "q1", "ad_id": "a1",
                                "type": "impression", "ts": TS}),
    (T.control, "control", {"action": "ads_resume", "ts": TS, "reason": "checked"}),
]  # fmt: skip


@pytest.mark.parametrize(("topic", "label", "msg"), INPUTS, ids=[i[1] for i in INPUTS])
def test_what_ingest_writes_is_a_declared_message(topic: str, label: str,
                                                  msg: dict[str, Any]) -> None:
    raw = orjson.dumps(msg)
    key = msg["user_id"].encode() if "user_id" in msg else None
    destination, _, value = ingest_one(topic, raw, TS + 5, partition=2, offset=9, key=key)
    record = DECODE[destination](value)
    assert orjson.loads(record.encode()) == orjson.loads(value)
    # The origin names the input message; its bytes stay at ingest.
    assert record.origin == Origin(label, (topic, 2, 9), TS + 5)
    assert b"raw-ann" not in value and "raw" not in orjson.loads(value)
    if isinstance(record, (Click, Purchase)):
        assert record.fp == fingerprint(record)
    if "user_id" in msg:
        assert record.user_id.startswith("u") and record.user_id != msg["user_id"]


def test_the_forget_order_is_the_declared_one() -> None:
    erase = PrivacyMsg("u1", "erase", TS, "p")
    assert forward_to_ads(erase) == Forget("u1", TS)
    assert forward_to_ads(PrivacyMsg("u1", "opt_in", TS, "p")) is None


def _wire(record: Any) -> dict[str, Any]:
    """What the agent sends: the record's one encoding, read back."""
    return orjson.loads(record.encode())  # type: ignore[no-any-return]


def _check(topic: str, record: dict[str, Any]) -> None:
    assert errors(topic_schema(topic), record) == []


def test_recommendations_have_the_declared_fields() -> None:
    record = _wire(recommendation_record("u1", "e1", "hybrid",
                                         [ScoredItem("i1", 0.5, "why", "mf")], 0.9,
                                         model_version="v"))
    assert set(record) == set(topic_schema("recommendations")["properties"])
    _check("recommendations", record)


def test_ad_bids_have_the_declared_fields() -> None:
    bid = _wire(bid_record(Decision("q1", "u1", TS, "a1", "books", 0.5, 0.02, None)))
    none = _wire(bid_record(Decision("q2", "u1", TS, None, None, None, None, "paced")))
    properties = set(topic_schema("ad-bids")["properties"])
    assert set(bid) == properties - {"no_bid_reason"}
    assert set(none) == {"request_id", "user_id", "ts", "no_bid_reason"}
    _check("ad-bids", bid)
    _check("ad-bids", none)


def test_dead_letters_have_the_declared_fields() -> None:
    for raw in (b"{bad", None):
        record = _wire(dead_letter_record(T.clicks, 1, 2, "bad_json", "invalid JSON", raw))
        assert set(record) == set(topic_schema("dead-letters")["properties"])
        _check("dead-letters", record)
