"""``persona demo``: broker + worker + MovieLens replay + recommendations and metrics.

Everything it starts runs on 127.0.0.1 under <data_dir>/demo and is stopped at the end,
also on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field, replace

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streams.cli.adsim import CAMPAIGNS_FILE
from streams.settings import PROJECT_ROOT, Settings

# The demo's A/B test: variant A serves popularity, B the hybrid (ops/experiments.demo.json).
EXPERIMENTS_FILE = PROJECT_ROOT / "ops" / "experiments.demo.json"

# Bad events the demo adds on purpose, to show the dead-letter path.
DEMO_BAD_EVENTS: list[tuple[str, bytes | None]] = [
    ("clicks", b'{"event_id": "bad-1", "user_id": "ml-1", "item_id": "1"}'),
    ("clicks", b"\xff\xfe not utf-8"),
    ("purchases", b'{"event_id": "bad-3", "user_id": "ml-1", "item_id": "1", '
                  b'"ts": 1700000000000, "price": -5, "quantity": 1}'),
    ("clicks", b'{"event_id": "bad-4", "user_id": "ml-1", "item_id": "1", "ts": "yesterday"}'),
    ("clicks", b"[1, 2, 3]"),
]


ALL_OUTCOMES = ("accepted", "invalid", "duplicate", "suppressed")

DEFAULT_AD_REQUESTS = 600
# The demo worker's attribution window (PERSONA_AD_WINDOW_S). Short, so that windows close
# and pCTR labels resolve while the demo runs: each simulated hour's auctions span at most
# AD_HOUR_SPAN_MS of event time and their events follow within adsim.MAX_EVENT_DELAY_MS
# (together 18.3 s, leaving 11.7 s for processing), so they are all in before the next
# hour's requests move the worker's event clock past the window; the last hour's windows
# close after AD_WINDOW_S of wall time.
AD_WINDOW_S = 30
AD_HOUR_SPAN_MS = 5_000
AD_SEED = 1997
AD_HOURS = 24
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _events(metrics: dict[str, float], outcomes: tuple[str, ...] = ALL_OUTCOMES) -> float:
    """Clicks and purchases the worker counted with one of ``outcomes``."""
    return sum(
        metrics.get(f'persona_events_total{{outcome="{outcome}",topic="{topic}"}}', 0.0)
        for topic in ("clicks", "purchases")
        for outcome in outcomes
    )


def _sum(metrics: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(prefix + "{") or k == prefix)


def run_demo(
    settings: Settings,
    secret_key: str,
    *,
    limit: int | None,
    rate: float | None,
    keep_data: bool,
    console: Console,
    out: Console,
    ad_requests: int = DEFAULT_AD_REQUESTS,
) -> int:
    from streams.cli.replay import make_producer, movielens_events, movielens_items, publish
    from streams.local.broker import BrokerError, LocalBroker, ensure_topics, free_port
    from streams.local.worker_proc import WorkerError, WorkerProcess

    demo_dir = settings.data_dir / "demo"
    if demo_dir.exists() and not keep_data:
        shutil.rmtree(demo_dir)
    port = settings.broker_port
    try:
        import socket

        with socket.create_connection((settings.broker_host, port), timeout=0.2):
            port = free_port(settings.broker_host)  # taken: do not disturb what runs there
    except OSError:
        pass
    s = replace(settings, broker_port=port, bootstrap="", data_dir=settings.data_dir)
    broker = LocalBroker.from_settings(s, port=port, name="demo")
    if not keep_data:
        broker.stop()  # a broker left by an interrupted demo: ours, by its pid file
        broker.wipe()
    worker: WorkerProcess | None = None
    try:
        with console.status("loading MovieLens 100K..."):
            items = movielens_items(s.topics)
            events = movielens_events(s.topics, limit)
        t0 = time.monotonic()
        with console.status(f"starting Apache Kafka {broker.version} on {broker.bootstrap} "
                            "(first run fetches its jars with Maven)..."):
            broker.start(timeout=120)
        broker_s = time.monotonic() - t0
        console.print(f"[green]broker[/green] ready on {broker.bootstrap} in {broker_s:.1f}s")
        ensure_topics(broker.bootstrap, s.created_topics(), s.topic_partitions())

        web_port = free_port()
        worker = WorkerProcess(
            env={
                "PERSONA_BROKER_PORT": str(port),
                "PERSONA_BOOTSTRAP": broker.bootstrap,
                "PERSONA_SECRET_KEY": secret_key,
                # /users/... needs a bearer token: a fresh one per demo run.
                "PERSONA_API_TOKEN": secrets.token_urlsafe(32),
                "PERSONA_DATA_DIR": str(demo_dir),
                "PERSONA_LOG_LEVEL": os.environ.get("PERSONA_LOG_LEVEL", "warning"),
                "PERSONA_CAMPAIGNS_FILE": str(CAMPAIGNS_FILE),
                # An A/B test on recommendations; MovieLens events name no
                # recommendation, so an event is credited to the list that held its item.
                "PERSONA_EXPERIMENTS_FILE": str(EXPERIMENTS_FILE),
                "PERSONA_ATTRIBUTE_BY_ITEM": "true",
                "PERSONA_AD_WINDOW_S": str(AD_WINDOW_S),
                # The simulated exchange clicks far more than real inventory (~7%).
                "PERSONA_AD_PRIOR_CTR": "0.05",
                # MovieLens is from 1997-98: replaying history, so no age limit (the
                # per-user rate limit stays on: no user bursts in it).
                "PERSONA_MAX_EVENT_AGE_S": "0",
            },
            web_port=web_port,
            log_path=demo_dir / "worker.log",
        )
        t0 = time.monotonic()
        with console.status("starting the worker..."):
            worker.start()
            worker.wait_ready(timeout=120)
        console.print(f"[green]worker[/green] ready in {time.monotonic() - t0:.1f}s, "
                      f"metrics on {worker.base_url}/metrics (log: {worker.log_path})")

        producer = make_producer(broker.bootstrap)
        publish(producer, items)
        console.print(f"published {len(items)} catalogue items")
        bad = [(getattr(s.topics, t), v) for t, v in DEMO_BAD_EVENTS]
        total = len(events) + len(bad)
        cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn())
        started = time.monotonic()
        with Progress(*cols, console=console) as progress:
            sent = progress.add_task("published ", total=total)
            done = progress.add_task("processed ", total=total)
            last_poll = 0.0

            def on_sent(n: int) -> None:
                nonlocal last_poll
                progress.advance(sent, n)
                now = time.monotonic()
                if now - last_poll > 0.5:
                    last_poll = now
                    progress.update(done, completed=_events(worker.metrics()))

            publish(producer, events, rate, on_sent=on_sent)
            for topic, value in bad:
                producer.send(topic, key=b"ml-1", value=value)
            producer.flush()
            progress.update(sent, completed=total)
            deadline = time.monotonic() + max(120.0, total / 200)
            while time.monotonic() < deadline:
                m = worker.metrics()
                n_done = _events(m)
                progress.update(done, completed=n_done)
                if n_done >= total:
                    break
                if not worker.alive():
                    raise WorkerError(f"worker died; log tail:\n{worker.log_tail()}")
                time.sleep(0.25)
        elapsed = time.monotonic() - started
        m = worker.metrics()
        _report(worker, m, events, elapsed, total, console=console, out=out)
        _experiment_report(worker, out=out)
        if ad_requests > 0:
            _ad_phase(worker, producer, s, broker.bootstrap, events, items, ad_requests,
                      console=console, out=out)
        producer.close()
        return 0
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping the worker and the broker[/yellow]")
        return 130
    except (BrokerError, WorkerError, FileNotFoundError) as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        return 1
    finally:
        if worker is not None:
            with console.status("stopping the worker..."):
                code = worker.stop()
            console.print(f"worker stopped (exit code {code})")
        with console.status("stopping the broker..."):
            try:
                broker.stop()
            except BrokerError as exc:
                console.print(f"[red]broker stop failed:[/red] {exc}")
        console.print("broker stopped")
        if not keep_data:
            shutil.rmtree(demo_dir, ignore_errors=True)
            try:
                broker.wipe()
            except BrokerError as exc:
                console.print(f"[yellow]broker data kept:[/yellow] {exc}")


def _experiment_report(worker, *, out: Console) -> None:  # type: ignore[no-untyped-def]
    """The A/B test's report, as `persona report` prints it, from the worker's metrics."""
    from streams.cli.report import figures, render, report
    from streams.local.worker_proc import http_get

    status, body = http_get(worker.base_url + "/metrics")
    if status != 200:
        return
    for name, variants in figures(body.decode("utf-8")).items():
        if "A" in variants:
            render(out, name, "A", report(variants, "A"))
    out.print(f"  (live: persona top --url {worker.base_url}/metrics while a demo runs; "
              f"persona report --url {worker.base_url}/metrics)")


def _report(worker, m: dict[str, float], events, elapsed: float, total: int, *,  # type: ignore[no-untyped-def]
            console: Console, out: Console) -> None:
    accepted = _events(m, ("accepted",))
    hits = _sum(m, "persona_recommendation_hits_total")
    checks = _sum(m, "persona_recommendation_hit_checks_total")
    recs = _sum(m, "persona_recommendations_total")
    # Sample users: the last three distinct users of the replay.
    users: list[str] = []
    for ev in reversed(events):
        u = orjson.loads(ev.value)["user_id"]
        if u not in users:
            users.append(u)
        if len(users) == 3:
            break
    for u in users:
        status, body = worker.get_json(f"/users/{u}/recommendations?k=5")
        if status != 200:
            continue
        t = Table(title=f"recommendations for {u}", title_justify="left",
                  caption=f"pseudonymous id {body['user_id']}; variant {body['variant']}, "
                          f"strategy {body['strategy']} "
                          f"(chosen with probability {body['propensity']:.3f})",
                  caption_justify="left")
        t.add_column("#", justify="right")
        t.add_column("item")
        t.add_column("score", justify="right")
        t.add_column("reason")
        for i, it in enumerate(body["items"], 1):
            t.add_row(str(i), it["item_id"], f"{it['score']:.3f}", it["reason"])
        out.print(t)

    summary = Table(title="demo summary", title_justify="left")
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    summary.add_row("events replayed", f"{total:,}")
    summary.add_row("accepted", f"{accepted:,.0f}")
    summary.add_row("recommendation events", f"{recs:,.0f}")
    summary.add_row("events/s (publish to processed)", f"{total / max(elapsed, 1e-9):,.0f}")
    summary.add_row("live hit rate (item in user's previous recs)",
                    f"{hits / checks:.4f}" if checks else "n/a")
    dead = {k.split('"')[1]: v for k, v in m.items()
            if k.startswith("persona_dead_letters_total{") and v > 0}
    summary.add_row("dead letters", ", ".join(f"{c}: {v:.0f}" for c, v in sorted(dead.items()))
                    or "0")
    p = m.get("persona_event_processing_seconds_sum{agent=\"profile\"}", 0.0)
    c = m.get("persona_event_processing_seconds_count{agent=\"profile\"}", 0.0)
    if c:
        summary.add_row("profile agent time per event", f"{1000 * p / c:.3f} ms")
    out.print(summary)


# ---------------------------------------------------------------- the ad phase
def _labeled(m: dict[str, float], name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of metric ``name`` with their labels parsed."""
    return [(dict(_LABEL.findall(k[len(name) + 1:-1])), v)
            for k, v in m.items() if k.startswith(name + "{")]


def _by(m: dict[str, float], name: str, per: str, **match: str) -> dict[str, float]:
    """Metric ``name`` summed per value of label ``per``, over samples matching ``match``."""
    out: dict[str, float] = {}
    for labels, v in _labeled(m, name):
        if all(labels.get(k) == want for k, want in match.items()) and per in labels:
            out[labels[per]] = out.get(labels[per], 0.0) + v
    return out


def _topic_total(m: dict[str, float], topic: str) -> float:
    """Messages of an input topic the worker has finished with, whatever the outcome."""
    return sum(_by(m, "persona_events_total", "outcome", topic=topic).values())


@dataclass
class _AdRun:
    """What the ad phase sent and saw; the worker's own counts come from its /metrics."""

    requests: dict[str, dict] = field(default_factory=dict)  # type: ignore[type-arg]
    bids: dict[str, dict] = field(default_factory=dict)  # type: ignore[type-arg]
    # request id -> (clearing price, event types the exchange sent for it)
    results: dict[str, tuple[float, list[str]]] = field(default_factory=dict)
    sent: Counter[str] = field(default_factory=Counter)  # ad-events messages by type
    resent: int = 0  # impressions delivered a second time
    throttled: Counter[str] = field(default_factory=Counter)  # hours ending with pacing < 1
    hours: int = 0
    bidding_s: float = 0.0
    window_s: float = 0.0


def _ad_phase(worker, producer, s: Settings, bootstrap: str, events, items,  # type: ignore[no-untyped-def]
              n: int, *, console: Console, out: Console) -> None:
    """Auctions for one simulated day: ad requests for the replay's users, the worker's
    bids answered by the seeded exchange (streams/cli/adsim.py), then what the worker counted.

    Each simulated hour's requests go out together; the next hour waits until the worker
    has bid on them and counted the exchange's events, so no event arrives after the
    worker's event clock has closed its window (it would be refused as late).
    """
    from kafka import KafkaConsumer, TopicPartition

    from streams.cli.adsim import AdExchange, affinity, demo_campaigns, user_genre_counts
    from streams.local.worker_proc import WorkerError

    catalogue = demo_campaigns()
    genres = {}
    for it in items:
        v = orjson.loads(it.value)
        genres[v["item_id"]] = v.get("categories") or []
    pairs, last_ts = [], 0
    for ev in events:
        v = orjson.loads(ev.value)
        pairs.append((v["user_id"], v["item_id"]))
        last_ts = max(last_ts, int(v["ts"]))
    counts = user_genre_counts(pairs, genres)
    users = list(counts)
    if not users:
        console.print("[yellow]ad phase skipped: the replay had no users to show ads to[/yellow]")
        return
    day0 = (last_ts // DAY_MS + 1) * DAY_MS  # the UTC day after the replay: a fresh budget day
    exchange = AdExchange(AD_SEED, catalogue)
    console.print(f"[bold]ad phase[/bold]: {n} ad requests for {len(users)} users over "
                  f"{time.strftime('%Y-%m-%d', time.gmtime(day0 / 1000))} (simulated, UTC), "
                  f"{len(catalogue['campaigns'])} campaigns, attribution window "
                  f"{AD_WINDOW_S}s")
    console.print(f"the exchange (streams/cli/adsim.py, seed {AD_SEED}) clears each auction at the "
                  f"best rival bid (median {exchange.median_price:.2f}) or the floor, and "
                  f"simulates clicks with probability {exchange.base_ctr:.0%} + "
                  f"{exchange.ctr_lift:.0%} x the user's share of replayed events in the "
                  "ad's genres")

    def answer(run: _AdRun, bid: dict) -> None:  # type: ignore[type-arg]
        """Send the exchange's events for one ad-bids record."""
        rid = bid["request_id"]
        req = run.requests[rid]
        ad = next((c for c in req["candidates"] if c["ad_id"] == bid.get("ad_id")), None)
        sent = exchange.respond(req, bid, affinity(counts.get(req["user_id"], {}),
                                                   ad["categories"] if ad else ()))
        run.results[rid] = (exchange.clearing_price(req), sorted({e["type"] for e in sent}))
        seen: set[str] = set()
        for e in sent:
            run.resent += e["event_id"] in seen
            seen.add(e["event_id"])
            run.sent[e["type"]] += 1
            # keyed by request: its impression, click and conversion stay in order
            producer.send(s.topics.ad_events, key=rid.encode(), value=orjson.dumps(e))

    run = _AdRun()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, client_id="persona-demo-ads")
    try:
        parts = None
        wait_until = time.monotonic() + 15
        while not parts and time.monotonic() < wait_until:
            parts = consumer.partitions_for_topic(s.topics.ad_bids)
            if not parts:
                time.sleep(0.2)
        tps = [TopicPartition(s.topics.ad_bids, p) for p in sorted(parts or ())]
        consumer.assign(tps)
        consumer.seek_to_end()
        for tp in tps:
            consumer.position(tp)  # fix "the end" now, before the first request goes out

        events_base = _topic_total(worker.metrics(), "ad-events")
        per_hour = [n // AD_HOURS + (1 if h < n % AD_HOURS else 0) for h in range(AD_HOURS)]
        started = time.monotonic()
        deadline = started + max(60.0, 0.25 * n)
        stopped = ""
        cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn())
        with Progress(*cols, console=console) as progress:
            t_req = progress.add_task("ad requests ", total=n)
            t_bid = progress.add_task("bids        ", total=n)
            for hour, k in enumerate(per_hour):
                if not k:
                    continue
                progress.update(t_req, description=f"ad requests {hour:02d}:30")
                spacing = max(1, min(200, AD_HOUR_SPAN_MS // k))
                batch = exchange.requests(users, k, day0 + hour * HOUR_MS + HOUR_MS // 2,
                                          spacing)
                for r in batch:
                    run.requests[r["request_id"]] = r
                    producer.send(s.topics.ad_requests, key=r["user_id"].encode(),
                                  value=orjson.dumps(r))
                producer.flush()
                progress.advance(t_req, k)
                pending = {r["request_id"] for r in batch}
                while pending and time.monotonic() < deadline:
                    for records in consumer.poll(timeout_ms=100).values():
                        for rec in records:
                            bid = orjson.loads(rec.value)
                            if bid.get("request_id") in pending:
                                pending.discard(bid["request_id"])
                                run.bids[bid["request_id"]] = bid
                                progress.advance(t_bid)
                                answer(run, bid)
                    if pending and not worker.alive():
                        raise WorkerError(f"worker died; log tail:\n{worker.log_tail()}")
                producer.flush()
                if pending:
                    stopped = (f"stopped waiting for bids after {time.monotonic() - started:.0f}s:"
                               f" {len(pending)} request(s) of {hour:02d}:30 unanswered")
                    break
                # The next hour moves the worker's clock on: let it count these events first.
                while time.monotonic() < deadline:
                    m = worker.metrics()
                    if _topic_total(m, "ad-events") - events_base >= sum(run.sent.values()):
                        for c, rate in _by(m, "persona_ad_pacing_multiplier", "campaign").items():
                            run.throttled[c] += rate < 1.0
                        run.hours += 1
                        break
                    time.sleep(0.05)
                else:
                    stopped = (f"stopped after {time.monotonic() - started:.0f}s: the worker had "
                               f"not counted the ad events of {hour:02d}:30")
                    break
        run.bidding_s = time.monotonic() - started
        if stopped:
            console.print(f"[yellow]{stopped}[/yellow]")
        # The last hour's windows close on the worker's wall clock. Every impression gets
        # one pCTR label, at its first click or as a no-click when its window closes; a
        # lost bid keeps its reservation until then.
        window_wait = time.monotonic()
        with console.status(f"waiting up to {AD_WINDOW_S + 10}s for the last attribution "
                            "windows to close..."):
            while time.monotonic() - window_wait < AD_WINDOW_S + 10:
                m = worker.metrics()
                shown = sum(_by(m, "persona_ad_impressions_total", "campaign").values())
                labels = sum(_by(m, "persona_ad_pctr_labels_total", "campaign").values())
                reserved = sum(_by(m, "persona_ad_budget_reserved", "campaign").values())
                if labels >= shown and reserved <= 1e-9:
                    break
                time.sleep(0.5)
        run.window_s = time.monotonic() - window_wait
    finally:
        consumer.close()
    _ad_report(worker.metrics(), catalogue, run, out=out)


def _money(x: float) -> str:
    return f"{x:,.2f}"


def _ratio(num: float, den: float, fmt: str = "{:.1%}") -> str:
    return fmt.format(num / den) if den else "n/a"


def _ad_report(m: dict[str, float], catalogue: dict, run: _AdRun, *,  # type: ignore[type-arg]
               out: Console) -> None:
    campaigns = [c["campaign_id"] for c in catalogue["campaigns"]]
    requests, bids, results = run.requests, run.bids, run.results
    budget = {c["campaign_id"]: c for c in catalogue["campaigns"]}
    placed: dict[str, int] = {}
    for b in bids.values():
        if b.get("campaign_id") is not None and b.get("no_bid_reason") is None:
            placed[b["campaign_id"]] = placed.get(b["campaign_id"], 0) + 1
    wins = _by(m, "persona_ad_impressions_total", "campaign")
    spend = _by(m, "persona_ad_spend_total", "campaign")
    bid_sum = _by(m, "persona_ad_bid_amount_total", "campaign")
    # -1 marks "no such budget"; what is left is the tighter of the daily and total ones
    left: dict[str, float] = {}
    for period in ("daily", "total"):
        for c, v in _by(m, "persona_ad_budget_remaining", "campaign", period=period).items():
            if v > -0.5:
                left[c] = min(left.get(c, v), max(0.0, v))
    clicks = _by(m, "persona_ad_clicks_total", "campaign")
    convs = _by(m, "persona_ad_conversions_total", "campaign")
    revenue = _by(m, "persona_ad_revenue_total", "campaign")
    label_clicks = _by(m, "persona_ad_pctr_labels_total", "campaign", label="click")
    label_none = _by(m, "persona_ad_pctr_labels_total", "campaign", label="no_click")
    predicted = _by(m, "persona_ad_pctr_predicted_clicks_total", "campaign")

    t = Table(title="ad campaigns: auctions and spend (one simulated day)", title_justify="left",
              caption="bids: ad-bids records naming the campaign; wins: impressions the worker "
                      "charged (second price); budget left: of the daily or total budget, "
                      "whichever is tighter, after spend and open bids; paced hours: "
                      "simulated hours after which the campaign's pacing rate (worker gauge) "
                      "was below 1, so it sat out part of the next hour's requests",
              caption_justify="left")
    for col in ("campaign", "bids", "mean bid", "wins", "win rate", "spend", "daily budget",
                "used", "budget left", "paced hours"):
        t.add_column(col, justify="left" if col == "campaign" else "right")
    for c in campaigns:
        daily = budget[c].get("daily_budget")
        t.add_row(c, f"{placed.get(c, 0):,}", _ratio(bid_sum.get(c, 0.0), placed.get(c, 0),
                                                       "{:.3f}"),
                  f"{wins.get(c, 0):,.0f}", _ratio(wins.get(c, 0), placed.get(c, 0)),
                  _money(spend.get(c, 0.0)), _money(daily) if daily else "none",
                  _ratio(spend.get(c, 0.0), daily or 0.0),
                  _money(left[c]) if c in left else "-",
                  f"{run.throttled[c]}/{run.hours}")
    t.add_row("total", f"{sum(placed.values()):,}", _ratio(sum(bid_sum.values()),
                                                            sum(placed.values()), "{:.3f}"),
              f"{sum(wins.values()):,.0f}", _ratio(sum(wins.values()), sum(placed.values())),
              _money(sum(spend.values())), "", "", "", "", style="bold")
    out.print(t)

    t = Table(title="ad campaigns: clicks, conversions, return", title_justify="left",
              caption="CTR: clicks / wins; ROI: (revenue - spend) / spend; revenue is what the "
                      "exchange's conversions reported", caption_justify="left")
    for col in ("campaign", "wins", "clicks", "CTR", "conversions", "revenue", "ROI"):
        t.add_column(col, justify="left" if col == "campaign" else "right")
    for c in campaigns:
        t.add_row(c, f"{wins.get(c, 0):,.0f}", f"{clicks.get(c, 0):,.0f}",
                  _ratio(clicks.get(c, 0), wins.get(c, 0)), f"{convs.get(c, 0):,.0f}",
                  _money(revenue.get(c, 0.0)),
                  _ratio(revenue.get(c, 0.0) - spend.get(c, 0.0), spend.get(c, 0.0), "{:.1f}"))
    tw, tc, tr, ts = (sum(d.values()) for d in (wins, clicks, revenue, spend))
    t.add_row("total", f"{tw:,.0f}", f"{tc:,.0f}", _ratio(tc, tw),
              f"{sum(convs.values()):,.0f}", _money(tr), _ratio(tr - ts, ts, "{:.1f}"),
              style="bold")
    out.print(t)

    t = Table(title="pCTR calibration (impressions whose label has resolved)",
              title_justify="left",
              caption="a label resolves at the click, or as no-click when the "
                      f"{AD_WINDOW_S}s attribution window closes; predicted / observed = 1 is "
                      "calibrated", caption_justify="left")
    for col in ("campaign", "labels", "mean pCTR", "observed CTR", "predicted / observed"):
        t.add_column(col, justify="left" if col == "campaign" else "right")
    for c in [*campaigns, "total"]:
        if c == "total":
            y, nn, p = (sum(d.values()) for d in (label_clicks, label_none, predicted))
        else:
            y, nn, p = label_clicks.get(c, 0.0), label_none.get(c, 0.0), predicted.get(c, 0.0)
        t.add_row(c, f"{y + nn:,.0f}", _ratio(p, y + nn, "{:.2%}"), _ratio(y, y + nn, "{:.2%}"),
                  _ratio(p, y, "{:.2f}"), style="bold" if c == "total" else None)
    out.print(t)

    t = Table(title="ad requests by outcome", title_justify="left")
    t.add_column("outcome")
    t.add_column("requests", justify="right")
    outcomes = _by(m, "persona_ad_bids_total", "outcome")
    for o, v in sorted(outcomes.items(), key=lambda kv: (kv[0] != "bid", -kv[1], kv[0])):
        if v > 0:
            t.add_row(o if o == "bid" else f"no bid: {o}", f"{v:,.0f}")
    out.print(t)

    t = Table(title="sample bids (the first bid of every fourth simulated hour)",
              title_justify="left", caption="user: the raw id the exchange sent, and the "
              "pseudonymous id the worker knows it by", caption_justify="left")
    for col in ("request", "time", "user", "pseudonymous id", "ad", "bid", "pCTR", "result"):
        t.add_column(col, justify="right" if col in ("bid", "pCTR") else "left")
    shown_hours: set[int] = set()
    for rid, req in requests.items():
        hour = (req["ts"] % DAY_MS) // HOUR_MS
        b = bids.get(rid)
        if hour % 4 or hour in shown_hours or b is None or b.get("no_bid_reason"):
            continue
        shown_hours.add(hour)
        t.add_row(rid, time.strftime("%H:%M:%S", time.gmtime(req["ts"] / 1000)),
                  req["user_id"], str(b["user_id"])[:12] + "…", b["ad_id"], f"{b['bid']:.3f}",
                  f"{b['pctr']:.4f}", _sample_result(b, *results[rid]))
    out.print(t)

    events = _by(m, "persona_ad_events_total", "outcome")
    summary = Table(title="ad phase summary", title_justify="left")
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    summary.add_row("ad requests published", f"{len(requests):,}")
    summary.add_row("answered on ad-bids (bid or no-bid)", f"{len(bids):,}")
    summary.add_row("ad events sent (impressions, clicks, conversions)",
                    ", ".join(f"{run.sent[k]:,}" for k in ("impression", "click", "conversion")))
    summary.add_row("impressions delivered twice (charged once)", f"{run.resent:,}")
    summary.add_row("ad events the worker counted / ignored as duplicates",
                    f"{events.get('counted', 0):,.0f} / {events.get('duplicate', 0):,.0f}")
    refused = {k: v for k, v in events.items() if k not in ("counted", "duplicate") and v > 0}
    summary.add_row("ad events refused", ", ".join(f"{k}: {v:.0f}" for k, v in
                                                   sorted(refused.items())) or "0")
    summary.add_row("auction time (requests, bids, events)", f"{run.bidding_s:.1f}s "
                    f"({len(bids) / max(run.bidding_s, 1e-9):,.0f} requests/s)")
    summary.add_row("wait for the last windows to close", f"{run.window_s:.1f}s")
    p50 = _quantile_ms(m, "persona_ad_bid_decision_seconds", 0.5)
    if p50 is not None:
        summary.add_row("bid decision time (median, in process)", p50)
    out.print(summary)


def _sample_result(bid: dict, price: float, types: list[str]) -> str:  # type: ignore[type-arg]
    """What the exchange did with a bid: lost, or won at the clearing price (and then)."""
    if not types:
        return f"lost to {price:.3f}"
    then = [t for t in ("click", "conversion") if t in types]
    return f"won, paid {price:.3f}" + (", " + " + ".join(then) if then else "")


def _quantile_ms(m: dict[str, float], name: str, q: float) -> str | None:
    """A histogram quantile as "<= X ms" (the bucket bound it falls in)."""
    buckets = sorted((float(lb["le"]), v) for lb, v in _labeled(m, name + "_bucket")
                     if lb.get("le") not in (None, "+Inf"))
    count = m.get(name + "_count", 0.0)
    if not count:
        return None
    for le, v in buckets:
        if v >= q * count:
            return f"<= {le * 1000:.3g} ms"
    return f"> {buckets[-1][0] * 1000:.3g} ms" if buckets else None
