"""Items: keep the in-process catalogue (titles, categories, availability) current.

Every worker needs the whole catalogue, but the ``items`` agent consumes in the group and
sees only this worker's partitions. So the catalogue is fed by a broadcast reader
(``streams/broadcast.py``) that reads every partition of ``items`` from the beginning on
every worker, outside the group; a null value (tombstone) deletes the item. The agent
still validates its partitions' messages once per cluster: it dead-letters and counts
them (so an invalid item is dead-lettered once, not once per worker), and it applies them
itself only while no reader runs (Faust's test_context, which starts no tasks).
"""

from __future__ import annotations

from streams import topics
from streams.agents.deadletter import run_guarded, send_dead_letter
from streams.app import app, settings
from streams.broadcast import BroadcastReader
from streams.records import ValidationError, decode_item
from streams.runtime import current


def apply_item(key: bytes | None, value: bytes | None) -> str:
    """Apply one ``items`` message to the catalogue; return 'upsert' or 'delete'."""
    engine = current().engine
    item_id, item = decode_item(key, value)
    if item is None:
        engine.delete_item(item_id)
        return "delete"
    engine.upsert_item(
        item.item_id, item.title, item.categories, item.description or "",
        available=item.available,
    )
    return "upsert"


def _apply_broadcast(key: bytes | None, value: bytes | None) -> None:
    try:
        apply_item(key, value)
    except ValidationError:
        return  # the agent that owns its partition dead-letters it
    rt = current()
    rt.metrics.catalogue_items.set(len(rt.engine.catalogue))


catalogue_reader = BroadcastReader(settings, settings.topics.items, _apply_broadcast,
                                   from_beginning=True, name="catalogue")


@app.task
async def _read_catalogue() -> None:
    """The whole catalogue on this worker: every partition of ``items``, from the start."""
    catalogue_reader.running = True
    try:
        await catalogue_reader.run()
    finally:
        catalogue_reader.running = False


async def _item(msg) -> None:  # type: ignore[no-untyped-def]
    rt = current()
    metrics = rt.metrics
    try:
        if catalogue_reader.running:
            decode_item(msg.key, msg.value)  # validate only: the reader applies it
        else:
            apply_item(msg.key, msg.value)
    except ValidationError as exc:
        metrics.events.labels(topic="items", outcome="invalid").inc()
        await send_dead_letter(msg.topic, msg.partition, msg.offset, exc.code, exc.detail,
                               msg.value)
    else:
        metrics.events.labels(topic="items", outcome="accepted").inc()
        metrics.catalogue_items.set(len(rt.engine.catalogue))


@app.agent(topics.items, name="persona.items")
async def items(stream):  # type: ignore[no-untyped-def]
    await run_guarded(stream, "items", _item)
