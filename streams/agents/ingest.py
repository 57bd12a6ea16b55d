"""Ingest agents: validate, normalize and pseudonymize every input topic but ``items``.

Clicks, purchases, ad requests and privacy requests go on to the internal events topic
keyed by the pseudonymous user id (one user, one partition, one order); ad events and
control commands, which carry no user, go to the one-partition ads topic. Anything
invalid goes to dead-letters with its reason. Nothing escapes the loop.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson

from streams import topics
from streams.agents.deadletter import run_guarded, send_dead_letter
from streams.app import app, settings
from streams.records import (
    ValidationError,
    ad_event_to_wire,
    ad_request_to_wire,
    control_to_wire,
    decode_ad_event,
    decode_ad_request,
    decode_click,
    decode_control,
    decode_privacy,
    decode_purchase,
    privacy_to_wire,
    to_wire,
    wire_fingerprint,
)
from streams.state import metrics, pseudonymize

_T = settings.topics


def _behaviour(decode: Callable[[bytes | None], Any]) -> Callable[[bytes | None], dict]:
    def wire(value: bytes | None) -> dict:
        d = to_wire(decode(value))
        d["fp"] = wire_fingerprint(d)  # ignores user_id, so before or after the swap
        return d

    return wire


# topic name -> (metric label, value -> wire dict, destination: "events" (keyed by the
# pseudonymous user) or "ads" (the one-partition ads topic))
ROUTES: dict[str, tuple[str, Callable[[bytes | None], dict], str]] = {
    _T.clicks: ("clicks", _behaviour(decode_click), "events"),
    _T.purchases: ("purchases", _behaviour(decode_purchase), "events"),
    _T.ad_requests: ("ad-requests", lambda v: ad_request_to_wire(decode_ad_request(v)),
                     "events"),
    _T.privacy: ("privacy", lambda v: privacy_to_wire(decode_privacy(v)), "events"),
    _T.ad_events: ("ad-events", lambda v: ad_event_to_wire(decode_ad_event(v)), "ads"),
    _T.control: ("control", lambda v: control_to_wire(decode_control(v)), "ads"),
}


def ingest_one(
    topic: str,
    value: bytes | None,
    kafka_ts_ms: int | None,
    partition: int = 0,
    offset: int = 0,
) -> tuple[str, bytes | None, bytes]:
    """Validate one raw message; return (destination, key, value) to forward.

    Raises ValidationError for bad input. The raw user id stops here: the outgoing key
    and payload carry only its keyed hash. ``at`` keeps the message's origin, so a later
    stage can dead-letter it with its real topic, partition and offset.
    """
    label, to_wire_dict, destination = ROUTES[topic]
    wire = to_wire_dict(value)
    wire["src"] = label
    wire["at"] = [topic, partition, offset]
    if kafka_ts_ms is not None:
        wire["kts"] = kafka_ts_ms
    if destination == "ads" and value is not None:
        # The ads agent may refuse it later (unknown request, late): the dead letter then
        # carries the original bytes, as every dead letter does. Ad events are small.
        wire["raw"] = base64.b64encode(value).decode("ascii")
    key = None
    if "user_id" in wire:
        user = pseudonymize(wire["user_id"])
        wire["user_id"] = user
        key = user.encode("utf-8")
    return destination, key, orjson.dumps(wire)


def _ts_ms(kafka_ts_s: float | None) -> int | None:
    """Faust gives the Kafka record timestamp in seconds (float)."""
    return None if not kafka_ts_s or kafka_ts_s <= 0 else int(kafka_ts_s * 1000)


async def _ingest(msg) -> None:  # type: ignore[no-untyped-def]
    try:
        destination, key, value = ingest_one(
            msg.topic, msg.value, _ts_ms(msg.timestamp), msg.partition, msg.offset
        )
    except ValidationError as exc:
        label = ROUTES[msg.topic][0] if msg.topic in ROUTES else msg.topic
        metrics.events.labels(topic=label, outcome="invalid").inc()
        await send_dead_letter(msg.topic, msg.partition, msg.offset, exc.code, exc.detail,
                               msg.value)
        return
    if destination == "events":
        await topics.events.send(key=key, value=value)
    else:
        await topics.ads.send(key=None, value=value)


# One agent per input topic (one body): each message knows the topic it came from.
def _ingest_agent(topic, name: str):  # type: ignore[no-untyped-def]
    async def ingest(stream):  # type: ignore[no-untyped-def]
        await run_guarded(stream, "ingest", _ingest)

    return app.agent(topic, name=name)(ingest)


ingest_clicks = _ingest_agent(topics.clicks, "persona.ingest-clicks")
ingest_purchases = _ingest_agent(topics.purchases, "persona.ingest-purchases")
ingest_ad_requests = _ingest_agent(topics.ad_requests, "persona.ingest-ad-requests")
ingest_ad_events = _ingest_agent(topics.ad_events, "persona.ingest-ad-events")
ingest_privacy = _ingest_agent(topics.privacy, "persona.ingest-privacy")
ingest_control = _ingest_agent(topics.control, "persona.ingest-control")
