"""``persona top``: a live terminal view of one worker's ``/metrics``.

Every panel is built by a pure function from two parsed scrapes (rates are the counters'
increase between them); ``run`` only fetches pages, times them and redraws.
"""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streams.cli.report import figures, samples

Key = tuple[str, ...]
Series = tuple[tuple[Mapping[str, str], float], ...]

LAG = "persona_event_lag_seconds"


@dataclass(frozen=True, slots=True)
class Scrape:
    """One /metrics page, parsed, and when it was read (monotonic seconds)."""

    text: str
    at: float
    series: Mapping[str, Series] = field(repr=False)

    @classmethod
    def parse(cls, text: str, at: float) -> Scrape:
        grouped: dict[str, list[tuple[Mapping[str, str], float]]] = defaultdict(list)
        for name, labels, value in samples(text):
            grouped[name].append((labels, value))
        return cls(text, at, {name: tuple(s) for name, s in grouped.items()})

    def by(self, name: str, *labels: str) -> dict[Key, float]:
        """Sum of ``name`` per value of ``labels`` (() sums everything)."""
        out: dict[Key, float] = defaultdict(float)
        for lab, value in self.series.get(name, ()):
            out[tuple(lab.get(k, "") for k in labels)] += value
        return dict(out)

    def total(self, name: str) -> float:
        return self.by(name).get((), 0.0)


@dataclass(frozen=True, slots=True)
class View:
    """Two scrapes of one worker: rates between them, or totals in the first frame."""

    prev: Scrape | None
    cur: Scrape

    @property
    def seconds(self) -> float | None:
        if self.prev is None or self.cur.at <= self.prev.at:
            return None
        return self.cur.at - self.prev.at

    @property
    def unit(self) -> str:
        return "total" if self.seconds is None else "/s"

    def increase(self, name: str, *labels: str) -> dict[Key, float]:
        """Counter increase per label values since the previous scrape (everything
        counted so far in the first frame). A value that went down means the worker
        restarted: its whole value is the increase, as in Prometheus."""
        now = self.cur.by(name, *labels)
        if self.seconds is None or self.prev is None:
            return now
        before = self.prev.by(name, *labels)
        return {k: v - before.get(k, 0.0) if before.get(k, 0.0) <= v else v
                for k, v in now.items()}

    def rate(self, name: str, *labels: str) -> dict[Key, float]:
        """Per second between the scrapes; totals in the first frame."""
        seconds = self.seconds
        inc = self.increase(name, *labels)
        return inc if seconds is None else {k: v / seconds for k, v in inc.items()}


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile of cumulative bucket counts ``{upper bound: count}``, interpolated
    linearly inside its bucket as Prometheus' ``histogram_quantile`` does (a quantile in
    the +Inf bucket is the largest finite bound). None without observations.

    >>> histogram_quantile(0.5, {0.1: 2, 1.0: 6, float("inf"): 6})
    0.325
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for upper in bounds:
        count = buckets[upper]
        if count >= rank:
            if upper == float("inf"):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def lag_quantiles(view: View, qs: tuple[float, ...] = (0.5, 0.99)) -> tuple[
        tuple[float | None, ...], tuple[float | None, ...]]:
    """Event lag quantiles over the last interval and since the worker started."""
    def buckets(counts: Mapping[Key, float]) -> dict[float, float]:
        return {float(le): v for (le,), v in counts.items()}

    interval = buckets(view.increase(f"{LAG}_bucket", "le"))
    total = buckets(view.cur.by(f"{LAG}_bucket", "le"))
    return (tuple(histogram_quantile(q, interval) for q in qs),
            tuple(histogram_quantile(q, total) for q in qs))


# ---------------------------------------------------------------- formatting
def _count(v: float) -> str:
    return f"{v:,.0f}"


def _rate(view: View, v: float) -> str:
    """A rate, or the total in the first frame (for cells with no total beside them)."""
    return _count(v) if view.seconds is None else f"{v:,.1f}"


def _per_s(view: View, v: float, fmt: str = ",.1f") -> str:
    """A rate beside its total: nothing to show in the first frame."""
    return "-" if view.seconds is None else format(v, fmt)


def _pct(num: float, den: float) -> str:
    return f"{num / den:.2%}" if den else "-"


def _money(v: float) -> str:
    return f"{v:,.2f}"


def _seconds(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:,.1f} ms" if v < 1 else f"{v:,.2f} s"


def _table(title: str, *columns: str) -> Table:
    t = Table(title=title, title_justify="left", title_style="bold", expand=False,
              pad_edge=False, box=None, header_style="bold dim")
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right", no_wrap=True)
    return t


# ---------------------------------------------------------------- panels
TOPICS = ("clicks", "purchases", "items", "ad-requests", "ad-events", "privacy", "control")
OUTCOMES = ("accepted", "invalid", "duplicate", "suppressed", "erased")
# Counted at ingest on top of a click's or purchase's final outcome: never in a sum of events.
LIMITED = "rate_limited"
LIMITED_TOPICS = ("clicks", "purchases")


def events_panel(view: View) -> Table:
    """Input events per topic (rows) and final outcome (columns), then how many of them
    were rate-limited (a flag, not in "all")."""
    rates = view.rate("persona_events_total", "topic", "outcome")
    topics = list(TOPICS) + sorted({t for t, _ in rates} - set(TOPICS))
    t = _table(f"events {view.unit}", "topic", *OUTCOMES, "all", "rate-limited")
    for topic in topics:
        row = [rates.get((topic, o), 0.0) for o in OUTCOMES]
        t.add_row(Text(topic), *(_rate(view, v) for v in row), _rate(view, sum(row)),
                  _rate(view, rates.get((topic, LIMITED), 0.0)))
    totals = [sum(v for (_, o), v in rates.items() if o == out) for out in (*OUTCOMES, LIMITED)]
    t.add_row(Text("all", style="bold"), *(_rate(view, v) for v in totals[:-1]),
              _rate(view, sum(totals[:-1])), _rate(view, totals[-1]), style="bold")
    return t


def _messages(counts: Mapping[Key, float], topics: tuple[str, ...] = ()) -> float:
    """Input messages in ``persona_events_total`` by (topic, outcome), each once (not the
    rate_limited flag), of ``topics`` (all if empty)."""
    return sum(v for (topic, outcome), v in counts.items()
               if outcome != LIMITED and (not topics or topic in topics))


def _limited(counts: Mapping[Key, float]) -> float:
    return sum(v for (_, outcome), v in counts.items() if outcome == LIMITED)


def health_panel(view: View) -> Table:
    """Event lag quantiles, dead letters (total, ratio, by error), rate-limited clicks
    and purchases (total, ratio) and recommendations/s."""
    first = view.seconds is None
    (p50, p99), (p50_all, p99_all) = lag_quantiles(view)
    t = _table("lag, dead letters, rate limit, recommendations", "",
               "now" if first else f"last {view.seconds:.1f} s", "since start")

    def now(text: str) -> str:
        return "-" if first else text

    t.add_row("event lag p50", now(_seconds(p50)), _seconds(p50_all))
    t.add_row("event lag p99", now(_seconds(p99)), _seconds(p99_all))
    interval = view.increase("persona_events_total", "topic", "outcome")
    total = view.cur.by("persona_events_total", "topic", "outcome")
    dead = sum(view.increase("persona_dead_letters_total").values())
    dead_all = view.cur.total("persona_dead_letters_total")
    t.add_row("dead letters", now(f"{dead / (view.seconds or 1):,.1f}/s"), _count(dead_all))
    t.add_row("dead-letter ratio", now(_pct(dead, _messages(interval))),
              _pct(dead_all, _messages(total)))
    by_error = view.cur.by("persona_dead_letters_total", "error")
    for (error,), v in sorted(by_error.items(), key=lambda kv: (-kv[1], kv[0])):
        if v > 0:
            t.add_row(Text(f"  {error}", style="dim"), "", _count(v))
    limited, limited_all = _limited(interval), _limited(total)
    t.add_row("rate-limited", now(f"{limited / (view.seconds or 1):,.1f}/s"),
              _count(limited_all))
    t.add_row("rate-limited ratio", now(_pct(limited, _messages(interval, LIMITED_TOPICS))),
              _pct(limited_all, _messages(total, LIMITED_TOPICS)))
    recs = sum(view.rate("persona_recommendations_total").values())
    t.add_row("recommendations", now(f"{recs:,.1f}/s"),
              _count(view.cur.total("persona_recommendations_total")))
    return t


def strategies_panel(view: View) -> Table:
    """Recommendations/s, CTR and conversion rate per strategy that served any."""
    recs = view.cur.by("persona_recommendations_total", "strategy")
    clicks = view.cur.by("persona_recommendation_clicks_total", "strategy")
    conv = view.cur.by("persona_conversions_total", "strategy")
    rates = view.rate("persona_recommendations_total", "strategy")
    t = _table("strategies", "strategy", "recs/s", "recs", "CTR", "conv. rate")
    for key, n in sorted(recs.items()):
        if n > 0:
            t.add_row(Text(key[0]), _per_s(view, rates.get(key, 0.0)), _count(n),
                      _pct(clicks.get(key, 0.0), n), _pct(conv.get(key, 0.0), n))
    if not t.row_count:
        t.add_row(Text("none served yet", style="dim"), "", "", "", "")
    return t


def variants_panel(view: View) -> Table:
    """Per experiment variant: users, recommendations, CTR, conversion, revenue per user."""
    rates = view.rate("persona_recommendations_total", "variant")
    t = _table("experiments", "experiment / variant", "users", "recs/s", "recs",
               "CTR", "conv. rate", "revenue/user")
    for experiment, variants in sorted(figures(view.cur.text).items()):
        for name, f in variants.items():
            rpu = f.revenue_per_user
            t.add_row(Text(f"{experiment} / {name}"), _count(f.users),
                      _per_s(view, rates.get((name,), 0.0)), _count(f.recommendations),
                      _pct(f.clicks, f.recommendations),
                      _pct(f.conversions, f.recommendations),
                      "-" if rpu is None else _money(rpu))
    if not t.row_count:
        t.add_row(Text("no experiment configured", style="dim"), "", "", "", "", "", "")
    return t


def bids_panel(view: View) -> Table:
    """Ad bid decisions by outcome (outcomes never seen are left out)."""
    totals = view.cur.by("persona_ad_bids_total", "outcome")
    rates = view.rate("persona_ad_bids_total", "outcome")
    t = _table("bids", "outcome", "/s", "total")
    for key, v in sorted(totals.items(), key=lambda kv: (kv[0] != ("bid",), -kv[1], kv[0])):
        if v > 0 or key == ("bid",):
            t.add_row(Text(key[0]), _per_s(view, rates.get(key, 0.0)), _count(v))
    all_bids = sum(totals.values())
    t.add_row(Text("all", style="bold"), _per_s(view, sum(rates.values())), _count(all_bids),
              style="bold")
    return t


def campaigns_panel(view: View) -> Table:
    """Spend, budget left, impressions, clicks and ad CTR per campaign."""
    spend = view.cur.by("persona_ad_spend_total", "campaign")
    spend_rate = view.rate("persona_ad_spend_total", "campaign")
    budget = view.cur.by("persona_ad_budget_remaining", "campaign", "period")
    imps = view.cur.by("persona_ad_impressions_total", "campaign")
    clicks = view.cur.by("persona_ad_clicks_total", "campaign")
    kill = view.cur.total("persona_ad_kill_switch")
    state = "[bold red]ON: no bids[/bold red]" if kill >= 1 else "[green]off[/green]"
    t = _table(f"campaigns (kill switch {state})", "campaign", "spend", "spend/s",
               "daily left", "total left", "impr.", "clicks", "ad CTR")

    def left(key: Key) -> str:
        v = budget.get(key)
        return "-" if v is None else ("no cap" if v < 0 else _money(v))

    campaigns = sorted({k[0] for k in spend} | {k[0] for k in budget})
    for c in campaigns:
        t.add_row(Text(c), _money(spend.get((c,), 0.0)),
                  _per_s(view, spend_rate.get((c,), 0.0), ",.2f"),
                  left((c, "daily")), left((c, "total")), _count(imps.get((c,), 0.0)),
                  _count(clicks.get((c,), 0.0)), _pct(clicks.get((c,), 0.0), imps.get((c,), 0.0)))
    all_imps, all_clicks = sum(imps.values()), sum(clicks.values())
    t.add_row(Text("all", style="bold"), _money(sum(spend.values())),
              _per_s(view, sum(spend_rate.values()), ",.2f"), "", "",
              _count(all_imps), _count(all_clicks), _pct(all_clicks, all_imps), style="bold")
    return t


def frame(prev: Scrape | None, cur: Scrape, url: str) -> RenderableType:
    """Everything ``persona top`` shows for two scrapes of ``url``."""
    view = View(prev, cur)
    if view.seconds is None:
        when = "totals since the worker started (rates from the next frame)"
    else:
        when = f"rates over the last {view.seconds:.1f} s"
    grid = Table.grid(padding=(1, 4))
    grid.add_column()
    grid.add_column()
    grid.add_row(events_panel(view), health_panel(view))
    grid.add_row(strategies_panel(view), bids_panel(view))
    return Panel(Group(grid, variants_panel(view), Text(""), campaigns_panel(view)),
                 title=Text(f"persona top: {url}"), subtitle=when, title_align="left",
                 subtitle_align="left")


def unreachable_frame(url: str, error: str, retrying: bool,
                      headline: str = "worker unreachable") -> RenderableType:
    """What ``persona top`` shows while the worker does not answer (or answers no
    metrics page)."""
    body = Text.assemble((headline, "bold red"), f": cannot read {url}\n", (error, "dim"))
    if retrying:
        body.append("\nretrying...")
    return Panel(body, title=Text(f"persona top: {url}"), title_align="left",
                 border_style="red")


# ---------------------------------------------------------------- I/O
def fetch(url: str, timeout: float) -> str:
    """The page at ``url``; OSError (or ValueError for a malformed URL) on failure."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # an operator's own URL
        body: bytes = resp.read()
    return body.decode("utf-8")


def run(
    url: str,
    console: Console,
    interval: float = 1.0,
    iterations: int | None = None,
    live: bool = True,
    get: Callable[[str, float], str] = fetch,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Scrape ``url`` every ``interval`` seconds and redraw, ``iterations`` times (None:
    until interrupted). 0 if the last scrape answered, else 1."""
    prev: Scrape | None = None
    ok = False
    done = 0
    # redrawn in place on a terminal; elsewhere (a pipe, a log) one frame after another
    display = Live(console=console, auto_refresh=False) if live and console.is_terminal else None
    try:
        if display is not None:
            display.start()
        while iterations is None or done < iterations:
            at = clock()
            last = iterations is not None and done + 1 >= iterations
            view: RenderableType
            try:
                text = get(url, max(1.0, interval))
            except (OSError, ValueError) as exc:  # unreachable, HTTP error, malformed URL
                view, ok = unreachable_frame(url, str(exc), retrying=not last), False
            else:
                try:
                    cur = Scrape.parse(text, at)
                except ValueError as exc:
                    view, ok = unreachable_frame(url, str(exc), not last,
                                                 "not a Prometheus text page"), False
                else:
                    view, ok = frame(prev, cur, url), True
                    prev = cur
            if display is not None:
                display.update(view, refresh=True)
            else:
                console.print(view)
            done += 1
            if not last:  # a slow scrape shortens the wait, never queues extra frames
                sleep(max(0.0, interval - (clock() - at)))
    except KeyboardInterrupt:
        pass
    finally:
        if display is not None:
            display.stop()
    return 0 if ok else 1
