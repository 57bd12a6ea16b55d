"""The chaos run's results table (streams/local/chaos.py) and the Faust fixes it led to."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from streams import faust_fixes
from streams.local.chaos import DOC_END, DOC_START, ChaosError, Report, record, render, write_doc


def _report(name: str, **over) -> Report:
    rep = Report(scenario=name, sent=100, source_events=100, processed=100,
                 date="2026-01-02T03:04:05+00:00",
                 faults=[{"kind": "kill -9", "at_acked": 10, "ready_s": 4.5}],
                 timings={"catch_up_s": 3.0}, seconds=20.0)
    for k, v in over.items():
        setattr(rep, k, v)
    return rep


def test_results_table_has_a_row_per_scenario_and_says_what_failed(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    record(results, _report("kill -9 x1"))
    record(results, _report("two workers", lost=2, problems=["2 events missing"]))
    doc = tmp_path / "reliability.md"
    doc.write_text(f"# R\n\nbefore\n{DOC_START}\nold table\n{DOC_END}\nafter\n")
    write_doc(results, doc, "4.3.1")
    text = doc.read_text()
    assert "old table" not in text and text.startswith("# R\n\nbefore\n")
    assert text.rstrip().endswith("after")
    rows = [ln for ln in text.splitlines() if ln.startswith("| kill") or ln.startswith("| two")]
    assert len(rows) == 2
    assert rows[0].endswith("| yes |") and "NO: 2 events missing" in rows[1]
    assert "Last run: 2026-01-02" in text and "Apache Kafka 4.3.1" in text


def test_write_doc_refuses_a_doc_without_markers(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    record(results, _report("x"))
    doc = tmp_path / "d.md"
    doc.write_text("no markers here\n")
    with pytest.raises(ChaosError, match="markers"):
        write_doc(results, doc)


def test_render_summarizes_repeated_faults() -> None:
    faults = [{"kind": "kill -9", "at_acked": i, "ready_s": 3.0 + i} for i in range(5)]
    table = render([_report("kill -9 x5", faults=faults).to_dict() | {"ok": True}])
    assert "kill -9 x5; ready again after 3.0-7.0 s" in table


def test_faust_fixes_are_installed_and_pinned_to_the_fixed_release(monkeypatch) -> None:
    faust_fixes.apply()
    assert Consumer.perform_seek is faust_fixes._perform_seek_with_flow_stopped
    assert (AIOKafkaConsumerThread.seek_to_committed
            is faust_fixes._seek_to_committed_or_beginning)
    monkeypatch.setattr(faust, "__version__", "0.16.0")
    with pytest.raises(RuntimeError, match="re-check"):
        faust_fixes.apply()
