"""The worker's runtime: every model, metric and piece of in-process state its agents and
views share, built from one ``Settings`` value at worker start.

Importing this module does nothing but define. ``Runtime(settings)`` reads the campaign,
experiment and audience files, demands the pseudonymization key and builds the models;
``restore()`` loads the newest checkpoint. The worker builds one at start
(``persona worker``, or on first use: ``current()``); a test builds its own from a
``Settings`` value and ``install``s it.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from models.ads.bidding import Bidder
from models.ads.clock import EventClock
from models.ads.pctr import PctrModel
from models.engine import Engine
from models.marketing.audiences import Audience
from models.marketing.experiments import Running
from models.marketing.segments import Segmenter
from models.sync import Outbox
from models.users.privacy import Pseudonymizer
from models.users.ratelimit import UserRateLimiter
from streams import __version__
from streams.checkpoint import AdModels, Checkpointer, Pickled
from streams.drift import Drift
from streams.metrics import Metrics, build_metrics
from streams.settings import Settings, SettingsError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TimeLimits:
    """PERSONA_MAX_EVENT_AGE_S and PERSONA_MAX_FUTURE_S in milliseconds (0: off)."""

    max_age_ms: int
    max_future_ms: int


class Segments:
    """The segmenter (None when PERSONA_SEGMENTS is 0), replaced whole on restore."""

    def __init__(self, k: int) -> None:
        self.model: Segmenter | None = Segmenter(k=k) if k else None


class AdTallies:
    """Per campaign since start: bids, impressions, spend, revenue, predicted and actual
    clicks, for the win-rate, ROI and calibration gauges."""

    def __init__(self) -> None:
        self.by_campaign: dict[str, dict[str, float]] = {}

    def __call__(self, campaign: str) -> dict[str, float]:
        t = self.by_campaign.get(campaign)
        if t is None:
            t = self.by_campaign[campaign] = {"bids": 0, "impressions": 0, "spend": 0.0,
                                              "revenue": 0.0, "predicted": 0.0, "clicked": 0}
        return t


class Runtime:
    """One worker's shared state, built from ``settings``.

    ``registry``: where the metrics go (a fresh ``CollectorRegistry`` if None, so two
    runtimes in one process never share a counter).
    """

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        # A bad campaigns or experiments file stops the worker here, naming the file and field.
        self.campaigns = settings.read_campaigns()
        self.experiments = settings.read_experiments()
        self.audiences: dict[str, Audience] = settings.read_audiences()
        try:
            self.running = Running(self.experiments)
        except ValueError as exc:
            raise SettingsError(
                f"PERSONA_EXPERIMENTS_FILE {settings.experiments_file}: {exc}") from None
        self.metrics: Metrics = build_metrics(
            registry or CollectorRegistry(),
            campaigns=tuple(self.campaigns),
            experiments={n: e.variant_names for n, e in self.experiments.items()},
            segments=[f"s{j}" for j in range(settings.segments)],
            audiences=tuple(self.audiences))
        # ADWIN on the recommender's hits and the click models' log loss.
        self.drift = Drift(self.metrics, delta=settings.drift_delta)
        # Refuses to start without PERSONA_SECRET_KEY: no raw id may pass ingest un-hashed.
        self.pseudonymize = Pseudonymizer(settings.require_secret_key())
        _warn_if_key_file_open(settings)
        self.engine = Engine(settings.engine_config())
        if settings.model_sync:  # sum what the item models learn, for the other workers
            self.engine.sync = Outbox()
        self.bidder = _bidder(settings, self.campaigns)
        self.segments = Segments(settings.segments)
        self.checkpointed: dict[str, AdModels | Pickled] = {"ads": AdModels(self.bidder)}
        if self.segments.model is not None:
            self.checkpointed["segments"] = Pickled(self.segments, Segmenter)
        # Signed with a key derived from PERSONA_SECRET_KEY: a file the worker did not
        # write is refused before it is unpickled (streams/checkpoint.py).
        self.checkpointer = Checkpointer(settings.checkpoint_dir, keep=settings.checkpoint_keep,
                                         secret=settings.require_secret_key())
        # The checkpoint the serving models descend from: the version loaded or saved
        # last (0: none yet). ``model_version`` names it on every recommendation.
        self.checkpoint_version = 0
        # Ingest: the event-time checks and the per-user rate limit.
        self.time_limits = TimeLimits(int(settings.max_event_age_s * 1000),
                                      int(settings.max_future_s * 1000))
        self.limiter = UserRateLimiter(settings.user_rate_per_s, settings.user_burst,
                                       settings.rate_limit_users)
        # Ads agent: its clock, whether the bidder holds the recovered table, tallies.
        self.ad_clock = EventClock()
        self.ads_loaded = False
        self.ad_tallies = AdTallies()
        # Model sync: this process's id on the sync topic (random per start, so it names
        # no host and a restarted worker never takes another's batches for its own).
        self.origin = secrets.token_hex(8)
        self.sync_seq = 0
        # Checkpoints: the models' update count at the last save (see updates()).
        self.saved_at_updates = self.updates()

    @property
    def model_version(self) -> str:
        """``persona-<release>/<strategy>/ckpt-<N>``: the models that serve are checkpoint
        N's (loaded at start or by a rollback, or saved last) and what they learned since
        N; ckpt-0 before any checkpoint was loaded or saved. A save or a rollback changes
        it, so a consumer can tell which model state served a recommendation."""
        return f"persona-{__version__}/{self.settings.strategy}/ckpt-{self.checkpoint_version}"

    def updates(self) -> int:
        """Grows whenever the checkpointed models learn (or the catalogue grows)."""
        segmenter = self.segments.model
        return (self.engine.updates + self.bidder.pctr.n_updates  # type: ignore[attr-defined]
                + self.bidder.pcvr.n_updates  # type: ignore[attr-defined]
                + (segmenter.n_learned if segmenter is not None else 0)
                + len(self.engine.catalogue))

    def restore(self) -> int | None:
        """Resume warm: load the newest checkpoint this worker (app id, data dir) wrote,
        if any; its version, or None."""
        restored = self.checkpointer.restore_latest(
            self.engine, self.checkpointed,
            on_failure=lambda reason: self.metrics.checkpoint_load_failures.labels(
                reason=reason).inc())
        if restored is not None:
            self.metrics.checkpoints.labels(outcome="restored").inc()
            self.metrics.checkpoint_version.set(restored)
            self.checkpoint_version = restored
        # What the models hold now is on disk already (restored) or nothing (cold): a
        # worker that learns nothing writes no new version, so a restart never buries a
        # rollback.
        self.saved_at_updates = self.updates()
        return restored


def _bidder(settings: Settings, campaigns: dict) -> Bidder:  # type: ignore[type-arg]
    return Bidder(
        campaigns,
        pctr=PctrModel(prior_ctr=settings.ad_prior_ctr),
        pcvr=PctrModel(prior_ctr=0.05),
        window_ms=int(settings.ad_window_s * 1000),
        impression_window_ms=int(min(settings.ad_impression_window_s,
                                     settings.ad_window_s) * 1000),
        retention_ms=int(settings.ad_retention_s * 1000),
        max_records=settings.ad_max_records,
        pacing=settings.ad_pacing,
    )


_current: Runtime | None = None


def _warn_if_key_file_open(settings: Settings) -> None:
    """Warn when the key file persona keeps (``<data dir>/secret.key``) can be read by
    other accounts: with the key, anyone can re-identify a pseudonym by hashing
    candidate ids. Only the path and mode are logged, never the key."""
    path = settings.secret_key_file
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:  # no key file: the key came from the environment only
        return
    if mode & 0o077:
        log.warning("%s is readable by group or others (mode %03o): chmod 600 %s",
                    path, mode, path)


def install(runtime: Runtime) -> Runtime:
    """Make ``runtime`` the one this process's agents and views use."""
    global _current
    _current = runtime
    return runtime


def current() -> Runtime:
    """The installed runtime; on first use without one, the worker's own: built from the
    app's settings and restored from the newest checkpoint (``faust -A streams.worker
    worker`` starts this way)."""
    if _current is None:
        from streams.app import settings

        install(Runtime(settings)).restore()
    assert _current is not None
    return _current
