"""Ingest: validate, normalize and pseudonymize every input topic but ``items``.

``accept`` checks one message of any input topic. Clicks, purchases, ad requests and
privacy requests are checked by the profile agent as they arrive: applied there when
they are on the user's home partition, else forwarded once to the internal events topic,
keyed by the pseudonymous user id, to that partition (``streams.placement``: one user,
one partition). The ingest agents here take ad events and control commands, which carry
no user, to the one-partition ads topic. Anything invalid goes to dead-letters with its
reason. Nothing escapes the loop.

Beyond the value itself, ingest checks what only it sees (docs/contract.md): the Kafka
key against the payload's user (``key_mismatch``; a missing key is counted, not refused),
the event time against the Kafka record timestamp (``stale_event``, ``future_event``,
``ts_in_seconds``), fields named like personal data (dropped and counted), and each
user's rate in event time (over it: forwarded with ``"rl": true``, counted, not learned).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from streams import topics
from streams.agents.deadletter import run_guarded, send_dead_letter
from streams.app import app, settings
from streams.messages import (
    AdEventMsg,
    AdRequestMsg,
    Click,
    ControlMsg,
    Origin,
    PrivacyMsg,
    Purchase,
    fingerprint,
)
from streams.records import (
    ValidationError,
    check_event_time,
    check_key,
    decode_ad_event,
    decode_ad_request,
    decode_click,
    decode_control,
    decode_privacy,
    decode_purchase,
    pii_fields,
)
from streams.runtime import Runtime, current

_T = settings.topics

# What ingest reads off an input topic and forwards (streams/messages.py).
Inbound = Click | Purchase | AdRequestMsg | PrivacyMsg | AdEventMsg | ControlMsg


@dataclass(frozen=True, slots=True)
class Route:
    """What ingest does with one input topic."""

    label: str  # metric label
    decode: Callable[[bytes | None], Inbound]  # value -> record, or ValidationError
    destination: str  # "events" (keyed by the pseudonymous user) or "ads" (one partition)
    keyed: bool = False  # names a user: the Kafka key should be that user
    timed: bool = False  # event time checked against the Kafka timestamp
    limited: bool = False  # counts against the user's rate limit (clicks, purchases)


# Privacy and control are never refused for their age: an erase asked two days ago is
# still an erase, and an operator's command is not an event.
ROUTES: dict[str, Route] = {
    _T.clicks: Route("clicks", decode_click, "events", keyed=True, timed=True, limited=True),
    _T.purchases: Route("purchases", decode_purchase, "events",
                        keyed=True, timed=True, limited=True),
    _T.ad_requests: Route("ad-requests", decode_ad_request, "events", keyed=True, timed=True),
    _T.privacy: Route("privacy", decode_privacy, "events", keyed=True),
    _T.ad_events: Route("ad-events", decode_ad_event, "ads", timed=True),
    _T.control: Route("control", decode_control, "ads"),
}


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid input message as it goes on (``accept``)."""

    route: Route
    record: Inbound  # under the pseudonym, with its origin (and fingerprint, rate flag)
    pseudonym: str | None  # None: the message names no user
    raw_user: str | None  # the producer's user id, for its home partition: never stored


def ingest_one(
    topic: str,
    value: bytes | None,
    kafka_ts_ms: int | None,
    partition: int = 0,
    offset: int = 0,
    key: bytes | None = None,
    rt: Runtime | None = None,
) -> tuple[str, bytes | None, bytes]:
    """Validate one raw message; return (destination, key, value) to forward (see
    ``accept``)."""
    got = accept(topic, value, kafka_ts_ms, partition, offset, key, rt)
    key_out = None if got.pseudonym is None else got.pseudonym.encode("utf-8")
    return got.route.destination, key_out, got.record.encode()


def accept(
    topic: str,
    value: bytes | None,
    kafka_ts_ms: int | None,
    partition: int = 0,
    offset: int = 0,
    key: bytes | None = None,
    rt: Runtime | None = None,
) -> Accepted:
    """Validate one raw message of an input topic (``ROUTES``): the record to forward
    or apply.

    Raises ValidationError for bad input (the value, a key naming another user, an event
    time too far from ``kafka_ts_ms``). The raw user id stops here: the record carries
    only its keyed hash. Its ``origin`` keeps the message's topic, partition and offset,
    so a later stage can dead-letter it by its real position. ``rt``: the runtime (the
    installed one if None).
    """
    rt = rt or current()
    metrics, time_limits = rt.metrics, rt.time_limits
    route = ROUTES[topic]
    msg = route.decode(value)
    user = getattr(msg, "user_id", None)
    has_key = check_key(key, user) if route.keyed and user is not None else True
    if route.timed:
        check_event_time(msg.ts_ms, kafka_ts_ms, time_limits.max_age_ms,
                         time_limits.max_future_ms)
    # Accepted from here on: count what was odd about it.
    label = route.label
    if not has_key:
        metrics.ingest_anomalies.labels(topic=label, kind="missing_key").inc()
    if value is not None:
        dropped = pii_fields(value)
        if dropped:
            metrics.pii_fields_dropped.labels(topic=label).inc(dropped)
    # Only the validated fields go on, never the producer's bytes (they may hold a user id
    # or the PII-named fields just dropped): a later refusal names the input by ``at``.
    origin = Origin(label, (topic, partition, offset), kafka_ts_ms)
    if user is None:
        return Accepted(route, replace(msg, origin=origin), None, None)
    pseudonym = rt.pseudonymize(user)
    return Accepted(route, _forward(rt, route, msg, pseudonym, origin), pseudonym, user)


def _forward(rt: Runtime, route: Route, msg: Inbound, user: str, origin: Origin) -> Inbound:
    """``msg`` as it goes on: under the pseudonym ``user``, with its origin; a click or a
    purchase also with its fingerprint and, over the user's rate, flagged ``rl``."""
    if isinstance(msg, (Click, Purchase)):
        # Forwarded, not dropped, when over the rate: the profile counts it, nothing learns.
        limited = route.limited and not rt.limiter.allow(user, msg.ts_ms)
        if limited:
            rt.metrics.events.labels(topic=route.label, outcome="rate_limited").inc()
        # The fingerprint ignores the user id: the same before or after the swap.
        return replace(msg, user_id=user, fp=fingerprint(msg), rl=limited, origin=origin)
    if isinstance(msg, PrivacyMsg) and msg.action == "erase":
        # The raw id must not linger in this process either: the cache maps raw ids to
        # pseudonyms (an erase is rare, so dropping the whole cache costs little).
        rt.limiter.forget(user)
        rt.pseudonymize.clear()
    return replace(msg, user_id=user, origin=origin)


def record_ts_ms(kafka_ts_s: float | None) -> int | None:
    """Faust gives the Kafka record timestamp in seconds (float); none is -1 or 0."""
    return None if not kafka_ts_s or kafka_ts_s <= 0 else int(kafka_ts_s * 1000)


async def _ingest(msg) -> None:  # type: ignore[no-untyped-def]
    rt = current()
    try:
        destination, key, value = ingest_one(
            msg.topic, msg.value, record_ts_ms(msg.timestamp), msg.partition, msg.offset, msg.key,
            rt,
        )
    except ValidationError as exc:
        label = ROUTES[msg.topic].label if msg.topic in ROUTES else msg.topic
        rt.metrics.events.labels(topic=label, outcome="invalid").inc()
        await send_dead_letter(msg.topic, msg.partition, msg.offset, exc.code, exc.detail,
                               msg.value)
        return
    if destination == "events":
        await topics.events.send(key=key, value=value)
    else:
        await topics.ads.send(key=None, value=value)


# One agent per input topic (one body): each message knows the topic it came from.
# Clicks, purchases, ad requests and privacy requests are read by the profile agent
# itself (``streams.agents.profile``, through ``accept``): it applies those on the
# user's home partition where they arrive and re-keys the rest (``streams.placement``).
def _ingest_agent(topic, name: str):  # type: ignore[no-untyped-def]
    async def ingest(stream):  # type: ignore[no-untyped-def]
        await run_guarded(stream, "ingest", _ingest)

    return app.agent(topic, name=name)(ingest)


ingest_ad_events = _ingest_agent(topics.ad_events, "persona.ingest-ad-events")
ingest_control = _ingest_agent(topics.control, "persona.ingest-control")
