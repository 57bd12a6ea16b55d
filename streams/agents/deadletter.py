"""Dead letters, and the guarded loop every agent runs in.

A message that cannot be processed goes to the dead-letter topic with its reason; an
agent's own failure on a message is contained there too, so Faust never acks and drops it.
A dead letter of an input message carries the producer's bytes; one of an internal
message (refused or failed further down) carries the validated fields ingest forwarded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from streams import topics
from streams.app import settings
from streams.messages import DeadLetter, now_iso
from streams.runtime import current

log = logging.getLogger(__name__)

# Topics whose messages ingest wrote: validated fields, pseudonymous ids.
_INTERNAL = frozenset({settings.events_topic, settings.ads_topic})


def dead_letter_record(
    source_topic: str, partition: int, offset: int, error: str, detail: str,
    raw: bytes | None, form: str | None = None,
) -> DeadLetter:
    """The dead-letter record (docs/contract.md, Output): ``raw`` whole when small, else a
    prefix with its length and sha256. ``form``: what ``raw`` is (``original`` or
    ``validated``); None: ``validated`` for a message of an internal topic. ``detail``
    must never carry payload values."""
    if form is None:
        form = "validated" if source_topic in _INTERNAL else "original"
    return DeadLetter.of(source_topic, partition, offset, error, detail, raw, now_iso(), form)


async def send_dead_letter(
    source_topic: str,
    partition: int,
    offset: int,
    error: str,
    detail: str,
    raw: bytes | None,
    form: str | None = None,
) -> None:
    """Publish to dead-letters and count it, without a key: an input key may be a raw
    user id."""
    record = counted_dead_letter(source_topic, partition, offset, error, detail, raw, form)
    await topics.dead_letters.send(key=None, value=record.encode())


def counted_dead_letter(
    source_topic: str, partition: int, offset: int, error: str, detail: str,
    raw: bytes | None, form: str | None = None,
) -> DeadLetter:
    """``dead_letter_record``, counted and logged: for a caller that sends it later
    (without a key), with the rest of its batch."""
    record = dead_letter_record(source_topic, partition, offset, error, detail, raw, form)
    current().metrics.dead_letters.labels(error=error).inc()
    # Offsets, codes and detail only: the payload could hold personal data.
    log.info("dead letter %s from %s[%d]@%d", error, source_topic, partition, offset)
    return record


def failure_letter(agent: str, msg, exc: BaseException) -> DeadLetter:  # type: ignore[no-untyped-def]
    """``contain_failure``'s dead letter, counted and logged, for the caller to send."""
    log.error("%s failed on %s[%d]@%d: %s", agent, msg.topic, msg.partition, msg.offset,
              type(exc).__name__)
    return counted_dead_letter(msg.topic, msg.partition, msg.offset, "internal_error",
                               type(exc).__name__, msg.value)


async def contain_failure(agent: str, msg, exc: BaseException) -> None:  # type: ignore[no-untyped-def]
    """An agent failed on ``msg`` (a bug, not bad input): keep the message in dead-letters.

    Faust would ack and lose a message whose agent raised, so every agent body ends in
    this. Only the exception type is logged: its text may quote the payload.
    """
    log.error("%s failed on %s[%d]@%d: %s", agent, msg.topic, msg.partition, msg.offset,
              type(exc).__name__)
    try:
        await send_dead_letter(msg.topic, msg.partition, msg.offset, "internal_error",
                               type(exc).__name__, msg.value)
    except Exception:  # nothing more we can do but say so
        log.exception("could not dead-letter %s[%d]@%d", msg.topic, msg.partition, msg.offset)


async def run_guarded(stream, agent: str, handle: Callable[..., Awaitable[None]]) -> None:  # type: ignore[no-untyped-def]
    """Feed each message of ``stream`` to ``handle``, timed; contain whatever it raises.

    ``handle`` deals with bad input itself (dead letters with a code); anything it lets
    escape is a bug, kept as ``internal_error`` while the loop goes on with the next one.
    """
    processing = current().metrics.processing_seconds.labels(agent=agent)
    async for event in stream.events():
        started = time.perf_counter()
        msg = event.message
        try:
            await handle(msg)
        except Exception as exc:  # Faust would ack and lose the message
            await contain_failure(agent, msg, exc)
        processing.observe(time.perf_counter() - started)
