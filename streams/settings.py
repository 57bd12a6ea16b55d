"""The one settings object: every knob is a ``PERSONA_*`` environment variable.

Each field below documents its variable and default. ``Settings.from_env()``
reads them once; the object is frozen so nothing changes behind an agent's back.
"""

from __future__ import annotations

import importlib.util
import os
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import orjson

from models.ads.bidding import Campaign, load_campaigns
from models.engine import STRATEGIES, EngineConfig
from models.marketing.audiences import Audience, load_audiences
from models.marketing.experiments import Experiment, load_experiments

T = TypeVar("T")

# The project root: the folder holding pyproject.toml (streams/..).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A PERSONA_* variable has a value we cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value} is outside [{lo}, {hi}]")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not lo <= value <= hi:  # also rejects NaN
        raise SettingsError(f"{name}={value} is outside [{lo}, {hi}]")
    return value


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    return default if raw is None or raw.strip() == "" else raw.strip()


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use true or false)")


def _choice(env: Mapping[str, str], name: str, default: str, choices: Sequence[str]) -> str:
    value = _str(env, name, default).lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


TABLE_STORES = ("memory://", "rocksdb://")


def _table_store(env: Mapping[str, str], default: str) -> str:
    """PERSONA_TABLE_STORE: one of ``TABLE_STORES``; rocksdb:// needs rocksdict."""
    value = _str(env, "PERSONA_TABLE_STORE", default).lower()
    if value not in TABLE_STORES:
        raise SettingsError(f"PERSONA_TABLE_STORE must be one of {', '.join(TABLE_STORES)}, "
                            f"got {value!r}")
    if value == "rocksdb://" and importlib.util.find_spec("rocksdict") is None:
        raise SettingsError("PERSONA_TABLE_STORE=rocksdb:// needs the rocksdict package "
                            "(pip install rocksdict)")
    return value


def _erase_grace(env: Mapping[str, str], default: float, max_age_s: float) -> float:
    """PERSONA_ERASE_GRACE_S: by default the larger of ``default`` and the max event age;
    set lower than that age it would let an event ingest accepts outlive the marker."""
    grace = _float(env, "PERSONA_ERASE_GRACE_S", max(default, max_age_s), 1.0,
                   3650 * 86_400.0)
    if grace < max_age_s:
        raise SettingsError(f"PERSONA_ERASE_GRACE_S={grace:g} is below "
                            f"PERSONA_MAX_EVENT_AGE_S={max_age_s:g}: an older event could "
                            "still arrive after an erase's marker is gone")
    return grace


def _read_config(name: str, path_text: str, load: Callable[[Any], dict[str, T]]) -> dict[str, T]:
    """``load`` applied to the JSON file ``path_text`` (the value of setting ``name``)."""
    if not path_text:
        return {}
    path = Path(path_text)
    try:
        obj = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise SettingsError(f"{name} {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise SettingsError(f"{name} {path}: not JSON ({exc})") from None
    try:
        return load(obj)
    except ValueError as exc:  # CampaignError, ExperimentError
        raise SettingsError(f"{name} {path}: {exc}") from None


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _api_token(env: Mapping[str, str]) -> str:
    token = env.get("PERSONA_API_TOKEN", "").strip()
    # The value never goes into an error message.
    if token and len(token) < 16:
        raise SettingsError("PERSONA_API_TOKEN must be at least 16 characters long (e.g. "
                            "python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    if token and not all(33 <= ord(c) <= 126 for c in token):
        raise SettingsError("PERSONA_API_TOKEN may hold printable ASCII only, no spaces")
    return token


def _kafka_security(env: Mapping[str, str]) -> dict[str, str]:
    """The PERSONA_KAFKA_* security settings, checked as a whole (clear errors, no secret
    in them)."""
    protocol = _str(env, "PERSONA_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise SettingsError(f"PERSONA_KAFKA_SECURITY_PROTOCOL must be one of "
                            f"{', '.join(KAFKA_SECURITY_PROTOCOLS)}, got {protocol!r}")
    mechanism = _str(env, "PERSONA_KAFKA_SASL_MECHANISM", "PLAIN").upper()
    if mechanism not in KAFKA_SASL_MECHANISMS:
        raise SettingsError(f"PERSONA_KAFKA_SASL_MECHANISM must be one of "
                            f"{', '.join(KAFKA_SASL_MECHANISMS)}, got {mechanism!r}")
    username = _str(env, "PERSONA_KAFKA_SASL_USERNAME", "")
    password = env.get("PERSONA_KAFKA_SASL_PASSWORD", "")  # spaces may be part of it
    files = {name: _str(env, f"PERSONA_KAFKA_SSL_{name.upper()}", "")
             for name in ("cafile", "certfile", "keyfile")}
    sasl, tls = protocol.startswith("SASL_"), protocol in ("SSL", "SASL_SSL")
    if sasl and not username:
        raise SettingsError(f"PERSONA_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                            "PERSONA_KAFKA_SASL_USERNAME")
    if sasl and not password:
        raise SettingsError(f"PERSONA_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                            "PERSONA_KAFKA_SASL_PASSWORD")
    if not sasl and (username or password):
        raise SettingsError("PERSONA_KAFKA_SASL_USERNAME/PASSWORD are set but "
                            f"PERSONA_KAFKA_SECURITY_PROTOCOL is {protocol}: set it to "
                            "SASL_SSL (or SASL_PLAINTEXT) to use them")
    given = [f"PERSONA_KAFKA_SSL_{n.upper()}" for n, v in files.items() if v]
    if given and not tls:
        raise SettingsError(f"{', '.join(given)} set but PERSONA_KAFKA_SECURITY_PROTOCOL is "
                            f"{protocol}: set it to SSL or SASL_SSL to use them")
    if files["keyfile"] and not files["certfile"]:
        raise SettingsError("PERSONA_KAFKA_SSL_KEYFILE needs PERSONA_KAFKA_SSL_CERTFILE")
    for name, value in files.items():
        if value and not Path(value).is_file():
            raise SettingsError(f"PERSONA_KAFKA_SSL_{name.upper()} {value}: no such file")
    return {"kafka_security_protocol": protocol, "kafka_sasl_mechanism": mechanism,
            "kafka_sasl_username": username, "kafka_sasl_password": password,
            "kafka_ssl_cafile": files["cafile"], "kafka_ssl_certfile": files["certfile"],
            "kafka_ssl_keyfile": files["keyfile"]}


@dataclass(frozen=True)
class Topics:
    """Topic names (docs/contract.md). Each is ``PERSONA_TOPIC_<NAME>``."""

    clicks: str = "clicks"
    purchases: str = "purchases"
    items: str = "items"
    ad_requests: str = "ad-requests"
    ad_events: str = "ad-events"
    privacy: str = "privacy"
    # Operator commands (the ads kill switch): {"action": "ads_kill" | "ads_resume", "ts"}.
    control: str = "control"
    recommendations: str = "recommendations"
    ad_bids: str = "ad-bids"
    segments: str = "segments"
    # Audience membership changes: {"user_id", "audience", "action": join|leave, "ts"}.
    audiences: str = "audiences"
    dead_letters: str = "dead-letters"

    def all(self) -> list[str]:
        return [getattr(self, f.name) for f in fields(self)]


@dataclass(frozen=True)
class Settings:
    # PERSONA_BROKER_HOST: address the local broker binds and clients use. Loopback only.
    broker_host: str = "127.0.0.1"
    # PERSONA_BROKER_PORT: the local broker's client port (its controller uses port+1).
    broker_port: int = 9092
    # PERSONA_BOOTSTRAP: bootstrap servers for clients; default broker_host:broker_port.
    bootstrap: str = ""
    # PERSONA_KAFKA_VERSION: Apache Kafka release fetched from Maven Central.
    kafka_version: str = "4.3.1"
    # PERSONA_DATA_DIR: project-local state: broker jars and logs, worker tables, secret key.
    data_dir: Path = field(default_factory=lambda: PROJECT_ROOT / ".persona")
    # PERSONA_APP_ID: Faust app id; prefixes internal topics (changelogs, repartitions).
    app_id: str = "persona"
    # PERSONA_PARTITIONS: partitions for every topic persona creates (>= 4 recommended).
    partitions: int = 4
    # PERSONA_SECRET_KEY: key for the HMAC-SHA256 pseudonymization of user ids (>= 16 chars).
    # The worker refuses to start without it. Keep it secret and stable: changing it
    # changes every pseudonymous id.
    secret_key: str = field(default="", repr=False)
    # PERSONA_TOP_K: items per recommendation event.
    top_k: int = 10
    # PERSONA_INTEREST_HALF_LIFE_HOURS: half-life of the recency-weighted category interest.
    interest_half_life_hours: float = 168.0
    # PERSONA_RECENT_ITEMS: how many recent items a profile keeps (and the recommender uses).
    recent_items: int = 50
    # PERSONA_SEEN_ITEMS_MAX: bound on a profile's seen and purchased sets.
    seen_items_max: int = 500
    # PERSONA_DEDUP_WINDOW: event ids remembered per user for deduplication.
    dedup_window: int = 256
    # PERSONA_MAX_EVENT_AGE_S: at ingest, an event whose ts is more than this before its
    # Kafka record timestamp is dead-lettered (stale_event, or ts_in_seconds when ts looks
    # like epoch seconds). 0 switches it off: set 0 to replay history (the demo does).
    max_event_age_s: float = 86_400.0
    # PERSONA_MAX_FUTURE_S: an event whose ts is more than this after its Kafka record
    # timestamp is dead-lettered (future_event). 0 switches it off.
    max_future_s: float = 300.0
    # PERSONA_USER_RATE_PER_S / PERSONA_USER_BURST: per-user limit at ingest, at most
    # BURST events per window of BURST / RATE_PER_S seconds of event time (not wall time,
    # so a fast replay is not limited; a count per window, so the order in which the two
    # topics are consumed does not matter). Clicks and purchases over it are counted but
    # not learned from ("rl" on the wire, persona_events_total{outcome="rate_limited"}).
    # Either 0 switches it off.
    user_rate_per_s: float = 10.0
    user_burst: int = 100
    # PERSONA_RATE_LIMIT_USERS: users the rate limiter remembers (LRU): bounds its memory
    # under a flood of new ids.
    rate_limit_users: int = 100_000
    # PERSONA_MAX_ITEMS: bound on items the item-level models track.
    max_items: int = 100_000
    # PERSONA_STRATEGY: the strategy that serves by default (hybrid, cooccurrence, mf,
    # content, popularity, trending).
    strategy: str = "hybrid"
    # PERSONA_EXPLORATION: share of requests a bandit serves with another strategy, to
    # learn which earns more hits (0: always PERSONA_STRATEGY).
    exploration: float = 0.05
    # PERSONA_SIMILARITY: item-item similarity, cosine or pearson.
    similarity: str = "cosine"
    # PERSONA_DECAY_HALF_LIFE_EVENTS: events after which item-level counts weigh half.
    decay_half_life_events: float = 20_000.0
    # PERSONA_MAX_REPEATS: times one item may be recommended to one user (0: no cap).
    max_repeats: int = 0
    # PERSONA_MAX_PER_CATEGORY: items sharing a category in one list (0: no cap).
    max_per_category: int = 0
    # PERSONA_NEW_ITEM_RATE: share of lists whose last slot explores a new item.
    new_item_rate: float = 0.05
    # PERSONA_NEW_ITEM_BUDGET: exploration showings per new item before it must earn them.
    new_item_budget: int = 100
    # PERSONA_HYBRID_FALLBACK: the hybrid serves its leading component's order while that
    # component's recent hits beat the blend's by more than PERSONA_HYBRID_FALLBACK_MARGIN
    # (relative); off until measured on every stream (docs/quality.md).
    hybrid_fallback: bool = False
    hybrid_fallback_margin: float = 0.05
    # PERSONA_ATTRIBUTION_WINDOW_HOURS: a click or purchase is credited to a recommendation
    # (its recommendation_id) only this long after the recommendation was made.
    attribution_window_hours: float = 24.0
    # PERSONA_ATTRIBUTE_BY_ITEM: also credit a click or purchase without a (known)
    # recommendation_id to the newest recent recommendation that held its item.
    attribute_by_item: bool = False
    # PERSONA_SEGMENTS: segments an online k-means finds over profiles (recency,
    # frequency, spend, interests); 0 switches segmentation off.
    segments: int = 6
    # PERSONA_AUDIENCES_FILE: JSON file of audiences (rules over profile fields and
    # segments, docs/segments.md); membership changes stream to the audiences topic.
    audiences_file: str = ""
    # PERSONA_EXPERIMENTS_FILE: JSON file of A/B/n experiments on recommendations
    # ({"experiments": [...]}, docs/experiments.md). The first active one assigns each user
    # a variant (and its strategy). Empty: every recommendation is variant "default".
    experiments_file: str = ""
    # PERSONA_CAMPAIGNS_FILE: JSON file of ad campaigns ({"campaigns": [...]}, see
    # docs/ads.md). Empty: no campaigns, so every ad request gets no_bid unknown_campaign.
    campaigns_file: str = ""
    # PERSONA_AD_WINDOW_S: attribution window after an ad request whose impression came:
    # a click within it makes a positive label, none a negative when it closes; clicks,
    # conversions and their costs after it are refused.
    ad_window_s: float = 1800.0
    # PERSONA_AD_IMPRESSION_WINDOW_S: how long after the request its impression may be
    # reported. A bid holds its amount out of the budget until then; with no impression
    # by then the auction counts as lost and the money is free again (a later impression
    # is refused, not charged). Set it above your exchange's reporting delay.
    ad_impression_window_s: float = 60.0
    # PERSONA_AD_RETENTION_S: how long a closed request is remembered, so a late
    # duplicate event is recognised rather than counted.
    ad_retention_s: float = 3600.0
    # PERSONA_AD_MAX_RECORDS: bound on remembered ad requests (oldest closed go first).
    ad_max_records: int = 200_000
    # PERSONA_AD_PRIOR_CTR: the click rate a fresh pCTR model predicts before it has
    # learned anything (set it near your inventory's typical CTR; it learns from there).
    ad_prior_ctr: float = 0.005
    # PERSONA_AD_PACING: spread each campaign's daily budget over the (UTC) day.
    ad_pacing: bool = True
    # PERSONA_ADS_KILL_SWITCH: true stops all bidding (every request gets no_bid
    # kill_switch). The control topic's ads_kill does the same at run time and persists.
    ads_kill_switch: bool = False
    # PERSONA_PROFILE_TTL_DAYS: a profile idle (no event, privacy request) for longer than
    # this is deleted (data retention; bounds the table). Fractions allowed; 0 keeps
    # profiles forever. Opt-out flags never expire.
    profile_ttl_days: float = 365.0
    # PERSONA_PROFILE_SWEEP_INTERVAL_S: seconds between retention sweeps of the table.
    profile_sweep_interval_s: float = 3600.0
    # PERSONA_ERASE_GRACE_S: how long an erase leaves a marker (the erase time, nothing
    # else): the user's events from before the erase that reach the worker after it (on
    # another input topic) are dropped, counted outcome="erased". At least
    # PERSONA_MAX_EVENT_AGE_S (ingest refuses anything older), the default when that is
    # larger; the retention sweep removes older markers.
    erase_grace_s: float = 86_400.0
    # PERSONA_CHANGELOG_MAX_COMPACTION_LAG_S: bound on how long a table changelog keeps a
    # superseded record (an erased user's old profile, ad features) before the broker's
    # log cleaner may remove it (the topic's max.compaction.lag.ms; applied when persona
    # creates the changelog topic).
    changelog_max_compaction_lag_s: float = 86_400.0
    # PERSONA_CHECKPOINT_INTERVAL_S: seconds between model checkpoints (0: only at shutdown).
    checkpoint_interval_s: float = 30.0
    # PERSONA_MODEL_SYNC: publish what each worker's item models learn (summed deltas) on
    # the internal <app id>-model-updates topic and apply the other workers'
    # (docs/scaling.md): with several workers every one learns from every event. Off:
    # each learns from its own.
    model_sync: bool = True
    # PERSONA_MODEL_SYNC_INTERVAL_S: how often a worker publishes what it learned (one
    # summed delta per interval): the delay before the other workers learn it. Longer
    # intervals sum more events per delta, which costs the others less per event.
    model_sync_interval_s: float = 0.5
    # PERSONA_CHECKPOINT_KEEP: model checkpoint versions kept on disk.
    checkpoint_keep: int = 3
    # PERSONA_DRIFT_DELTA: confidence of the ADWIN drift detectors on model quality
    # (models/drift.py): smaller means fewer false alarms and later detections.
    drift_delta: float = 0.002
    # PERSONA_TABLE_STORE: where the worker keeps its tables (profiles, ads) between
    # changelog writes: memory:// (all in RAM, rebuilt from the changelogs at start) or
    # rocksdb:// (on disk under PERSONA_DATA_DIR, via rocksdict: memory stays bounded
    # however many users there are, and a restart only reads the changelog's tail).
    table_store: str = "memory://"
    # PERSONA_TABLE_CACHE_MB: with rocksdb://, the block cache of each table partition's
    # database (Faust's default is 2 GB each: RSS then grows with the data read).
    table_cache_mb: int = 64
    # PERSONA_WEB_HOST / PERSONA_WEB_PORT: the worker's HTTP server (metrics, health, recs).
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # PERSONA_API_TOKEN: bearer token that guards /users/... (clients send
    # "Authorization: Bearer <token>"; >= 16 characters, no spaces). Unset: /users/...
    # answers 403. /metrics, /health, /ready stay open. Never logged or printed.
    api_token: str = field(default="", repr=False)
    # PERSONA_KAFKA_SECURITY_PROTOCOL: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, used by
    # the worker (Faust) and every client the CLI makes (docs/security.md).
    kafka_security_protocol: str = "PLAINTEXT"
    # PERSONA_KAFKA_SASL_MECHANISM: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_* only).
    kafka_sasl_mechanism: str = "PLAIN"
    # PERSONA_KAFKA_SASL_USERNAME / PERSONA_KAFKA_SASL_PASSWORD: SASL credentials, required
    # with SASL_*. The password is never printed (not in repr, not in errors).
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    # PERSONA_KAFKA_SSL_CAFILE: PEM bundle of the CAs to trust (default: the system's).
    # PERSONA_KAFKA_SSL_CERTFILE / PERSONA_KAFKA_SSL_KEYFILE: client certificate and key
    # (mutual TLS). SSL and SASL_SSL only.
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    # PERSONA_LOG_LEVEL: worker log level.
    log_level: str = "info"
    # PERSONA_SESSION_TIMEOUT_S: consumer session timeout; short so a restarted worker
    # gets its partitions back quickly with one local broker.
    session_timeout_s: float = 10.0
    # PERSONA_PRODUCER_LINGER_MS: how long the worker's producer waits to fill a batch
    # before sending it (forwarded events, changelog writes, recommendations). Each hop
    # (input -> events -> recommendations) can wait this long: a latency floor per event.
    # Under load batches fill anyway (one request in flight per broker), so a short
    # linger costs little (bench.e2e: 10 -> 2 ms halved a trivial agent's p50 at 100/s).
    producer_linger_ms: float = 2.0
    # PERSONA_BATCH_MAX: at most this many events-topic messages per profile-agent batch
    # (one table write per user per batch; outputs sent together, input acked after).
    batch_max: int = 300
    # PERSONA_BATCH_WAIT_MS: how long a batch waits, after its first message, for more
    # than were already queued; the most a lone event is held (0: never wait).
    batch_wait_ms: float = 2.0
    topics: Topics = field(default_factory=Topics)

    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap or f"{self.broker_host}:{self.broker_port}"

    @property
    def broker_url(self) -> str:
        """The bootstrap servers in Faust's ``kafka://`` URL form."""
        return ";".join(f"kafka://{h}" for h in self.bootstrap_servers.split(","))

    @property
    def events_topic(self) -> str:
        """Internal topic of validated events keyed by pseudonymous user id."""
        return f"{self.app_id}-events"

    @property
    def ads_topic(self) -> str:
        """Internal one-partition topic of everything the ads agent decides on: requests
        (with the user's ad view), ad events, control commands and clock ticks."""
        return f"{self.app_id}-ads"

    @property
    def model_updates_topic(self) -> str:
        """Internal broadcast topic of the workers' summed item-level deltas (every worker
        reads all of its partitions, outside the consumer group; docs/scaling.md)."""
        return f"{self.app_id}-model-updates"

    def created_topics(self) -> list[str]:
        """Every topic ``persona topics create`` makes: the contract's and the events topic.

        The events topic is created up front (not left to Faust at worker start), so the
        worker's first group join already sees it and gets its partitions assigned.
        """
        return [*self.topics.all(), self.events_topic, self.ads_topic,
                self.model_updates_topic]

    def topic_configs(self) -> dict[str, dict[str, str]]:
        """Topic configs ``persona topics create`` sets beyond the broker's defaults: the
        model-updates topic keeps an hour (as when a worker creates it, streams/topics.py),
        so the segmenter inputs it carries age out.

        >>> Settings().topic_configs()[Settings().model_updates_topic]
        {'retention.ms': '3600000'}
        """
        return {self.model_updates_topic: {"retention.ms": str(3_600_000)}}

    def topic_partitions(self) -> dict[str, int]:
        """Partitions of each created topic: ``partitions``, but one for the ads topic (a
        single owner keeps budgets exact and global, and the kill switch in one place)."""
        return {name: 1 if name == self.ads_topic else self.partitions
                for name in self.created_topics()}

    def table_store_options(self) -> dict[str, int]:
        """Options for every table's store (``app.Table(options=...)``): with rocksdb://,
        RocksDB memory per table partition bounded to the block cache
        (PERSONA_TABLE_CACHE_MB) plus at most two 16 MB memtables; none for memory://.

        >>> Settings(table_store="rocksdb://").table_store_options()["block_cache_size"]
        67108864
        >>> Settings().table_store_options()
        {}
        """
        if self.table_store != "rocksdb://":
            return {}
        mb = 2**20
        return {"block_cache_size": self.table_cache_mb * mb, "write_buffer_size": 16 * mb,
                "max_write_buffer_number": 2}

    def engine_config(self) -> EngineConfig:
        """The models' hyperparameters from these settings (worker and evaluator alike)."""
        return EngineConfig(
            top_k=self.top_k,
            half_life_ms=self.interest_half_life_ms,
            recent_max=self.recent_items,
            seen_max=self.seen_items_max,
            dedup_window=self.dedup_window,
            max_items=self.max_items,
            strategy=self.strategy,
            exploration=self.exploration,
            similarity=self.similarity,
            decay_half_life=self.decay_half_life_events,
            max_repeats=self.max_repeats,
            max_per_category=self.max_per_category,
            new_item_rate=self.new_item_rate,
            new_item_budget=self.new_item_budget,
            attribution_window_ms=self.attribution_window_hours * 3_600_000.0,
            attribute_by_item=self.attribute_by_item,
            hybrid_fallback_margin=(self.hybrid_fallback_margin if self.hybrid_fallback
                                    else None),
        )

    @property
    def erase_grace_ms(self) -> int:
        """PERSONA_ERASE_GRACE_S in ms."""
        return int(self.erase_grace_s * 1000)

    @property
    def profile_ttl_ms(self) -> int:
        """PERSONA_PROFILE_TTL_DAYS in ms (0: profiles never expire)."""
        return int(self.profile_ttl_days * 86_400_000)

    @property
    def interest_half_life_ms(self) -> float:
        return self.interest_half_life_hours * 3_600_000.0

    @property
    def kafka_dir(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def checkpoint_dir(self) -> Path:
        return self.data_dir / "checkpoints" / self.app_id

    @property
    def secret_key_file(self) -> Path:
        return self.data_dir / "secret.key"

    def read_campaigns(self) -> dict[str, Campaign]:
        """The campaigns of ``PERSONA_CAMPAIGNS_FILE`` (none when it is unset), or a clear
        SettingsError naming the file and the problem."""
        return _read_config("PERSONA_CAMPAIGNS_FILE", self.campaigns_file, load_campaigns)

    def read_audiences(self) -> dict[str, Audience]:
        """The audiences of ``PERSONA_AUDIENCES_FILE`` by name (none when it is unset)."""
        return _read_config("PERSONA_AUDIENCES_FILE", self.audiences_file,
                            lambda obj: {a.name: a for a in load_audiences(obj)})

    def read_experiments(self) -> dict[str, Experiment]:
        """The experiments of ``PERSONA_EXPERIMENTS_FILE`` (none when it is unset), or a
        clear SettingsError naming the file and the problem."""
        return _read_config("PERSONA_EXPERIMENTS_FILE", self.experiments_file,
                            load_experiments)

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of SSL and SASL_SSL (None otherwise), or a clear SettingsError."""
        if self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            return None
        try:
            ctx = ssl.create_default_context(cafile=self.kafka_ssl_cafile or None)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(f"PERSONA_KAFKA_SSL_CAFILE {self.kafka_ssl_cafile}: cannot "
                                f"load CA certificates ({exc})") from None
        if self.kafka_ssl_certfile:
            try:
                ctx.load_cert_chain(self.kafka_ssl_certfile, self.kafka_ssl_keyfile or None)
            except (OSError, ssl.SSLError) as exc:
                raise SettingsError(
                    f"PERSONA_KAFKA_SSL_CERTFILE {self.kafka_ssl_certfile} / "
                    f"PERSONA_KAFKA_SSL_KEYFILE {self.kafka_ssl_keyfile or '(in certfile)'}: "
                    f"cannot load the client certificate and key ({exc})") from None
        return ctx

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Security keyword arguments for every kafka-python client persona creates
        (KafkaProducer, KafkaConsumer, KafkaAdminClient): the same as the worker's."""
        kwargs: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        ctx = self.kafka_ssl_context()
        if ctx is not None:
            kwargs["ssl_context"] = ctx
        if self.kafka_security_protocol.startswith("SASL_"):
            kwargs.update(sasl_mechanism=self.kafka_sasl_mechanism,
                          sasl_plain_username=self.kafka_sasl_username,
                          sasl_plain_password=self.kafka_sasl_password)
        return kwargs

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` for these settings (None for PLAINTEXT)."""
        import faust  # here, not at module level: the CLI reads settings without Faust

        protocol = self.kafka_security_protocol
        if protocol == "SSL":
            return faust.SSLCredentials(self.kafka_ssl_context())
        if protocol.startswith("SASL_"):
            return faust.SASLCredentials(username=self.kafka_sasl_username,
                                         password=self.kafka_sasl_password,
                                         mechanism=self.kafka_sasl_mechanism,
                                         ssl_context=self.kafka_ssl_context())
        return None

    def require_secret_key(self) -> bytes:
        """The pseudonymization key, or a clear error when it is missing or weak."""
        if not self.secret_key:
            raise SettingsError(
                "PERSONA_SECRET_KEY is not set: the worker needs a secret key to "
                "pseudonymize user ids (e.g. export PERSONA_SECRET_KEY=$(python -c "
                "'import secrets; print(secrets.token_hex(32))'))"
            )
        if len(self.secret_key) < 16:
            raise SettingsError("PERSONA_SECRET_KEY must be at least 16 characters long")
        return self.secret_key.encode("utf-8")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        d = cls()
        topics = Topics(
            **{
                f.name: _str(env, f"PERSONA_TOPIC_{f.name.upper()}", f.default)  # type: ignore[arg-type]
                for f in fields(Topics)
            }
        )
        host = _str(env, "PERSONA_BROKER_HOST", d.broker_host)
        web_host = _str(env, "PERSONA_WEB_HOST", d.web_host)
        max_age = _float(env, "PERSONA_MAX_EVENT_AGE_S", d.max_event_age_s, 0.0,
                         3650 * 86_400.0)
        settings = cls(
            broker_host=host,
            broker_port=_int(env, "PERSONA_BROKER_PORT", d.broker_port, 1, 65534),
            bootstrap=_str(env, "PERSONA_BOOTSTRAP", ""),
            kafka_version=_str(env, "PERSONA_KAFKA_VERSION", d.kafka_version),
            data_dir=Path(_str(env, "PERSONA_DATA_DIR", str(d.data_dir))).resolve(),
            app_id=_str(env, "PERSONA_APP_ID", d.app_id),
            partitions=_int(env, "PERSONA_PARTITIONS", d.partitions, 1, 1024),
            secret_key=env.get("PERSONA_SECRET_KEY", "").strip(),
            top_k=_int(env, "PERSONA_TOP_K", d.top_k, 1, 100),
            interest_half_life_hours=_float(
                env, "PERSONA_INTEREST_HALF_LIFE_HOURS", d.interest_half_life_hours, 0.01, 1e6
            ),
            recent_items=_int(env, "PERSONA_RECENT_ITEMS", d.recent_items, 1, 1000),
            seen_items_max=_int(env, "PERSONA_SEEN_ITEMS_MAX", d.seen_items_max, 1, 100_000),
            dedup_window=_int(env, "PERSONA_DEDUP_WINDOW", d.dedup_window, 1, 100_000),
            max_event_age_s=max_age,
            max_future_s=_float(env, "PERSONA_MAX_FUTURE_S", d.max_future_s,
                                0.0, 3650 * 86_400.0),
            user_rate_per_s=_float(env, "PERSONA_USER_RATE_PER_S", d.user_rate_per_s,
                                   0.0, 1e6),
            user_burst=_int(env, "PERSONA_USER_BURST", d.user_burst, 0, 10_000_000),
            rate_limit_users=_int(env, "PERSONA_RATE_LIMIT_USERS", d.rate_limit_users,
                                  1, 100_000_000),
            max_items=_int(env, "PERSONA_MAX_ITEMS", d.max_items, 10, 10_000_000),
            strategy=_choice(env, "PERSONA_STRATEGY", d.strategy, STRATEGIES),
            exploration=_float(env, "PERSONA_EXPLORATION", d.exploration, 0.0, 1.0),
            similarity=_choice(env, "PERSONA_SIMILARITY", d.similarity, ("cosine", "pearson")),
            decay_half_life_events=_float(
                env, "PERSONA_DECAY_HALF_LIFE_EVENTS", d.decay_half_life_events, 1.0, 1e12
            ),
            max_repeats=_int(env, "PERSONA_MAX_REPEATS", d.max_repeats, 0, 1_000_000),
            max_per_category=_int(env, "PERSONA_MAX_PER_CATEGORY", d.max_per_category, 0, 100),
            new_item_rate=_float(env, "PERSONA_NEW_ITEM_RATE", d.new_item_rate, 0.0, 1.0),
            new_item_budget=_int(env, "PERSONA_NEW_ITEM_BUDGET", d.new_item_budget, 0, 10**9),
            hybrid_fallback=_bool(env, "PERSONA_HYBRID_FALLBACK", d.hybrid_fallback),
            hybrid_fallback_margin=_float(env, "PERSONA_HYBRID_FALLBACK_MARGIN",
                                          d.hybrid_fallback_margin, 0.0, 10.0),
            attribution_window_hours=_float(env, "PERSONA_ATTRIBUTION_WINDOW_HOURS",
                                            d.attribution_window_hours, 0.01, 24 * 90),
            attribute_by_item=_bool(env, "PERSONA_ATTRIBUTE_BY_ITEM", d.attribute_by_item),
            segments=_int(env, "PERSONA_SEGMENTS", d.segments, 0, 32),
            audiences_file=_str(env, "PERSONA_AUDIENCES_FILE", d.audiences_file),
            experiments_file=_str(env, "PERSONA_EXPERIMENTS_FILE", d.experiments_file),
            campaigns_file=_str(env, "PERSONA_CAMPAIGNS_FILE", d.campaigns_file),
            ad_window_s=_float(env, "PERSONA_AD_WINDOW_S", d.ad_window_s, 1.0, 86_400.0),
            ad_impression_window_s=_float(
                env, "PERSONA_AD_IMPRESSION_WINDOW_S", d.ad_impression_window_s, 1.0, 86_400.0
            ),
            ad_retention_s=_float(
                env, "PERSONA_AD_RETENTION_S", d.ad_retention_s, 0.0, 7 * 86_400.0
            ),
            ad_max_records=_int(env, "PERSONA_AD_MAX_RECORDS", d.ad_max_records, 100, 10**8),
            ad_prior_ctr=_float(env, "PERSONA_AD_PRIOR_CTR", d.ad_prior_ctr, 1e-5, 0.5),
            ad_pacing=_bool(env, "PERSONA_AD_PACING", d.ad_pacing),
            ads_kill_switch=_bool(env, "PERSONA_ADS_KILL_SWITCH", d.ads_kill_switch),
            profile_ttl_days=_float(env, "PERSONA_PROFILE_TTL_DAYS", d.profile_ttl_days,
                                    0.0, 36_500.0),
            profile_sweep_interval_s=_float(env, "PERSONA_PROFILE_SWEEP_INTERVAL_S",
                                            d.profile_sweep_interval_s, 1.0, 86_400.0),
            erase_grace_s=_erase_grace(env, d.erase_grace_s, max_age),
            changelog_max_compaction_lag_s=_float(
                env, "PERSONA_CHANGELOG_MAX_COMPACTION_LAG_S",
                d.changelog_max_compaction_lag_s, 1.0, 365 * 86_400.0),
            checkpoint_interval_s=_float(
                env, "PERSONA_CHECKPOINT_INTERVAL_S", d.checkpoint_interval_s, 0.0, 86_400.0
            ),
            checkpoint_keep=_int(env, "PERSONA_CHECKPOINT_KEEP", d.checkpoint_keep, 1, 1000),
            model_sync=_bool(env, "PERSONA_MODEL_SYNC", d.model_sync),
            model_sync_interval_s=_float(env, "PERSONA_MODEL_SYNC_INTERVAL_S",
                                         d.model_sync_interval_s, 0.005, 10.0),
            drift_delta=_float(env, "PERSONA_DRIFT_DELTA", d.drift_delta, 1e-12, 0.5),
            table_store=_table_store(env, d.table_store),
            table_cache_mb=_int(env, "PERSONA_TABLE_CACHE_MB", d.table_cache_mb, 1, 65_536),
            web_host=web_host,
            web_port=_int(env, "PERSONA_WEB_PORT", d.web_port, 1, 65535),
            api_token=_api_token(env),
            **_kafka_security(env),
            log_level=_str(env, "PERSONA_LOG_LEVEL", d.log_level).lower(),
            session_timeout_s=_float(
                env, "PERSONA_SESSION_TIMEOUT_S", d.session_timeout_s, 2.0, 300.0
            ),
            producer_linger_ms=_float(env, "PERSONA_PRODUCER_LINGER_MS",
                                      d.producer_linger_ms, 0.0, 1000.0),
            batch_max=_int(env, "PERSONA_BATCH_MAX", d.batch_max, 1, 10_000),
            batch_wait_ms=_float(env, "PERSONA_BATCH_WAIT_MS", d.batch_wait_ms, 0.0, 1000.0),
            topics=topics,
        )
        settings.kafka_ssl_context()  # unreadable CA or key files fail here, clearly
        return settings
