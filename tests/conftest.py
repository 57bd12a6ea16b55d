"""Shared fixtures: the real local Apache Kafka broker (session-wide), built on
streams.local.broker.

``kafka_broker`` is one broker for the whole test session, on a free port, with its data
under pytest's tmp dir; the jars come from the project's cache (``<data dir>/kafka/lib-<v>``,
normally ``.persona/kafka/``) so they are fetched from Maven Central once, not per run.
If the broker cannot start, every test using it fails with the broker's log tail.

Every test module in this folder sets ``pytestmark = pytest.mark.integration`` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from streams.local.broker import LocalBroker, free_port
from streams.settings import Settings


def _make_local_broker(tmp_path_factory: pytest.TempPathFactory, basename: str) -> LocalBroker:
    """A LocalBroker on a free port: data under a fresh tmp dir, jars from the project cache."""
    settings = Settings.from_env()
    return LocalBroker(
        version=settings.kafka_version,
        host="127.0.0.1",
        port=free_port("127.0.0.1"),
        home=tmp_path_factory.mktemp(basename),
        lib_home=settings.kafka_dir,
    )


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """The session's running broker; ``kafka_broker.bootstrap`` is ``127.0.0.1:<port>``.

    Shared by all integration tests: do not stop it (use ``kafka_broker_factory`` for that).
    """
    broker = _make_local_broker(tmp_path_factory, "kafka")
    try:
        broker.start(timeout=90.0)
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: LocalBroker) -> str:
    """Bootstrap servers of the session broker, e.g. for PERSONA_BOOTSTRAP or Faust."""
    return kafka_broker.bootstrap


@pytest.fixture(scope="session")
def kafka_broker_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[], LocalBroker]]:
    """Make extra, not yet started brokers a test may stop/restart/wipe; all stopped at the end.

    Each costs a JVM (~220 MB RSS, ~5 s to start): use only for lifecycle tests.
    """
    made: list[LocalBroker] = []

    def make() -> LocalBroker:
        broker = _make_local_broker(tmp_path_factory, "kafka-extra")
        made.append(broker)
        return broker

    try:
        yield make
    finally:
        for broker in made:
            broker.stop()
