"""Every Prometheus metric persona exposes, declared once against an injectable registry.

Naming follows docs/metrics.md: ``persona_`` prefix, base units, ``_total`` counters, bounded
labels only (never a user, item, event or request id), labels pre-initialized so a
dashboard sees zeros instead of gaps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from models.ads.bidding import EVENT_OUTCOMES, EVENT_TYPES, NO_BID_REASONS
from models.drift import DIRECTIONS, STREAMS
from models.engine import MODELS, STRATEGIES
from models.recommenders.hybrid import CONTEXTS
from streams.checkpoint import FAILURE_REASONS as CHECKPOINT_FAILURE_REASONS
from streams.records import ERROR_CODES

INPUT_TOPICS = ("clicks", "purchases", "items", "ad-requests", "ad-events", "privacy", "control")
# rate_limited is counted at ingest on top of the message's final outcome (the profile
# agent still counts it once as accepted or duplicate): leave it out of sums of messages.
# erased: an event from before its user's erase, reaching the worker after it: dropped.
OUTCOMES = ("accepted", "invalid", "duplicate", "suppressed", "rate_limited", "erased")
# Input topics whose messages name a user (and should be keyed by it); where ingest runs.
USER_TOPICS = ("clicks", "purchases", "ad-requests", "privacy")
INGEST_TOPICS = (*USER_TOPICS, "ad-events", "control")
ANOMALY_KINDS = ("missing_key",)
# Bounded per-user state that drops entries when full (persona_state_evictions_total).
EVICTED_STATES = ("hybrid_pending", "seen_items", "dedupe_window", "rate_limit_users")
AGENTS = ("ingest", "profile", "items", "ads")
# A bid, or why not.
BID_OUTCOMES = ("bid", *NO_BID_REASONS)
VARIANTS = ("default",)
# Dead-letter codes the agents add on top of the validation codes in records.py.
AGENT_ERROR_CODES = ("internal_error", "event_conflict", "unknown_request", "late_event",
                     "wrong_ad")


@dataclass
class Metrics:
    """Every metric, by the name the agents use (``build_metrics`` makes one)."""

    registry: CollectorRegistry
    events: Counter
    redeliveries: Counter
    routed: Counter
    processing_seconds: Histogram
    event_lag_seconds: Histogram
    recommendations: Counter
    recommended_items: Counter
    recommendation_hits: Counter
    recommendation_clicks: Counter
    conversions: Counter
    attributed_revenue: Counter
    recommendation_hit_checks: Counter
    dead_letters: Counter
    ingest_anomalies: Counter
    pii_fields_dropped: Counter
    model_updates: Counter
    model_items: Gauge
    strategy_estimate: Gauge
    strategy_propensity: Gauge
    blend_weight: Gauge
    profiles: Gauge
    profiles_expired: Counter
    catalogue_items: Gauge
    state_evictions: Counter
    revenue: Counter
    checkpoints: Counter
    checkpoint_seconds: Gauge
    checkpoint_bytes: Gauge
    checkpoint_version: Gauge
    checkpoint_load_failures: Counter
    model_sync_batches: Counter
    model_sync_steps: Counter
    model_sync_entries: Counter
    model_sync_bytes: Counter
    ad_bids: Counter
    ad_bid_seconds: Histogram
    ad_bid_amount: Counter
    ad_events: Counter
    ad_impressions: Counter
    ad_clicks: Counter
    ad_conversions: Counter
    ad_spend: Counter
    ad_revenue: Counter
    ad_labels: Counter
    ad_predicted_clicks: Counter
    ad_log_loss: Counter
    ad_budget_remaining: Gauge
    ad_reserved: Gauge
    ad_pacing: Gauge
    ad_win_rate: Gauge
    ad_roi: Gauge
    ad_pctr_calibration: Gauge
    ad_kill_switch: Gauge
    experiment_users: Counter
    segment_users: Gauge
    segment_changes: Counter
    audience_changes: Counter
    experiment_revenue: Counter
    experiment_revenue_sumsq: Counter
    model_drift: Counter
    model_quality: Gauge
    model_quality_window: Gauge
    model_quality_ignored: Counter


def build_metrics(
    registry: CollectorRegistry | None = None,
    campaigns: tuple[str, ...] = (),
    experiments: Mapping[str, Sequence[str]] | None = None,
    segments: Sequence[str] = (),
    audiences: Sequence[str] = (),
) -> Metrics:
    """Create every metric on ``registry`` (a fresh one if None) and pre-set its labels.

    ``campaigns`` are the configured campaign ids: the only campaign label values, since
    they are a bounded, configured set (a request naming another campaign gets no bid
    and counts under its no-bid reason, not under a new label). ``experiments`` maps each
    configured experiment to its variant names: the only other variant labels.
    """
    reg = registry if registry is not None else CollectorRegistry()
    experiments = experiments or {}
    variants = sorted({*VARIANTS, *(v for vs in experiments.values() for v in vs)})
    return Metrics(
        registry=reg,
        **_ingest_metrics(reg),
        **_process_metrics(reg),
        **_recommendation_metrics(reg, variants),
        **_strategy_metrics(reg),
        **_drift_metrics(reg),
        **_checkpoint_metrics(reg),
        **_segment_metrics(reg, segments, audiences),
        **_experiment_metrics(reg, experiments),
        **_ad_auction_metrics(reg, campaigns),
        **_ad_budget_metrics(reg, campaigns),
        **_ad_pctr_metrics(reg, campaigns),
    )


def _preset(metric: Any, **values: Iterable[str]) -> None:
    """Create ``metric``'s child for every combination of label ``values`` (label name ->
    its values), the first label varying slowest, so a dashboard sees zeros, not gaps."""
    names = list(values)
    for combo in product(*values.values()):
        metric.labels(**dict(zip(names, combo, strict=True)))


def _ingest_metrics(reg: CollectorRegistry) -> dict[str, Any]:
    """Input events by topic and fate, redeliveries, and what ingest flags, drops or
    dead-letters."""
    found: dict[str, Any] = dict(
        events=Counter(
            "persona_events",
            "Input events by topic and outcome (accepted, invalid, duplicate, suppressed, "
            "rate_limited, erased).",
            ["topic", "outcome"],
            registry=reg,
        ),
        redeliveries=Counter(
            "persona_redeliveries",
            "Clicks and purchases seen again after a crash or rebalance, recognized by "
            "their offset and not applied twice (also counted as duplicate events).",
            registry=reg,
        ),
        routed=Counter(
            "persona_input_routed",
            "Valid clicks, purchases, ad requests and privacy requests by path: direct "
            "(applied on the user's home partition where they arrived) or rekeyed (sent "
            "once to the events topic, to that partition).",
            ["path"],
            registry=reg,
        ),
        ingest_anomalies=Counter(
            "persona_ingest_anomalies",
            "Accepted input messages that bent the contract in a harmless way, by kind "
            "(missing_key: no Kafka key; ingest re-keys by pseudonym anyway).",
            ["topic", "kind"],
            registry=reg,
        ),
        pii_fields_dropped=Counter(
            "persona_pii_fields_dropped",
            "Fields named like personal data (email, phone, ip, ...) dropped at ingest from "
            "accepted messages, top level or context. Never their values.",
            ["topic"],
            registry=reg,
        ),
        dead_letters=Counter(
            "persona_dead_letters",
            "Messages sent to the dead-letter topic, by machine-readable error code.",
            ["error"],
            registry=reg,
        ),
    )
    _preset(found["events"], topic=INPUT_TOPICS, outcome=OUTCOMES)
    _preset(found["ingest_anomalies"], topic=USER_TOPICS, kind=ANOMALY_KINDS)
    _preset(found["pii_fields_dropped"], topic=INGEST_TOPICS)
    _preset(found["routed"], path=("direct", "rekeyed"))
    _preset(found["dead_letters"], error=(*ERROR_CODES, *AGENT_ERROR_CODES))
    return found


def _process_metrics(reg: CollectorRegistry) -> dict[str, Any]:
    """The worker itself: time per event, lag, and the profiles and items it holds."""
    found: dict[str, Any] = dict(
        processing_seconds=Histogram(
            "persona_event_processing_seconds",
            "Time an agent spends on one event, excluding waiting for Kafka.",
            ["agent"],
            buckets=(5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 0.5),
            registry=reg,
        ),
        event_lag_seconds=Histogram(
            "persona_event_lag_seconds",
            "Delay between an event's Kafka timestamp and the end of its processing.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=reg,
        ),
        profiles=Gauge(
            "persona_profiles",
            "User profiles held by this worker's active table partitions.",
            registry=reg,
        ),
        profiles_expired=Counter(
            "persona_profiles_expired",
            "Profiles deleted by the retention sweep after PERSONA_PROFILE_TTL_DAYS idle.",
            registry=reg,
        ),
        catalogue_items=Gauge(
            "persona_catalogue_items",
            "Items in the in-process catalogue.",
            registry=reg,
        ),
        state_evictions=Counter(
            "persona_state_evictions",
            "Entries a bounded per-user structure dropped to stay in its bound, by state "
            "(hybrid_pending, seen_items, dedupe_window, rate_limit_users); counted at "
            "scrape time.",
            ["state"],
            registry=reg,
        ),
    )
    _preset(found["processing_seconds"], agent=AGENTS)
    _preset(found["state_evictions"], state=EVICTED_STATES)
    return found


def _recommendation_metrics(reg: CollectorRegistry, variants: Sequence[str]) -> dict[str, Any]:
    """Recommendations served per strategy and variant, what users did with them, and the
    revenue of all accepted purchases."""
    found: dict[str, Any] = dict(
        recommendations=Counter(
            "persona_recommendations",
            "Recommendation events emitted.",
            ["strategy", "variant"],
            registry=reg,
        ),
        recommended_items=Counter(
            "persona_recommended_items",
            "Items carried by emitted recommendation events.",
            ["strategy", "variant"],
            registry=reg,
        ),
        recommendation_hits=Counter(
            "persona_recommendation_hits",
            "Accepted events whose item was in the user's previous recommendation.",
            ["strategy", "variant"],
            registry=reg,
        ),
        recommendation_clicks=Counter(
            "persona_recommendation_clicks",
            "Recommendations clicked (at most one click each), credited by the click's "
            "recommendation_id (or, with PERSONA_ATTRIBUTE_BY_ITEM, by its item).",
            ["strategy", "variant"],
            registry=reg,
        ),
        conversions=Counter(
            "persona_conversions",
            "Purchases credited to a recommendation (attributed like clicks).",
            ["strategy", "variant"],
            registry=reg,
        ),
        attributed_revenue=Counter(
            "persona_revenue",
            "Revenue (price x quantity) of the purchases credited to a recommendation.",
            ["strategy", "variant"],
            registry=reg,
        ),
        recommendation_hit_checks=Counter(
            "persona_recommendation_hit_checks",
            "Accepted events of users who had a previous recommendation (hit-rate denominator).",
            ["strategy", "variant"],
            registry=reg,
        ),
        revenue=Counter(
            "persona_purchase_revenue",
            "Revenue of accepted purchases (price x quantity, in the events' currency units).",
            registry=reg,
        ),
    )
    for name, metric in found.items():
        if name != "revenue":  # the only one without strategy and variant labels
            _preset(metric, strategy=STRATEGIES, variant=variants)
    return found


def _strategy_metrics(reg: CollectorRegistry) -> dict[str, Any]:
    """The online models and how requests are shared among strategies: learn steps, items
    tracked, the bandit's estimates and the hybrid's blend weights."""
    found: dict[str, Any] = dict(
        model_updates=Counter(
            "persona_model_updates",
            "learn_one calls per online model.",
            ["model"],
            registry=reg,
        ),
        model_items=Gauge(
            "persona_model_items",
            "Distinct items an online model currently tracks.",
            ["model"],
            registry=reg,
        ),
        strategy_estimate=Gauge(
            "persona_strategy_hit_rate_estimate",
            "The exploration bandit's decayed estimate of each strategy's hit rate.",
            ["strategy"],
            registry=reg,
        ),
        strategy_propensity=Gauge(
            "persona_strategy_propensity",
            "Probability that the bandit serves the next request with each strategy.",
            ["strategy"],
            registry=reg,
        ),
        blend_weight=Gauge(
            "persona_hybrid_weight",
            "The hybrid's learned blend weight per context (new, sparse, regular user) "
            "and component strategy.",
            ["context", "component"],
            registry=reg,
        ),
    )
    _preset(found["model_updates"], model=MODELS)
    _preset(found["model_items"], model=MODELS)
    _preset(found["strategy_estimate"], strategy=STRATEGIES)
    _preset(found["strategy_propensity"], strategy=STRATEGIES)
    _preset(found["blend_weight"], context=CONTEXTS, component=STRATEGIES[1:])
    return found


def _drift_metrics(reg: CollectorRegistry) -> dict[str, Any]:
    """Online model quality as the drift monitor (models/drift.py) sees it."""
    found: dict[str, Any] = dict(
        model_drift=Counter(
            "persona_model_drift",
            "Changes in an online model's quality detected by ADWIN (models.drift), by "
            "model and direction (better, worse).",
            ["model", "direction"],
            registry=reg,
        ),
        model_quality=Gauge(
            "persona_model_quality",
            "An online model's quality since its last detected change (ADWIN's window "
            "mean): recommender hit_rate, pctr and pcvr log_loss; NaN before any value.",
            ["model", "metric"],
            registry=reg,
        ),
        model_quality_window=Gauge(
            "persona_model_quality_window",
            "Quality values in the window of persona_model_quality (since the last "
            "detected change or the worker's start).",
            ["model"],
            registry=reg,
        ),
        model_quality_ignored=Counter(
            "persona_model_quality_ignored",
            "Quality values refused by the drift monitor (NaN, infinite, out of range).",
            ["model"],
            registry=reg,
        ),
    )
    for model, stream in STREAMS.items():
        _preset(found["model_drift"], model=(model,), direction=DIRECTIONS)
        found["model_quality"].labels(model=model, metric=stream.metric)
        found["model_quality_window"].labels(model=model)
        found["model_quality_ignored"].labels(model=model)
    return found


def _checkpoint_metrics(reg: CollectorRegistry) -> dict[str, Any]:
    """Model checkpoints saved and loaded, and the deltas workers share (docs/scaling.md)."""
    found: dict[str, Any] = dict(
        checkpoints=Counter(
            "persona_model_checkpoints",
            "Model checkpoint operations by outcome (saved, failed, restored, rolled_back).",
            ["outcome"],
            registry=reg,
        ),
        checkpoint_seconds=Gauge(
            "persona_model_checkpoint_seconds",
            "Duration of the last model checkpoint save.",
            registry=reg,
        ),
        checkpoint_bytes=Gauge(
            "persona_model_checkpoint_bytes",
            "Size of the last model checkpoint.",
            registry=reg,
        ),
        checkpoint_version=Gauge(
            "persona_model_checkpoint_version",
            "Version of the newest model checkpoint saved or restored (0: none).",
            registry=reg,
        ),
        checkpoint_load_failures=Counter(
            "persona_model_checkpoint_load_failures",
            "Model checkpoints refused at load, by reason (unreadable, unsigned, truncated, "
            "corrupt, bad_signature, invalid); an older good one is loaded instead.",
            ["reason"],
            registry=reg,
        ),
        model_sync_batches=Counter(
            "persona_model_sync_batches",
            "Deltas of item-level learning on the model-updates topic, by outcome (sent; "
            "applied: another worker's; own: this worker's, skipped; invalid: refused; "
            "other_format: of another release's layout, refused).",
            ["outcome"],
            registry=reg,
        ),
        model_sync_steps=Counter(
            "persona_model_sync_steps",
            "Learned events shared between workers, summed in deltas, by outcome (sent; "
            "applied: another worker's, applied here; dropped: summed but never sent).",
            ["outcome"],
            registry=reg,
        ),
        model_sync_entries=Counter(
            "persona_model_sync_entries",
            "Distinct entries (items, pairs, factor rows) of other workers' deltas applied "
            "here: what applying them costs in proportion to.",
            registry=reg,
        ),
        model_sync_bytes=Counter(
            "persona_model_sync_bytes",
            "Bytes of the deltas this worker sent on the model-updates topic.",
            registry=reg,
        ),
    )
    _preset(found["checkpoints"], outcome=("saved", "failed", "restored", "rolled_back"))
    _preset(found["checkpoint_load_failures"], reason=CHECKPOINT_FAILURE_REASONS)
    _preset(found["model_sync_batches"],
            outcome=("sent", "applied", "own", "invalid", "other_format"))
    _preset(found["model_sync_steps"], outcome=("sent", "applied", "dropped"))
    return found


def _segment_metrics(
    reg: CollectorRegistry, segments: Sequence[str], audiences: Sequence[str]
) -> dict[str, Any]:
    """Segment sizes and changes, and audience joins and leaves."""
    found: dict[str, Any] = dict(
        segment_users=Gauge(
            "persona_segment_users",
            "Users currently assigned to each segment (this worker's segmenter).",
            ["segment"],
            registry=reg,
        ),
        segment_changes=Counter(
            "persona_segment_changes",
            "Users given a segment or moved to another one (segments topic events).",
            registry=reg,
        ),
        audience_changes=Counter(
            "persona_audience_changes",
            "Users joining or leaving each configured audience (audiences topic events).",
            ["audience", "action"],
            registry=reg,
        ),
    )
    _preset(found["segment_users"], segment=segments)
    _preset(found["audience_changes"], audience=audiences, action=("join", "leave"))
    return found


def _experiment_metrics(
    reg: CollectorRegistry, experiments: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """Users and credited revenue per experiment variant."""
    found: dict[str, Any] = dict(
        experiment_users=Counter(
            "persona_experiment_users",
            "Users assigned to each experiment variant (counted at their first event).",
            ["experiment", "variant"],
            registry=reg,
        ),
        experiment_revenue=Counter(
            "persona_experiment_revenue",
            "Revenue credited to recommendations, by experiment and variant.",
            ["experiment", "variant"],
            registry=reg,
        ),
        experiment_revenue_sumsq=Counter(
            "persona_experiment_revenue_sumsq",
            "Sum over users of the square of each user's credited revenue (with the user "
            "count and the revenue, the variance of revenue per user).",
            ["experiment", "variant"],
            registry=reg,
        ),
    )
    for name, variants in experiments.items():
        for metric in found.values():
            _preset(metric, experiment=(name,), variant=variants)
    return found


def _ad_auction_metrics(reg: CollectorRegistry, campaigns: tuple[str, ...]) -> dict[str, Any]:
    """Bid decisions and the ad events that follow them, per campaign."""
    found: dict[str, Any] = dict(
        ad_bids=Counter(
            "persona_ad_bids",
            "Ad-bid decisions: outcome is bid, or the no_bid_reason.",
            ["outcome"],
            registry=reg,
        ),
        ad_bid_seconds=Histogram(
            "persona_ad_bid_decision_seconds",
            "In-process time of one bid decision (features, pCTR of every candidate, rules).",
            buckets=(2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2),
            registry=reg,
        ),
        ad_bid_amount=Counter(
            "persona_ad_bid_amount",
            "Sum of the bids made, per campaign (currency units).",
            ["campaign"],
            registry=reg,
        ),
        ad_events=Counter(
            "persona_ad_events",
            "Ad events by type and outcome (counted, duplicate, late, unknown_request, "
            "wrong_ad).",
            ["type", "outcome"],
            registry=reg,
        ),
        ad_impressions=Counter(
            "persona_ad_impressions",
            "Won auctions (first impression of a bid request), per campaign.",
            ["campaign"],
            registry=reg,
        ),
        ad_clicks=Counter(
            "persona_ad_clicks", "Ad clicks counted, per campaign.", ["campaign"], registry=reg
        ),
        ad_conversions=Counter(
            "persona_ad_conversions", "Ad conversions counted, per campaign.", ["campaign"],
            registry=reg,
        ),
    )
    _preset(found["ad_bids"], outcome=BID_OUTCOMES)
    # "counted" is the bidder's "applied": the one event counted per (request, type)
    _preset(found["ad_events"], type=EVENT_TYPES, outcome=("counted", *EVENT_OUTCOMES[1:]))
    for name in ("ad_bid_amount", "ad_impressions", "ad_clicks", "ad_conversions"):
        _preset(found[name], campaign=campaigns)
    return found


def _ad_budget_metrics(reg: CollectorRegistry, campaigns: tuple[str, ...]) -> dict[str, Any]:
    """The money side of ads per campaign: spend, revenue, budgets, pacing, and the kill
    switch."""
    found: dict[str, Any] = dict(
        ad_spend=Counter(
            "persona_ad_spend",
            "Money charged by ad events (capped at each bid), per campaign.",
            ["campaign"],
            registry=reg,
        ),
        ad_revenue=Counter(
            "persona_ad_revenue",
            "Revenue reported by ad events, per campaign.",
            ["campaign"],
            registry=reg,
        ),
        ad_budget_remaining=Gauge(
            "persona_ad_budget_remaining",
            "Budget left per campaign and period (daily: today, UTC; total), after spend and "
            "reservations; -1 when the campaign has no such budget.",
            ["campaign", "period"],
            registry=reg,
        ),
        ad_reserved=Gauge(
            "persona_ad_budget_reserved",
            "Money reserved by open bids (no impression yet, window open), per campaign.",
            ["campaign"],
            registry=reg,
        ),
        ad_pacing=Gauge(
            "persona_ad_pacing_multiplier",
            "Current pacing multiplier per campaign (1: unthrottled).",
            ["campaign"],
            registry=reg,
        ),
        ad_win_rate=Gauge(
            "persona_ad_win_rate",
            "Impressions / bids per campaign since start.",
            ["campaign"],
            registry=reg,
        ),
        ad_roi=Gauge(
            "persona_ad_roi",
            "(revenue - spend) / spend per campaign since start (0 with no spend).",
            ["campaign"],
            registry=reg,
        ),
        ad_kill_switch=Gauge(
            "persona_ad_kill_switch",
            "1 while the ads kill switch is on (no bids), else 0.",
            registry=reg,
        ),
    )
    for name in ("ad_spend", "ad_revenue", "ad_reserved", "ad_pacing", "ad_win_rate", "ad_roi"):
        _preset(found[name], campaign=campaigns)
    _preset(found["ad_budget_remaining"], campaign=campaigns, period=("daily", "total"))
    return found


def _ad_pctr_metrics(reg: CollectorRegistry, campaigns: tuple[str, ...]) -> dict[str, Any]:
    """How well the served pCTR predicted the clicks, per campaign."""
    found: dict[str, Any] = dict(
        ad_labels=Counter(
            "persona_ad_pctr_labels",
            "Resolved pCTR labels (clicked, or not within the window), per campaign.",
            ["campaign", "label"],
            registry=reg,
        ),
        ad_predicted_clicks=Counter(
            "persona_ad_pctr_predicted_clicks",
            "Sum of the pCTR served for the resolved labels: against "
            "persona_ad_pctr_labels_total{label=\"click\"} it gives the calibration.",
            ["campaign"],
            registry=reg,
        ),
        ad_log_loss=Counter(
            "persona_ad_pctr_log_loss",
            "Sum of the log loss of the pCTR served, over resolved labels (divide by the "
            "label count for the mean).",
            ["campaign"],
            registry=reg,
        ),
        ad_pctr_calibration=Gauge(
            "persona_ad_pctr_calibration",
            "Predicted / observed clicks over resolved labels since start (1 is calibrated; "
            "0 before the first click).",
            registry=reg,
        ),
    )
    _preset(found["ad_labels"], campaign=campaigns, label=("click", "no_click"))
    for name in ("ad_predicted_clicks", "ad_log_loss"):
        _preset(found[name], campaign=campaigns)
    return found


# Labelled children already looked up, by (metric, label items): see ``child``.
_CHILDREN: dict[tuple, Any] = {}


def child(metric: Any, **labels: str) -> Any:
    """``metric.labels(**labels)``, looked up once per label set.

    ``labels()`` validates the names and takes a lock on every call (3-6 us), and the
    agents touch about ten labelled series per event. Label values are bounded
    (docs/metrics.md), so is this cache; the key holds the metric itself, so a fresh
    registry (tests) gets fresh children.
    """
    key = (metric, *labels.items())
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(**labels)
    return found
