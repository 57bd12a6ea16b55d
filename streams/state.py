"""In-process state shared by this worker's agents and views: models, metrics, key.

Item-level model state (co-occurrence, item factors, TF-IDF, popularity, catalogue) and
the pCTR models are global, not per partition; with one worker they simply live here
(DESIGN §3). The bidder's money state is mirrored from the changelog-backed ``ads``
table by the ads agent.
"""

from __future__ import annotations

from models.ads.bidding import Bidder
from models.ads.pctr import PctrModel
from models.engine import Engine
from models.marketing.experiments import Running
from models.marketing.segments import Segmenter
from models.users.privacy import Pseudonymizer
from streams import __version__
from streams.app import settings
from streams.checkpoint import AdModels, Checkpointer, Pickled
from streams.drift import Drift
from streams.metrics import build_metrics
from streams.settings import SettingsError

# A bad campaigns or experiments file stops the worker here, naming the file and field.
campaigns = settings.read_campaigns()
experiments = settings.read_experiments()
audiences = settings.read_audiences()
try:
    running = Running(experiments)
except ValueError as exc:
    raise SettingsError(f"PERSONA_EXPERIMENTS_FILE {settings.experiments_file}: {exc}") from None
metrics = build_metrics(campaigns=tuple(campaigns),
                        experiments={n: e.variant_names for n, e in experiments.items()},
                        segments=[f"s{j}" for j in range(settings.segments)],
                        audiences=tuple(audiences))

# ADWIN on the recommender's hits and the click models' log loss (persona_model_drift_total).
drift = Drift(metrics, delta=settings.drift_delta)

# Refuses to start without PERSONA_SECRET_KEY: no raw id may pass ingest un-hashed.
pseudonymize = Pseudonymizer(settings.require_secret_key())

engine = Engine(settings.engine_config())
bidder = Bidder(
    campaigns,
    pctr=PctrModel(prior_ctr=settings.ad_prior_ctr),
    pcvr=PctrModel(prior_ctr=0.05),
    window_ms=int(settings.ad_window_s * 1000),
    impression_window_ms=int(min(settings.ad_impression_window_s, settings.ad_window_s) * 1000),
    retention_ms=int(settings.ad_retention_s * 1000),
    max_records=settings.ad_max_records,
    pacing=settings.ad_pacing,
)
ad_models = AdModels(bidder)


class Segments:
    """The segmenter (None when PERSONA_SEGMENTS is 0), replaced whole on restore."""

    def __init__(self, k: int) -> None:
        self.model: Segmenter | None = Segmenter(k=k) if k else None


segments = Segments(settings.segments)
checkpointed = {"ads": ad_models}
if segments.model is not None:
    checkpointed["segments"] = Pickled(segments, Segmenter)  # type: ignore[assignment]

# Signed with a key derived from PERSONA_SECRET_KEY: a file the worker did not write is
# refused before it is unpickled (streams/checkpoint.py).
checkpointer = Checkpointer(settings.checkpoint_dir, keep=settings.checkpoint_keep,
                            secret=settings.require_secret_key())
# Resume warm: the newest checkpoint this worker (app id, data dir) wrote, if any.
_restored = checkpointer.restore_latest(
    engine, checkpointed,
    on_failure=lambda reason: metrics.checkpoint_load_failures.labels(reason=reason).inc())
if _restored is not None:
    metrics.checkpoints.labels(outcome="restored").inc()
    metrics.checkpoint_version.set(_restored)

MODEL_VERSION = f"persona-{__version__}/{settings.strategy}-v2"
