"""The floor of ``bench.e2e`` for persona's message pattern: Faust agents, no models.

As persona's worker, per click: with ``BENCH_SKELETON_REKEY=1``, an ingest agent reads
the input topic and re-keys each message by its user id onto an internal topic (persona
before input was applied where it arrives; now only for input off its user's home
partition); ``BENCH_SKELETON_REKEY=0`` (``bench.e2e``'s ``skeleton``: persona's pattern
for keyed input) leaves that out. The last agent reads and writes the user's record in a
changelog-backed table (persona: the profile agent's ``profiles`` table; here raw JSON
bytes) and sends one output per event, keyed by user, with the event's id as
``trigger_event_id`` (persona: the recommendation). What it leaves out is persona's work
per event (validation, pseudonymization, dedupe, the models), so ``persona / skeleton``
is what that work costs and ``skeleton / trivial`` what the extra messages cost. The app
is built by ``streams.app.build_app`` from the same PERSONA_* settings as the worker and
``bench.trivial_agent``.

Variants, by environment (``bench.hops`` compares them to price each message):

- ``BENCH_SKELETON_REKEY`` (1): 0 = no internal topic, the second agent reads the input;
- ``BENCH_SKELETON_TABLE`` (1): 0 = no table write;
- ``BENCH_SKELETON_OUTPUTS`` (1): outputs per event, 1-4; the ones after the first go to
  ``BENCH_SKELETON_OUT`` + ``-extra``, so the bench's reader parses one per event;
- ``BENCH_SKELETON_TAKE`` (unset): ``N,SECONDS`` = both agents read through
  ``stream.take_events(N, within=SECONDS)`` and the table gets one write per user per
  batch (its last value); sends stay one per event.

    PERSONA_APP_ID=... PERSONA_BOOTSTRAP=127.0.0.1:PORT BENCH_SKELETON_IN=in \\
        BENCH_SKELETON_OUT=out .venv/bin/python -m bench.skeleton_agent
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import faust
import orjson

# Importing streams.app also declares persona's own app (never started here); an app
# from build_app applies the same faust_fixes as the worker when it starts.
from streams.app import build_app, run_worker
from streams.settings import Settings
from streams.tables import _Table  # persona's table class (its startup-race guard)

settings = Settings.from_env()
app = build_app(settings)
REKEY = os.environ.get("BENCH_SKELETON_REKEY", "1") != "0"
TABLE = os.environ.get("BENCH_SKELETON_TABLE", "1") != "0"
OUTPUTS = max(1, min(4, int(os.environ.get("BENCH_SKELETON_OUTPUTS", "1"))))
_take = os.environ.get("BENCH_SKELETON_TAKE", "").strip()
TAKE: tuple[int, float] | None = (
    (int(_take.split(",")[0]), float(_take.split(",")[1])) if _take else None)

source = app.topic(os.environ.get("BENCH_SKELETON_IN", "bench-skeleton-in"),
                   key_type=bytes, value_type=bytes, partitions=settings.partitions)
sink_name = os.environ.get("BENCH_SKELETON_OUT", "bench-skeleton-out")
sink = app.topic(sink_name, key_type=bytes, value_type=bytes,
                 partitions=settings.partitions)
extra = app.topic(f"{sink_name}-extra", key_type=bytes, value_type=bytes,
                  partitions=settings.partitions)
events = app.topic(f"{settings.app_id}-events", key_type=bytes, value_type=bytes,
                   partitions=settings.partitions, internal=True)
profiles = app.tables.add(_Table(
    app, name="profiles", beacon=app.tables.beacon, default=None,
    schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="raw"),
    partitions=settings.partitions))


async def _batches(stream: Any) -> AsyncIterator[list[Any]]:
    """The stream's events, one by one (as persona reads) or in take_events batches."""
    if TAKE is None:
        async for event in stream.events():
            yield [event]
    else:
        async for batch in stream.take_events(TAKE[0], within=TAKE[1]):
            yield list(batch)


async def _rekey(stream: Any) -> None:
    async for batch in _batches(stream):
        for event in batch:
            value = event.message.value
            await events.send(key=orjson.loads(value)["user_id"].encode(), value=value)


async def _apply(stream: Any) -> None:
    async for batch in _batches(stream):
        last: dict[str, tuple[int, bytes]] = {}  # user -> (partition, record), this batch
        for event in batch:
            msg = event.message
            ev = orjson.loads(msg.value)
            user = ev["user_id"]
            if TABLE:
                # Read, change, write the user's record, as the profile agent does.
                old = last[user][1] if user in last else profiles.get(user)
                n = 1 + (orjson.loads(old)["n"] if old else 0)
                record = orjson.dumps({"n": n, "last": ev["item_id"]})
                if TAKE is None:
                    profiles[user] = record
                else:
                    last[user] = (msg.partition, record)
            key = user.encode()
            out = orjson.dumps({"trigger_event_id": ev["event_id"], "user_id": user,
                                "items": []})
            await sink.send(key=key, value=out)
            for _ in range(OUTPUTS - 1):
                await extra.send(key=key, value=out)
        for user, (partition, record) in last.items():
            # Outside the stream's per-event context: the changelog partition is the
            # one of the user's events, as Faust picks it for a write in the stream.
            profiles.send_changelog(partition, user, record)
            profiles.data[user] = record


if REKEY:
    app.agent(source, name="bench.skeleton-ingest", concurrency=1)(_rekey)
    app.agent(events, name="bench.skeleton-apply", concurrency=1)(_apply)
else:
    app.agent(source, name="bench.skeleton-apply", concurrency=1)(_apply)


def main() -> None:
    # As ``persona worker`` runs the worker app (the producer buffer is build_app's).
    run_worker(app, settings.log_level)


if __name__ == "__main__":
    main()
