"""Read every partition of a topic on every worker, outside the consumer group.

Faust's agents consume in the app's group, so each worker sees only its partitions. Global
state that every worker must hold (the catalogue, the other workers' model updates) is
read here instead: an aiokafka consumer with no group (which aiokafka assigns every
partition of the topic), starting at the beginning or the end, never committing.
(Faust's GlobalTable would do this for tables; it has open bugs with several workers,
faust-streaming issue #283.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams.settings import Settings

log = logging.getLogger(__name__)

# How long one fetch waits for data, and how many records one hands over at most.
FETCH_WAIT_MS = 100
MAX_RECORDS = 1000
# Waits between retries when the topic has no metadata yet or the broker is away.
RETRY_S = 0.5


Handler = Callable[[bytes | None, bytes | None], None]


class BroadcastReader:
    """Reads all partitions of ``topic`` and calls ``handle(key, value)`` per message.

    ``from_beginning``: start at each partition's first offset (state rebuilt from the
    whole topic, e.g. a compacted catalogue); otherwise at its end when the reader
    starts (only what is published from then on). After a broker error it reconnects
    and resumes after the last message it handled. ``positioned`` is set once it has
    its partitions and start offsets; ``caught_up`` once it has read up to the end
    offsets it saw then. ``handle`` runs in the event loop, between agents' messages.
    """

    def __init__(self, settings: Settings, topic: str, handle: Handler, *,
                 from_beginning: bool, name: str) -> None:
        self.settings = settings
        self.topic = topic
        self.handle = handle
        self.from_beginning = from_beginning
        self.name = name
        self.positioned = asyncio.Event()
        self.caught_up = asyncio.Event()
        self.messages = 0
        # Set by the task that runs it: while False (as under Faust's test_context, which
        # starts no tasks) the agents apply what the reader would.
        self.running = False
        # Next offset per partition: after a reconnect the reader resumes there.
        self._next: dict[TopicPartition, int] = {}

    def _consumer(self) -> AIOKafkaConsumer:
        # With no group, aiokafka assigns a subscriber every partition of the topic (and
        # any added later); with no committed offsets it starts at the reset policy.
        s = self.settings
        return AIOKafkaConsumer(
            self.topic, bootstrap_servers=s.bootstrap_servers, group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self.from_beginning else "latest",
            client_id=f"{s.app_id}-{self.name}", fetch_max_wait_ms=FETCH_WAIT_MS,
            **s.kafka_client_kwargs(),
        )

    async def _assign(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        """Wait for every partition; fix the start positions; the end offsets now."""
        while not consumer.assignment():
            await asyncio.sleep(RETRY_S / 10)
        tps = sorted(consumer.assignment())
        for tp in tps:
            if tp in self._next:
                consumer.seek(tp, self._next[tp])
            await consumer.position(tp)  # resolves "latest" now, not at the first fetch
        return await consumer.end_offsets(tps)

    async def run(self) -> None:
        """Read forever (until cancelled); a broker error is logged and retried."""
        while True:
            consumer = self._consumer()
            try:
                await consumer.start()
                ends = await self._assign(consumer)
                self.positioned.set()
                await self._read(consumer, ends)
            except KafkaError as exc:
                log.warning("%s reader: %s; retrying", self.name, type(exc).__name__)
                await asyncio.sleep(RETRY_S)
            finally:
                await consumer.stop()

    async def _read(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        pending = {tp for tp, end in ends.items() if end > 0}
        if not pending or not self.from_beginning:
            self.caught_up.set()
        while True:
            batches = await consumer.getmany(timeout_ms=FETCH_WAIT_MS, max_records=MAX_RECORDS)
            for tp, records in batches.items():
                for r in records:
                    try:
                        self.handle(r.key, r.value)
                    except Exception as exc:  # one bad message must not stop the reader
                        log.error("%s reader: message at %s:%d failed: %s", self.name,
                                  tp.partition, r.offset, type(exc).__name__)
                self.messages += len(records)
                self._next[tp] = records[-1].offset + 1
                if pending and tp in pending and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
                    if not pending:
                        self.caught_up.set()
            await asyncio.sleep(0)  # let the agents run between large fetches
