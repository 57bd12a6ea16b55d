"""Three fixes to faust-streaming 0.15.3 that the chaos tests found: events lost on
restart, and events delivered again after a clean stop.

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

3. At a clean stop (``stream_wait_empty=False``) the consumer commits once more
   (``Consumer.on_stop``), but ``Consumer.commit`` returns without committing when the
   periodic commit is in flight: it waits for that one, whose offsets were taken before
   the last batches were acked. Those batches came again after the restart (SIGTERM
   scenario under load: 193 of 1,600 events). Fix: wait for the commit in flight, then
   commit.
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


_ORIGINAL_ON_STOP = Consumer.on_stop


async def _commit_at_stop(self: Consumer) -> None:
    if self.app.conf.stream_wait_empty:
        await _ORIGINAL_ON_STOP(self)
        return
    # ``commit`` gives up when it had to wait for another commit; a bounded few tries
    # (the periodic task may start one more before it is cancelled).
    for _ in range(3):
        if not await self.maybe_wait_for_commit_to_finish():
            break
    await self.commit_and_end_transactions()


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
    """Install the fixes (idempotent). Refuses another faust-streaming line: the fixes
    replace internals that must be re-checked on an upgrade."""
    if not faust.__version__.startswith(FIXED_VERSIONS):
        raise RuntimeError(f"streams/faust_fixes.py patches faust-streaming "
                           f"{FIXED_VERSIONS}, not {faust.__version__}: re-check it")
    Consumer.perform_seek = _perform_seek_with_flow_stopped  # type: ignore[method-assign]
    Consumer.on_stop = _commit_at_stop  # type: ignore[method-assign]
    AIOKafkaConsumerThread.seek_to_committed = (  # type: ignore[method-assign]
        _seek_to_committed_or_beginning)
