"""Profile agent: dedupe, update the user's profile, learn, recommend, emit.

Owns the ``profiles`` table (concurrency 1: tables change only here).
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

import orjson

from models.engine import MODELS, reasons
from streams import tables, topics
from streams.agents.deadletter import run_guarded, send_dead_letter
from streams.app import app
from streams.state import MODEL_VERSION, engine, metrics

VARIANT = "default"


def recommendation_id(event_id: str, user: str) -> str:
    """Deterministic, so a redelivered event re-emits the same id (idempotent consumers)."""
    h = hashlib.blake2b(f"{user}\x00{event_id}".encode(), digest_size=12).hexdigest()
    return f"r{h}"


def recommendation_record(
    user: str, event_id: str, strategy: str, items: list, propensity: float = 1.0
) -> dict:
    return {
        "recommendation_id": recommendation_id(event_id, user),
        "user_id": user,
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "strategy": strategy,
        "propensity": round(float(propensity), 6),
        "variant": VARIANT,
        "model_version": MODEL_VERSION,
        "items": reasons(items),
        "trigger_event_id": event_id,
    }


def handle_event(wire: dict) -> tuple[str, dict | None]:
    """Apply one validated event to the tables and models; return (outcome, record|None).

    Runs inside the agent's stream loop (Faust's rule for table writes).
    """
    user = wire["user_id"]
    kind = wire["kind"]
    stored = tables.profiles.get(user) or {}
    amount = float(wire["price"]) * int(wire["quantity"]) if kind == "purchase" else 0.0
    res = engine.process(
        kind,
        user,
        wire["item_id"],
        wire["ts"],
        event_id=wire["event_id"],
        fingerprint=wire.get("fp", ""),
        profile=stored.get("p"),
        dedupe=stored.get("d"),
        amount=amount,
    )
    src = wire.get("src", "clicks")
    if res.outcome == "duplicate":
        metrics.events.labels(topic=src, outcome="duplicate").inc()
        return res.outcome, None
    if res.outcome == "conflict":
        metrics.events.labels(topic=src, outcome="invalid").inc()
        return res.outcome, None
    tables.profiles[user] = {"p": res.profile, "d": res.dedupe}
    metrics.events.labels(topic=src, outcome="accepted").inc()
    if amount:
        metrics.revenue.inc(amount)
    for model in MODELS:
        metrics.model_updates.labels(model=model).inc()
    if res.hit is not None:
        labels = {"strategy": res.hit_strategy or res.strategy, "variant": VARIANT}
        metrics.recommendation_hit_checks.labels(**labels).inc()
        if res.hit:
            metrics.recommendation_hits.labels(**labels).inc()
    record = recommendation_record(user, wire["event_id"], res.strategy, res.items,
                                   res.propensity)
    metrics.recommendations.labels(strategy=res.strategy, variant=VARIANT).inc()
    metrics.recommended_items.labels(strategy=res.strategy, variant=VARIANT).inc(len(res.items))
    return "accepted", record


async def _profile(msg) -> None:  # type: ignore[no-untyped-def]
    wire = orjson.loads(msg.value)
    outcome, record = handle_event(wire)
    if outcome == "conflict":
        await send_dead_letter(
            msg.topic, msg.partition, msg.offset, "event_conflict",
            "event_id already seen with a different payload", msg.value,
        )
    if record is not None:
        await topics.recommendations.send(
            key=record["user_id"].encode("utf-8"), value=orjson.dumps(record)
        )
    kts = wire.get("kts")
    if kts:
        metrics.event_lag_seconds.observe(max(0.0, time.time() - kts / 1000.0))


@app.agent(topics.events, name="persona.profile", concurrency=1)
async def profile(stream):  # type: ignore[no-untyped-def]
    await run_guarded(stream, "profile", _profile)
