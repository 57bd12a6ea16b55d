"""Smoke test of bench/scaleout.py on the session's broker: tiny flags, sane output."""

from __future__ import annotations

import pytest

from bench import scaleout
from streams.local.broker import LocalBroker

pytestmark = pytest.mark.integration


def test_scaleout_bench_runs_two_workers_and_reports_sane_figures(
        kafka_broker: LocalBroker, capsys: pytest.CaptureFixture[str]) -> None:
    # Enough events that each worker's two partitions hold at least five users (a delta
    # leaves only then): MovieLens starts with a few users, placed by their home
    # partition (the first 1,500 events: 5, 2, 3 and 10 users on partitions 0-3).
    n = 1_500
    out = scaleout.main(["--bootstrap", kafka_broker.bootstrap, "--events", str(n),
                         "--modes", "two", "--partitions", "4", "--timeout", "60",
                         "--overhead-events", "300"])
    text = capsys.readouterr().out
    assert "machine:" in text and "| two | 2 |" in text
    (run,) = out["runs"]
    assert run["recs"] == run["events"] == n and not run["timed_out"]
    assert 0.0 <= run["recall"] <= 1.0 and run["rate"] > 0 and run["cpu_us_per_event"] > 0
    assert run["catalogue"] == [1682, 1682]  # every item on both workers
    assert sum(run["per_worker_events"]) == n
    # Every event one worker's deltas summed was applied by the other; a delta waits
    # until it sums five users' events, so the last few of a short run may not leave.
    assert 0 < run["sync"]["steps_sent"] == run["sync"]["steps_applied"] <= n
    o = out["overhead"]
    assert o["events"] == 300 and o["apply_us"] > 0 and o["bytes_per_event"] > 50
