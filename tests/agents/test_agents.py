"""The agents under Faust's test_context(): routing, dead letters, tables, metrics."""

from __future__ import annotations

import base64

import orjson

from models.engine import STRATEGIES
from models.privacy import pseudonymize
from streams import tables
from streams.agents.ingest import ingest_clicks, ingest_purchases
from streams.agents.items import items as items_agent
from streams.agents.profile import profile as profile_agent
from streams.app import settings
from streams.state import engine, metrics

KEY = settings.require_secret_key()
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
        async with ingest_clicks.test_context() as agent:
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
    before = _value("persona_dead_letters_total", error="bad_value")
    invalid_before = _value("persona_events_total", topic="purchases", outcome="invalid")
    raw = orjson.dumps({"event_id": "p1", "user_id": "bob", "item_id": "i", "ts": 1,
                        "price": -3, "quantity": 1})

    async def run():
        async with ingest_purchases.test_context() as agent:
            await agent.put(b"{}", key=b"bob", partition=2)  # offset 0
            await agent.put(raw, key=b"bob", partition=2)  # offset 1

    loop.run_until_complete(run())
    assert len(sent) == 2
    assert orjson.loads(sent[0][2])["error"] == "missing_field"
    topic, key, value = sent[1]
    assert topic == T.dead_letters and key is None
    dl = orjson.loads(value)
    assert dl["error"] == "bad_value" and dl["source_topic"] == T.purchases
    assert (dl["partition"], dl["offset"]) == (2, 1)
    assert base64.b64decode(dl["raw"]) == raw
    assert "bob" not in dl["detail"]
    assert _value("persona_dead_letters_total", error="bad_value") == before + 1
    invalid_after = _value("persona_events_total", topic="purchases", outcome="invalid")
    assert invalid_after == invalid_before + 2


def test_ingest_survives_garbage_and_keeps_going(loop, sent):
    async def run():
        async with ingest_clicks.test_context() as agent:
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
    import streams.agents.profile as profile_module
    from models.experiments import Running, load_experiments

    exp = {"experiments": [{"name": "exp1", "control": "A", "variants": [
        {"name": "A", "strategy": "popularity"}, {"name": "B", "strategy": "popularity"}]}]}
    monkeypatch.setattr(profile_module, "running", Running(load_experiments(exp)))
    user = pseudonymize("hal", KEY)
    variant = profile_module.running.assign(user, None).variant

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
    import streams.agents.profile as profile_module
    from models.audiences import load_audiences

    rules = load_audiences({"audiences": [{"name": "big-spenders", "spend_at_least": 20}]})
    monkeypatch.setattr(profile_module, "audiences", {a.name: a for a in rules})
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
