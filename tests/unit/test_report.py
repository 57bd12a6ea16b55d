"""persona report: figures from a /metrics page, compared against control, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models.marketing.stats import compare_means, compare_rates
from streams.cli.report import figures, report

PAGE = Path(__file__).with_name("report_metrics.txt")
ROOT = Path(__file__).resolve().parents[2]


def test_figures_sum_strategies_per_variant() -> None:
    got = figures(PAGE.read_text())
    assert set(got) == {"e1"} and set(got["e1"]) == {"A", "B"}
    a, b = got["e1"]["A"], got["e1"]["B"]
    assert (a.users, a.recommendations, a.clicks, a.conversions) == (800, 6000, 300, 30)
    assert (b.revenue, b.revenue_sumsq) == (1500, 80000)
    assert a.ctr == pytest.approx(0.05) and b.ctr == pytest.approx(0.065)
    assert a.revenue_per_user == pytest.approx(1.5)


def test_report_compares_each_variant_with_control() -> None:
    rows = report(figures(PAGE.read_text())["e1"], "A")
    assert [r.figures.variant for r in rows] == ["A", "B"]
    assert rows[0].ctr is None
    assert rows[1].ctr == compare_rates(300, 6000, 390, 6000)
    assert rows[1].revenue_per_user == compare_means(1200, 60000, 800, 1500, 80000, 810)
    assert rows[1].ctr is not None and rows[1].ctr.conclusive
    assert rows[1].revenue_per_user is not None and not rows[1].revenue_per_user.conclusive
    with pytest.raises(ValueError, match="control"):
        report(figures(PAGE.read_text())["e1"], "Z")


def _persona(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "160"})


def test_cli_prints_the_lift_and_says_when_it_cannot_conclude() -> None:
    res = _persona("report", "--metrics-file", str(PAGE), "--control", "A")
    assert res.returncode == 0, res.stderr
    assert "+30.0%" in res.stdout and "too small to conclude" in res.stdout
    res = _persona("report", "--metrics-file", str(PAGE), "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["e1"]["control"] == "A"  # the first variant without a configured control
    b = data["e1"]["variants"][1]
    assert b["variant"] == "B" and b["ctr_vs_control"]["lift"] == pytest.approx(0.3)
    missing = _persona("report", "--metrics-file", str(PAGE), "--experiment", "nope")
    assert missing.returncode == 1 and "no experiment figures" in missing.stderr
