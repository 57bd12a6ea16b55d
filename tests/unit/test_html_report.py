"""persona report --html: a self-contained page with the report's figures, its charts, and
every label escaped; the per-variant intervals against scipy."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from scipy import stats

from models.marketing.stats import compare_means, compare_rates
from streams.cli.html_report import (
    Bar,
    ExperimentReport,
    bar_chart,
    ctr_interval,
    render_html,
    revenue_interval,
)
from streams.cli.report import VariantFigures, figures, report
from streams.metrics import build_metrics

ROOT = Path(__file__).resolve().parents[2]
BAD = "<b>x</b>"  # a variant name that is markup, as the worker would expose it
EXPERIMENT = 'e&"1"'


def page() -> str:
    """A /metrics page from the worker's own declarations, so the label values go through
    Prometheus' text escaping exactly as in production."""
    m = build_metrics(experiments={EXPERIMENT: ["A", BAD]})
    for variant, recs, clicks, conv, users, revenue, sumsq in (
        ("A", 6000, 300, 30, 800, 1200, 60000),
        (BAD, 6000, 390, 45, 810, 1500, 80000),
    ):
        m.recommendations.labels(strategy="hybrid", variant=variant).inc(recs)
        m.recommendation_clicks.labels(strategy="hybrid", variant=variant).inc(clicks)
        m.conversions.labels(strategy="hybrid", variant=variant).inc(conv)
        m.experiment_users.labels(experiment=EXPERIMENT, variant=variant).inc(users)
        m.experiment_revenue.labels(experiment=EXPERIMENT, variant=variant).inc(revenue)
        m.experiment_revenue_sumsq.labels(experiment=EXPERIMENT, variant=variant).inc(sumsq)
    return generate_latest(m.registry).decode()


def _persona(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "160"})


@pytest.fixture(scope="module")
def html(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("html")
    saved, out = folder / "metrics.txt", folder / "report.html"
    saved.write_text(page())
    res = _persona("report", "--metrics-file", str(saved), "--control", "A", "--html", str(out))
    assert res.returncode == 0, res.stderr
    assert f"HTML report written to {out}" in res.stderr
    return out.read_text(encoding="utf-8")


def cells(html: str, variant: str) -> list[str]:
    """The table cells of one variant's row."""
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", html):
        tds = re.findall(r"<td>(.*?)</td>", tr)
        if tds and tds[0] == variant:
            return tds
    raise AssertionError(f"no row for {variant!r}")


def test_the_report_table_is_in_the_page(html: str) -> None:
    ctr = compare_rates(300, 6000, 390, 6000)
    rpu = compare_means(1200, 60000, 800, 1500, 80000, 810)
    assert ctr.lift_ci is not None and rpu.lift_ci is not None
    assert cells(html, "A") == ["A", "800", "6,000", "5.00%", "control", "-", "0.50%",
                                "control", "-", "1.50", "control", "-"]
    row = cells(html, "&lt;b&gt;x&lt;/b&gt;")
    assert row[1:4] == ["810", "6,000", "6.50%"]
    assert row[4] == f"{ctr.lift:+.1%} ({ctr.lift_ci[0]:+.1%}, {ctr.lift_ci[1]:+.1%})"
    assert row[4] == "+30.0% (+12.3%, +50.5%)" and row[5] == "&lt;0.001"
    assert row[6] == "0.75%" and row[9] == "1.85"
    assert row[10] == f"{rpu.lift:+.1%} ({rpu.lift_ci[0]:+.1%}, {rpu.lift_ci[1]:+.1%})"
    assert row[11] == f"{rpu.p_value:.3f}"
    # the verdicts: CTR conclusive, revenue per user too small a sample
    assert "CTR: b is higher than a: significant" in html
    assert "revenue per user: too small to conclude" in html


def test_the_charts_are_inline_svg_with_error_bars(html: str) -> None:
    svgs = re.findall(r"<svg .*?</svg>", html)
    assert len(svgs) == 2
    ctr_chart, rpu_chart = svgs
    assert "CTR per variant" in ctr_chart and "Revenue per user per variant" in rpu_chart
    for chart in svgs:
        assert chart.count("<rect ") == 2 and chart.count('class="err"') == 2
    assert ">6.50%</text>" in ctr_chart and ">1.85</text>" in rpu_chart
    # bar heights are proportional to the values (CTR 6.5% over 5%)
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', ctr_chart)]
    assert heights[1] / heights[0] == pytest.approx(6.5 / 5, rel=1e-2)


def test_nothing_external_and_every_label_escaped(html: str) -> None:
    lower = html.lower()
    for external in ("<script", "src=", "href=", "http://", "https://", "url(", "@import",
                     "<link", "<img", "<iframe"):
        assert external not in lower, external
    assert BAD not in html and "<b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert "e&amp;&quot;1&quot;" in html and EXPERIMENT not in html


def test_intervals_match_scipy() -> None:
    f = VariantFigures("A", users=800, recommendations=6000, clicks=300, conversions=30,
                       revenue=0, revenue_sumsq=0)
    ci = stats.binomtest(300, 6000).proportion_ci(0.95, method="wilson")
    assert ctr_interval(f) == pytest.approx((ci.low, ci.high), rel=1e-9)
    values = [0.0, 0.0, 3.0, 10.0, 25.0, 0.0, 7.5, 1.0]
    g = VariantFigures("B", users=len(values), recommendations=0, clicks=0, conversions=0,
                       revenue=sum(values), revenue_sumsq=sum(v * v for v in values))
    mean = sum(values) / len(values)
    expected = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    assert revenue_interval(g) == pytest.approx(expected, rel=1e-9)
    assert ctr_interval(VariantFigures("C", 0, 0, 0, 0, 0, 0)) is None
    assert revenue_interval(VariantFigures("C", 1, 0, 0, 0, 5.0, 25.0)) is None


def test_bar_chart_escapes_and_shortens_labels() -> None:
    svg = bar_chart('a <"chart">', [Bar("<i>" + "y" * 30, 0.5, (0.4, 0.6))], str)
    assert "<i>" not in svg and "&lt;i&gt;" in svg and "&lt;&quot;chart&quot;&gt;" in svg
    assert "\u2026</text>" in svg  # the axis label is cut, the tooltip keeps it whole
    assert "y" * 30 in svg


def test_render_html_needs_an_aware_time_and_escapes_the_control() -> None:
    rows = report(figures(page())[EXPERIMENT], "A")
    with pytest.raises(ValueError, match="timezone"):
        render_html([ExperimentReport(EXPERIMENT, "A", rows)], "x", datetime(2026, 1, 1))
    rows = report(figures(page())[EXPERIMENT], BAD)  # the markup-named variant as control
    doc = render_html([ExperimentReport(EXPERIMENT, BAD, rows)], "<saved>.txt",
                      datetime(2026, 1, 1, tzinfo=UTC))
    assert doc.startswith("<!DOCTYPE html>") and "2026-01-01T00:00:00+00:00" in doc
    assert "(control &lt;b&gt;x&lt;/b&gt;)" in doc and "&lt;saved&gt;.txt" in doc
    assert BAD not in doc and "<saved>" not in doc
