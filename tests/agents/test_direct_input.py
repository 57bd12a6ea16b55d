"""Input applied where it arrives: a click, purchase, ad request or privacy request on
the user's home partition of a co-partitioned input topic skips the events topic; the
rest is re-keyed once, to the home partition. Redeliveries of either are applied once,
by their position on their own topic."""

from __future__ import annotations

import orjson
import pytest
from faust.topics import Topic

from models.users.privacy import pseudonymize
from streams import tables, topics
from streams.agents import profile as profile_module
from streams.app import settings
from streams.placement import home_partition
from streams.runtime import current
from tests.agents.wire import input_agent, metric

rt = current()
KEY = rt.settings.require_secret_key()
T = settings.topics
EVENTS = settings.events_topic
N = settings.partitions
TS = 1_700_000_000_000


@pytest.fixture
def sends(monkeypatch) -> list[tuple[str, bytes | None, bytes, int | None]]:
    """Every Topic.send of the test, with the partition it named."""
    out: list[tuple[str, bytes | None, bytes, int | None]] = []

    async def fake_send(self, *args, key=None, value=None, partition=None, **kwargs):
        out.append((self.get_topic_name(), key, value, partition))

    monkeypatch.setattr(Topic, "send", fake_send)
    return out


@pytest.fixture
def copartitioned(monkeypatch) -> None:
    """Every topic has PERSONA_PARTITIONS partitions, as a broker's metadata would say."""
    placement = profile_module.placement
    monkeypatch.setattr(placement, "_count", lambda topic: N)
    monkeypatch.setattr(placement, "_known", {})


def click(eid: str, raw_user: str, item: str, ts: int = TS) -> bytes:
    return orjson.dumps({"event_id": eid, "user_id": raw_user, "item_id": item, "ts": ts})


def purchase(eid: str, raw_user: str, item: str, ts: int = TS) -> bytes:
    return orjson.dumps({"event_id": eid, "user_id": raw_user, "item_id": item, "ts": ts,
                         "price": 5.0, "quantity": 1})


def _clicks_in(user: str) -> int:
    record = tables.profiles.get(user)
    return 0 if record is None else record["p"].get("c", 0)


def _other_partition(home: int) -> int:
    return (home + 1) % N


def test_a_click_on_its_home_partition_is_applied_where_it_arrives(loop, sends,
                                                                   copartitioned):
    raw = "direct-user-1"
    user, home = pseudonymize(raw, KEY), home_partition(raw, N)
    direct = metric("persona_input_routed_total", path="direct")

    async def run():
        async with input_agent(topics.clicks) as agent:
            agent.sent_offset = 7
            await agent.put(click("d1", raw, "sku-1"), key=raw.encode(), partition=home)

    loop.run_until_complete(run())
    assert [s[0] for s in sends if s[0] == EVENTS] == []  # no hop
    recs = [s for s in sends if s[0] == T.recommendations]
    assert len(recs) == 1 and recs[0][1] == user.encode()
    assert raw.encode() not in recs[0][2]
    record = tables.profiles[user]
    assert _clicks_in(user) == 1
    # Its position on the clicks topic (second of tables.SOURCES), under its partition.
    assert record["o"] == [home, -1, 7]
    assert metric("persona_input_routed_total", path="direct") == direct + 1


def test_a_click_elsewhere_is_rekeyed_once_to_the_home_partition(loop, sends,
                                                                  copartitioned):
    raw = "direct-user-2"
    user, home = pseudonymize(raw, KEY), home_partition(raw, N)
    rekeyed = metric("persona_input_routed_total", path="rekeyed")

    async def run():
        async with input_agent(topics.clicks) as agent:
            # another partition (a client whose partitioner differs), and no key at all
            await agent.put(click("e1", raw, "sku-1"), key=raw.encode(),
                            partition=_other_partition(home))
            await agent.put(click("e2", raw, "sku-2"), key=None,
                            partition=_other_partition(home))

    loop.run_until_complete(run())
    hops = [s for s in sends if s[0] == EVENTS]
    assert [(k, p) for _, k, _, p in hops] == [(user.encode(), home)] * 2
    assert all(raw.encode() not in v for _, _, v, _ in hops)
    assert tables.profiles.get(user) is None  # applied when it comes back, not here
    assert [s for s in sends if s[0] == T.recommendations] == []
    assert metric("persona_input_routed_total", path="rekeyed") == rekeyed + 2


def test_unknown_partition_counts_rekey_everything(loop, sends):
    """Before the metadata says the input topic is co-partitioned, nothing is applied
    where it arrives: re-keying is always safe."""
    raw = "direct-user-3"
    home = home_partition(raw, N)

    async def run():
        async with input_agent(topics.clicks) as agent:
            await agent.put(click("u1", raw, "sku-1"), key=raw.encode(), partition=home)

    loop.run_until_complete(run())
    assert [(s[0], s[3]) for s in sends] == [(EVENTS, home)]


def test_an_input_topic_with_another_partition_count_is_rekeyed(loop, sends, monkeypatch):
    raw = "direct-user-4"
    home = home_partition(raw, N)
    placement = profile_module.placement
    monkeypatch.setattr(placement, "_count", lambda topic: N if topic == EVENTS else N + 1)
    monkeypatch.setattr(placement, "_known", {})

    async def run():
        async with input_agent(topics.clicks) as agent:
            await agent.put(click("x1", raw, "sku-1"), key=raw.encode(), partition=home)

    loop.run_until_complete(run())
    assert [(s[0], s[3]) for s in sends] == [(EVENTS, home)]


def test_a_redelivered_direct_click_is_applied_once_per_topic_position(loop, sends,
                                                                        copartitioned):
    raw = "direct-user-5"
    user, home = pseudonymize(raw, KEY), home_partition(raw, N)
    redeliveries = metric("persona_redeliveries_total")

    async def run():
        async with input_agent(topics.clicks) as agent:
            agent.sent_offset = 40
            await agent.put(click("r1", raw, "sku-1"), key=raw.encode(), partition=home)
            await agent.put(click("r2", raw, "sku-2"), key=raw.encode(), partition=home)
            agent.sent_offset = 40  # a crash before the commit: both come again
            await agent.put(click("r1", raw, "sku-1"), key=raw.encode(), partition=home)
            await agent.put(click("r2", raw, "sku-2"), key=raw.encode(), partition=home)
        # A purchase at a low offset of its own topic is new, whatever the clicks' offsets.
        async with input_agent(topics.purchases) as agent:
            agent.sent_offset = 3
            await agent.put(purchase("q1", raw, "sku-1"), key=raw.encode(), partition=home)

    loop.run_until_complete(run())
    record = tables.profiles[user]
    assert _clicks_in(user) == 2
    assert record["p"]["p"] == 1  # purchases
    assert record["o"] == [home, -1, 41, 3]
    assert metric("persona_redeliveries_total") == redeliveries + 2
    recs = [orjson.loads(v)["recommendation_id"] for t, _, v, _ in sends
            if t == T.recommendations]
    # Each redelivery re-sends its event's recommendation under the same id.
    assert len(recs) == 5 and recs[0] == recs[2] and recs[1] == recs[3]


def test_a_direct_click_and_its_rekeyed_copy_count_once(loop, sends, copartitioned):
    """A producer sending one event twice, once keyed to its home partition and once
    elsewhere: the copy comes back through the events topic and the dedupe window
    drops it."""
    raw = "direct-user-6"
    user, home = pseudonymize(raw, KEY), home_partition(raw, N)
    value = click("dup1", raw, "sku-9")

    async def run():
        async with input_agent(topics.clicks) as agent:
            await agent.put(value, key=raw.encode(), partition=home)
            await agent.put(value, key=None, partition=_other_partition(home))
        hop = [s for s in sends if s[0] == EVENTS]
        assert len(hop) == 1
        async with input_agent(topics.events) as agent:
            await agent.put(hop[0][2], key=hop[0][1], partition=home)

    dupes = metric("persona_events_total", topic="clicks", outcome="duplicate")
    loop.run_until_complete(run())
    assert _clicks_in(user) == 1
    assert metric("persona_events_total", topic="clicks", outcome="duplicate") == dupes + 1


def test_direct_ad_request_and_erase_take_no_hop(loop, sends, copartitioned):
    raw = "direct-user-7"
    user, home = pseudonymize(raw, KEY), home_partition(raw, N)
    req = orjson.dumps({"request_id": "rq-direct-7", "user_id": raw, "ts": TS + 5,
                        "slot": "top", "floor_price": 0.0,
                        "candidates": [{"ad_id": "books-1", "campaign_id": "books",
                                        "value_per_click": 20.0}]})
    erase = orjson.dumps({"user_id": raw, "action": "erase", "ts": TS + 10})

    async def run():
        async with input_agent(topics.clicks) as agent:
            await agent.put(click("a1", raw, "sku-1"), key=raw.encode(), partition=home)
        async with input_agent(topics.ad_requests) as agent:
            await agent.put(req, key=raw.encode(), partition=home)
        async with input_agent(topics.privacy) as agent:
            await agent.put(erase, key=raw.encode(), partition=home)

    loop.run_until_complete(run())
    assert [s for s in sends if s[0] == EVENTS] == []
    to_ads = [orjson.loads(v) for t, _, v, _ in sends if t == settings.ads_topic]
    assert [m.get("kind") for m in to_ads] == ["ad_request", "forget"]
    assert to_ads[0]["view"]  # the user's ad view, from the profile on this partition
    assert tables.profiles.get(user) is None
    # The marker names the partition: the sweep sends its expiry there.
    assert tables.erasures[user]["k"] == home


def test_the_sweep_sends_each_expiry_to_the_partition_of_the_record(loop, sends,
                                                                    copartitioned):
    raw = "direct-user-8"
    user, home = pseudonymize(raw, KEY), home_partition(raw, N)

    async def run():
        async with input_agent(topics.clicks) as agent:
            await agent.put(click("s1", raw, "sku-1"), key=raw.encode(), partition=home)

    loop.run_until_complete(run())
    sends.clear()
    assert rt.settings.profile_ttl_ms > 0  # by default: every record is idle in 10**15 ms
    n = loop.run_until_complete(profile_module.sweep_expired(now_ms=10**15))
    mine = [(k, p) for t, k, _, p in sends if t == EVENTS and k == user.encode()]
    assert n >= 1 and mine == [(user.encode(), home)]
    # A record written before positions named a partition goes where its key chose.
    assert profile_module._home_of("never-seen") == home_partition("never-seen", N)
