"""Model sync under Faust's test_context(): what the profile agent learns is published
without any user id, another worker's batch is applied, our own is skipped."""

from __future__ import annotations

import orjson

from models.sync import LearnStep, encode_batch
from models.users.privacy import pseudonymize
from streams.agents import modelsync
from streams.agents.items import apply_item
from streams.agents.profile import profile as profile_agent
from streams.app import settings
from streams.runtime import current

rt = current()
engine, metrics = rt.engine, rt.metrics
KEY = rt.settings.require_secret_key()


def _value(name: str, **labels: str) -> float:
    v = metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def _wire(eid: str, user: str, item: str, ts: int) -> bytes:
    return orjson.dumps({"kind": "purchase", "event_id": eid, "user_id": user,
                         "item_id": item, "ts": ts, "fp": f"fp-{eid}", "src": "purchases",
                         "price": 4.5, "quantity": 1})


def test_sync_is_on_by_default_and_publishes_what_the_profile_agent_learned(loop, sent):
    assert settings.model_sync and engine.sync is not None
    loop.run_until_complete(modelsync.publish())  # whatever earlier tests left
    sent.clear()
    user = pseudonymize("sync-raw-user", KEY)

    async def run():
        async with profile_agent.test_context() as agent:
            for n, item in enumerate(["sy1", "sy2", "sy3"]):
                await agent.put(_wire(f"sy{n}", user, item, 1_700_000_000_000 + n),
                                key=user.encode())
        return await modelsync.publish()

    steps_before = _value("persona_model_sync_steps_total", outcome="sent")
    assert loop.run_until_complete(run()) == 3
    (topic, key, value), = [s for s in sent if s[0] == settings.model_updates_topic]
    assert key == rt.origin.encode()
    assert value is not None
    assert b"sync-raw-user" not in value and user.encode() not in value
    d = orjson.loads(value)
    assert [row[0] for row in d["l"]] == ["sy1", "sy2", "sy3"]
    assert [row[1] for row in d["l"]] == [[], ["sy1"], ["sy1", "sy2"]]
    assert d["s"] and d["w"]  # segmenter inputs and blend weights ride along
    assert _value("persona_model_sync_steps_total", outcome="sent") == steps_before + 3
    assert loop.run_until_complete(modelsync.publish()) == 0  # nothing new: nothing sent


def test_another_workers_batch_is_applied_and_our_own_skipped() -> None:
    apply_item(b"sy-far", orjson.dumps({"item_id": "sy-far", "title": "Far"}))
    before = engine.popularity.overall.score("sy-far")
    applied = _value("persona_model_sync_steps_total", outcome="applied")
    own = _value("persona_model_sync_batches_total", outcome="own")
    batch = encode_batch("another-worker", 1, [LearnStep("sy-far", (), 3.0)])
    modelsync.apply_batch(b"another-worker", batch)
    assert engine.popularity.overall.score("sy-far") > before
    assert _value("persona_model_sync_steps_total", outcome="applied") == applied + 1
    mine = encode_batch(rt.origin, 9, [LearnStep("sy-far", (), 3.0)])
    after = engine.popularity.overall.score("sy-far")
    modelsync.apply_batch(rt.origin.encode(), mine)
    assert engine.popularity.overall.score("sy-far") == after
    assert _value("persona_model_sync_batches_total", outcome="own") == own + 1


def test_a_malformed_batch_is_counted_and_changes_nothing() -> None:
    invalid = _value("persona_model_sync_batches_total", outcome="invalid")
    updates = engine.updates
    modelsync.apply_batch(b"x", b'{"v": 1, "o": "w", "q": 1, "l": [["i", [], NaN]]}')
    modelsync.apply_batch(b"x", b"\xff\xfe")
    assert _value("persona_model_sync_batches_total", outcome="invalid") == invalid + 2
    assert engine.updates == updates
