"""Ingest agent: validate, normalize and pseudonymize clicks and purchases.

Valid events go on to the internal events topic keyed by the pseudonymous user id;
anything else goes to dead-letters with its reason. Nothing escapes the loop.
"""

from __future__ import annotations

import orjson

from streams import topics
from streams.agents.deadletter import run_guarded, send_dead_letter
from streams.app import app, settings
from streams.records import (
    ValidationError,
    decode_click,
    decode_purchase,
    to_wire,
    wire_fingerprint,
)
from streams.state import metrics, pseudonymize

_T = settings.topics
# topic name -> (metric label, decoder)
DECODERS = {
    _T.clicks: ("clicks", decode_click),
    _T.purchases: ("purchases", decode_purchase),
}


def ingest_one(topic: str, value: bytes | None, kafka_ts_ms: int | None) -> tuple[bytes, bytes]:
    """Validate one raw message; return the (key, value) for the events topic.

    Raises ValidationError for bad input. The raw user id stops here: the outgoing
    key and payload carry only its keyed hash.
    """
    label, decode = DECODERS[topic]
    event = decode(value)
    user = pseudonymize(event.user_id)
    wire = to_wire(event)
    wire["fp"] = wire_fingerprint(wire)  # ignores user_id, so before or after the swap
    wire["user_id"] = user
    wire["src"] = label
    if kafka_ts_ms is not None:
        wire["kts"] = kafka_ts_ms
    return user.encode("utf-8"), orjson.dumps(wire)


def _ts_ms(kafka_ts_s: float | None) -> int | None:
    """Faust gives the Kafka record timestamp in seconds (float)."""
    return None if not kafka_ts_s or kafka_ts_s <= 0 else int(kafka_ts_s * 1000)


async def _ingest(msg) -> None:  # type: ignore[no-untyped-def]
    try:
        key, value = ingest_one(msg.topic, msg.value, _ts_ms(msg.timestamp))
    except ValidationError as exc:
        label = DECODERS[msg.topic][0] if msg.topic in DECODERS else msg.topic
        metrics.events.labels(topic=label, outcome="invalid").inc()
        await send_dead_letter(msg.topic, msg.partition, msg.offset, exc.code, exc.detail,
                               msg.value)
    else:
        await topics.events.send(key=key, value=value)


# One agent per input topic (one body): each message knows the topic it came from.
@app.agent(topics.clicks, name="persona.ingest-clicks")
async def ingest_clicks(stream):  # type: ignore[no-untyped-def]
    await run_guarded(stream, "ingest", _ingest)


@app.agent(topics.purchases, name="persona.ingest-purchases")
async def ingest_purchases(stream):  # type: ignore[no-untyped-def]
    await run_guarded(stream, "ingest", _ingest)
