"""An erase overtaking the user's older events: they are dropped and counted, not learned.

Privacy requests and clicks travel different input topics, so a user's clicks from before
their erase can reach the profile agent after it. The erase leaves a marker (the erase
time) for PERSONA_ERASE_GRACE_S: what is older than it is dropped, what is newer starts
afresh.
"""

from __future__ import annotations

import orjson

from models.marketing.audiences import load_audiences
from models.users.privacy import pseudonymize
from streams import tables
from streams.agents.profile import expire_messages
from streams.agents.profile import profile as profile_agent
from streams.app import settings
from streams.runtime import current
from tests.agents.wire import event_wire, metric

rt = current()
engine, metrics, segments = rt.engine, rt.metrics, rt.segments
KEY = rt.settings.require_secret_key()
T = settings.topics
ADS = settings.ads_topic
DAY_MS = 86_400_000




def _erase(user: str, ts: int) -> bytes:
    return orjson.dumps({"kind": "privacy", "user_id": user, "action": "erase", "ts": ts,
                         "event_id": f"privacy:erase:{ts}", "src": "privacy"})


def _ad_request(rid: str, user: str, ts: int) -> bytes:
    return orjson.dumps({"kind": "ad_request", "request_id": rid, "user_id": user, "ts": ts,
                         "slot": "top", "floor_price": 0.0,
                         "candidates": [{"ad_id": "books-1", "campaign_id": "books",
                                         "value_per_click": 20.0}]})


def _segment_sizes() -> dict[str, int]:
    return {s["name"]: s["size"] for s in segments.model.summary()}


def test_older_events_after_an_erase_are_dropped_and_newer_ones_start_afresh(
        loop, sent, monkeypatch):
    rules = load_audiences({"audiences": [{"name": "erase-spenders", "spend_at_least": 5}]})
    monkeypatch.setattr(rt, "audiences", {a.name: a for a in rules})
    user, other = pseudonymize("zed", KEY), pseudonymize("zed-other", KEY)
    key = user.encode()
    erased = {t: metric("persona_events_total", topic=t, outcome="erased")
              for t in ("clicks", "purchases")}

    async def run():
        async with profile_agent.test_context() as agent:
            for n in range(1, 5):  # items the models can recommend
                await agent.put(event_wire(f"zo{n}", other, f"zo-{n}", 1000 * n),
                                key=other.encode())
            await agent.put(event_wire("z1", user, "zi-1", 1000), key=key)
            await agent.put(event_wire("z2", user, "zi-2", 2000, kind="purchase", price=9.0,
                                  quantity=1), key=key)
            await agent.put(_ad_request("zq1", user, 2500), key=key)
            before = tables.stored_profile(tables.profiles[user])
            await agent.put(_erase(user, 3000), key=key)
            sizes, updates = _segment_sizes(), metric("persona_model_updates_total",
                                                      model="cooccurrence")
            mark = len(sent)
            # the user's older events, overtaken by the erase on their way
            await agent.put(event_wire("z3", user, "zi-3", 1500), key=key)
            await agent.put(event_wire("z4", user, "zi-4", 2900, kind="purchase", price=50.0,
                                  quantity=1), key=key)
            await agent.put(event_wire("z5", user, "zi-5", 3000), key=key)  # at the erase
            await agent.put(event_wire("z6", user, "zi-6", 2950, rl=True), key=key)
            await agent.put(_ad_request("zq2", user, 2990), key=key)
            after_old = (tables.profiles.get(user), _segment_sizes(),
                         metric("persona_model_updates_total", model="cooccurrence"),
                         list(sent[mark:]),
                         metric("persona_events_total", topic="clicks", outcome="erased"))
            # a newer event: the user is back, with a fresh profile
            await agent.put(event_wire("z7", user, "zi-7", 4000), key=key)
            fresh = tables.stored_profile(tables.profiles[user])
            mark = len(sent)
            await agent.put(event_wire("z8", user, "zi-8", 2000), key=key)  # a later straggler
            await agent.put(_ad_request("zq3", user, 2000), key=key)
            await agent.put(_ad_request("zq4", user, 4100), key=key)
            return (before, sizes, updates, after_old, fresh,
                    tables.stored_profile(tables.profiles[user]), list(sent[mark:]))

    before, sizes, updates, after_old, fresh, last, late = loop.run_until_complete(run())
    assert before["c"] == 1 and before["au"] == ["erase-spenders"] and before.get("sg")
    record, sizes_old, updates_old, out, erased_clicks = after_old
    assert record is None  # nothing rebuilt: no profile, no segment, no audience
    assert sizes_old == sizes and updates_old == updates  # no model learned from them
    kinds = [(t, orjson.loads(v).get("kind")) for t, _, v in out]
    assert not [t for t, _ in kinds if t in (T.recommendations, T.segments, T.audiences)]
    # the old ad request is served as a stranger's: no view of any profile
    assert kinds == [(ADS, "ad_request")]
    assert orjson.loads(out[0][2])["view"] == {}
    assert erased_clicks == erased["clicks"] + 3
    assert metric("persona_events_total", topic="purchases",
                  outcome="erased") == erased["purchases"] + 1
    # newer than the erase: a new profile of that one event; later stragglers still go
    assert (fresh["c"], fresh.get("p", 0), fresh["r"]) == (1, 0, ["zi-7"])
    assert "au" not in fresh
    assert last == fresh
    assert metric("persona_events_total", topic="clicks",
                  outcome="erased") == erased["clicks"] + 4
    requests = [orjson.loads(v) for t, _, v in late if t == ADS]
    assert [(r["request_id"], bool(r["view"])) for r in requests] == [
        ("zq3", False), ("zq4", True)]
    assert not [t for t, _, _ in late if t in (T.recommendations, T.segments, T.audiences)]


def test_the_marker_goes_after_the_grace_period_through_the_owning_agent(loop, sent):
    user, back = pseudonymize("yan", KEY), pseudonymize("yan-back", KEY)
    grace = int(settings.erase_grace_s * 1000)
    assert settings.erase_grace_s >= settings.max_event_age_s

    async def run():
        async with profile_agent.test_context() as agent:
            for who in (user, back):
                await agent.put(event_wire(f"{who[:4]}-1", who, "ya", 1000), key=who.encode())
                await agent.put(_erase(who, 2000), key=who.encode())
            await agent.put(event_wire(f"{back[:4]}-2", back, "yb", 3000), key=back.encode())
            written = [tables.erasures[u]["t"] for u in (user, back)]
            early = dict(expire_messages(min(written) + grace, 0, grace))
            due = dict(expire_messages(max(written) + grace + 1, 0, grace))
            for k in (user.encode(), back.encode()):
                await agent.put(due[k], key=k)
            # the marker is gone: an old event is learned again (what ingest's age limit
            # refuses by now)
            await agent.put(event_wire(f"{user[:4]}-3", user, "yc", 1500), key=user.encode())
            return (early, due, tables.erasures.get(user), tables.erasures.get(back),
                    tables.stored_profile(tables.profiles.get(user)),
                    tables.stored_profile(tables.profiles.get(back)))

    early, due, marker, marker_back, profile, profile_back = loop.run_until_complete(run())
    assert user.encode() not in early and back.encode() not in early
    assert {user.encode(), back.encode()} <= set(due)
    wire = orjson.loads(due[user.encode()])
    assert wire["kind"] == "expire" and wire["user_id"] == user
    assert marker is None and marker_back is None
    assert profile is not None and profile["c"] == 1
    assert profile_back is not None and profile_back["r"] == ["yb"]  # the profile stays
