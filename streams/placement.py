"""Where a user's events are handled: their home partition, and which input can be
applied where it arrives.

A user's home partition is ``murmur2(raw user id) % n`` (positive, as Java's and
kafka-python's default partitioner place a keyed message), n being the events topic's
partition count. Producers that key by the user id with that partitioner put the user's
clicks, purchases, ad requests and privacy requests on the home partition of each
input topic already; when those topics have n partitions too, Faust assigns partition p
of all of them (and of the events topic and the tables' changelogs) to one worker
(co-partitioning), so the profile agent applies such a message where it arrives.
Everything else (no key and another partition, a client whose partitioner differs, such
as librdkafka's default, or an input topic with another partition count) is re-keyed
once onto the events topic, to the user's home partition. Either way one user's record
lives on one partition, owned by one worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kafka.partitioner.default import murmur2

# How long a topic's partition count is trusted before it is read again (a topic can
# gain partitions while the worker runs; it cannot lose any), and how soon an unknown
# one is asked for again (the consumer's metadata arrives just after the start).
_RECHECK_S = 10.0
_RECHECK_UNKNOWN_S = 1.0


def home_partition(raw_user: str, partitions: int) -> int:
    """The user's home partition among ``partitions``: where a keyed producer using
    Java's default partitioner puts their messages.

    >>> home_partition("u1", 4) == (murmur2(b"u1") & 0x7FFFFFFF) % 4
    True
    """
    return (murmur2(raw_user.encode("utf-8")) & 0x7FFFFFFF) % partitions


class Placement:
    """Decides, per input message, between applying it here and re-keying it.

    ``count(topic)``: the topic's partition count as the consumer's metadata knows it
    (None while unknown); ``events_topic``: the internal events topic; ``default``: its
    partition count to assume until the metadata has it (PERSONA_PARTITIONS).
    """

    def __init__(self, count: Callable[[str], int | None], events_topic: str,
                 default: int) -> None:
        self._count = count
        self.events_topic = events_topic
        self.default = max(1, int(default))
        self._known: dict[str, tuple[int | None, float]] = {}

    def partitions(self, topic: str) -> int | None:
        """``topic``'s partition count, read at most every few seconds."""
        now = time.monotonic()
        hit = self._known.get(topic)
        if hit is not None and now - hit[1] < (_RECHECK_S if hit[0] else _RECHECK_UNKNOWN_S):
            return hit[0]
        try:
            n = self._count(topic)
        except Exception:  # metadata not there yet (a consumer starting): ask again later
            n = None
        n = n if isinstance(n, int) and n > 0 else None
        self._known[topic] = (n, now)
        return n

    def events_partitions(self) -> int:
        return self.partitions(self.events_topic) or self.default

    def home(self, raw_user: str) -> int:
        """The user's home partition on the events topic."""
        return home_partition(raw_user, self.events_partitions())

    def applies_here(self, topic: str, partition: int, home: int) -> bool:
        """True if a message of ``topic`` at ``partition`` for a user whose home is
        ``home`` can be applied where it arrives: it is on the home partition and its
        topic has as many partitions as the events topic (so the same worker owns both).
        An unknown count (metadata not read yet) says no: re-keying is always safe."""
        if partition != home:
            return False
        n = self.partitions(topic)
        return n is not None and n == self.events_partitions()
