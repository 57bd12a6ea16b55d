"""Model sync: publish what this worker's item models learned, apply the other workers'.

With ``PERSONA_MODEL_SYNC`` on, the engine sums what its item-level learning changes
(``models/sync.py``); a task publishes the sums as one delta per
``PERSONA_MODEL_SYNC_INTERVAL_S`` (once they cover enough distinct users' events) on the
internal ``<app id>-model-updates`` topic (keyed by this worker's origin id, so its
deltas stay in order), and a broadcast reader applies every other worker's deltas
(``Engine.learn_shared``; each also carries the sender's blend weights, which the
receiver averages with its own). So every worker's item models learn from every event,
whichever worker's partition it came in on (docs/scaling.md). A worker skips its own
deltas (with one worker that is all of them). This module only moves bytes and counts.

At start the reader begins at the topic's end: a restarted worker resumes from its own
checkpoint and does not replay what it missed while it was down (the gap is bounded by
the checkpoint interval plus the downtime, and closes as the models keep learning).
"""

from __future__ import annotations

import asyncio
import logging

from models.sync import FormatError, decode_batch
from streams import topics
from streams.app import app, settings
from streams.broadcast import BroadcastReader
from streams.runtime import current

log = logging.getLogger(__name__)

def apply_batch(key: bytes | None, value: bytes | None) -> None:
    """Apply one batch from the sync topic (skipping this worker's own)."""
    if value is None:
        return
    rt = current()
    metrics = rt.metrics
    if key == rt.origin.encode("ascii"):  # ours (the key is the origin): skipped without decoding
        metrics.model_sync_batches.labels(outcome="own").inc()
        return
    try:
        batch = decode_batch(value)
    except FormatError:  # a worker of another release, during a rolling upgrade
        metrics.model_sync_batches.labels(outcome="other_format").inc()
        return
    except ValueError:
        metrics.model_sync_batches.labels(outcome="invalid").inc()
        return
    if batch.origin == rt.origin:
        metrics.model_sync_batches.labels(outcome="own").inc()
        return
    applied = rt.engine.learn_shared(batch)
    segmenter = rt.segments.model
    if segmenter is not None and batch.segment_sums:
        segmenter.learn_sums(batch.segment_sums)
    metrics.model_sync_batches.labels(outcome="applied").inc()
    metrics.model_sync_steps.labels(outcome="applied").inc(applied)
    metrics.model_sync_entries.inc(batch.entries)


async def publish() -> int:
    """Send what the engine summed since the last call as one delta; the events it sums
    (0: nothing sent, also while too few users' events are summed)."""
    rt = current()
    engine, metrics = rt.engine, rt.metrics
    box = engine.sync
    if box is None:
        return 0
    if box.dropped:
        metrics.model_sync_steps.labels(outcome="dropped").inc(box.dropped)
        box.dropped = 0
    if not box.ready():
        return 0
    events = box.events
    raw = engine.drain_sync(rt.origin, rt.sync_seq + 1)
    assert raw is not None
    rt.sync_seq += 1
    await topics.model_updates.send(key=rt.origin.encode("ascii"), value=raw)
    metrics.model_sync_batches.labels(outcome="sent").inc()
    metrics.model_sync_steps.labels(outcome="sent").inc(events)
    metrics.model_sync_bytes.inc(len(raw))
    return events


sync_reader = BroadcastReader(settings, settings.model_updates_topic, apply_batch,
                              from_beginning=False, name="model-sync")

if settings.model_sync:  # the runtime's engine then sums what it learns

    @app.task
    async def _read_model_updates() -> None:
        """Apply the other workers' deltas, from the topic's end at start."""
        await topics.model_updates.maybe_declare()
        await sync_reader.run()

    @app.task
    async def _publish_model_updates() -> None:
        """One delta per interval (a loop, not a timer: a slow send under load delays
        the next delta instead of overlapping it)."""
        # Not before the topic exists: a send to a topic the broker does not know yet
        # waits for its metadata and holds up every send queued behind it
        # (recommendations included). Shared with the reader's call (Faust's stampede).
        await topics.model_updates.maybe_declare()
        while True:
            await asyncio.sleep(settings.model_sync_interval_s)
            try:
                await publish()
            except Exception as exc:  # a failed send loses one delta; the next one goes on
                log.error("model sync publish failed: %s", type(exc).__name__)
