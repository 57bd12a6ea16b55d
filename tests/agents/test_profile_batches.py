"""The profile agent in micro-batches: one table write per user per batch, outputs as
one-by-one processing gives them, failures contained per event, redeliveries applied
once, and a lone event not held for a full batch."""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import orjson
import pytest

from models.users.privacy import pseudonymize
from streams import tables
from streams.agents.profile import profile as profile_agent
from streams.app import settings
from streams.runtime import current
from tests.agents.wire import event_wire, metric

rt = current()
metrics = rt.metrics
KEY = rt.settings.require_secret_key()
T = settings.topics
OUTPUTS = {T.recommendations, T.segments, T.audiences, T.dead_letters, settings.ads_topic}




@pytest.fixture
def writes(monkeypatch) -> Counter:
    """Changelog writes of the profiles table during the test, per user."""
    count: Counter = Counter()
    table = tables.profiles
    send = table.send_changelog

    def counting(partition, key, value, *args, **kwargs):  # type: ignore[no-untyped-def]
        count[key] += 1
        return send(partition, key, value, *args, **kwargs)

    monkeypatch.setattr(table, "send_changelog", counting)
    return count


async def _until(done: Callable[[], bool], timeout: float = 3.0) -> None:
    """Let the agent run until ``done()`` (a batch is handled after the test's put
    returns)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the agent did not get there in time"
        await asyncio.sleep(0.005)


async def _put_batch(agent, messages: list[tuple[bytes, bytes]]) -> None:  # type: ignore[no-untyped-def]
    """Queue ``messages`` (value, key) before the agent runs, so they arrive together."""
    for value, key in messages:
        await agent.put(value, key=key, wait=False)


def _outputs(sent) -> list[tuple[str, bytes | None, dict]]:  # type: ignore[no-untyped-def]
    """What the agent emitted, without the wall-clock stamps."""
    out = []
    for topic, key, value in sent:
        if topic not in OUTPUTS:
            continue
        body = orjson.loads(value)
        body.pop("ts", None)
        out.append((topic, key, body))
    return out


def _isolated_models(monkeypatch, engine, segments) -> None:  # type: ignore[no-untyped-def]
    """Run on copies of the given models: two runs start from the same learned state."""
    monkeypatch.setattr(rt, "engine", copy.deepcopy(engine))
    monkeypatch.setattr(rt, "segments", copy.deepcopy(segments))


def test_a_batch_writes_each_user_once_and_matches_one_by_one(loop, sent, writes,
                                                              monkeypatch):
    user = pseudonymize("batched", KEY)
    other = pseudonymize("batched-other", KEY)
    key, okey = user.encode(), other.encode()
    msgs = [(event_wire("b1", user, "ba", 1000), key),
            (event_wire("b2", user, "bb", 2000), key),
            (event_wire("o1", other, "ba", 2500), okey),
            (event_wire("b3", user, "bc", 3000, kind="purchase", price=4.0, quantity=1), key),
            (event_wire("b2", user, "bb", 2000), key),  # a producer's duplicate, same batch
            (event_wire("b4", user, "bd", 4000), key)]
    engine, segments = rt.engine, rt.segments

    async def one_by_one():
        async with profile_agent.test_context() as agent:
            for value, k in msgs:
                await agent.put(value, key=k)
            return tables.profiles[user], tables.profiles[other]

    async def batched():
        async with profile_agent.test_context() as agent:
            await _put_batch(agent, msgs)
            await _until(lambda: tables.profiles.get(user) is not None
                         and tables.profiles[user]["o"][1] == 5)
            return tables.profiles[user], tables.profiles[other]

    _isolated_models(monkeypatch, engine, segments)
    first, first_other = loop.run_until_complete(one_by_one())
    first_out = _outputs(sent)
    assert writes[user] == 4  # one per applied event, each alone in its batch
    for u in (user, other):  # from the store only: a changelog write needs an event
        del tables.profiles.data[u]
    sent.clear()
    writes.clear()

    _isolated_models(monkeypatch, engine, segments)
    second, second_other = loop.run_until_complete(batched())
    # One changelog write per user for the whole batch, holding its last state and the
    # position of the last event applied (so every earlier one counts as applied).
    assert writes[user] == 1 and writes[other] == 1
    for a, b in ((first, second), (first_other, second_other)):
        assert (a["p"], a["d"], a["o"]) == (b["p"], b["d"], b["o"])
    assert second["o"] == [0, 5]
    # The same outputs in the same order: a recommendation per applied event.
    assert _outputs(sent) == first_out
    recs = [body["trigger_event_id"] for topic, _, body in first_out
            if topic == T.recommendations]
    assert recs == ["b1", "b2", "o1", "b3", "b4"]


def test_a_failing_event_mid_batch_is_dead_lettered_and_the_rest_applied_once(
        loop, sent, writes, monkeypatch):
    user = pseudonymize("batch-fail", KEY)
    other = pseudonymize("batch-fail-other", KEY)
    key, okey = user.encode(), other.encode()
    msgs = [(event_wire("f1", user, "fa", 1000), key),
            (event_wire("f2", user, "fb", 2000), key),
            (event_wire("f3", user, "fc", 3000), key),  # fails
            (event_wire("g1", other, "fa", 3500), okey),
            (event_wire("f4", user, "fd", 4000), key)]
    engine = rt.engine
    process = engine.process

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("event_id") == "f3":
            raise RuntimeError("injected")
        return process(*args, **kwargs)

    monkeypatch.setattr(engine, "process", failing)
    internal = metric("persona_dead_letters_total", error="internal_error")
    accepted = metric("persona_events_total", topic="clicks", outcome="accepted")
    redelivered = metric("persona_redeliveries_total")
    learned = engine.updates

    async def run():
        async with profile_agent.test_context() as agent:
            await _put_batch(agent, msgs)
            await _until(lambda: any(t == T.recommendations
                                     and orjson.loads(v)["trigger_event_id"] == "f4"
                                     for t, _, v in sent))
            first = (tables.profiles[user], tables.profiles[other], dict(writes))
            # The offsets were never committed: the whole batch comes again.
            agent.sent_offset = 0
            before = len(sent)
            await _put_batch(agent, msgs)
            await _until(lambda: sum(t == T.recommendations for t, _, _ in sent[before:])
                         == 5)
            return first, tables.profiles[user], tables.profiles[other], dict(writes)

    first, again, again_other, writes_after = loop.run_until_complete(run())
    record, other_record, first_writes = first
    assert first_writes == {user: 1, other: 1}
    assert writes_after == first_writes  # the redelivery writes nothing
    assert record["p"]["c"] == 3 and record["p"]["r"] == ["fa", "fb", "fd"]
    assert record["o"] == [0, 4] and other_record["o"] == [0, 3]
    assert (again, again_other) == (record, other_record)
    dead = [orjson.loads(v) for t, _, v in sent if t == T.dead_letters]
    assert [(d["error"], d["offset"]) for d in dead] == [("internal_error", 2)]
    assert metric("persona_dead_letters_total", error="internal_error") == internal + 1
    assert metric("persona_events_total", topic="clicks", outcome="accepted") == (
        accepted + 4)
    assert engine.updates - learned == 4  # f1, f2, g1, f4: nothing learned twice
    assert metric("persona_redeliveries_total") == redelivered + 5
    recs = [orjson.loads(v) for t, _, v in sent if t == T.recommendations]
    ids = [r["trigger_event_id"] for r in recs]
    assert ids[:4] == ["f1", "f2", "g1", "f4"]
    # The redelivery serves each recommendation again under its id (at-least-once); f3
    # is past the user's stored position too (its dead letter keeps it).
    assert ids[4:] == ["f1", "f2", "f3", "g1", "f4"]
    assert {r["recommendation_id"] for r in recs[:4]} <= {
        r["recommendation_id"] for r in recs[4:]}


def test_a_lone_event_leaves_without_waiting_for_a_full_batch(loop, sent, monkeypatch):
    wait_ms = 20.0
    monkeypatch.setattr(rt, "settings", replace(rt.settings, batch_max=500,
                                                batch_wait_ms=wait_ms))
    user = pseudonymize("lone", KEY)

    async def run():
        async with profile_agent.test_context() as agent:
            started = time.monotonic()
            await agent.put(event_wire("l1", user, "la", 1000), key=user.encode())
            await _until(lambda: any(t == T.recommendations for t, _, _ in sent))
            return time.monotonic() - started

    elapsed = loop.run_until_complete(run())
    assert elapsed < 0.5  # the wait bounds the batch, far below a full one
    assert tables.profiles[user]["o"] == [0, 0]


def test_a_batch_waits_for_more_within_the_wait_and_no_longer(loop, sent, writes,
                                                              monkeypatch):
    monkeypatch.setattr(rt, "settings", replace(rt.settings, batch_max=500,
                                                batch_wait_ms=300.0))
    user = pseudonymize("waited", KEY)
    key = user.encode()

    async def run():
        async with profile_agent.test_context() as agent:
            await agent.put(event_wire("w1", user, "wa", 1000), key=key)
            await asyncio.sleep(0.02)  # within the wait: the same batch
            assert not any(t == T.recommendations for t, _, _ in sent)
            await agent.put(event_wire("w2", user, "wb", 2000), key=key)
            await _until(lambda: sum(t == T.recommendations for t, _, _ in sent) == 2)
            return tables.profiles[user]

    record = loop.run_until_complete(run())
    assert writes[user] == 1 and record["o"] == [0, 1] and record["p"]["c"] == 2
