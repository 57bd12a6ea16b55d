"""The profiles table keeps each record as its JSON bytes (streams/tables.py
``_CompactTable``): the changelog gets those very bytes, a read is a copy, and records
the previous version wrote (dedupe entries as pairs) recover and keep working."""

from __future__ import annotations

import orjson
from faust.topics import Topic

from models.users.compact import CompactValues, make_record
from models.users.dedupe import event_key
from models.users.privacy import pseudonymize
from streams import tables
from streams.agents.profile import profile as profile_agent
from streams.runtime import current

KEY = current().settings.require_secret_key()


def _wire(eid: str, user: str, item: str, ts: int) -> bytes:
    return orjson.dumps({"kind": "click", "event_id": eid, "user_id": user, "item_id": item,
                         "ts": ts, "fp": f"fp-{eid}", "src": "clicks"})


def test_the_changelog_gets_the_bytes_the_table_keeps_and_reads_are_copies(
        loop, sent, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    user = pseudonymize("compact-1", KEY)
    changelog: list[tuple[object, object, object]] = []
    send_soon = Topic.send_soon

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.get_topic_name() == tables.profiles.changelog_topic_name:
            changelog.append((kwargs.get("key"), kwargs.get("value"),
                              kwargs.get("value_serializer")))
        return send_soon(self, *args, **kwargs)

    monkeypatch.setattr(Topic, "send_soon", spy)

    async def run():  # type: ignore[no-untyped-def]
        async with profile_agent.test_context() as agent:
            await agent.put(_wire("k1", user, "a", 1000), key=user.encode())
            await agent.put(_wire("k2", user, "b", 2000), key=user.encode())
            read = tables.profiles[user]
            read["p"]["c"] = 99  # not written back: nothing stored changes
            return tables.profiles[user]

    record = loop.run_until_complete(run())
    values = tables.profiles.data.data
    assert isinstance(values, CompactValues)
    raw = values.raw(user)
    assert isinstance(raw, bytes) and orjson.loads(raw) == record
    assert record["p"]["c"] == 2 and record["p"]["r"] == ["a", "b"]
    assert [c for c in changelog if c[0] == user][-1] == (user, raw, "raw")


def test_a_record_of_the_previous_version_recovers_and_dedupes(loop, sent) -> None:  # type: ignore[no-untyped-def]
    user = pseudonymize("compact-2", KEY)
    # As the previous version wrote it: the same JSON, dedupe entries as pairs.
    old = {"p": {"v": 1, "c": 1, "r": ["a"], "s": ["a"], "f": 1000, "l": 1000},
           "d": [[event_key("o1"), "fp-o1"]], "t": 1_700_000_000_000}
    tables.profiles.data.update({user: orjson.loads(orjson.dumps(old))})  # as recovery does

    async def run():  # type: ignore[no-untyped-def]
        async with profile_agent.test_context() as agent:
            await agent.put(_wire("o1", user, "a", 1000), key=user.encode())  # a duplicate
            await agent.put(_wire("o2", user, "b", 2000), key=user.encode())
            return tables.profiles[user]

    record = loop.run_until_complete(run())
    assert record["p"]["c"] == 2 and record["p"]["r"] == ["a", "b"]
    assert [e[:16] for e in record["d"]] == [event_key("o1"), event_key("o2")]


def test_maybe_idle_skips_only_records_written_since_the_cutoff(loop) -> None:  # type: ignore[no-untyped-def]
    cutoff = 1_700_000_000_000
    users = {name: pseudonymize(f"compact-idle-{name}", KEY)
             for name in ("fresh", "idle", "old_layout", "no_t")}
    tables.profiles.data.update({  # as recovery does
        users["fresh"]: make_record({"v": 1, "l": 1}, [], now_ms=cutoff),
        users["idle"]: make_record({"v": 1, "l": 1}, [], now_ms=cutoff - 1),
        # "t" not first, as the previous version wrote it: decoded, not skipped
        users["old_layout"]: {"p": {"v": 1}, "d": [], "t": cutoff + 5},
        users["no_t"]: {"p": {"v": 1, "l": 1}, "d": []},
    })
    found = dict(tables.maybe_idle(cutoff))
    assert users["fresh"] not in found
    assert found[users["idle"]]["t"] == cutoff - 1
    assert users["old_layout"] not in found  # its "t" is decoded: fresh, so not yielded
    assert found[users["no_t"]] == {"p": {"v": 1, "l": 1}, "d": []}
