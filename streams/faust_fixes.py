"""Two fixes to faust-streaming 0.15.3 that the chaos tests found: events lost on restart.

After each rebalance Faust's recovery resumes the stream partitions, seeks them back to
their committed offsets (``Consumer.perform_seek``), then resumes the flow, which empties
every stream queue (``FlowControlEvent.resume`` clears them). Messages fetched before the
seek must therefore be fetched again after it. Two cases were not (docs/reliability.md):

1. The fetcher may be part-way through a batch fetched before the seek. It goes on
   delivering it after the seek, so the next offset looks like a jump past the reset
   read offset: Faust marks the offsets in between as a "gap" (done) and drops them on
   the re-fetch as already read. Those still waiting in a queue are cleared unprocessed,
   yet committed: lost (kill -9 scenario: 2 of 2,000 events in one run). Fix: stop the
   flow before the seek, so the fetcher abandons the old batch at its next message
   (``Consumer.getmany`` checks ``flow_active`` per message); both callers of
   ``perform_seek`` resume the flow right after it.
2. A partition with no committed offset yet is not sought at all (aiokafka's
   ``seek_to_committed`` skips it), so its first messages, fetched and then cleared, are
   never fetched again (two-worker scenario: the first message of a partition lost).
   Fix: seek such partitions to their beginning, which is what
   ``consumer_auto_offset_reset="earliest"`` means for a group that never committed.

Both make Faust read some messages twice; the event-id dedupe drops the second copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

FIXED_VERSIONS = ("0.15.",)

_original_perform_seek = Consumer.perform_seek


async def _perform_seek_with_flow_stopped(self: Consumer) -> None:
    self.stop_flow()
    await _original_perform_seek(self)


async def _rewind(consumer: Any, changelogs: set[str]) -> Mapping[Any, int | None]:
    """In the consumer thread: seek to the committed offsets, and partitions without one
    (but changelogs, which recovery positions itself) to their beginning."""
    committed = await consumer.seek_to_committed()
    fresh = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]
    if fresh:
        await consumer.seek_to_beginning(*fresh)
    return committed


async def _seek_to_committed_or_beginning(self: AIOKafkaConsumerThread) -> Mapping[Any, Any]:
    if self.app.conf.consumer_auto_offset_reset != "earliest":
        return await self.call_thread(self._ensure_consumer().seek_to_committed)
    changelogs = set(self.app.tables.changelog_topics)
    return await self.call_thread(_rewind, self._ensure_consumer(), changelogs)


def apply() -> None:
    """Install both fixes (idempotent). Refuses another faust-streaming line: the fixes
    replace internals that must be re-checked on an upgrade."""
    if not faust.__version__.startswith(FIXED_VERSIONS):
        raise RuntimeError(f"streams/faust_fixes.py patches faust-streaming "
                           f"{FIXED_VERSIONS}, not {faust.__version__}: re-check it")
    Consumer.perform_seek = _perform_seek_with_flow_stopped  # type: ignore[method-assign]
    AIOKafkaConsumerThread.seek_to_committed = (  # type: ignore[method-assign]
        _seek_to_committed_or_beginning)
