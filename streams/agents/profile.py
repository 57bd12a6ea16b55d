"""Profile agent: dedupe, update the user's profile, learn, recommend, emit.

Reads clicks, purchases, ad requests and privacy requests as they arrive, and the
internal events topic. An input message is validated and pseudonymized here
(``streams.agents.ingest.accept``); on its user's home partition it is applied at once,
else it is sent once to the events topic, to that partition (``streams.placement``),
and applied when it comes back, on the worker that owns the user.

Owns the ``profiles`` table (concurrency 1: tables change only here). Ad requests pass
through here too, to pick up the user's ad view (interests, recency, consent) from the
profile on this partition before the ads agent bids; privacy requests (erase, opt_out,
opt_in) and retention expiries (``expire``, sent by this module's sweep) change or
delete the user's record here, and are forwarded to the ads agent where they concern
its stored features.

Privacy, in short (docs/contract.md, "Privacy requests"):
- opt_out: the record shrinks to the flag and the dedupe window; the user's events are
  counted ``suppressed`` and teach nothing; they get the non-personal list.
- opt_in: the flag goes; the user starts afresh from their next event.
- erase: the record is deleted (changelog tombstone) with everything kept about the
  user in memory; a later event starts a new profile (the user is back). A marker (the
  erase time) stays for PERSONA_ERASE_GRACE_S: the user's events from before the erase
  that arrive after it are dropped (counted ``erased``), not learned.
- rate-limited events (``"rl": true`` from ingest) are counted in the profile only.

Batches (``_profile_batch``; reading and acking in ``streams.agents.batches``): the agent
takes up to PERSONA_BATCH_MAX messages at a time, waiting at most PERSONA_BATCH_WAIT_MS
after the first. It handles them in order, each as it would be alone (the model work is
still per event), against the users' records kept in memory for the batch
(``_Pending``); then writes each touched user's record once (the last state and the
position of the last event applied), sends the batch's outputs, and only then are the
batch's messages acked: Faust flushes the producer before it commits their offsets, so
no message counts as done before its effects are on the broker. A failure on one
message dead-letters that message (``internal_error``); the batch goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from models.ads.pctr import user_view
from models.engine import MODELS, Result, reasons
from models.marketing.attribution import Attribution
from models.marketing.experiments import DEFAULT_VARIANT, NO_EXPERIMENT, Assignment
from models.marketing.steps import (
    CreditUpdate,
    SegmentChange,
    account_experiment,
    credit_step,
    forget_user_step,
    group_step,
)
from models.recommenders.base import ScoredItem
from models.users.erasure import before_erase, make_marker, marker_expired
from models.users.profile import UserProfile, is_expired, opted_out_profile
from streams import tables, topics
from streams.agents.batches import run_batched, use_event
from streams.agents.deadletter import contain_failure, counted_dead_letter, failure_letter
from streams.agents.ingest import ROUTES, accept, record_ts_ms
from streams.app import app, settings
from streams.messages import (
    AdRequestMsg,
    Click,
    Expire,
    Forget,
    PrivacyMsg,
    Purchase,
    Recommendation,
    RecommendedItem,
    decode_event_message,
    now_iso,
)
from streams.messages import AudienceChange as AudienceRecord
from streams.messages import SegmentChange as SegmentRecord
from streams.metrics import child
from streams.placement import Placement, home_partition
from streams.records import ValidationError
from streams.runtime import Runtime, current

# What the profile agent publishes besides recommendations: segment and audience changes.
Output = SegmentRecord | AudienceRecord

log = logging.getLogger(__name__)


def recommendation_id(event_id: str, user: str) -> str:
    """Deterministic, so a redelivered event re-emits the same id (idempotent consumers)."""
    h = hashlib.blake2b(f"{user}\x00{event_id}".encode(), digest_size=12).hexdigest()
    return f"r{h}"


def recommendation_record(
    user: str, event_id: str, strategy: str, items: Sequence[ScoredItem],
    propensity: float = 1.0, variant: str = "default", rec_id: str | None = None,
    model_version: str | None = None,
) -> Recommendation:
    """The record for the ``recommendations`` topic; ``rec_id`` is
    ``recommendation_id(event_id, user)`` when the caller has it already."""
    return Recommendation(
        recommendation_id=rec_id or recommendation_id(event_id, user),
        user_id=user,
        ts=now_iso(),
        strategy=strategy,
        propensity=round(float(propensity), 6),
        variant=variant,
        model_version=model_version or current().model_version,
        items=tuple(RecommendedItem(**item) for item in reasons(items)),
        trigger_event_id=event_id,
    )


def _account_experiment(rt: Runtime, profile: dict, arm: Assignment,
                        credit: Attribution | None, amount: float) -> None:
    """Keep the user's variant in the stored profile (so it never moves) and count the
    user and the revenue credited in the experiment, with its per-user square."""
    up = account_experiment(profile.get("ex"), arm, credit, amount)
    profile["ex"] = up.entries
    metrics = rt.metrics
    labels = {"experiment": arm.experiment, "variant": arm.variant}
    if up.users_added:
        child(metrics.experiment_users, **labels).inc(up.users_added)
    if up.revenue:
        child(metrics.experiment_revenue, **labels).inc(up.revenue)
        child(metrics.experiment_revenue_sumsq, **labels).inc(up.revenue_sumsq)


def update_groups(user: str, profile: dict, ts_ms: int,
                  prof: UserProfile | None = None,
                  rt: Runtime | None = None) -> list[Output]:
    """Learn from the user's new profile and (re)assign their segment and audiences, in
    ``profile``; the segment and audience records to emit for what changed. ``prof``:
    the same profile already parsed (``Result.user_profile``), saving a second
    ``from_dict``."""
    rt = rt or current()
    engine, metrics = rt.engine, rt.metrics
    up = group_step(profile, prof, ts_ms, segmenter=rt.segments.model,
                    audiences=rt.audiences, categories_of=engine.catalogue.categories,
                    half_life_ms=rt.settings.interest_half_life_ms, sync_outbox=engine.sync,
                    user=user)
    if up.segment is not None:
        profile["sg"] = up.segment
    if up.audiences is not None:
        profile["au"] = up.audiences
    out: list[Output] = []
    for change in up.changes:
        if isinstance(change, SegmentChange):
            metrics.segment_changes.inc()
            out.append(SegmentRecord(user, change.segment, now_iso()))
        else:
            child(metrics.audience_changes, audience=change.audience,
                  action=change.action).inc()
            out.append(AudienceRecord(user, change.audience, change.action, now_iso()))
    return out


def handle_event(ev: Click | Purchase, at: tuple[int, ...] | None = None,
                 rt: Runtime | None = None) -> tuple[str, Recommendation | None, list[Output]]:
    """Apply one validated event to the tables and models; return (outcome, the
    recommendation record or None, the other records to emit: segment and audience
    changes). ``at`` is the message's (partition, offset[, source]): its position on the
    ``source``-th topic of ``tables.SOURCES`` (0, the events topic, if not given). A
    message the user's record already holds is a redelivery, counted as a duplicate.

    An event at or before the user's erase marker (``tables.erasures``) is ``erased``:
    dropped and counted, so it cannot rebuild the erased profile.

    A rate-limited event (``ev.rl``; ingest counts it ``rate_limited`` too) updates the
    profile's counts only: no learning, no recommendation. An opted-out user's event is
    "suppressed": only its id is kept (dedupe), and the recommendation is non-personal.

    Runs inside the agent's stream loop (Faust's rule for table writes).
    """
    rt = rt or current()
    engine, metrics, running = rt.engine, rt.metrics, rt.running
    user, kind = ev.user_id, ev.kind
    learn = not ev.rl
    stored = _pending.get(user) or {}
    src = ev.origin.src or "clicks"
    if before_erase(tables.erasures.get(user), ev.ts_ms):
        # Made before the user's erase and overtaken by it on another input topic: not
        # bad input (no dead letter), but nothing of it may come back.
        child(metrics.events, topic=src, outcome="erased").inc()
        return "erased", None, []
    if at is not None and tables.already_applied(stored, *at):
        # Our own redelivery (crash or rebalance before the offset commit): applied once.
        child(metrics.events, topic=src, outcome="duplicate").inc()
        metrics.redeliveries.inc()
        return "duplicate", (None if not learn else _reserve(rt, ev, stored)), []
    pos = None if at is None else tables.advance(stored, *at)
    stored_p = stored.get("p") or {}
    amount = float(ev.amount) if isinstance(ev, Purchase) else 0.0
    rec_id = recommendation_id(ev.event_id, user)
    arm = (running.assign(user, stored_p.get("ex")) if learn and not stored_p.get("oo")
           else NO_EXPERIMENT)
    res = engine.process(
        kind,
        user,
        ev.item_id,
        ev.ts_ms,
        event_id=ev.event_id,
        fingerprint=ev.fp,
        profile=stored.get("p"),
        dedupe=stored.get("d"),
        amount=amount,
        learn=learn,
        serve=learn,
        recommendation_id=ev.recommendation_id,
        serve_id=rec_id,
        variant=arm.variant,
        strategy=arm.strategy,
        overrides=arm.overrides,
    )
    if res.outcome == "duplicate":
        child(metrics.events, topic=src, outcome="duplicate").inc()
        return res.outcome, None, []
    if res.outcome == "conflict":
        child(metrics.events, topic=src, outcome="invalid").inc()
        return res.outcome, None, []
    assert res.profile is not None and res.dedupe is not None
    if res.outcome == "suppressed":
        return res.outcome, _suppressed(rt, ev, res, pos, rec_id), []
    child(metrics.events, topic=src, outcome="accepted").inc()
    if amount:
        metrics.revenue.inc(amount)
    if not learn:
        _pending.set(user, tables.make_record(res.profile, res.dedupe, at=pos))
        return res.outcome, None, []
    if arm.experiment is not None:
        _account_experiment(rt, res.profile, arm, res.attributed,
                            amount if kind == "purchase" else 0.0)
    changed = update_groups(user, res.profile, int(ev.ts_ms), res.user_profile, rt)
    _pending.set(user, tables.make_record(res.profile, res.dedupe, at=pos))
    for model in MODELS:
        child(metrics.model_updates, model=model).inc()
    _count_served(rt, credit_step(res, arm, kind, amount))
    record = recommendation_record(user, ev.event_id, res.strategy, res.items,
                                   res.propensity, arm.variant, rec_id=rec_id,
                                   model_version=rt.model_version)
    return "accepted", record, changed


def _suppressed(rt: Runtime, ev: Click | Purchase, res: Result,
                at: list[int] | None, rec_id: str) -> Recommendation | None:
    """An opted-out user's event: keep its id (dedupe) and count it; the non-personal
    recommendation to send, unless the event was rate-limited."""
    assert res.profile is not None and res.dedupe is not None
    user = ev.user_id
    _pending.set(user, tables.make_record(res.profile, res.dedupe, at=at))
    metrics = rt.metrics
    child(metrics.events, topic=ev.origin.src or "clicks", outcome="suppressed").inc()
    if ev.rl:
        return None
    labels = {"strategy": res.strategy, "variant": DEFAULT_VARIANT}
    child(metrics.recommendations, **labels).inc()
    child(metrics.recommended_items, **labels).inc(len(res.items))
    return recommendation_record(user, ev.event_id, res.strategy, res.items,
                                 rec_id=rec_id, model_version=rt.model_version)


def _count_served(rt: Runtime, counts: CreditUpdate) -> None:
    """Count what ``credit_step`` found: credited clicks and conversions, the hit check
    of the previous list, the list served now (and the running experiment's trials)."""
    metrics, running = rt.metrics, rt.running
    if counts.clicked is not None:
        clicked = counts.clicked
        child(metrics.recommendation_clicks, strategy=clicked.strategy,
              variant=clicked.variant).inc()
        running.observe(clicked.variant, 1, 0)
    if counts.converted is not None:
        converted = counts.converted
        child(metrics.conversions, strategy=converted.strategy,
              variant=converted.variant).inc()
        child(metrics.attributed_revenue, strategy=converted.strategy,
              variant=converted.variant).inc(counts.revenue)
    if counts.checked is not None:
        checked = counts.checked
        rt.drift.observe("recommender", counts.hit)
        child(metrics.recommendation_hit_checks, strategy=checked.strategy,
              variant=checked.variant).inc()
        if counts.hit:
            child(metrics.recommendation_hits, strategy=checked.strategy,
                  variant=checked.variant).inc()
    served = counts.served
    child(metrics.recommendations, strategy=served.strategy, variant=served.variant).inc()
    child(metrics.recommended_items, strategy=served.strategy,
          variant=served.variant).inc(counts.items)
    running.observe(served.variant, 0, 1)


def _reserve(rt: Runtime, ev: Click | Purchase, stored: dict) -> Recommendation:
    """The recommendation of a redelivered event, served again under its id.

    The changelog write and the recommendation leave in separate producer batches: a
    crash can land the first and lose the second, and then the redelivery is all that
    is left to send it. So a redelivery sends it again, with the same (deterministic)
    recommendation id, the same policy draw and the stored variant: at-least-once, and
    consumers keep the first copy of an id. Serving learns nothing and counts nothing.
    """
    user, stored_p = ev.user_id, stored.get("p") or {}
    arm = (NO_EXPERIMENT if stored_p.get("oo")
           else rt.running.assign(user, stored_p.get("ex")))
    engine = rt.engine
    served = engine.recommend(stored_p or None, engine.config.top_k, key=ev.event_id,
                              user=user, strategy=arm.strategy, overrides=arm.overrides)
    return recommendation_record(user, ev.event_id, served.strategy, served.items,
                                 served.propensity, arm.variant,
                                 model_version=rt.model_version)


def with_ad_view(req: AdRequestMsg) -> AdRequestMsg:
    """The ad request with the user's ad view (``view``) from their stored profile.

    Opted-out users get an empty, non-personal view (``np``): a contextual bid. A
    request from before the user's erase gets an unknown user's (``{}``): the bid is
    still answered, and the ads table keeps nothing of the user for it.
    """
    if before_erase(tables.erasures.get(req.user_id), req.ts_ms):
        return replace(req, view={})
    stored = tables.stored_profile(_pending.get(req.user_id))
    profile = None if stored is None else UserProfile.from_dict(stored)
    opted_out = profile is not None and profile.opted_out
    view = user_view(profile, int(req.ts_ms), current().settings.interest_half_life_ms,
                     opted_out=opted_out)
    return replace(req, view=view)


def _forget_in_memory(rt: Runtime, user: str,
                      stored_profile: dict | None) -> list[Output]:
    """Drop what this worker keeps about ``user`` outside their record: their place in
    a segment's size, the hybrid's last list served to them. Returns the audience
    "leave" events of the audiences the record had them in (to emit)."""
    left = forget_user_step(user, stored_profile, hybrid=rt.engine.hybrid,
                            segmenter=rt.segments.model, audiences=rt.audiences)
    if not left:
        return []
    now = now_iso()
    out: list[Output] = []
    for name in left:
        child(rt.metrics.audience_changes, audience=name, action="leave").inc()
        out.append(AudienceRecord(user, name, "leave", now))
    return out


def handle_privacy(req: PrivacyMsg,
                   partition: int | None = None) -> tuple[str, list[Output]]:
    """Apply an opt_out, opt_in or erase to the user's stored state; return the action
    and the audience "leave" events to emit.

    Idempotent: applying one twice leaves the same state.

    - erase: the record goes (a changelog tombstone: profile, user factors, seen items,
      served lists and dedupe window with it), and so do the user's segment count and
      the hybrid's last list served to them; the raw-id cache of this worker's
      pseudonymizer is cleared. A marker keeps the erase time for
      PERSONA_ERASE_GRACE_S: a later event starts a new profile, an older one is dropped.
    - opt_out: the record shrinks to the flag and the dedupe window (data
      minimization: nothing learned about the user is kept; an unknown user can opt
      out too). Nothing is learned from them, nor personalized, until opt_in.
    - opt_in: the flag goes; personalization starts afresh from their next event.

    Erase and opt_out are also forwarded to the ads agent (``forward_to_ads``), which
    drops the user's stored ad features. ``partition``: the user's home partition, kept
    with what is written (the retention sweep sends its expiry there).
    """
    rt = current()
    user, action = req.user_id, req.action
    record = _pending.get(user)
    stored_profile = tables.stored_profile(record)
    if action == "erase":
        left = _forget_in_memory(rt, user, stored_profile)
        marker = make_marker(int(req.ts_ms), int(time.time() * 1000),
                             tables.erasures.get(user))
        if partition is not None:
            marker["k"] = int(partition)
        tables.erasures[user] = marker
        if record is not None:
            _pending.delete(user)
        rt.pseudonymize.clear()  # this worker's cache of raw ids: the erased one among them
        return action, left
    profile = UserProfile.from_dict(stored_profile or {})
    dedupe = (record or {}).get("d") or []
    # The positions of the last events applied stay with the record (redeliveries).
    o = (record or {}).get("o")
    at = (tables.advance(record, partition) if partition is not None
          else o if isinstance(o, list) else None)
    if action == "opt_out":
        minimal = opted_out_profile().to_dict()
        if stored_profile != minimal:
            left = _forget_in_memory(rt, user, stored_profile)
            _pending.set(user, tables.make_record(minimal, dedupe, at=at))
            return action, left
    elif profile.opted_out:  # opt_in
        profile.opted_out = False
        _pending.set(user, tables.make_record(profile.to_dict(), dedupe, at=at))
    return action, []


def forward_to_ads(req: PrivacyMsg) -> Forget | None:
    """The message telling the ads agent to forget the user's stored ad features (after
    an erase or opt_out), or None."""
    if req.action not in ("erase", "opt_out"):
        return None
    return Forget(req.user_id, req.ts_ms)


def handle_expire(order: Expire) -> tuple[bool, list[Output]]:
    """Delete the user's record if it is still idle since before ``order.before_ms`` (the
    sweep's cutoff; the check is repeated here, where the table is owned, so activity
    since the sweep keeps the profile), and their erase marker if written before
    ``order.erased_before_ms`` (a newer erase keeps it). Returns (record deleted,
    audience "leave" events)."""
    user = order.user_id
    if order.erased_before_ms and marker_expired(tables.erasures.get(user),
                                                 int(order.erased_before_ms)):
        del tables.erasures[user]
    record = _pending.get(user)
    if record is None or not is_expired(record.get("p"), tables.touched_ms(record),
                                        int(order.before_ms)):
        return False, []
    rt = current()
    left = _forget_in_memory(rt, user, record.get("p"))
    _pending.delete(user)
    rt.metrics.profiles_expired.inc()
    return True, left


def expire_messages(now_ms: int, ttl_ms: int,
                    grace_ms: int = 0) -> list[tuple[bytes, bytes]]:
    """(key, value) of an ``expire`` message for every profile in this worker's table
    idle for longer than ``ttl_ms`` at ``now_ms`` (none when ``ttl_ms`` <= 0), and for
    every erase marker older than ``grace_ms`` (none when 0); one message per user.

    Read here, deleted by the profile agent that owns the record: tables change only
    inside their agent (docs/architecture.md, What the code relies on). The table may
    hold standby copies of other workers' partitions too; their owners re-check, so a
    repeated expiry is harmless.
    """
    cutoff = now_ms - ttl_ms
    idle: list[str] = []
    if ttl_ms > 0:
        # One pass with no await in it: the agent cannot change the table meanwhile, and
        # only the expired records are kept (a large table is not copied).
        # maybe_idle skips records written since the cutoff without decoding them.
        idle = [user for user, record in tables.maybe_idle(cutoff)
                if is_expired(record.get("p"), tables.touched_ms(record), cutoff)]
    marks = now_ms - grace_ms
    # Markers live only for the grace period: this table stays small.
    unmark = ({user for user, marker in tables.erasures.items()
               if marker_expired(marker, marks)} if grace_ms > 0 else set())
    out = [(user.encode("utf-8"),
            Expire(user, cutoff, marks if user in unmark else 0).encode()) for user in idle]
    out.extend((user.encode("utf-8"), Expire(user, 0, marks).encode())
               for user in sorted(unmark.difference(idle)))
    return out


async def sweep_expired(now_ms: int | None = None) -> int:
    """Send the expire messages for idle profiles and old erase markers (see
    ``expire_messages``); how many."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    config = current().settings
    messages = expire_messages(now, config.profile_ttl_ms, config.erase_grace_ms)
    for n, (key, value) in enumerate(messages, start=1):
        await topics.events.send(key=key, value=value, partition=_home_of(key.decode()))
        if n % 1000 == 0:
            await asyncio.sleep(0)  # let the agents run during a long sweep
    if messages:
        log.info("profile retention sweep: %d idle profiles or erase markers to expire",
                 len(messages))
    return len(messages)


def _home_of(user: str) -> int:
    """The partition the user's record and marker were written from: where their
    expiry must go. A record written before positions named it (or with none) was
    written from the partition the pseudonym's key chose, as the events topic's default
    partitioner sends it."""
    for held in (tables.partition_of(tables.profiles.get(user)),
                 (tables.erasures.get(user) or {}).get("k")):
        if isinstance(held, int):
            return held
    return home_partition(user, placement.events_partitions())


# One output of a batch: (topic, key, value, the message it came from, the partition
# to send it to: None lets the key choose).
Send = tuple[Any, bytes | None, bytes, Any, int | None]

# The input topics the profile agent reads besides the events topic (validated here).
_INPUTS = frozenset({settings.topics.clicks, settings.topics.purchases,
                     settings.topics.ad_requests, settings.topics.privacy})
# A topic's place in a record's positions (``tables.SOURCES``). Ad requests (nothing
# stored) and privacy requests (idempotent) need none: -1.
_SOURCE = {topic: n for n, topic in enumerate(tables.SOURCES)}


def _count_partitions(topic: str) -> int | None:
    return app.consumer.topic_partitions(topic)


# Which input is applied where it arrives and which is re-keyed (streams/placement.py).
placement = Placement(_count_partitions, settings.events_topic, settings.partitions)


def _apply(msg, out: list[Send], rt: Runtime) -> int:  # type: ignore[no-untyped-def]
    """Handle one message of a batch: change the user's record (``_pending``) and the
    models, and add what to send to ``out``. The event's ingest time (ms; 0: none)."""
    if msg.topic in _INPUTS:
        return _apply_input(msg, out, rt)
    m = decode_event_message(msg.value)
    if isinstance(m, Expire):
        _, changed = handle_expire(m)
        _emit(changed, msg, out)
        return 0
    return _apply_record(m, msg, (msg.partition, msg.offset, 0), out, rt)


def _apply_input(msg, out: list[Send], rt: Runtime) -> int:  # type: ignore[no-untyped-def]
    """An input message: refused (a dead letter), applied here (on the user's home
    partition), or sent on once to the events topic, to the home partition."""
    topic = msg.topic
    kts = record_ts_ms(msg.timestamp)
    try:
        got = accept(topic, msg.value, kts, msg.partition, msg.offset, msg.key, rt)
    except ValidationError as exc:
        child(rt.metrics.events, topic=ROUTES[topic].label, outcome="invalid").inc()
        letter = counted_dead_letter(topic, msg.partition, msg.offset, exc.code, exc.detail,
                                     msg.value)
        out.append((topics.dead_letters, None, letter.encode(), msg, None))
        return 0
    assert got.raw_user is not None and got.pseudonym is not None  # every route here names one
    home = placement.home(got.raw_user)
    if not placement.applies_here(topic, msg.partition, home):
        child(rt.metrics.routed, path="rekeyed").inc()
        out.append((topics.events, got.pseudonym.encode("utf-8"), got.record.encode(), msg,
                    home))
        return 0
    child(rt.metrics.routed, path="direct").inc()
    return _apply_record(got.record, msg, (msg.partition, msg.offset, _SOURCE.get(topic, -1)),
                         out, rt)


def _apply_record(m, msg, at: tuple[int, int, int], out: list[Send],  # type: ignore[no-untyped-def]
                  rt: Runtime) -> int:
    """Apply one validated record (``m``) of ``msg``, at ``at``: (partition, offset,
    source; -1: not positioned)."""
    if isinstance(m, AdRequestMsg):
        out.append((topics.ads, None, with_ad_view(m).encode(), msg, None))
        return 0
    if isinstance(m, PrivacyMsg):
        _, changed = handle_privacy(m, at[0])
        forward = forward_to_ads(m)
        if forward is not None:
            out.append((topics.ads, None, forward.encode(), msg, None))
        _emit(changed, msg, out)
        rt.metrics.events.labels(topic="privacy", outcome="accepted").inc()
        return 0
    outcome, record, changed = handle_event(m, at, rt)
    if outcome == "conflict":
        letter = counted_dead_letter(
            msg.topic, msg.partition, msg.offset, "event_conflict",
            "event_id already seen with a different payload", msg.value,
        )
        out.append((topics.dead_letters, None, letter.encode(), msg, None))
    if record is not None:
        out.append((topics.recommendations, record.user_id.encode("utf-8"),
                    record.encode(), msg, None))
    _emit(changed, msg, out)
    return int(m.origin.kts or 0)


def _emit(changed: list[Output], msg, out: list[Send]) -> None:  # type: ignore[no-untyped-def]
    for change in changed:
        topic = topics.segments if isinstance(change, SegmentRecord) else topics.audiences
        out.append((topic, change.user_id.encode("utf-8"), change.encode(), msg, None))


async def _profile_batch(events: Sequence[Any]) -> None:
    """Handle a batch of the events topic (``streams.agents.batches``), in order.

    Each message is handled as it would be alone (the model work still runs event by
    event), against ``_pending``: each user's record stays in memory across the batch
    and is written once at its end, the last state, carrying the position of the last
    event applied to it (one user's events share one partition, in offset order, so it
    covers each earlier one: ``tables.already_applied``). Then the batch's outputs
    (recommendations, segment and audience changes, ads forwards, dead letters) are
    sent together, in the order of their events; the caller acks the batch only after.
    Every event keeps its recommendation: several events of one user in one batch get
    one each, as they would one by one (docs/contract.md).

    A failure on one message is contained to it: its outputs are dropped, it goes to
    dead-letters as ``internal_error``, and the batch goes on. Everything up to the
    sends runs without an await, so no other task (the retention sweep, a view) ever
    sees the table half-way through a batch.
    """
    rt = current()
    out: list[Send] = []
    kts: list[int] = []
    _pending.begin()
    try:
        for event in events:
            msg = event.message
            use_event(event)  # table writes of this message go to its partition
            _pending.event = event
            mark = len(out)
            try:
                t = _apply(msg, out, rt)
            except Exception as exc:  # a bug on this message: contain it, go on
                del out[mark:]
                out.append((topics.dead_letters, None,
                            failure_letter("profile", msg, exc).encode(), msg, None))
            else:
                if t:
                    kts.append(t)
        for msg, exc in _pending.flush():
            out.append((topics.dead_letters, None,
                        failure_letter("profile", msg, exc).encode(), msg, None))
    finally:
        _pending.end()
    for topic, key, value, msg, partition in out:
        try:
            await topic.send(key=key, value=value, partition=partition)
        except Exception as exc:  # acked with its batch: keep the message in dead-letters
            await contain_failure("profile", msg, exc)
    now = time.time()
    for t in kts:
        rt.metrics.event_lag_seconds.observe(max(0.0, now - t / 1000.0))


class _Pending:
    """The ``profiles`` table as the batch being handled sees it.

    Reads see the batch's own changes; each user changed is written once, by ``flush``
    at the end of the batch: their last record (or a tombstone first, if it was deleted
    on the way), under the last event that changed it (its partition). Outside a batch
    (tests and tools calling the handlers directly) reads and writes go straight to the
    table. Records are values: a handler builds a new one rather than change one read.
    """

    def __init__(self) -> None:
        self.active = False
        self.event: Any = None  # the event being handled
        self._records: dict[str, dict | None] = {}
        self._deleted: set[str] = set()
        self._last: dict[str, Any] = {}  # user -> the last event that changed them
        self._by: dict[str, list[Any]] = {}  # user -> the messages that changed them

    def begin(self) -> None:
        self.active = True

    def end(self) -> None:
        self.active = False
        self.event = None
        self._records.clear()
        self._deleted.clear()
        self._last.clear()
        self._by.clear()

    def get(self, user: str) -> dict | None:
        if self.active and user in self._records:
            return self._records[user]
        return tables.profiles.get(user)

    def set(self, user: str, record: dict) -> None:
        if not self.active:
            tables.profiles[user] = record
            return
        self._records[user] = record
        self._touch(user)

    def delete(self, user: str) -> None:
        if not self.active:
            del tables.profiles[user]
            return
        self._records[user] = None
        self._deleted.add(user)
        self._touch(user)

    def _touch(self, user: str) -> None:
        event = self.event
        self._last[user] = event
        by = self._by.setdefault(user, [])
        if not by or by[-1] is not event:
            by.append(event)

    def flush(self) -> list[tuple[Any, Exception]]:
        """Write each changed user's record once; (message, error) for every message
        that changed a user whose write failed (to dead-letter)."""
        failed: list[tuple[Any, Exception]] = []
        profiles = tables.profiles
        for user, record in self._records.items():
            use_event(self._last[user])
            try:
                if user in self._deleted and user in profiles:
                    del profiles[user]
                if record is not None:
                    profiles[user] = record
            except Exception as exc:  # this user's changes are lost: keep their events
                failed.extend((event.message, exc) for event in self._by[user])
        return failed


_pending = _Pending()


@app.agent(topics.profile_inputs, name="persona.profile", concurrency=1)
async def profile(stream):  # type: ignore[no-untyped-def]
    config = current().settings
    await run_batched(stream, "profile", config.batch_max, config.batch_wait_ms / 1000.0,
                      _profile_batch)


if settings.profile_ttl_ms > 0 or settings.erase_grace_ms > 0:

    @app.timer(interval=settings.profile_sweep_interval_s)
    async def _retention_sweep() -> None:
        """Expire idle profiles (PERSONA_PROFILE_TTL_DAYS) and erase markers past
        PERSONA_ERASE_GRACE_S on every worker, for the records in its own tables."""
        try:
            await sweep_expired()
        except Exception as exc:  # a failed sweep must not stop the worker; next one retries
            log.error("profile retention sweep failed: %s", type(exc).__name__)
