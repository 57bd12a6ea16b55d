"""Every Prometheus metric persona exposes, declared once against an injectable registry.

Naming follows DESIGN §5: ``persona_`` prefix, base units, ``_total`` counters, bounded
labels only (never a user, item, event or request id), labels pre-initialized so a
dashboard sees zeros instead of gaps.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from models.engine import MODELS, STRATEGIES
from models.recommenders.hybrid import CONTEXTS
from streams.records import ERROR_CODES

INPUT_TOPICS = ("clicks", "purchases", "items")
OUTCOMES = ("accepted", "invalid", "duplicate", "suppressed")
AGENTS = ("ingest", "profile", "items")
VARIANTS = ("default",)
# Dead-letter codes the agents add on top of the validation codes in records.py.
AGENT_ERROR_CODES = ("internal_error", "event_conflict")


@dataclass
class Metrics:
    registry: CollectorRegistry
    events: Counter
    processing_seconds: Histogram
    event_lag_seconds: Histogram
    recommendations: Counter
    recommended_items: Counter
    recommendation_hits: Counter
    recommendation_hit_checks: Counter
    dead_letters: Counter
    model_updates: Counter
    model_items: Gauge
    strategy_estimate: Gauge
    strategy_propensity: Gauge
    blend_weight: Gauge
    profiles: Gauge
    catalogue_items: Gauge
    revenue: Counter
    checkpoints: Counter
    checkpoint_seconds: Gauge
    checkpoint_bytes: Gauge
    checkpoint_version: Gauge


def build_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    """Create every metric on ``registry`` (a fresh one if None) and pre-set its labels."""
    reg = registry if registry is not None else CollectorRegistry()
    m = Metrics(
        registry=reg,
        events=Counter(
            "persona_events",
            "Input events by topic and outcome (accepted, invalid, duplicate, suppressed).",
            ["topic", "outcome"],
            registry=reg,
        ),
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
        recommendation_hit_checks=Counter(
            "persona_recommendation_hit_checks",
            "Accepted events of users who had a previous recommendation (hit-rate denominator).",
            ["strategy", "variant"],
            registry=reg,
        ),
        dead_letters=Counter(
            "persona_dead_letters",
            "Messages sent to the dead-letter topic, by machine-readable error code.",
            ["error"],
            registry=reg,
        ),
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
        profiles=Gauge(
            "persona_profiles",
            "User profiles held by this worker's active table partitions.",
            registry=reg,
        ),
        catalogue_items=Gauge(
            "persona_catalogue_items",
            "Items in the in-process catalogue.",
            registry=reg,
        ),
        revenue=Counter(
            "persona_purchase_revenue",
            "Revenue of accepted purchases (price x quantity, in the events' currency units).",
            registry=reg,
        ),
        checkpoints=Counter(
            "persona_model_checkpoints",
            "Model checkpoint operations by outcome (saved, failed, restored).",
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
    )
    for topic in INPUT_TOPICS:
        for outcome in OUTCOMES:
            m.events.labels(topic=topic, outcome=outcome)
    for agent in AGENTS:
        m.processing_seconds.labels(agent=agent)
    for strategy in STRATEGIES:
        for variant in VARIANTS:
            for c in (
                m.recommendations,
                m.recommended_items,
                m.recommendation_hits,
                m.recommendation_hit_checks,
            ):
                c.labels(strategy=strategy, variant=variant)
    for code in (*ERROR_CODES, *AGENT_ERROR_CODES):
        m.dead_letters.labels(error=code)
    for outcome in ("saved", "failed", "restored"):
        m.checkpoints.labels(outcome=outcome)
    for model in MODELS:
        m.model_updates.labels(model=model)
        m.model_items.labels(model=model)
    for strategy in STRATEGIES:
        m.strategy_estimate.labels(strategy=strategy)
        m.strategy_propensity.labels(strategy=strategy)
    for context in CONTEXTS:
        for component in STRATEGIES[1:]:
            m.blend_weight.labels(context=context, component=component)
    return m
