"""Micro-batches off a Faust stream, acked only once their effects are with the producer.

Why not ``stream.take()`` / ``take_events()`` (faust-streaming 0.15.3): they collect in
a background task, so the agent's batch body runs with no current event (a table write
then raises, or goes to another event's changelog partition), and their lone event
waits out the whole ``within`` timer, which also ticks while the stream is idle. They do
ack after the body (in the ``finally`` round their ``yield``), but also when the body
raised. Here the agent's own loop reads a ``noack()`` stream: the first event of a batch
is waited for as long as it takes, then every event already queued is taken at once, up
to ``size``, and for at most ``wait_s`` after the first one more are waited for. Nothing
is acked until the batch's handler returned, that is, until every table write
(``send_soon``) and output (``Topic.send``) of the batch is with the producer; Faust
flushes the producer before it commits an offset (``Consumer._commit_offsets``), so an
acked message's effects are on the broker before its offset counts as done. A batch the
worker stops in the middle of (cancellation) is not acked: it is delivered again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from faust.streams import _current_event

from streams.agents.deadletter import contain_failure
from streams.runtime import current

log = logging.getLogger(__name__)


def use_event(event: Any) -> None:
    """Make ``event`` the current event of this task. Faust sends a table change to the
    changelog partition of the current event (``Collection.partition_for_key``): a batch
    writes a user's record under one of that user's own events, never the batch's last."""
    _current_event.set(weakref.ref(event))


async def batches(stream: Any, size: int, wait_s: float) -> AsyncIterator[list[Any]]:
    """The events of ``stream`` (a ``noack()`` stream) in lists of at most ``size``: the
    first event waited for as long as it takes, then those already queued, then for at
    most ``wait_s`` after the first whatever else arrives. ``wait_s`` 0: a batch is
    what was queued when its first event was taken."""
    events = stream.events().__aiter__()
    queue = getattr(stream.channel, "queue", None)
    flow = stream.app.flow_control
    loop = asyncio.get_running_loop()
    ahead: asyncio.Future | None = None  # a read that outlived the last batch's wait
    try:
        while True:
            try:
                first = await (ahead if ahead is not None else events.__anext__())
            except StopAsyncIteration:
                return
            ahead = None
            batch = [first]
            deadline = loop.time() + wait_s
            ended = False
            try:
                while len(batch) < size:
                    # Queued and the flow on: the stream has a message to give at once
                    # (it skips messages only while a rebalance stops the flow, and then
                    # the queues are cleared).
                    if queue is not None and not queue.empty() and flow.is_active():
                        batch.append(await events.__anext__())
                        continue
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    ahead = asyncio.ensure_future(events.__anext__())
                    done, _ = await asyncio.wait((ahead,), timeout=remaining)
                    if not done:
                        break  # ``ahead`` brings the first event of the next batch
                    read, ahead = ahead, None
                    batch.append(read.result())
            except StopAsyncIteration:  # a finite stream ended: its last batch still goes
                ended = True
            yield batch
            if ended:
                return
    finally:
        if ahead is not None:
            ahead.cancel()


async def run_batched(stream: Any, agent: str, size: int, wait_s: float,
                      handle: Callable[[Sequence[Any]], Awaitable[None]]) -> None:
    """Feed ``stream`` to ``handle`` in batches (``batches``), then ack each batch.

    ``handle`` contains each event's failure itself (a dead letter per event, the batch
    goes on); what it still lets escape is a bug of the batch, kept as one
    ``internal_error`` dead letter per message of the batch. The agent's time per event
    (``persona_event_processing_seconds``) is its share of its batch's time.
    """
    processing = current().metrics.processing_seconds.labels(agent=agent)
    noack = stream.noack()
    reader = batches(noack, max(1, size), max(0.0, wait_s))
    try:
        async for events in reader:
            started = time.perf_counter()
            try:
                await handle(events)
            except Exception as exc:  # acked below: keep every message in dead-letters
                for event in events:
                    await contain_failure(agent, event.message, exc)
            for event in events:  # in order: Faust commits up to the first unacked
                await noack.ack(event)
            share = (time.perf_counter() - started) / len(events)
            for _ in events:
                processing.observe(share)
    finally:
        await reader.aclose()
