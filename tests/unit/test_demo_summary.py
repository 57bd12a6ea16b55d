"""The demo's replay summary, from a worker's real metrics page: the rate-limited events
are shown beside accepted and recommendation events, so a gap between them is explained."""

from __future__ import annotations

import re

from prometheus_client import generate_latest
from rich.console import Console

from streams.cli.demo import replay_summary
from streams.local.worker_proc import parse_metrics
from streams.metrics import build_metrics

LIMITED = "rate-limited (counted, not learned, not served)"


def row(text: str, figure: str, value: str) -> bool:
    """Whether the table in ``text`` has a row ``figure`` with the value ``value``."""
    return re.search(rf"│ {re.escape(figure)}\s+│\s+{re.escape(value)} │", text) is not None


def render(renderable: object) -> str:
    console = Console(record=True, width=120)
    console.print(renderable)
    return console.export_text()


def test_the_summary_shows_accepted_recommendations_and_rate_limited_events() -> None:
    m = build_metrics()
    m.events.labels(topic="clicks", outcome="accepted").inc(44_625)
    m.events.labels(topic="purchases", outcome="accepted").inc(55_375)
    m.events.labels(topic="clicks", outcome="rate_limited").inc(2_000)
    m.events.labels(topic="purchases", outcome="rate_limited").inc(3_822)
    m.recommendations.labels(strategy="hybrid", variant="B").inc(94_178)
    m.dead_letters.labels(error="bad_price").inc()
    text = render(replay_summary(parse_metrics(generate_latest(m.registry).decode()),
                                 100_005, 20.0))
    assert row(text, "events replayed", "100,005")
    assert row(text, "accepted", "100,000")
    assert row(text, "recommendation events", "94,178")
    # counted on top of accepted: accepted - rate-limited = recommendation events
    assert row(text, LIMITED, "5,822")
    assert row(text, "dead letters", "bad_price: 1")


def test_a_replay_with_nothing_limited_says_0() -> None:
    m = build_metrics()
    m.events.labels(topic="clicks", outcome="accepted").inc(3_000)
    m.recommendations.labels(strategy="hybrid", variant="B").inc(3_000)
    text = render(replay_summary(parse_metrics(generate_latest(m.registry).decode()),
                                 3_000, 1.0))
    assert row(text, LIMITED, "0")
