"""Items agent: keep the in-process catalogue (titles, categories, availability) current.

Every worker needs the whole catalogue, so this is global state fed from the ``items``
topic; a null value (tombstone) deletes the item.
"""

from __future__ import annotations

from streams import topics
from streams.agents.deadletter import run_guarded, send_dead_letter
from streams.app import app
from streams.records import ValidationError, decode_item
from streams.state import engine, metrics


def apply_item(key: bytes | None, value: bytes | None) -> str:
    """Apply one ``items`` message to the catalogue; return 'upsert' or 'delete'."""
    item_id, item = decode_item(key, value)
    if item is None:
        engine.delete_item(item_id)
        return "delete"
    engine.upsert_item(
        item.item_id, item.title, item.categories, item.description or "",
        available=item.available,
    )
    return "upsert"


async def _item(msg) -> None:  # type: ignore[no-untyped-def]
    try:
        apply_item(msg.key, msg.value)
    except ValidationError as exc:
        metrics.events.labels(topic="items", outcome="invalid").inc()
        await send_dead_letter(msg.topic, msg.partition, msg.offset, exc.code, exc.detail,
                               msg.value)
    else:
        metrics.events.labels(topic="items", outcome="accepted").inc()
        metrics.catalogue_items.set(len(engine.catalogue))


@app.agent(topics.items, name="persona.items")
async def items(stream):  # type: ignore[no-untyped-def]
    await run_guarded(stream, "items", _item)
