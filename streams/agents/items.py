"""Items agent: keep the in-process catalogue (titles, categories, availability) current.

Every worker needs the whole catalogue, so this is global state fed from the ``items``
topic; a null value (tombstone) deletes the item.
"""

from __future__ import annotations

import logging
import time

from streams import topics
from streams.agents.deadletter import contain_failure, send_dead_letter
from streams.app import app
from streams.records import ValidationError, decode_item
from streams.state import engine, metrics

log = logging.getLogger(__name__)


def apply_item(key: bytes | None, value: bytes | None) -> str:
    """Apply one ``items`` message to the catalogue; return 'upsert' or 'delete'."""
    item_id, item = decode_item(key, value)
    if item is None:
        engine.catalogue.delete(item_id)
        return "delete"
    engine.catalogue.upsert(
        item.item_id, item.title, item.categories, available=item.available
    )
    return "upsert"


@app.agent(topics.items, name="persona.items")
async def items(stream):  # type: ignore[no-untyped-def]
    processing = metrics.processing_seconds.labels(agent="items")
    async for event in stream.events():
        started = time.perf_counter()
        msg = event.message
        try:
            try:
                apply_item(msg.key, msg.value)
                metrics.events.labels(topic="items", outcome="accepted").inc()
                metrics.catalogue_items.set(len(engine.catalogue))
            except ValidationError as exc:
                metrics.events.labels(topic="items", outcome="invalid").inc()
                await send_dead_letter(
                    msg.topic, msg.partition, msg.offset, exc.code, exc.detail, msg.value
                )
        except Exception as exc:  # Faust would ack and lose the message
            await contain_failure("items", msg, exc)
        processing.observe(time.perf_counter() - started)
