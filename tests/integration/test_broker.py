"""The real local Apache Kafka broker: start, status, produce/consume, topics, restart, stop."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaTimeoutError

from streams.local.broker import BrokerError, LocalBroker, ensure_topics, wait_for_broker

pytestmark = pytest.mark.integration


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _produce(bootstrap: str, topic: str, value: bytes, key: bytes = b"k") -> tuple[int, int]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="test-broker")
    try:
        md = producer.send(topic, key=key, value=value).get(timeout=15)
        producer.flush(timeout=15)
    finally:
        producer.close(timeout=5)
    return md.partition, md.offset


def _read_all(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    """Every value in ``topic`` from the beginning (no consumer group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="test-broker", group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        values: list[bytes] = []
        deadline = time.monotonic() + 15
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, "timed out reading back"
            for records in consumer.poll(timeout_ms=500).values():
                values += [r.value for r in records]
        return values
    finally:
        consumer.close()


def _partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-broker")
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(topics)}
    finally:
        admin.close()


def _list_topics(bootstrap: str) -> list[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-broker")
    try:
        return admin.list_topics()
    finally:
        admin.close()


def _is_kafka_process(pid: int) -> bool:
    try:
        return b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_broker_starts_and_reports_running(kafka_broker: LocalBroker) -> None:
    status = kafka_broker.status()
    assert status["running"] is True
    assert status["bootstrap"] == f"127.0.0.1:{kafka_broker.port}" == kafka_broker.bootstrap
    assert status["port"] == kafka_broker.port
    assert status["version"] == kafka_broker.version
    assert _is_kafka_process(status["pid"])
    assert "Kafka Server started" in Path(status["log"]).read_text()
    wait_for_broker(kafka_broker.bootstrap, timeout=5)


def test_start_when_running_is_a_noop(kafka_broker: LocalBroker) -> None:
    pid = kafka_broker.status()["pid"]
    kafka_broker.start(timeout=10)
    assert kafka_broker.status()["pid"] == pid


def test_produce_and_consume_with_a_group(kafka_broker: LocalBroker) -> None:
    topic = _unique("it-roundtrip")
    assert ensure_topics(kafka_broker.bootstrap, [topic], partitions=4) == [topic]
    _produce(kafka_broker.bootstrap, topic, b"hello")
    # A consumer group exercises the group coordinator and __consumer_offsets (RF 1).
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker.bootstrap,
        group_id=_unique("it-group"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        consumer_timeout_ms=20000,
    )
    try:
        record = next(iter(consumer))
        assert (record.key, record.value) == (b"k", b"hello")
        consumer.commit()
    finally:
        consumer.close()


def test_ensure_topics_creates_with_partitions_and_is_idempotent(kafka_broker: LocalBroker) -> None:
    bootstrap = kafka_broker.bootstrap
    a, b, c = _unique("it-a"), _unique("it-b"), _unique("it-c")
    assert sorted(ensure_topics(bootstrap, [a, b], partitions=4)) == sorted([a, b])
    assert _partition_counts(bootstrap, [a, b]) == {a: 4, b: 4}
    assert ensure_topics(bootstrap, [a, b], partitions=4) == []
    compact = {"cleanup.policy": "compact"}
    assert ensure_topics(bootstrap, [a, b, c], partitions=4, configs=compact) == [c]
    assert _partition_counts(bootstrap, [c]) == {c: 4}
    # auto.create.topics.enable=false: producing to an unknown topic does not create it.
    nope = _unique("it-nope")
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=1000)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(nope, b"x").get(timeout=5)
    finally:
        producer.close(timeout=2)
    assert nope not in _list_topics(bootstrap)


def test_faust_declares_topics_through_the_admin_api(kafka_broker: LocalBroker) -> None:
    """Faust creates its topics with CreateTopics (as the worker will), auto-create being off."""
    import faust

    topic_name = _unique("it-faust")
    app = faust.App(
        _unique("it-faust-app"),
        broker=f"kafka://{kafka_broker.bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_replication_factor=1,
    )
    topic = app.topic(topic_name, partitions=4, value_serializer="raw")

    async def declare() -> None:
        await app.producer.start()
        try:
            await topic.maybe_declare()
        finally:
            await app.producer.stop()

    asyncio.run(declare())
    assert _partition_counts(kafka_broker.bootstrap, [topic_name]) == {topic_name: 4}


def test_restart_keeps_data_and_stop_is_clean(
    kafka_broker_factory: Callable[[], LocalBroker],
) -> None:
    broker = kafka_broker_factory()
    broker.start(timeout=90)
    topic = _unique("it-persist")
    ensure_topics(broker.bootstrap, [topic], partitions=4)
    _produce(broker.bootstrap, topic, b"before-restart")
    pid = broker.status()["pid"]

    broker.stop()
    status = broker.status()
    assert status["running"] is False and status["pid"] is None
    assert not _is_kafka_process(pid)
    assert not broker.pid_file.exists()
    assert "shut down completed" in broker.log_file.read_text()  # controlled shutdown
    broker.stop()  # stopping a stopped broker is a no-op

    broker.start(timeout=60)
    assert broker.status()["pid"] != pid
    assert ensure_topics(broker.bootstrap, [topic], partitions=4) == []
    assert _read_all(broker.bootstrap, topic, 4) == [b"before-restart"]

    with pytest.raises(BrokerError, match="running"):
        broker.wipe()
    pid = broker.status()["pid"]
    broker.stop()
    assert not _is_kafka_process(pid)
    broker.wipe()
    assert not broker.data_dir.exists()
    assert os.path.isdir(broker.lib_dir)  # the shared jar cache is untouched
