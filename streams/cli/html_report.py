"""``persona report --html``: the experiment report as one self-contained HTML page.

Inline CSS and inline SVG charts drawn here: no script, font, image or stylesheet is
fetched, so the file can be mailed or archived as is. Every label value (experiment and
variant names come from the metrics page) is HTML-escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path

from models.marketing.stats import Comparison, mean_and_variance, normal_isf, t_isf, wilson_interval
from streams.cli.report import VariantFigures, VariantReport

Z95 = normal_isf(0.025)


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    """One experiment's rows of ``streams.cli.report.report`` and its control."""

    name: str
    control: str
    rows: Sequence[VariantReport]


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float
    ci: tuple[float, float] | None  # 95% interval drawn as an error bar


def ctr_interval(f: VariantFigures) -> tuple[float, float] | None:
    """Wilson 95% interval of one variant's CTR (the interval ``compare_rates`` uses)."""
    return wilson_interval(f.clicks, f.recommendations, Z95) if f.recommendations else None


def revenue_interval(f: VariantFigures) -> tuple[float, float] | None:
    """95% t interval of one variant's revenue per user, from the running sums."""
    if f.users < 2:
        return None
    try:
        mean, variance = mean_and_variance(f.revenue, f.revenue_sumsq, f.users, "variant")
    except ValueError:  # sums that cannot come from one set of values: no interval
        return None
    half = t_isf(0.025, f.users - 1) * math.sqrt(variance / f.users)
    return mean - half, mean + half


# ---------------------------------------------------------------- formatting
def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2%}"


def _money(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f}"


def _lift(c: Comparison | None) -> tuple[str, str]:
    """(lift with its 95% interval, p-value) cells; 'control' for the control row."""
    if c is None:
        return "control", "-"
    if c.lift is None:
        return "-", "-"
    ci = "" if c.lift_ci is None else f" ({c.lift_ci[0]:+.1%}, {c.lift_ci[1]:+.1%})"
    if c.p_value is None:
        p = "-"
    else:
        p = f"{c.p_value:.3f}" if c.p_value >= 0.001 else "<0.001"
    return f"{c.lift:+.1%}{ci}", p


# ---------------------------------------------------------------- charts
def _nice_max(v: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^k at or above ``v`` (a readable axis end)."""
    if v <= 0:
        return 1.0
    scale = 10 ** math.floor(math.log10(v))
    return next(m * scale for m in (1, 2, 2.5, 5, 10) if m * scale >= v * (1 - 1e-12))


def bar_chart(title: str, bars: Sequence[Bar], fmt: Callable[[float], str]) -> str:
    """An inline SVG bar chart with 95% error bars; every text escaped."""
    width, height = 520, 280
    left, right, top, bottom = 64, 16, 36, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = _nice_max(max([0.0] + [max(b.value, b.ci[1] if b.ci else 0.0) for b in bars]))

    def y(v: float) -> float:
        return top + plot_h * (1 - max(0.0, min(v, top_value)) / top_value)

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="20" class="title">{escape(title)}</text>']
    for i in range(5):
        v = top_value * i / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                     'class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" class="tick">{escape(fmt(v))}'
                     '</text>')
    slot = plot_w / max(1, len(bars))
    bar_w = min(72.0, slot * 0.6)
    for i, b in enumerate(bars):
        cx = left + slot * (i + 0.5)
        label = escape(b.label)
        short = escape(b.label if len(b.label) <= 18 else b.label[:17] + "\u2026")
        ci = "" if b.ci is None else f" (95% CI {fmt(b.ci[0])} to {fmt(b.ci[1])})"
        parts.append(f'<g><title>{label}: {escape(fmt(b.value) + ci)}</title>'
                     f'<rect x="{cx - bar_w / 2:.1f}" y="{y(b.value):.1f}" width="{bar_w:.1f}" '
                     f'height="{y(0) - y(b.value):.1f}" class="bar bar{i % 6}"/></g>')
        if b.ci is not None:
            lo, hi = y(b.ci[0]), y(b.ci[1])
            parts.append(f'<path d="M{cx:.1f},{lo:.1f}V{hi:.1f}M{cx - 8:.1f},{lo:.1f}'
                         f'h16M{cx - 8:.1f},{hi:.1f}h16" class="err"/>')
        label_y = (y(b.ci[1]) if b.ci else y(b.value)) - 6
        parts.append(f'<text x="{cx:.1f}" y="{label_y:.1f}" class="value">'
                     f'{escape(fmt(b.value))}</text>')
        parts.append(f'<text x="{cx:.1f}" y="{height - bottom + 18}" class="label">{short}'
                     '</text>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(0):.1f}" y2="{y(0):.1f}" '
                 'class="axis"/></svg>')
    return "".join(parts)


# ---------------------------------------------------------------- page
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#1f2328;background:#fff}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem}
.meta{color:#59636e;margin-top:0}
table{border-collapse:collapse;margin:.6rem 0}
th,td{padding:.3rem .7rem;border-bottom:1px solid #d1d9e0;text-align:right;white-space:nowrap}
th{background:#f6f8fa;font-weight:600}th:first-child,td:first-child{text-align:left}
tr.control td{background:#fbfbfb}
ul.notes{padding-left:1.2rem}.ok{color:#1a7f37}.warn{color:#9a6700}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}
.chart text{font-size:12px;fill:#1f2328}.chart .title{font-size:14px;font-weight:600}
.chart .tick{text-anchor:end;fill:#59636e}.chart .label,.chart .value{text-anchor:middle}
.chart .grid{stroke:#eaeef2}.chart .axis{stroke:#59636e}
.chart .err{stroke:#1f2328;stroke-width:1.5;fill:none}
.bar0{fill:#8c959f}.bar1{fill:#0969da}.bar2{fill:#bf8700}.bar3{fill:#1a7f37}
.bar4{fill:#8250df}.bar5{fill:#cf222e}
footer{margin-top:2.5rem;color:#59636e;font-size:12px}
"""

_COLUMNS = ("variant", "users", "recommendations", "CTR", "CTR lift (95% CI)", "p",
            "conversion rate", "conv. lift (95% CI)", "p", "revenue/user",
            "rev./user lift (95% CI)", "p")


def _experiment_section(e: ExperimentReport) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in _COLUMNS)
    body, notes = [], []
    for r in e.rows:
        f = r.figures
        cells = [f.variant, f"{f.users:,.0f}", f"{f.recommendations:,.0f}", _pct(f.ctr),
                 *_lift(r.ctr), _pct(f.conversion_rate), *_lift(r.conversion),
                 _money(f.revenue_per_user), *_lift(r.revenue_per_user)]
        css = ' class="control"' if r.ctr is None else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
        for what, c in (("CTR", r.ctr), ("conversion rate", r.conversion),
                        ("revenue per user", r.revenue_per_user)):
            if c is not None:
                mark = "ok" if c.conclusive else "warn"
                notes.append(f'<li class="{mark}">{escape(f.variant)} {what}: '
                             f"{escape(c.reason)}</li>")
    figs = [r.figures for r in e.rows]
    ctr = bar_chart("CTR per variant (95% CI)",
                    [Bar(f.variant, f.ctr or 0.0, ctr_interval(f)) for f in figs],
                    lambda v: f"{v:.2%}")
    rpu = bar_chart("Revenue per user per variant (95% CI)",
                    [Bar(f.variant, f.revenue_per_user or 0.0, revenue_interval(f))
                     for f in figs],
                    lambda v: f"{v:,.2f}")
    return (f"<section><h2>Experiment {escape(e.name)} "
            f"<small>(control {escape(e.control)})</small></h2>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f'<ul class="notes">{"".join(notes)}</ul>'
            f'<div class="charts">{ctr}{rpu}</div></section>')


def render_html(experiments: Sequence[ExperimentReport], source: str,
                generated: datetime) -> str:
    """The whole report page."""
    if generated.tzinfo is None:
        raise ValueError("generated must be timezone-aware")
    sections = "".join(_experiment_section(e) for e in experiments)
    stamp = generated.isoformat(timespec="seconds")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>persona experiment report</title>"
        f"<style>{_CSS}</style></head><body>"
        "<h1>persona experiment report</h1>"
        f'<p class="meta">From {escape(source)}, {escape(stamp)}.</p>'
        f"{sections}"
        "<footer>CTR and conversion rate: recommendations clicked or converted, per "
        "recommendation served; lifts against control with a pooled two-proportion z-test "
        "(Newcombe interval), revenue per user with Welch's t-test. A result is conclusive "
        "with p &lt; 0.05 and at least 100 users and 10 successes and 10 failures per arm. "
        "Error bars: Wilson 95% interval of each CTR, t interval of each revenue per user."
        "</footer></body></html>\n"
    )


def write_html(path: Path, experiments: Sequence[ExperimentReport], source: str,
               generated: datetime) -> None:
    path.write_text(render_html(experiments, source, generated), encoding="utf-8")
