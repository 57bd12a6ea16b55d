"""Save model checkpoints on a timer and once more at shutdown (after consuming stops);
carry out a ``persona rollback`` request within about a second, without a restart."""

from __future__ import annotations

import logging

from streams.app import app, settings
from streams.checkpoint import CheckpointError, timed_save
from streams.runtime import current

log = logging.getLogger(__name__)

# Seconds between looks for a rollback request (one stat call each).
ROLLBACK_POLL_S = 1.0


def save_if_changed() -> None:
    """Checkpoint the models if they learned anything since the last save."""
    rt = current()
    checkpointer, metrics = rt.checkpointer, rt.metrics
    if checkpointer.pending_rollback() is not None:
        # Saving now would make the models being rolled back the newest again.
        log.info("model checkpoint skipped: a rollback is pending")
        return
    updates = rt.updates()
    if updates == rt.saved_at_updates:
        return
    try:
        version, size, seconds = timed_save(checkpointer, rt.engine, rt.checkpointed)
    except Exception as exc:  # a failed save must not stop the worker
        metrics.checkpoints.labels(outcome="failed").inc()
        log.error("model checkpoint failed: %s", type(exc).__name__)
        return
    rt.saved_at_updates = updates
    rt.checkpoint_version = version
    metrics.checkpoints.labels(outcome="saved").inc()
    metrics.checkpoint_seconds.set(seconds)
    metrics.checkpoint_bytes.set(size)
    metrics.checkpoint_version.set(version)
    log.info("model checkpoint %d: %d bytes in %.3fs", version, size, seconds)


def rollback_if_requested() -> int | None:
    """Load the checkpoint a ``persona rollback`` asked for, if one is pending."""
    rt = current()
    metrics = rt.metrics
    try:
        version = rt.checkpointer.apply_rollback(rt.engine, rt.checkpointed)
    except CheckpointError as exc:
        metrics.checkpoint_load_failures.labels(reason=exc.reason).inc()
        log.error("model rollback failed, the models stay as they were: %s", exc)
        return None
    except Exception as exc:  # a failed rollback must not stop the worker
        log.error("model rollback failed: %s", type(exc).__name__)
        return None
    if version is None:
        return None
    rt.saved_at_updates = rt.updates()  # the loaded state is on disk already
    rt.checkpoint_version = version
    metrics.checkpoints.labels(outcome="rolled_back").inc()
    metrics.checkpoint_version.set(version)
    log.warning("models rolled back to checkpoint %d (%d updates)", version, rt.engine.updates)
    return version


if settings.checkpoint_interval_s > 0:

    @app.timer(interval=settings.checkpoint_interval_s)
    async def _periodic_checkpoint() -> None:
        save_if_changed()


@app.timer(interval=ROLLBACK_POLL_S)
async def _rollback_watch() -> None:
    rollback_if_requested()


@app.on_before_shutdown.connect
async def _final_checkpoint(app, **kwargs) -> None:  # type: ignore[no-untyped-def]
    save_if_changed()
