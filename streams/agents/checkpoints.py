"""Save model checkpoints on a timer and once more at shutdown (after consuming stops)."""

from __future__ import annotations

import logging

from streams.app import app, settings
from streams.checkpoint import timed_save
from streams.state import bidder, checkpointed, checkpointer, engine, metrics, segments

log = logging.getLogger(__name__)

_saved_at_updates = -1


def save_if_changed() -> None:
    """Checkpoint the models if they learned anything since the last save."""
    global _saved_at_updates
    updates = (engine.updates + bidder.pctr.n_updates + bidder.pcvr.n_updates  # type: ignore[attr-defined]
               + (segments.model.n_learned if segments.model is not None else 0))
    if updates == _saved_at_updates:
        return
    try:
        version, size, seconds = timed_save(checkpointer, engine, checkpointed)
    except Exception as exc:  # a failed save must not stop the worker
        metrics.checkpoints.labels(outcome="failed").inc()
        log.error("model checkpoint failed: %s", type(exc).__name__)
        return
    _saved_at_updates = updates
    metrics.checkpoints.labels(outcome="saved").inc()
    metrics.checkpoint_seconds.set(seconds)
    metrics.checkpoint_bytes.set(size)
    metrics.checkpoint_version.set(version)
    log.info("model checkpoint %d: %d bytes in %.3fs", version, size, seconds)


if settings.checkpoint_interval_s > 0:

    @app.timer(interval=settings.checkpoint_interval_s)
    async def _periodic_checkpoint() -> None:
        save_if_changed()


@app.on_before_shutdown.connect
async def _final_checkpoint(app, **kwargs) -> None:  # type: ignore[no-untyped-def]
    save_if_changed()
