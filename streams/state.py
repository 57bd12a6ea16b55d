"""In-process state shared by this worker's agents and views: models, metrics, key.

Item-level model state (co-occurrence, item factors, TF-IDF, popularity, catalogue) is
global, not per partition; with one worker it simply lives here (DESIGN §3).
"""

from __future__ import annotations

from models.engine import Engine
from models.privacy import Pseudonymizer
from streams import __version__
from streams.app import settings
from streams.checkpoint import Checkpointer
from streams.metrics import build_metrics

metrics = build_metrics()

# Refuses to start without PERSONA_SECRET_KEY: no raw id may pass ingest un-hashed.
pseudonymize = Pseudonymizer(settings.require_secret_key())

engine = Engine(settings.engine_config())

checkpointer = Checkpointer(settings.checkpoint_dir, keep=settings.checkpoint_keep)
# Resume warm: the newest checkpoint this worker (app id, data dir) wrote, if any.
_restored = checkpointer.restore_latest(engine)
if _restored is not None:
    metrics.checkpoints.labels(outcome="restored").inc()
    metrics.checkpoint_version.set(_restored)

MODEL_VERSION = f"persona-{__version__}/{settings.strategy}-v2"
