"""Fast chaos tests on the real local Apache Kafka (in CI; the slow ones are tests/chaos).

Each test sends clicks and purchases with per-user sequence numbers through a real
worker process, breaks something (kill -9, a second worker killed, SIGTERM), waits until
the consumer group has no lag, and runs the check of streams/local/chaos.py: every event in
the source topics counted once in its user's profile (latest changelog record), the same
spend, one recommendation id per event. docs/reliability.md explains the method.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.local.broker import LocalBroker
from streams.local.chaos import (
    Report,
    Rig,
    scenario_graceful,
    scenario_kill9,
    scenario_two_workers,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def rig(kafka_broker: LocalBroker, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(kafka_broker.bootstrap, tmp_path, session_timeout_s=6.0).setup()
    try:
        yield r
    finally:
        r.close()


# A kill -9 between the profile's changelog write and its recommendation reaching the
# broker used to lose that recommendation (about 1 per 8 kills): the replay saw the event
# as a duplicate. The profile agent now serves a redelivered event's recommendation again
# under its id (streams/agents/profile.py ``_reserve``), so none may be missing.
RECS_LOST_PER_KILL = 0


def assert_exact(rep: Report, kills: int) -> None:
    """Nothing lost, nothing counted twice, one recommendation id per event (copies of
    an id allowed: at-least-once)."""
    assert rep.sent > 0 and rep.source_events == rep.sent, rep.summary()
    assert rep.processed == rep.sent, rep.summary()
    assert (rep.lost, rep.double_counted, rep.users_missing) == (0, 0, 0), rep.summary()
    assert rep.spend_mismatches == 0, rep.summary()
    assert (rep.recs_conflicting, rep.recs_unexpected) == (0, 0), rep.summary()
    assert rep.recs_missing <= RECS_LOST_PER_KILL * kills, rep.summary()
    other = [p for p in rep.problems if "without a recommendation" not in p]
    assert not other, rep.summary()


def test_kill9_twice_mid_stream_loses_and_double_counts_nothing(rig: Rig) -> None:
    rep = scenario_kill9(rig, kills=2, n_events=1200, n_users=60, rate=200)
    assert len(rep.faults) == 2 and all(f["ready_s"] > 0 for f in rep.faults)
    assert_exact(rep, kills=2)


def test_two_workers_kill_one_the_other_takes_over_exactly(rig: Rig) -> None:
    # Before streams/faust_fixes.py this lost the first event of a partition nobody had
    # committed yet, in three runs out of three.
    rep = scenario_two_workers(rig, n_events=1200, n_users=60, rate=200)
    assert rep.faults[0]["takeover_s"] > 0
    assert_exact(rep, kills=1)


def test_sigterm_exits_0_fast_commits_and_ready_waits_for_recovery(rig: Rig) -> None:
    rep = scenario_graceful(rig, n_events=1600, n_users=60, rate=400)
    fault = rep.faults[0]
    assert fault["exit_code"] == 0, rep.summary()
    assert fault["exit_s"] <= 10.0, rep.summary()
    # Offsets were committed at shutdown: the restart redelivers at most the few events
    # in flight at the signal (without that commit, up to a second's worth: ~300), and
    # the dedupe drops those.
    assert rep.timings["redelivered_after_sigterm"] <= 10, rep.summary()
    assert rep.ingest_redeliveries <= 10, rep.summary()
    # /ready said 503 while the worker joined and recovered, and the profiles read the
    # moment it first said 200 already held everything the changelog had.
    assert rep.timings["ready_503_answers"] > 0
    assert rep.timings["profiles_behind_at_ready"] == 0
    assert_exact(rep, kills=0)
