"""A user's home partition is where kafka-python puts a message keyed by their id, and
the placement only applies input where it arrives when the partition counts say so."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner import DefaultPartitioner

from streams import placement as placement_module
from streams.placement import Placement, home_partition


class Cluster:
    """The part of kafka-python's ClusterMetadata its partitioner reads."""

    def __init__(self, n: int) -> None:
        self.n = n

    def topics(self) -> set[str]:
        return {"clicks"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.n))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.n))


@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=64))
def test_home_is_where_kafka_python_puts_a_message_keyed_by_the_user(user: str, n: int):
    key = user.encode("utf-8")
    chosen = DefaultPartitioner().partition("clicks", key, key, None, None, Cluster(n))
    assert home_partition(user, n) == chosen


# Java's Utils.murmur2 on these keys (Apache Kafka's UtilsTest), as signed 32-bit ints:
# the Java client's default partitioner puts a keyed message on (hash & 0x7fffffff) % n.
JAVA_MURMUR2 = {"21": -973932308, "foobar": -790332482,
                "a-little-bit-long-string": -985981536, "abc": 479470107}


@pytest.mark.parametrize("key", sorted(JAVA_MURMUR2))
def test_home_is_where_the_java_client_puts_it(key: str):
    for n in (1, 3, 4, 8, 12):
        assert home_partition(key, n) == (JAVA_MURMUR2[key] & 0x7FFFFFFF) % n


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(placement_module.time, "monotonic", c)
    return c


def test_counts_are_cached_and_an_unknown_count_is_asked_again_soon(clock: Clock):
    answers = {"clicks": None, "events": 4}
    asked: list[str] = []

    def count(topic: str) -> int | None:
        asked.append(topic)
        return answers[topic]

    p = Placement(count, "events", default=4)
    assert p.partitions("clicks") is None  # metadata not there yet
    answers["clicks"] = 4
    clock.now += 0.5
    assert p.partitions("clicks") is None and asked.count("clicks") == 1  # cached
    clock.now += 0.6
    assert p.partitions("clicks") == 4 and asked.count("clicks") == 2
    clock.now += 5
    assert p.partitions("clicks") == 4 and asked.count("clicks") == 2  # a known count: 10 s
    answers["clicks"] = 8  # the topic gained partitions
    clock.now += 6
    assert p.partitions("clicks") == 8


def test_applied_here_only_on_the_home_partition_of_a_topic_with_the_same_count(clock):
    counts = {"events": 4, "clicks": 4, "purchases": 6}
    p = Placement(counts.get, "events", default=4)
    home = p.home("someone")
    assert home == home_partition("someone", 4)
    assert p.applies_here("clicks", home, home)
    assert not p.applies_here("clicks", (home + 1) % 4, home)
    assert not p.applies_here("purchases", home, home)  # 6 partitions: another worker's
    assert not p.applies_here("privacy", home, home)  # unknown: re-keying is always safe


def test_a_failing_metadata_read_means_unknown_and_the_default_count(clock):
    def broken(topic: str) -> int | None:
        raise RuntimeError("consumer not started")

    p = Placement(broken, "events", default=8)
    assert p.partitions("clicks") is None
    assert p.events_partitions() == 8
    assert p.home("u1") == home_partition("u1", 8)
    assert not p.applies_here("clicks", p.home("u1"), p.home("u1"))
