"""The shutdown commit fix in streams/faust_fixes.py, run on Faust's own methods."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer

from streams import faust_fixes


class _Stopping:
    """Just what ``Consumer.on_stop`` and ``Consumer.commit`` touch: a periodic commit is
    still in flight when the consumer stops (``_commit_fut`` pending)."""

    maybe_wait_for_commit_to_finish = Consumer.maybe_wait_for_commit_to_finish
    commit = Consumer.commit
    commit_and_end_transactions = Consumer.commit_and_end_transactions

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.app = SimpleNamespace(client_only=False,
                                   conf=SimpleNamespace(stream_wait_empty=False))
        self.loop = loop
        self._commit_fut: asyncio.Future[Any] | None = loop.create_future()
        self.forced: list[bool] = []

    async def force_commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        self.forced.append(start_new_transaction)
        return True


async def _stop(stop: Any) -> list[bool]:
    consumer = _Stopping(asyncio.get_running_loop())
    in_flight = consumer._commit_fut
    assert in_flight is not None

    def finish() -> None:  # as Consumer.commit's ``finally`` does
        consumer._commit_fut = None
        in_flight.set_result(None)

    asyncio.get_running_loop().call_later(0.01, finish)
    await stop(consumer)
    return consumer.forced


def test_faust_skips_the_final_commit_while_a_periodic_one_is_in_flight() -> None:
    # What the fix is for: offsets acked after the periodic commit took its snapshot would
    # be delivered again after a clean SIGTERM.
    assert asyncio.run(_stop(faust_fixes._ORIGINAL_ON_STOP)) == []


def test_the_final_commit_runs_after_the_in_flight_one() -> None:
    assert asyncio.run(_stop(faust_fixes._commit_at_stop)) == [False]
