"""``persona segments``, ``report`` and ``top``: what a running worker found and
counted, for marketing and operators."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from streams.cli.common import console, fail, load_settings, out, wide
from streams.settings import Settings, SettingsError

if TYPE_CHECKING:
    from streams.cli.report import VariantReport


def register(app: typer.Typer) -> None:
    """Add ``segments``, ``report`` and ``top`` to the root command."""
    app.command("segments")(segments_cmd)
    app.command("report")(report_cmd)
    app.command("top")(top_cmd)


def segments_cmd(
    url: str = typer.Option("", help="A worker's base URL (default: "
                            "http://PERSONA_WEB_HOST:PERSONA_WEB_PORT)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the segments the worker found, with their sizes and a plain-words description
    (activity, spend level, favourite categories)."""
    import json
    import urllib.request

    from rich.table import Table

    s = load_settings()
    base = (url or f"http://{s.web_host}:{s.web_port}").rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/segments", timeout=10) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        raise fail(f"cannot read {base}/segments: {exc}") from None
    if as_json:
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return
    if not body.get("enabled"):
        raise fail("segmentation is off on that worker (PERSONA_SEGMENTS=0)")
    t = Table(title="segments", title_justify="left")
    t.add_column("segment")
    t.add_column("users", justify="right")
    t.add_column("description")
    for entry in body["segments"]:
        t.add_row(entry["name"], f"{entry['size']:,}", entry["description"])
    out.print(t)


def report_cmd(
    url: str = typer.Option("", help="A worker's metrics URL (default: "
                            "http://PERSONA_WEB_HOST:PERSONA_WEB_PORT/metrics)."),
    metrics_file: Path | None = typer.Option(None, "--metrics-file",
                                             help="Read a saved /metrics page instead."),
    experiment: str = typer.Option("", help="Experiment to report (default: every one)."),
    control: str = typer.Option("", help="Control variant (default: the experiment's "
                                "control in PERSONA_EXPERIMENTS_FILE, else the first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    html: Path | None = typer.Option(None, "--html", help="Also write the report, with "
                                     "charts, as one self-contained HTML file here."),
) -> None:
    """Per experiment variant: users, recommendations, CTR, conversion rate, revenue per
    user, and the lift against control with its 95% interval and p-value; says when the
    sample is too small to conclude."""
    import json

    from streams.cli.report import as_json as report_json
    from streams.cli.report import render

    s = load_settings()
    text, source = _metrics_text(s, url, metrics_file)
    out_json = {}
    sections = []
    # each experiment's table prints as soon as it is computed, before a later one fails
    for name, ctrl, rows in _report_sections(s, text, experiment, control):
        sections.append((name, ctrl, rows))
        if as_json:
            out_json[name] = {"control": ctrl, "variants": report_json(rows)}
        else:
            render(out, name, ctrl, rows)
    if as_json:
        sys.stdout.write(json.dumps(out_json, indent=2) + "\n")
    if html is not None:
        _write_html_report(html, sections, source)


def _metrics_text(s: Settings, url: str, metrics_file: Path | None) -> tuple[str, str]:
    """The /metrics exposition to report on, and where it came from (file or URL)."""
    import urllib.request

    if metrics_file is not None:
        try:
            return metrics_file.read_text(encoding="utf-8"), str(metrics_file)
        except OSError as exc:
            raise fail(f"{metrics_file}: {exc.strerror}") from None
    target = url or f"http://{s.web_host}:{s.web_port}/metrics"
    try:
        with urllib.request.urlopen(target, timeout=10) as resp:
            return resp.read().decode("utf-8"), target
    except OSError as exc:
        raise fail(f"cannot read {target}: {exc}") from None


def _report_sections(s: Settings, text: str, experiment: str,
                     control: str) -> Iterator[tuple[str, str, list[VariantReport]]]:
    """(experiment, control variant, report rows) for each experiment to report."""
    from streams.cli.report import figures, report

    try:
        configured = s.read_experiments()
    except SettingsError as exc:
        raise fail(str(exc), 2) from None
    found = figures(text)
    if experiment:
        found = {experiment: found[experiment]} if experiment in found else {}
    if not found:
        raise fail("no experiment figures in the metrics (is PERSONA_EXPERIMENTS_FILE set "
                   "on the worker?)")
    for name, variants in found.items():
        ctrl = control or (configured[name].control if name in configured else next(iter(variants)))
        try:
            rows = report(variants, ctrl)
        except ValueError as exc:
            raise fail(str(exc)) from None
        yield name, ctrl, rows


def _write_html_report(html: Path, sections: list[tuple[str, str, list[VariantReport]]],
                       source: str) -> None:
    """The report with charts, as one self-contained HTML file."""
    from datetime import UTC, datetime

    from streams.cli.html_report import ExperimentReport, write_html

    try:
        write_html(html, [ExperimentReport(*section) for section in sections], source,
                   datetime.now(UTC))
    except OSError as exc:
        raise fail(f"{html}: {exc.strerror}") from None
    console.print(f"HTML report written to {html}")


def top_cmd(
    url: str = typer.Option("", help="A worker's metrics URL (default: "
                            "http://PERSONA_WEB_HOST:PERSONA_WEB_PORT/metrics)."),
    interval: float = typer.Option(1.0, min=0.1, help="Seconds between scrapes."),
    once: bool = typer.Option(False, "--once", help="Render one frame (totals since the "
                              "worker started) and exit; exit code 1 if it is unreachable."),
    iterations: int | None = typer.Option(None, min=1, help="Stop after N frames (default: "
                                          "until Ctrl-C)."),
) -> None:
    """Live dashboard of one worker: events/s, lag, dead letters, recommendations, CTR and
    conversion by strategy and variant, bids, spend and budgets, kill switch. Exit code 1
    when the last scrape failed."""
    from streams.cli.top import run

    s = load_settings()
    target = url or f"http://{s.web_host}:{s.web_port}/metrics"
    # piped output gets room for the side-by-side panels (rich assumes 80 without a terminal)
    screen = wide(140)
    code = run(target, screen, interval=interval, iterations=1 if once else iterations,
               live=not once)
    raise typer.Exit(code)
