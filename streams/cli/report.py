"""``persona report``: per experiment variant, what the worker's counters say, with the
lift against control, its 95% interval and p-value (``models.marketing.stats``).

The figures come from a worker's ``/metrics`` (or a saved copy of it): users assigned,
recommendations, clicked recommendations, conversions and revenue per variant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from models.marketing.stats import Comparison, compare_means, compare_rates


@dataclass(frozen=True, slots=True)
class VariantFigures:
    """One variant's counts (sums over strategies) and the rates they give."""

    variant: str
    users: float
    recommendations: float
    clicks: float
    conversions: float
    revenue: float
    revenue_sumsq: float

    @property
    def ctr(self) -> float | None:
        return self.clicks / self.recommendations if self.recommendations else None

    @property
    def conversion_rate(self) -> float | None:
        return self.conversions / self.recommendations if self.recommendations else None

    @property
    def revenue_per_user(self) -> float | None:
        return self.revenue / self.users if self.users else None


def samples(text: str) -> Iterable[tuple[str, dict[str, str], float]]:
    """(sample name, labels, value) of every sample in a Prometheus text exposition."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            yield s.name, dict(s.labels), float(s.value)


def figures(text: str) -> dict[str, dict[str, VariantFigures]]:
    """{experiment: {variant: figures}} from a /metrics exposition."""
    per_variant: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    users: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    by_name = {
        "persona_recommendations_total": "recommendations",
        "persona_recommendation_clicks_total": "clicks",
        "persona_conversions_total": "conversions",
    }
    per_experiment = {
        "persona_experiment_users_total": "users",
        "persona_experiment_revenue_total": "revenue",
        "persona_experiment_revenue_sumsq_total": "revenue_sumsq",
    }
    for name, labels, value in samples(text):
        if name in by_name and "variant" in labels:
            per_variant[labels["variant"]][by_name[name]] += value
        elif name in per_experiment and "experiment" in labels:
            users[labels["experiment"]][labels["variant"]][per_experiment[name]] = value
    out: dict[str, dict[str, VariantFigures]] = {}
    for experiment, variants in users.items():
        out[experiment] = {
            v: VariantFigures(
                v, f.get("users", 0.0), per_variant[v]["recommendations"],
                per_variant[v]["clicks"], per_variant[v]["conversions"],
                f.get("revenue", 0.0), f.get("revenue_sumsq", 0.0),
            )
            for v, f in sorted(variants.items())
        }
    return out


@dataclass(frozen=True, slots=True)
class VariantReport:
    figures: VariantFigures
    ctr: Comparison | None  # None for the control itself
    conversion: Comparison | None
    revenue_per_user: Comparison | None


def report(variants: Mapping[str, VariantFigures], control: str) -> list[VariantReport]:
    """Each variant against ``control`` (control first)."""
    if control not in variants:
        raise ValueError(f"control variant {control!r} is not among {sorted(variants)}")
    a = variants[control]
    rows = [VariantReport(a, None, None, None)]
    for name, b in variants.items():
        if name == control:
            continue
        rows.append(VariantReport(
            b,
            compare_rates(a.clicks, a.recommendations, b.clicks, b.recommendations),
            compare_rates(a.conversions, a.recommendations, b.conversions, b.recommendations),
            compare_means(a.revenue, a.revenue_sumsq, a.users,
                          b.revenue, b.revenue_sumsq, b.users),
        ))
    return rows


def as_json(rows: list[VariantReport]) -> list[dict[str, Any]]:
    """The report as plain data (for --json)."""
    out = []
    for r in rows:
        f = r.figures
        d: dict[str, Any] = {**asdict(f), "ctr": f.ctr, "conversion_rate": f.conversion_rate,
                             "revenue_per_user": f.revenue_per_user}
        for key in ("ctr", "conversion", "revenue_per_user"):
            c = getattr(r, key)
            d[f"{key}_vs_control"] = None if c is None else asdict(c)
        out.append(d)
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2%}"


def _lift(c: Comparison | None) -> tuple[str, str]:
    """(lift with its 95% interval, p-value) as text; "control" for the control row."""
    if c is None or c.lift is None:
        return ("control" if c is None else "-"), "-"
    lo, hi = c.lift_ci or (None, None)
    ci = "" if lo is None or hi is None else f" ({lo:+.1%}, {hi:+.1%})"
    p = "-" if c.p_value is None else "<0.001" if c.p_value < 0.001 else f"{c.p_value:.3f}"
    return f"{c.lift:+.1%}{ci}", p


def render(console: Any, experiment: str, control: str, rows: list[VariantReport]) -> None:
    """Print one experiment's report as a rich table, then one line per comparison
    saying whether it is conclusive (``console``: a rich Console)."""
    from rich.table import Table

    t = Table(title=f"experiment {experiment} (control {control})", title_justify="left")
    for col in ("variant", "users", "recs", "CTR", "lift (95% CI)", "p",
                "conv. rate", "revenue/user", "lift (95% CI)", "p"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    notes = []
    for r in rows:
        f = r.figures
        ctr_l, ctr_p = _lift(r.ctr)
        rev_l, rev_p = _lift(r.revenue_per_user)
        rpu = "-" if f.revenue_per_user is None else f"{f.revenue_per_user:,.2f}"
        t.add_row(f.variant, f"{f.users:,.0f}", f"{f.recommendations:,.0f}", _pct(f.ctr),
                  ctr_l, ctr_p, _pct(f.conversion_rate), rpu, rev_l, rev_p)
        for what, c in (("CTR", r.ctr), ("revenue per user", r.revenue_per_user)):
            if c is not None:
                notes.append(f"{f.variant} {what}: {c.reason}")
    console.print(t)
    for note in notes:
        console.print(f"  {note}")
