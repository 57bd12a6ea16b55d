"""Profile agent: dedupe, update the user's profile, learn, recommend, emit.

Owns the ``profiles`` table (concurrency 1: tables change only here). Ad requests pass
through here too, to pick up the user's ad view (interests, recency, consent) from the
profile on this partition before the ads agent bids; privacy requests change consent.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

import orjson

from models.ads import user_view
from models.audiences import changes, memberships
from models.engine import MODELS, reasons
from models.profile import UserProfile
from streams import tables, topics
from streams.agents.deadletter import run_guarded, send_dead_letter
from streams.app import app, settings
from streams.state import MODEL_VERSION, audiences, engine, metrics, running, segments


def recommendation_id(event_id: str, user: str) -> str:
    """Deterministic, so a redelivered event re-emits the same id (idempotent consumers)."""
    h = hashlib.blake2b(f"{user}\x00{event_id}".encode(), digest_size=12).hexdigest()
    return f"r{h}"


def recommendation_record(
    user: str, event_id: str, strategy: str, items: list, propensity: float = 1.0,
    variant: str = "default",
) -> dict:
    return {
        "recommendation_id": recommendation_id(event_id, user),
        "user_id": user,
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "strategy": strategy,
        "propensity": round(float(propensity), 6),
        "variant": variant,
        "model_version": MODEL_VERSION,
        "items": reasons(items),
        "trigger_event_id": event_id,
    }


def _account_experiment(profile: dict, arm, credit, amount: float) -> None:  # type: ignore[no-untyped-def]
    """Keep the user's variant in the stored profile (so it never moves) and count the
    user and the revenue credited in the experiment, with its per-user square."""
    entries = profile.setdefault("ex", {})
    labels = {"experiment": arm.experiment, "variant": arm.variant}
    if arm.new or arm.experiment not in entries:
        entries[arm.experiment] = [arm.variant, 0.0]
        metrics.experiment_users.labels(**labels).inc()
    if amount and credit is not None and credit.variant == arm.variant:
        before = float(entries[arm.experiment][1])
        after = before + amount
        entries[arm.experiment][1] = after
        metrics.experiment_revenue.labels(**labels).inc(amount)
        metrics.experiment_revenue_sumsq.labels(**labels).inc(after * after - before * before)


_GROUP_TOPICS = {settings.topics.segments: topics.segments,
                 settings.topics.audiences: topics.audiences}


def update_groups(user: str, profile: dict, ts_ms: int) -> list[tuple[str, dict]]:
    """Learn from the user's new profile and (re)assign their segment and audiences, in
    ``profile``; the (topic, record) pairs to emit for what changed."""
    segmenter = segments.model
    if segmenter is None and not audiences:
        return []
    prof = UserProfile.from_dict(profile)
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    out: list[tuple[str, dict]] = []
    if segmenter is not None:
        segmenter.learn_one(prof, ts_ms)
        segment = segmenter.assign(prof.segment or None, prof, ts_ms)
        if segment != prof.segment:
            prof.segment = profile["sg"] = segment
            metrics.segment_changes.inc()
            out.append((settings.topics.segments,
                        {"user_id": user, "segment": segment, "ts": now}))
    if audiences:
        member = memberships(list(audiences.values()), prof, prof.segment or None, ts_ms,
                             engine.catalogue.categories,
                             half_life_ms=settings.interest_half_life_ms)
        moved = changes(set(prof.audiences), member)
        for action, names in (("join", moved.joined), ("leave", moved.left)):
            for name in names:
                metrics.audience_changes.labels(audience=name, action=action).inc()
                out.append((settings.topics.audiences, {"user_id": user, "audience": name,
                                                        "action": action, "ts": now}))
        if moved.joined or moved.left:
            profile["au"] = sorted(member)
    return out


def handle_event(wire: dict) -> tuple[str, dict | None, list[tuple[str, dict]]]:
    """Apply one validated event to the tables and models; return (outcome, the
    recommendation record or None, other (topic, record) pairs to emit: segment and
    audience changes).

    Runs inside the agent's stream loop (Faust's rule for table writes).
    """
    user = wire["user_id"]
    kind = wire["kind"]
    stored = tables.profiles.get(user) or {}
    amount = float(wire["price"]) * int(wire["quantity"]) if kind == "purchase" else 0.0
    arm = running.assign(user, (stored.get("p") or {}).get("ex"))
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
        recommendation_id=wire.get("recommendation_id"),
        serve_id=recommendation_id(wire["event_id"], user),
        variant=arm.variant,
        strategy=arm.strategy,
        overrides=arm.overrides,
    )
    src = wire.get("src", "clicks")
    if res.outcome == "duplicate":
        metrics.events.labels(topic=src, outcome="duplicate").inc()
        return res.outcome, None, []
    if res.outcome == "conflict":
        metrics.events.labels(topic=src, outcome="invalid").inc()
        return res.outcome, None, []
    credit = res.attributed
    if arm.experiment is not None:
        _account_experiment(res.profile, arm, credit, amount if kind == "purchase" else 0.0)
    changed = update_groups(user, res.profile, int(wire["ts"]))
    tables.profiles[user] = {"p": res.profile, "d": res.dedupe}
    metrics.events.labels(topic=src, outcome="accepted").inc()
    if amount:
        metrics.revenue.inc(amount)
    for model in MODELS:
        metrics.model_updates.labels(model=model).inc()
    if credit is not None:
        labels = {"strategy": credit.strategy, "variant": credit.variant}
        if credit.first_click:
            metrics.recommendation_clicks.labels(**labels).inc()
            running.observe(credit.variant, 1, 0)
        if kind == "purchase":
            metrics.conversions.labels(**labels).inc()
            metrics.attributed_revenue.labels(**labels).inc(amount)
    if res.hit is not None:
        labels = {"strategy": res.hit_strategy or res.strategy, "variant": arm.variant}
        metrics.recommendation_hit_checks.labels(**labels).inc()
        if res.hit:
            metrics.recommendation_hits.labels(**labels).inc()
    record = recommendation_record(user, wire["event_id"], res.strategy, res.items,
                                   res.propensity, arm.variant)
    metrics.recommendations.labels(strategy=res.strategy, variant=arm.variant).inc()
    metrics.recommended_items.labels(strategy=res.strategy, variant=arm.variant).inc(
        len(res.items))
    running.observe(arm.variant, 0, 1)
    return "accepted", record, changed


def with_ad_view(wire: dict) -> dict:
    """The ad request with the user's ad view (``view``) from their stored profile.

    Opted-out users get an empty, non-personal view (``np``): a contextual bid.
    """
    stored = tables.stored_profile(tables.profiles.get(wire["user_id"]))
    profile = None if stored is None else UserProfile.from_dict(stored)
    opted_out = profile is not None and profile.opted_out
    wire["view"] = user_view(profile, int(wire["ts"]), settings.interest_half_life_ms,
                             opted_out=opted_out)
    return wire


def handle_privacy(wire: dict) -> str:
    """Apply an opt_out, opt_in or erase to the user's stored state; return the action.

    Idempotent: applying one twice leaves the same state. Erase removes the profile (a
    tombstone in the changelog: user factors, seen items and dedupe window go with it)
    and what the hybrid keeps of the user's last served list.
    """
    user, action = wire["user_id"], wire["action"]
    if action == "erase":
        stored_profile = tables.stored_profile(tables.profiles.get(user))
        if stored_profile is not None:
            if segments.model is not None:
                segments.model.forget(stored_profile.get("sg"))
            del tables.profiles[user]
        engine.hybrid.forget_user(user)
        return action
    stored = tables.profiles.get(user) or {}
    profile = UserProfile.from_dict(stored.get("p") or {})
    want = action == "opt_out"
    if profile.opted_out != want or (want and not stored):  # an unknown user can opt out
        profile.opted_out = want
        tables.profiles[user] = {"p": profile.to_dict(), "d": stored.get("d") or []}
    return action


async def _profile(msg) -> None:  # type: ignore[no-untyped-def]
    wire = orjson.loads(msg.value)
    kind = wire.get("kind")
    if kind == "ad_request":
        await topics.ads.send(key=None, value=orjson.dumps(with_ad_view(wire)))
        return
    if kind == "privacy":
        handle_privacy(wire)
        metrics.events.labels(topic="privacy", outcome="accepted").inc()
        return
    outcome, record, changed = handle_event(wire)
    if outcome == "conflict":
        await send_dead_letter(
            msg.topic, msg.partition, msg.offset, "event_conflict",
            "event_id already seen with a different payload", msg.value,
        )
    if record is not None:
        await topics.recommendations.send(
            key=record["user_id"].encode("utf-8"), value=orjson.dumps(record)
        )
    for topic, change in changed:
        await _GROUP_TOPICS[topic].send(key=change["user_id"].encode("utf-8"),
                                        value=orjson.dumps(change))
    kts = wire.get("kts")
    if kts:
        metrics.event_lag_seconds.observe(max(0.0, time.time() - kts / 1000.0))


@app.agent(topics.events, name="persona.profile", concurrency=1)
async def profile(stream):  # type: ignore[no-untyped-def]
    await run_guarded(stream, "profile", _profile)
