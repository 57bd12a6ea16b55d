"""Model sync under Faust's test_context(): what the profile agent learns is published as
one summed delta, without any user id and only once it covers enough users; another
worker's delta is applied, our own is skipped, another release's format is counted."""

from __future__ import annotations

import orjson

from models.sync import Outbox, decode_batch
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
    box = engine.sync
    box.min_users = 1
    loop.run_until_complete(modelsync.publish())  # whatever earlier tests left
    box.min_users = 2
    sent.clear()
    user = pseudonymize("sync-raw-user", KEY)

    async def run(who: str, items: list[str]) -> int:
        async with profile_agent.test_context() as agent:
            for n, item in enumerate(items):
                await agent.put(_wire(f"{item}-{n}", who, item, 1_700_000_000_000 + n),
                                key=who.encode())
        return await modelsync.publish()

    steps_before = _value("persona_model_sync_steps_total", outcome="sent")
    bytes_before = _value("persona_model_sync_bytes_total")
    try:
        # One user's events alone are held back: a delta of them would describe that user.
        assert loop.run_until_complete(run(user, ["sy1", "sy2", "sy3"])) == 0
        assert not [s for s in sent if s[0] == settings.model_updates_topic]
        other = pseudonymize("sync-raw-user-2", KEY)
        assert loop.run_until_complete(run(other, ["sy4"])) == 4
    finally:
        box.min_users = Outbox().min_users
    (topic, key, value), = [s for s in sent if s[0] == settings.model_updates_topic]
    assert key == rt.origin.encode()
    assert value is not None
    for who in ("sync-raw-user", user, "sync-raw-user-2", other):
        assert who.encode() not in value
    d = orjson.loads(value)
    assert d["i"] == sorted(d["i"]) and {"sy1", "sy2", "sy3", "sy4"} <= set(d["i"])
    assert d["n"] == 4 and d["w"]  # the events it sums, and the blend weights
    # What the segmenter learned from the 4 events: summed per segment (no id, no
    # items); a segment's group leaves once it sums 2 users, the rest waits in the box.
    groups = d.get("g", {})
    pending = box._segment_sums
    assert sum(g[0] for g in groups.values()) + len(pending) == 4
    assert all(len(pending._users[seg]) < 2 for seg in pending.groups)
    batch = decode_batch(value)
    # sy1-sy2, sy1-sy3, sy2-sy3: the first user's pairs, summed; none with sy4
    pairs = {tuple(sorted((batch.items[a], batch.items[b])))
             for a, b in zip(batch.pairs[0].tolist(), batch.pairs[1].tolist(), strict=True)}
    assert pairs == {("sy1", "sy2"), ("sy1", "sy3"), ("sy2", "sy3")}
    assert _value("persona_model_sync_steps_total", outcome="sent") == steps_before + 4
    assert _value("persona_model_sync_bytes_total") == bytes_before + len(value)
    assert loop.run_until_complete(modelsync.publish()) == 0  # nothing new: nothing sent


def _delta(origin: str, item: str) -> bytes:
    box = Outbox(min_users=1)
    box.record(item, [], 3.0, None, user="someone")
    raw = box.drain(origin, 1)
    assert raw is not None
    return raw


def test_another_workers_batch_is_applied_and_our_own_skipped() -> None:
    apply_item(b"sy-far", orjson.dumps({"item_id": "sy-far", "title": "Far"}))
    before = engine.popularity.overall.score("sy-far")
    applied = _value("persona_model_sync_steps_total", outcome="applied")
    entries = _value("persona_model_sync_entries_total")
    own = _value("persona_model_sync_batches_total", outcome="own")
    modelsync.apply_batch(b"another-worker", _delta("another-worker", "sy-far"))
    assert engine.popularity.overall.score("sy-far") > before
    assert _value("persona_model_sync_steps_total", outcome="applied") == applied + 1
    assert _value("persona_model_sync_entries_total") > entries
    after = engine.popularity.overall.score("sy-far")
    modelsync.apply_batch(rt.origin.encode(), _delta(rt.origin, "sy-far"))
    assert engine.popularity.overall.score("sy-far") == after
    assert _value("persona_model_sync_batches_total", outcome="own") == own + 1


def test_a_malformed_or_old_format_batch_is_counted_and_changes_nothing() -> None:
    invalid = _value("persona_model_sync_batches_total", outcome="invalid")
    other = _value("persona_model_sync_batches_total", outcome="other_format")
    updates = engine.updates
    # Per-event steps of the former layout (format 1): refused, counted apart.
    modelsync.apply_batch(b"x", b'{"v": 1, "o": "w", "q": 1, "l": [["i", [], 1.0]]}')
    modelsync.apply_batch(b"x", b"\xff\xfe")
    modelsync.apply_batch(b"x", _delta("w", "sy-far").replace(b'"n":1', b'"n":-1'))
    assert _value("persona_model_sync_batches_total", outcome="other_format") == other + 1
    assert _value("persona_model_sync_batches_total", outcome="invalid") == invalid + 2
    assert engine.updates == updates


def test_the_segmenter_learns_from_the_other_workers_users_as_sums() -> None:
    """Segments mean the same on every worker only if every segmenter learns from every
    user: what the segmenter learned goes summed per segment (no id, no items), and only
    once a segment's group sums enough distinct users."""
    from models.users.profile import UserProfile

    segmenter = rt.segments.model
    assert segmenter is not None
    box = Outbox(min_users=3)
    profs = [UserProfile.from_dict({"c": 4 + n, "p": 1, "m": 12.5, "i": {"Drama": 2.0}})
             for n in range(3)]
    for n, prof in enumerate(profs[:2]):
        box.note_segment(prof, 1_700_000_000_000, "s1", f"sync-user-{n}")
        box.record("sy-seg-item", [], 1.0, None, user=f"sync-user-{n}")
    box.record("sy-seg-item", [], 1.0, None, user="sync-user-x")
    early = box.drain("segment-worker", 1)
    # The events' delta goes; the segment group of two users waits for a third.
    assert early is not None and b'"g"' not in early and len(box) == 2
    box.note_segment(profs[2], 1_700_000_000_000, "s1", "sync-user-2")
    for n in range(3):
        box.record("sy-seg-item", [], 1.0, None, user=f"sync-user-{n}")
    raw = box.drain("segment-worker", 2)
    assert raw is not None and b"sync-user" not in raw
    group = orjson.loads(raw)["g"]["s1"]
    assert group[0] == 3 and group[2] == {"Drama": 3.0}  # three users, summed shares
    learned = segmenter.n_learned
    modelsync.apply_batch(b"segment-worker", raw)
    assert segmenter.n_learned == learned + 3
