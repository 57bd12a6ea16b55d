"""persona top: frames built from two fixed scrapes one second apart, the histogram
quantile, the refresh loop with a fake clock, and the command."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from rich.console import Console

from streams.cli.top import Scrape, View, frame, histogram_quantile, run
from streams.metrics import build_metrics

ROOT = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:6066/metrics"
LAG_FIRST = [0.003] * 50 + [0.04] * 40 + [3.0] * 12
LAG_SECOND = [0.003] * 90 + [0.04] * 70 + [3.0] * 15  # observed between the two scrapes


def page(second: bool, kill: bool = False) -> str:
    """A worker's /metrics (the real metric declarations) at t=100 s, or at t=101 s."""
    m = build_metrics(campaigns=("spring", "summer"), experiments={"e1": ["A", "B"]})

    def counts(first: float, then: float) -> float:
        return then if second else first

    m.events.labels(topic="clicks", outcome="accepted").inc(counts(1000, 1237))
    m.events.labels(topic="purchases", outcome="accepted").inc(counts(200, 212))
    m.events.labels(topic="clicks", outcome="invalid").inc(counts(10, 13))
    # older than the user's erase, arrived after it: dropped (a final outcome)
    m.events.labels(topic="clicks", outcome="erased").inc(counts(4, 6))
    # a flag counted on top of the final outcome (some of the accepted clicks)
    m.events.labels(topic="clicks", outcome="rate_limited").inc(counts(50, 70))
    m.dead_letters.labels(error="bad_json").inc(counts(8, 11))
    m.dead_letters.labels(error="missing_field").inc(2)
    for v in LAG_FIRST + (LAG_SECOND if second else []):
        m.event_lag_seconds.observe(v)
    m.recommendations.labels(strategy="hybrid", variant="A").inc(counts(5000, 5300))
    m.recommendations.labels(strategy="popularity", variant="A").inc(counts(1000, 1100))
    m.recommendations.labels(strategy="hybrid", variant="B").inc(counts(6000, 6200))
    m.recommendation_clicks.labels(strategy="hybrid", variant="A").inc(counts(240, 260))
    m.recommendation_clicks.labels(strategy="popularity", variant="A").inc(counts(60, 60))
    m.recommendation_clicks.labels(strategy="hybrid", variant="B").inc(counts(390, 403))
    m.conversions.labels(strategy="hybrid", variant="A").inc(30)
    m.conversions.labels(strategy="hybrid", variant="B").inc(counts(45, 62))
    for variant, users, revenue in (("A", 800, 1200), ("B", 810, 1500)):
        m.experiment_users.labels(experiment="e1", variant=variant).inc(users)
        m.experiment_revenue.labels(experiment="e1", variant=variant).inc(revenue)
    m.ad_bids.labels(outcome="bid").inc(counts(300, 320))
    m.ad_bids.labels(outcome="paced").inc(counts(40, 43))
    m.ad_spend.labels(campaign="spring").inc(counts(12.5, 13.75))
    m.ad_spend.labels(campaign="summer").inc(3.0)
    m.ad_impressions.labels(campaign="spring").inc(counts(250, 260))
    m.ad_clicks.labels(campaign="spring").inc(counts(10, 13))
    m.ad_budget_remaining.labels(campaign="spring", period="daily").set(counts(87.5, 86.25))
    m.ad_budget_remaining.labels(campaign="spring", period="total").set(-1)
    m.ad_budget_remaining.labels(campaign="summer", period="daily").set(-1)
    m.ad_budget_remaining.labels(campaign="summer", period="total").set(997)
    m.ad_kill_switch.set(1 if kill else 0)
    return generate_latest(m.registry).decode()


def render(renderable: object) -> str:
    console = Console(record=True, width=140)
    console.print(renderable)
    return console.export_text()


def row(text: str, pattern: str) -> re.Match[str]:
    """The first line matching ``pattern`` (panels sit side by side: search, not equal)."""
    found = re.search(pattern, text)
    assert found, f"no line matches {pattern!r} in:\n{text}"
    return found


def test_frame_from_two_scrapes_shows_rates_and_the_key_figures() -> None:
    text = render(frame(Scrape.parse(page(False), 100.0), Scrape.parse(page(True), 101.0), URL))
    assert "rates over the last 1.0 s" in text
    # events/s: (1237 - 1000) / 1 s accepted clicks, 3/s invalid, 240/s for the topic;
    # 20/s of them rate-limited, not in the sum (a flag on top of the outcome)
    row(text, r"clicks\s+237\.0\s+3\.0\s+0\.0\s+0\.0\s+2\.0\s+242\.0\s+20\.0")
    row(text, r"purchases\s+12\.0\s+0\.0")
    row(text, r"all\s+249\.0\s+3\.0\s+0\.0\s+0\.0\s+2\.0\s+254\.0\s+20\.0")
    # dead letters: 3 in the last second of 252 events; 11 + 2 of 1,462 since start
    # (rate_limited is not counted as events a second time)
    row(text, r"dead letters\s+3\.0/s\s+13\b")
    row(text, r"dead-letter ratio\s+1\.18%\s+0\.89%")
    # rate-limited clicks and purchases: 20 of 252 in the last second, 70 of 1,462 in all
    row(text, r"rate-limited\s+20\.0/s\s+70\b")
    row(text, r"rate-limited ratio\s+7\.87%\s+4\.77%")
    row(text, r"bad_json\s+11\b")
    row(text, r"missing_field\s+2\b")
    # recommendations/s: 300 + 100 + 200; per strategy; CTR by variant over all counts
    row(text, r"recommendations\s+600\.0/s\s+12,600\b")
    row(text, r"hybrid\s+500\.0\s+11,500\s+5\.77%")
    row(text, r"e1 / A\s+800\s+400\.0\s+6,400\s+5\.00%\s+0\.47%\s+1\.50")
    row(text, r"e1 / B\s+810\s+200\.0\s+6,200\s+6\.50%\s+1\.00%\s+1\.85")
    # bids and campaigns: 1.25 spent in the second, daily budget left, ad CTR 13 / 260
    row(text, r"bid\s+20\.0\s+320\b")
    row(text, r"paced\s+3\.0\s+43\b")
    row(text, r"spring\s+13\.75\s+1\.25\s+86\.25\s+no cap\s+260\s+13\s+5\.00%")
    row(text, r"summer\s+3\.00\s+0\.00\s+no cap\s+997\.00")
    assert "kill switch off" in text


def test_lag_quantiles_come_from_the_bucket_increase() -> None:
    text = render(frame(Scrape.parse(page(False), 100.0), Scrape.parse(page(True), 101.0), URL))
    # last second: 90 of 175 observations in (1 ms, 5 ms]: p50 = 1 + 4 * 87.5 / 90 ms
    # = 4.89 ms; p99 (rank 173.25) in (2.5 s, 5 s]: 2.5 + 2.5 * 13.25 / 15 = 4.708 s.
    # Since start, 277: p50 = 1 + 4 * 138.5 / 140 = 4.96 ms, p99 = 2.5 + 2.5 * 24.23 / 27
    row(text, r"event lag p50\s+4\.9 ms\s+5\.0 ms")
    row(text, r"event lag p99\s+4\.71 s\s+4\.74 s")


def test_first_frame_shows_totals() -> None:
    text = render(frame(None, Scrape.parse(page(True), 100.0), URL))
    assert "totals since the worker started" in text
    row(text, r"clicks\s+1,237\s+13\s+0\s+0\s+6\s+1,256\s+70\b")
    row(text, r"dead letters\s+-\s+13\b")
    row(text, r"spring\s+13\.75\s+-\s+86\.25")
    assert "237.0" not in text


def test_kill_switch_and_no_experiment() -> None:
    m = build_metrics()
    m.ad_kill_switch.set(1)
    text = render(frame(None, Scrape.parse(generate_latest(m.registry).decode(), 0.0), URL))
    assert "kill switch ON: no bids" in text
    assert "no experiment configured" in text and "none served yet" in text


def test_counter_reset_counts_the_new_value() -> None:
    before = Scrape.parse(page(True), 100.0)
    after = Scrape.parse(page(False), 102.0)  # counters went down: the worker restarted
    rates = View(before, after).rate("persona_events_total", "topic", "outcome")
    assert rates[("clicks", "accepted")] == pytest.approx(1000 / 2)


@pytest.mark.parametrize(("q", "buckets", "expected"), [
    (0.5, {0.1: 2, 1.0: 6, float("inf"): 6}, 0.1 + 0.9 * (3 - 2) / (6 - 2)),
    (0.25, {0.1: 2, 1.0: 6, float("inf"): 6}, 0.1 * 1.5 / 2),
    (0.99, {1.0: 1, 5.0: 1, float("inf"): 10}, 5.0),  # in +Inf: the largest finite bound
    (0.5, {0.1: 0, 1.0: 0, float("inf"): 0}, None),
    (0.5, {}, None),
])
def test_histogram_quantile(q: float, buckets: dict[float, float],
                            expected: float | None) -> None:
    got = histogram_quantile(q, buckets)
    assert got == (None if expected is None else pytest.approx(expected))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_loop_scrapes_at_each_interval_and_draws_rates() -> None:
    pages = iter([page(False), page(True)])
    clock = FakeClock()
    console = Console(record=True, width=140)
    code = run(URL, console, interval=1.0, iterations=2, live=False,
               get=lambda url, timeout: next(pages), clock=clock, sleep=clock.sleep)
    text = console.export_text()
    assert code == 0 and clock.slept == [1.0]
    assert "totals since the worker started" in text and "rates over the last 1.0 s" in text
    row(text, r"clicks\s+237\.0")


def test_unreachable_worker_is_said_and_retried() -> None:
    calls: list[str] = []

    def get(url: str, timeout: float) -> str:
        calls.append(url)
        if len(calls) == 1:
            raise OSError("Connection refused")
        return page(True)

    clock = FakeClock()
    console = Console(record=True, width=140)
    code = run(URL, console, iterations=2, live=False, get=get, clock=clock,
               sleep=clock.sleep)
    text = console.export_text()
    assert code == 0 and len(calls) == 2
    assert "worker unreachable" in text and "Connection refused" in text
    assert "retrying" in text and "1,237" in text


def test_once_against_an_unreachable_worker_exits_1() -> None:
    def get(url: str, timeout: float) -> str:
        raise OSError("Connection refused")

    console = Console(record=True, width=140)
    assert run(URL, console, iterations=1, live=False, get=get) == 1
    text = console.export_text()
    assert "worker unreachable" in text and "retrying" not in text


def test_a_page_that_is_not_metrics_is_said() -> None:
    console = Console(record=True, width=140)
    code = run(URL, console, iterations=1, live=False, get=lambda url, t: "<html>oops</html>")
    assert code == 1 and "not a Prometheus text page" in console.export_text()


def _persona(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "140"})


def test_cli_once(tmp_path: Path) -> None:
    saved = tmp_path / "metrics.txt"
    saved.write_text(page(True))
    res = _persona("top", "--once", "--url", saved.as_uri())
    assert res.returncode == 0, res.stderr
    row(res.stdout, r"e1 / B\s+810\s+-\s+6,200\s+6\.50%")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = _persona("top", "--once", "--url", f"http://127.0.0.1:{port}/metrics")
    assert res.returncode == 1
    assert "worker unreachable" in res.stdout and f"127.0.0.1:{port}" in res.stdout


def test_the_cli_sums_every_final_outcome_the_worker_counts() -> None:
    """A new outcome (as ``erased`` was) must reach the panels and the demo's wait for
    every event, or those events look lost."""
    from streams.cli import demo, top
    from streams.metrics import OUTCOMES

    final = tuple(o for o in OUTCOMES if o != top.LIMITED)
    assert top.OUTCOMES == final
    assert demo.ALL_OUTCOMES == final
