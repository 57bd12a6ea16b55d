"""The agents under Faust's test_context(): routing, dead letters, tables, metrics."""

from __future__ import annotations

import asyncio
import base64

import orjson
import pytest
from faust.exceptions import PartitionsMismatch

from models.engine import STRATEGIES
from models.recommenders.base import Context
from models.users.privacy import pseudonymize
from streams import tables, topics
from streams.agents.items import items as items_agent
from streams.agents.profile import profile as profile_agent
from streams.app import app, settings
from streams.runtime import current
from tests.agents.wire import input_agent

rt = current()
engine, metrics, segments = rt.engine, rt.metrics, rt.segments
KEY = rt.settings.require_secret_key()
T = settings.topics
EVENTS = f"{settings.app_id}-events"


def _value(name: str, **labels: str) -> float:
    v = metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def click(eid: str, user: str, item: str, ts: int = 1_700_000_000_000) -> bytes:
    return orjson.dumps({"event_id": eid, "user_id": user, "item_id": item, "ts": ts,
                         "email": "x@example.com"})


def test_ingest_valid_click_is_pseudonymized_and_rekeyed(loop, sent):
    async def run():
        async with input_agent(topics.clicks) as agent:
            await agent.put(click("c1", "alice-raw", "sku-1"), key=b"alice-raw")

    loop.run_until_complete(run())
    assert len(sent) == 1
    topic, key, value = sent[0]
    assert topic == EVENTS
    assert key == pseudonymize("alice-raw", KEY).encode()
    wire = orjson.loads(value)
    assert wire["user_id"] == key.decode() and wire["kind"] == "click"
    assert b"alice-raw" not in value and b"example.com" not in value
    assert wire["src"] == "clicks" and wire["item_id"] == "sku-1"


def test_ingest_invalid_goes_to_dead_letters_with_code_and_offset(loop, sent):
    before = _value("persona_dead_letters_total", error="bad_price")
    invalid_before = _value("persona_events_total", topic="purchases", outcome="invalid")
    raw = orjson.dumps({"event_id": "p1", "user_id": "bob", "item_id": "i", "ts": 1,
                        "price": -3, "quantity": 1})

    async def run():
        async with input_agent(topics.purchases) as agent:
            await agent.put(b"{}", key=b"bob", partition=2)  # offset 0
            await agent.put(raw, key=b"bob", partition=2)  # offset 1

    loop.run_until_complete(run())
    assert len(sent) == 2
    assert orjson.loads(sent[0][2])["error"] == "missing_field"
    topic, key, value = sent[1]
    assert topic == T.dead_letters and key is None
    dl = orjson.loads(value)
    assert dl["error"] == "bad_price" and dl["source_topic"] == T.purchases
    assert (dl["partition"], dl["offset"]) == (2, 1)
    assert base64.b64decode(dl["raw"]) == raw
    assert "bob" not in dl["detail"]
    assert _value("persona_dead_letters_total", error="bad_price") == before + 1
    invalid_after = _value("persona_events_total", topic="purchases", outcome="invalid")
    assert invalid_after == invalid_before + 2


def test_ingest_survives_garbage_and_keeps_going(loop, sent):
    async def run():
        async with input_agent(topics.clicks) as agent:
            await agent.put(b"\xff\xfe", key=None)
            await agent.put(None, key=b"x")
            await agent.put(click("c2", "carol", "sku-2"), key=b"carol")

    loop.run_until_complete(run())
    assert [s[0] for s in sent] == [T.dead_letters, T.dead_letters, EVENTS]
    assert [orjson.loads(s[2])["error"] for s in sent[:2]] == ["not_utf8", "tombstone"]


def _wire(eid: str, user: str, item: str, ts: int, kind: str = "click", **extra) -> bytes:
    d = {"kind": kind, "event_id": eid, "user_id": user, "item_id": item, "ts": ts,
         "fp": f"fp-{eid}-{item}", "src": "clicks" if kind == "click" else "purchases"}
    d.update(extra)
    return orjson.dumps(d)


def test_profile_agent_updates_table_emits_recommendation_and_dedupes(loop, sent):
    user = pseudonymize("dave", KEY)
    dup_before = _value("persona_events_total", topic="clicks", outcome="duplicate")

    async def run():
        async with profile_agent.test_context() as agent:
            await agent.put(_wire("d1", user, "a", 1000), key=user.encode())
            await agent.put(_wire("d2", user, "b", 2000), key=user.encode())
            await agent.put(_wire("d2", user, "b", 2000), key=user.encode())  # redelivery
            await agent.put(_wire("d3", user, "c", 3000, kind="purchase", price=5.0,
                                  quantity=2), key=user.encode())
            return tables.stored_profile(tables.profiles[user])

    stored = loop.run_until_complete(run())
    recs = [orjson.loads(v) for t, _, v in sent if t == T.recommendations]
    assert [r["trigger_event_id"] for r in recs] == ["d1", "d2", "d3"]
    assert all(r["user_id"] == user for r in recs)
    assert _value("persona_events_total", topic="clicks", outcome="duplicate") == dup_before + 1
    from streams.profile_view import profile_summary

    p = profile_summary(stored)
    assert (p["clicks"], p["purchases"], p["spend"]) == (2, 1, 10.0)
    assert p["recent_items"] == ["a", "b", "c"]
    # the purchased item is never recommended back
    assert "c" not in [i["item_id"] for i in recs[-1]["items"]]


def test_profile_agent_conflict_is_dead_lettered(loop, sent):
    user = pseudonymize("erin", KEY)

    async def run():
        async with profile_agent.test_context() as agent:
            await agent.put(_wire("e1", user, "a", 1000), key=user.encode())
            await agent.put(_wire("e1", user, "zzz", 1000), key=user.encode())

    loop.run_until_complete(run())
    topics_sent = [t for t, _, _ in sent if t != T.segments]
    assert topics_sent == [T.recommendations, T.dead_letters]
    assert orjson.loads(next(v for t, _, v in sent if t == T.dead_letters))["error"] == (
        "event_conflict")


def test_profile_agent_bug_is_contained(loop, sent):
    before = _value("persona_dead_letters_total", error="internal_error")

    async def run():
        async with profile_agent.test_context() as agent:
            await agent.put(b'{"kind": "click"}', key=b"k")  # missing fields: a KeyError inside
            await agent.put(_wire("f1", "ufine", "a", 1000), key=b"ufine")

    loop.run_until_complete(run())
    assert [t for t, _, _ in sent if t != T.segments] == [T.dead_letters, T.recommendations]
    assert _value("persona_dead_letters_total", error="internal_error") == before + 1


def test_items_agent_upserts_and_deletes(loop, sent):
    async def run():
        async with items_agent.test_context() as agent:
            await agent.put(b'{"item_id": "m1", "title": "Heat", "categories": ["Action"]}',
                            key=b"m1")
            assert engine.catalogue.title("m1") == "Heat"
            await agent.put(None, key=b"m1")
            await agent.put(b'{"item_id": "m2"}', key=b"m2")

    loop.run_until_complete(run())
    assert engine.catalogue.get("m1") is None
    assert [orjson.loads(v)["error"] for _, _, v in sent] == ["missing_field"]


def test_clicks_and_purchases_are_credited_to_the_recommendation_they_name(loop, sent):
    user = pseudonymize("gus", KEY)

    def total(name: str) -> float:
        return sum(_value(name, strategy=s, variant="default") for s in STRATEGIES)

    before = {n: total(n) for n in ("persona_recommendation_clicks_total",
                                    "persona_conversions_total", "persona_revenue_total")}

    async def run():
        async with profile_agent.test_context() as agent:
            await agent.put(_wire("g1", user, "a", 1000), key=user.encode())
            rec = next(orjson.loads(v) for t, _, v in reversed(sent)
                       if t == T.recommendations)["recommendation_id"]
            # two clicks from the same list: one clicked recommendation
            await agent.put(_wire("g2", user, "b", 2000, recommendation_id=rec),
                            key=user.encode())
            await agent.put(_wire("g3", user, "c", 3000, recommendation_id=rec),
                            key=user.encode())
            await agent.put(_wire("g4", user, "d", 4000, kind="purchase", price=7.5,
                                  quantity=2, recommendation_id=rec), key=user.encode())
            # a recommendation this user was never served: not credited
            await agent.put(_wire("g5", user, "e", 5000, recommendation_id="r-unknown"),
                            key=user.encode())

    loop.run_until_complete(run())
    assert total("persona_recommendation_clicks_total") == before[
        "persona_recommendation_clicks_total"] + 1
    assert total("persona_conversions_total") == before["persona_conversions_total"] + 1
    assert total("persona_revenue_total") == before["persona_revenue_total"] + 15.0


def test_experiment_variant_serves_its_strategy_and_counts_users_and_revenue(
        loop, sent, monkeypatch):
    from models.marketing.experiments import Running, load_experiments

    exp = {"experiments": [{"name": "exp1", "control": "A", "variants": [
        {"name": "A", "strategy": "popularity"}, {"name": "B", "strategy": "popularity"}]}]}
    monkeypatch.setattr(rt, "running", Running(load_experiments(exp)))
    user = pseudonymize("hal", KEY)
    variant = rt.running.assign(user, None).variant

    def val(name: str) -> float:
        return _value(name, experiment="exp1", variant=variant)

    users_before, revenue_before, sumsq_before = (
        val("persona_experiment_users_total"), val("persona_experiment_revenue_total"),
        val("persona_experiment_revenue_sumsq_total"))

    async def run():
        async with profile_agent.test_context() as agent:
            await agent.put(_wire("h1", user, "a", 1000), key=user.encode())
            rec = next(orjson.loads(v) for t, _, v in reversed(sent)
                       if t == T.recommendations)["recommendation_id"]
            for n, price in enumerate((2.0, 3.0), start=2):
                await agent.put(_wire(f"h{n}", user, f"i{n}", 1000 * n, kind="purchase",
                                      price=price, quantity=1, recommendation_id=rec),
                                key=user.encode())
            return tables.stored_profile(tables.profiles[user])

    stored = loop.run_until_complete(run())
    recs = [orjson.loads(v) for t, _, v in sent if t == T.recommendations]
    assert {r["variant"] for r in recs} == {variant}
    assert {r["strategy"] for r in recs} == {"popularity"}  # the variant's, no exploration
    assert all(r["propensity"] == 1.0 for r in recs)
    assert stored["ex"] == {"exp1": [variant, 5.0]}
    assert stored["sg"].startswith("s")  # a segment too
    assert val("persona_experiment_users_total") == users_before + 1  # once per user
    assert val("persona_experiment_revenue_total") == revenue_before + 5.0
    # the user's credited revenue went 0 -> 2 -> 5: the squares sum to 25
    assert val("persona_experiment_revenue_sumsq_total") == sumsq_before + 25.0


def test_a_new_user_gets_a_segment_and_one_segments_event(loop, sent):
    user = pseudonymize("ivy", KEY)
    before = _value("persona_segment_changes_total")

    async def run():
        async with profile_agent.test_context() as agent:
            for n, item in enumerate("abc", start=1):
                await agent.put(_wire(f"v{n}", user, item, 1000 * n), key=user.encode())
            return tables.stored_profile(tables.profiles[user])

    stored = loop.run_until_complete(run())
    seg_events = [(k, orjson.loads(v)) for t, k, v in sent if t == T.segments]
    # one event when the user first gets a segment, then only when it changes (the
    # segmenter is still warming up here, so it may move the user)
    assert 1 <= len(seg_events) <= 3
    names = [e["segment"] for _, e in seg_events]
    assert all(a != b for a, b in zip(names, names[1:], strict=False))
    for key, event in seg_events:
        assert key == user.encode() and event["user_id"] == user
        assert set(event) == {"user_id", "segment", "ts"}
    assert names[-1] == stored["sg"]
    assert _value("persona_segment_changes_total") == before + len(seg_events)


def test_audience_joins_and_leaves_stream_to_the_audiences_topic(loop, sent, monkeypatch):
    from models.marketing.audiences import load_audiences

    rules = load_audiences({"audiences": [{"name": "big-spenders", "spend_at_least": 20}]})
    monkeypatch.setattr(rt, "audiences", {a.name: a for a in rules})
    user = pseudonymize("joy", KEY)

    async def run():
        async with profile_agent.test_context() as agent:
            await agent.put(_wire("j1", user, "a", 1000), key=user.encode())
            await agent.put(_wire("j2", user, "b", 2000, kind="purchase", price=25.0,
                                  quantity=1), key=user.encode())
            await agent.put(_wire("j3", user, "c", 3000), key=user.encode())
            return tables.stored_profile(tables.profiles[user])

    stored = loop.run_until_complete(run())
    events = [(k, orjson.loads(v)) for t, k, v in sent if t == T.audiences]
    assert [(e["audience"], e["action"]) for _, e in events] == [("big-spenders", "join")]
    assert events[0][0] == user.encode() and events[0][1]["user_id"] == user
    assert stored["au"] == ["big-spenders"]
    assert _value("persona_audience_changes_total", audience="big-spenders",
                  action="join") >= 1


# -- privacy, rate limits and retention --------------------------------------------------


def _privacy(user: str, action: str, ts: int) -> bytes:
    return orjson.dumps({"kind": "privacy", "user_id": user, "action": action, "ts": ts,
                         "event_id": f"privacy:{action}:{ts}", "src": "privacy"})


def _recs(sent) -> list[dict]:
    return [orjson.loads(v) for t, _, v in sent if t == T.recommendations]


def _updates() -> float:
    return _value("persona_model_updates_total", model="cooccurrence")


def test_opt_out_suppresses_learning_and_personalization_until_opt_in(loop, sent):
    user = pseudonymize("kim", KEY)
    key = user.encode()
    suppressed_before = _value("persona_events_total", topic="clicks", outcome="suppressed")

    async def run():
        async with profile_agent.test_context() as agent:
            await agent.put(_wire("k1", user, "ka", 1000), key=key)
            await agent.put(_wire("k2", user, "kb", 2000), key=key)
            personal = tables.stored_profile(tables.profiles[user])
            await agent.put(_privacy(user, "opt_out", 2500), key=key)
            opted = tables.profiles[user]
            updates, learned = _updates(), engine.updates
            await agent.put(_wire("k3", user, "k-new-item", 3000), key=key)
            await agent.put(_wire("k4", user, "k-new-item", 3500, kind="purchase",
                                  price=9.0, quantity=1), key=key)
            await agent.put(_wire("k3", user, "k-new-item", 3000), key=key)  # redelivery
            after = (tables.profiles[user], _updates() - updates, engine.updates - learned,
                     "k-new-item" in engine.strategy("popularity"),
                     [s.item_id for s in engine.non_personal(settings.top_k).items])
            await agent.put(_privacy(user, "opt_in", 4000), key=key)
            await agent.put(_wire("k5", user, "kc", 5000), key=key)
            back = (tables.stored_profile(tables.profiles[user]), _updates() - updates)
            return personal, opted, after, back

    personal, opted, after, back = loop.run_until_complete(run())
    assert personal["c"] == 2 and personal.get("sg")
    # opt_out keeps the flag and the dedupe window, nothing learned about the user
    assert opted["p"] == {"v": 1, "oo": True} and len(opted["d"]) == 2
    record, updates, learned, known, non_personal = after
    assert record["p"] == {"v": 1, "oo": True} and len(record["d"]) == 4
    assert (updates, learned, known) == (0, 0, False)  # no model learned from them
    assert _value("persona_events_total", topic="clicks", outcome="suppressed") == (
        suppressed_before + 1)
    assert _value("persona_events_total", topic="purchases", outcome="suppressed") >= 1
    recs = _recs(sent)
    assert [r["trigger_event_id"] for r in recs] == ["k1", "k2", "k3", "k4", "k5"]
    for r in recs[2:4]:  # while opted out: the non-personal list, the same for anyone
        assert r["strategy"] == "popularity" and r["variant"] == "default"
        assert r["propensity"] == 1.0  # no policy chose it
        assert [i["item_id"] for i in r["items"]] == non_personal
        assert {i["reason"] for i in r["items"]} <= {"popular right now"}
    # the opt-out forwarded a "forget" to the ads agent
    assert [orjson.loads(v)["kind"] for t, _, v in sent if t == settings.ads_topic] == [
        "forget"]
    # opted in: a fresh profile learns again from the next event
    profile, updates_after = back
    assert "oo" not in profile and profile["c"] == 1 and profile["r"] == ["kc"]
    assert updates_after == 1 and recs[-1]["strategy"] in STRATEGIES


def test_a_rate_limited_event_is_counted_in_the_profile_only(loop, sent):
    user = pseudonymize("lou", KEY)
    key = user.encode()
    accepted_before = _value("persona_events_total", topic="clicks", outcome="accepted")

    async def run():
        async with profile_agent.test_context() as agent:
            await agent.put(_wire("l1", user, "la", 1000), key=key)
            updates, learned = _updates(), engine.updates
            for n in range(2, 6):
                await agent.put(_wire(f"l{n}", user, f"bot-{n}", 1000 * n, rl=True), key=key)
            await agent.put(_wire("l5", user, "bot-5", 5000, rl=True), key=key)  # redelivery
            return (tables.stored_profile(tables.profiles[user]), _updates() - updates,
                    engine.updates - learned)

    profile, updates, learned = loop.run_until_complete(run())
    assert (profile["c"], profile["l"], profile["r"]) == (5, 5000, ["la"])
    assert (updates, learned) == (0, 0)
    assert "bot-2" not in engine.strategy("popularity")
    assert [r["trigger_event_id"] for r in _recs(sent)] == ["l1"]  # none for rl events
    assert _value("persona_events_total", topic="clicks", outcome="accepted") == (
        accepted_before + 5)


def test_erase_deletes_the_record_and_what_is_kept_in_memory(loop, sent):
    user = pseudonymize("max", KEY)
    key = user.encode()

    def segment_sizes() -> dict[str, int]:
        return {s["name"]: s["size"] for s in segments.model.summary()}

    async def run():
        async with profile_agent.test_context() as agent:
            other = pseudonymize("max-other", KEY)
            for n in range(1, 6):  # items to recommend to max
                await agent.put(_wire(f"o{n}", other, f"o-{n}", 1000 * n), key=other.encode())
            for n in range(1, 4):
                await agent.put(_wire(f"m{n}", user, f"m-{n}", 1000 * n), key=key)
            stored = tables.stored_profile(tables.profiles[user])
            # the hybrid remembers the last list it served a user (whichever strategy the
            # bandit picked for max's events, serve one now)
            engine.hybrid.rank([], (), 3, Context(user=user))
            pending, sizes = user in engine.hybrid._pending, segment_sizes()
            await agent.put(_privacy(user, "erase", 4000), key=key)
            gone = (tables.profiles.get(user), user in engine.hybrid._pending, segment_sizes())
            await agent.put(_privacy(user, "erase", 4000), key=key)  # again: no effect
            await agent.put(_wire("m1", user, "m-1", 5000), key=key)  # the user is back
            return stored, pending, sizes, gone, tables.stored_profile(tables.profiles[user])

    stored, pending, sizes, gone, back = loop.run_until_complete(run())
    record, still_pending, sizes_after = gone
    assert pending and record is None and not still_pending
    segment = stored["sg"]
    assert sizes_after[segment] == sizes[segment] - 1
    assert sizes_after == {**sizes, segment: sizes[segment] - 1}
    forgets = [orjson.loads(v) for t, _, v in sent if t == settings.ads_topic]
    assert forgets == [{"kind": "forget", "user_id": user, "ts": 4000}] * 2
    # back after the erase: a new profile; the old event id is new again (window gone)
    assert back["c"] == 1 and back["r"] == ["m-1"]


def test_retention_sweep_expires_idle_profiles_through_the_owning_agent(loop, sent):
    from streams.agents.profile import expire_messages, sweep_expired

    idle, busy, quiet = (pseudonymize(n, KEY) for n in ("nat-idle", "nat-busy", "nat-quiet"))
    before = _value("persona_profiles_expired_total")
    day = 86_400_000

    async def run():
        async with profile_agent.test_context() as agent:
            for n, user in enumerate((idle, busy)):
                await agent.put(_wire(f"n{n}", user, "na", 1000), key=user.encode())
            await agent.put(_privacy(quiet, "opt_out", 1000), key=quiet.encode())
            cutoff = max(tables.profiles[u]["t"] for u in (idle, busy, quiet)) + 1
            # with a 10-day TTL, 10 days after the cutoff: both are idle, the opt-out
            # flag is kept
            chosen = dict(expire_messages(cutoff + 10 * day, 10 * day))
            # busy comes back before its expiry is applied: the owner re-checks
            await asyncio.sleep(0.01)
            await agent.put(_wire("n9", busy, "nb", 2000), key=busy.encode())
            for k, v in chosen.items():
                await agent.put(v, key=k)
            await agent.put(chosen[idle.encode()], key=idle.encode())  # again: harmless
            return chosen, {u: tables.profiles.get(u) for u in (idle, busy, quiet)}

    chosen, left = loop.run_until_complete(run())
    assert {idle.encode(), busy.encode()} <= set(chosen) and quiet.encode() not in chosen
    wire = orjson.loads(chosen[idle.encode()])
    assert wire["kind"] == "expire" and wire["user_id"] == idle
    assert left[idle] is None and left[busy] is not None and left[quiet] is not None
    # every idle profile in the table went (earlier tests' users too), but busy
    assert _value("persona_profiles_expired_total") == before + len(chosen) - 1
    assert expire_messages(10**15, 0) == []  # TTL 0: off
    # the timer's body sends them on the events topic, keyed by user
    sent.clear()
    n = loop.run_until_complete(sweep_expired(now_ms=10**15))
    assert n == len(sent) >= 1 and {t for t, _, _ in sent} == {EVENTS}
    assert all(orjson.loads(v)["user_id"].encode() == k for _, k, v in sent)


def test_a_changelog_missing_from_metadata_is_not_a_partition_mismatch(monkeypatch):
    """A fresh app's first table write must not fail while its just-created changelog is
    not yet in the consumer's metadata (faust counts it as 0 partitions)."""
    counts: dict[str, int] = {}
    monkeypatch.setattr(type(app.consumer), "topic_partitions",
                        lambda self, topic: counts.get(topic))
    table = tables.ads
    changelog = table.changelog_topic_name
    counts.update({"src-topic": 1, changelog: 0})
    table._verify_source_topic_partitions("src-topic")  # not known yet: no verdict
    assert "src-topic" not in table._verified_source_topics_for_partitions
    counts[changelog] = 4  # known and different: still refused
    with pytest.raises(PartitionsMismatch):
        table._verify_source_topic_partitions("src-topic")
    counts[changelog] = 1
    table._verify_source_topic_partitions("src-topic")
    assert "src-topic" in table._verified_source_topics_for_partitions


def test_a_redelivery_is_recognized_by_its_offset_and_applied_once(loop, sent):
    """After a crash before the offset commit, Kafka delivers the same messages again at
    the same offsets: the record's stored position catches each one, whatever the
    event-id window holds (here an opt_out in between rewrites the record)."""
    user = pseudonymize("redelivered", KEY)
    other = pseudonymize("redelivered-other", KEY)
    before = _value("persona_redeliveries_total")
    msgs = [_wire(f"rd{i}", user, f"i{i}", 1000 + i) for i in range(3)]

    async def run():
        async with profile_agent.test_context() as agent:
            for m in msgs:
                await agent.put(m, key=user.encode())
            position = tables.profiles[user]["o"]
            first = tables.profiles[user]["p"]
            # The offsets commit never happened: the same three come again, then a
            # message the record has not seen yet (offset 3) for another user.
            agent.sent_offset = 0
            for m in msgs:
                await agent.put(m, key=user.encode())
            await agent.put(_wire("rd-new", other, "i9", 2000), key=other.encode())
            return position, first, tables.profiles[user]["p"], tables.profiles[other]

    position, first, after, other_record = loop.run_until_complete(run())
    assert position[1] == 2
    assert after == first  # applied once
    assert _value("persona_redeliveries_total") == before + 3
    assert other_record["o"][1] == 3
    # Each redelivery serves its recommendation again, under the same id: a crash may
    # have landed the table write and lost the recommendation (at-least-once).
    recs = [orjson.loads(v) for t, _, v in sent if t == T.recommendations]
    assert [r["trigger_event_id"] for r in recs] == ["rd0", "rd1", "rd2"] * 2 + ["rd-new"]
    assert [r["recommendation_id"] for r in recs[3:6]] == [
        r["recommendation_id"] for r in recs[:3]]
    assert all(r["items"] for r in recs)


def test_the_position_survives_a_consent_change(loop, sent):
    user = pseudonymize("redelivered-consent", KEY)

    async def run():
        async with profile_agent.test_context() as agent:
            await agent.put(_wire("rc0", user, "a", 1000), key=user.encode())
            await agent.put(orjson.dumps({"kind": "privacy", "user_id": user,
                                          "action": "opt_out", "ts": 1500}),
                            key=user.encode())
            return tables.profiles[user]

    record = loop.run_until_complete(run())
    assert record["p"].get("oo") and record["o"][1] == 0
    assert tables.already_applied(record, record["o"][0], 0)


def _total(name: str) -> float:
    """A counter's sum over all its label sets."""
    return sum(s.value for m in metrics.registry.collect() for s in m.samples
               if s.name == name)


def test_prequential_hits_feed_the_recommender_drift_monitor(loop, sent):
    drift = rt.drift

    monitor = drift.monitors["recommender"]
    observed = monitor.n_observed
    user = pseudonymize("drift-fed", KEY)
    checks = _total("persona_recommendation_hit_checks_total")

    async def run():
        async with profile_agent.test_context() as agent:
            for i in range(4):
                await agent.put(_wire(f"df{i}", user, f"df-item-{i}", 1000 + i),
                                key=user.encode())

    loop.run_until_complete(run())
    # every event after the user's first is checked against the list served before it
    added = _total("persona_recommendation_hit_checks_total") - checks
    assert added == 3
    assert monitor.n_observed - observed == added
