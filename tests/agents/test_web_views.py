"""HTTP views called in process: a read (``GET /users/{id}/recommendations``) serves the
user without changing what the worker holds."""

from __future__ import annotations

import dataclasses
import pickle

import orjson

from models.users.privacy import pseudonymize
from streams import tables
from streams.agents.profile import profile as profile_agent
from streams.app import app
from streams.runtime import current
from streams.web import UserRecommendationsView
from tests.agents.http import FakeRequest, click_wire

rt = current()
KEY = rt.settings.require_secret_key()
RECS = "/users/{user_id}/recommendations"




def _state() -> bytes:
    """Every model a checkpoint holds, as the bytes a checkpoint would hold."""
    return pickle.dumps((rt.engine.snapshot(),
                         {name: m.snapshot() for name, m in rt.checkpointed.items()}))


def _pending() -> dict:
    return {u: (ids, f.tobytes(), c, k) for u, (ids, f, c, k) in rt.engine.hybrid._pending.items()}


async def _get(raw_user: str, **query: str) -> dict:
    view = app.web.views[RECS]
    assert isinstance(view, UserRecommendationsView)
    response = await view.get(FakeRequest(**query), user_id=raw_user)
    assert response.status == 200, response.body
    return orjson.loads(response.body)


def test_http_recommendations_change_no_model_state(loop, sent, monkeypatch):
    engine = rt.engine
    # every list would explore a new item (the catalogue below is all new items), and the
    # hybrid serves every one (it keeps each user's list to learn from), whatever the
    # bandit learned from the other tests
    monkeypatch.setattr(engine, "config", dataclasses.replace(
        engine.config, new_item_rate=1.0, exploration=0.0, strategy="hybrid"))
    for i in range(20):
        engine.upsert_item(f"web-{i}", f"Web title {i}", [f"wc{i % 4}"], "some words")
    raws = [f"web-reader-{n}" for n in range(3)]
    users = [pseudonymize(raw, KEY) for raw in raws]

    async def run() -> tuple[list[dict], list[dict]]:
        async with profile_agent.test_context() as agent:
            for n in range(12):
                user = users[n % 3]
                await agent.put(click_wire(f"w{n}", user, f"web-{n % 6}", 1000 * (n + 1)),
                                key=user.encode())
            # the catalogue moves on after the last event: a read finds the text index behind
            engine.upsert_item("web-20", "Another web title", ["wc1"], "other words")
            engine.upsert_item("web-7", "Retitled", ["wc2"], "some words more")
            assert engine.sync is not None  # PERSONA_MODEL_SYNC is on by default
            engine.sync.drain("test", 1)
            # what stays summed: segment groups of fewer than min_users users wait
            synced = len(engine.sync)
            rt.pseudonymize.clear()  # as an erase leaves it
            state, pending = _state(), _pending()
            profiles = [tables.profiles.get(u) for u in users]
            bodies = [await _get(raws[n % 3], k="5") for n in range(90)]
            bodies += [await _get(raws[0], k="3", category="wc1") for _ in range(10)]
            assert _state() == state, "an HTTP read changed the models"
            assert _pending() == pending, "an HTTP read replaced the list the blend learns from"
            assert len(engine.sync) == synced, "an HTTP read was synced"
            assert rt.pseudonymize.cache_info().currsize == 0, "a raw id went back in the cache"
            assert [tables.profiles.get(u) for u in users] == profiles
            # the same requests the way the agent serves: these do spend and remember
            for n in range(30):
                engine.recommend(tables.stored_profile(profiles[n % 3]), 5, key=f"agent:{n}",
                                 user=users[n % 3])
            return bodies, [{"changed": _state() != state and _pending() != pending}]

    bodies, served = loop.run_until_complete(run())
    assert served == [{"changed": True}]  # the checks above can fail
    assert all(b["known_user"] for b in bodies), [b for b in bodies if not b["known_user"]][:1]
    assert all(b["strategy"] == "hybrid" for b in bodies)
    # (with the category filter a list may be short or empty: what the other tests
    # taught the shared models decides)
    assert all(b["items"] for b in bodies[:90]), [b for b in bodies if not b["items"]][:1]
    assert {b["user_id"] for b in bodies} == set(users)
