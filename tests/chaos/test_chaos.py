"""Slow chaos tests (``./run chaos``; deselected from ``./run test`` by the chaos marker).

Each scenario runs a real worker on the real local Apache Kafka, sends sequenced clicks
and purchases for a few hundred users at a bounded rate, injects its fault mid-stream,
waits (bounded) until the consumer group has no lag, and checks with streams/local/chaos.py
that every event in the source topics is counted exactly once in its user's profile
(latest changelog record) with the same spend, and has exactly one recommendation id.
Every process signalled is one the test started. Results: docs/reliability.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.local.broker import LocalBroker
from streams.local.chaos import (
    Report,
    Rig,
    scenario_broker_restart,
    scenario_graceful,
    scenario_kill9,
    scenario_sigstop,
    scenario_two_workers,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

Keep = Callable[[Report], Report]


def test_kill9_five_times_in_one_run(rig: Rig, keep: Keep) -> None:
    rep = keep(scenario_kill9(rig, kills=5, n_events=10_000, n_users=200, rate=200))
    assert len(rep.faults) == 5
    assert rep.ok, rep.summary()


def test_sigstop_longer_than_the_session_timeout(rig: Rig, keep: Keep) -> None:
    rep = keep(scenario_sigstop(rig, n_events=4000, n_users=100, rate=200))
    assert rep.faults[0]["paused_s"] > rig.session_timeout_s
    assert rep.ok, rep.summary()


def test_two_workers_kill_one(rig: Rig, keep: Keep) -> None:
    rep = keep(scenario_two_workers(rig, n_events=6000, n_users=150, rate=200))
    assert rep.ok, rep.summary()


@pytest.fixture
def own_broker(kafka_broker_factory: Callable[[], LocalBroker]) -> Iterator[LocalBroker]:
    """A broker of this test's own, which it stops and starts (same port and log dir)."""
    broker = kafka_broker_factory()
    broker.start(timeout=90)
    yield broker


def test_broker_stop_and_start_worker_reconnects(own_broker: LocalBroker, tmp_path: Path,
                                                 keep: Keep) -> None:
    rig = Rig(own_broker.bootstrap, tmp_path, session_timeout_s=6.0).setup()
    try:
        rep = keep(scenario_broker_restart(rig, own_broker, n_events=4000, n_users=100,
                                           rate=200, down_s=5.0))
    finally:
        rig.close()
    assert rep.ok, rep.summary()


def test_sigterm_with_a_large_changelog(rig: Rig, keep: Keep) -> None:
    rep = keep(scenario_graceful(rig, n_events=12_000, n_users=200, rate=600))
    assert rep.faults[0]["exit_code"] == 0 and rep.faults[0]["exit_s"] <= 10.0
    assert rep.timings["ready_503_answers"] > 0
    assert rep.ok, rep.summary()
