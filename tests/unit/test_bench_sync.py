"""``bench/sync.py`` runs and prints one row per delta size (its figures are timings:
checked by reading them, not here)."""

from __future__ import annotations

import math

import pytest

from bench import sync


def test_the_sync_bench_prints_a_row_per_delta_size(capsys: pytest.CaptureFixture[str]) -> None:
    rows = sync.main(["--events", "2000", "--every", "50,200"])
    out = capsys.readouterr().out
    assert [r["every"] for r in rows] == [50.0, 200.0]
    for r in rows:
        assert r["events"] == 2000.0 and r["bytes_per_event"] > 0
        # record_us and sender_ratio are differences of two timings: a few us of
        # recording overhead can come out below zero on a busy machine.
        assert all(math.isfinite(v) and (v >= 0 or k in ("record_us", "sender_ratio"))
                   for k, v in r.items())
    # A bigger delta sums more events into each entry: fewer bytes per event.
    assert rows[1]["bytes_per_event"] < rows[0]["bytes_per_event"]
    assert "| 50 |" in out and "| 200 |" in out and "remote / local" in out
