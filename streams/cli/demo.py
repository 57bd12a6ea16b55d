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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streams.cli.adsim import CAMPAIGNS_FILE
from streams.cli.common import console as err_console
from streams.cli.common import ensure_secret_key, load_settings, quiet_clients
from streams.cli.common import out as std_out
from streams.settings import PROJECT_ROOT, Settings, Topics

if TYPE_CHECKING:
    from streams.cli.adsim import AdExchange
    from streams.cli.replay import Outgoing
    from streams.local.broker import LocalBroker
    from streams.local.worker_proc import WorkerProcess

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


# Final outcomes (streams/metrics.py OUTCOMES but the rate_limited flag): each event once.
ALL_OUTCOMES = ("accepted", "invalid", "duplicate", "suppressed", "erased")

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


def _bar_columns() -> tuple[TextColumn, BarColumn, MofNCompleteColumn, TimeElapsedColumn]:
    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn())


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
    """Run the whole demo; the exit code (0 done, 1 failed, 130 interrupted)."""
    from streams.cli.replay import make_producer, movielens_events, movielens_items
    from streams.local.broker import BrokerError
    from streams.local.worker_proc import WorkerError

    demo_dir = settings.data_dir / "demo"
    if demo_dir.exists() and not keep_data:
        shutil.rmtree(demo_dir)
    s, broker = _demo_broker(settings, keep_data)
    worker: WorkerProcess | None = None
    try:
        with console.status("loading MovieLens 100K..."):
            items = movielens_items(s.topics)
            events = movielens_events(s.topics, limit)
        _start_broker(broker, s, console)
        worker = _demo_worker(broker, secret_key, demo_dir)
        _start_worker(worker, console)
        producer = make_producer(broker.bootstrap)
        elapsed, total = _replay(worker, producer, s, items, events, rate, console)
        _report(worker, worker.metrics(), events, elapsed, total, console=console, out=out)
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
        _stop(worker, broker, demo_dir, keep_data, console)


def _demo_broker(settings: Settings, keep_data: bool) -> tuple[Settings, LocalBroker]:
    """The demo's settings and broker: on the configured port unless something answers
    there (not disturbed: the demo takes a free port), with a left-over demo broker (ours,
    by its pid file) stopped and wiped unless the data is kept."""
    import socket

    from streams.local.broker import LocalBroker, free_port

    port = settings.broker_port
    try:
        with socket.create_connection((settings.broker_host, port), timeout=0.2):
            port = free_port(settings.broker_host)
    except OSError:
        pass
    s = replace(settings, broker_port=port, bootstrap="", data_dir=settings.data_dir)
    broker = LocalBroker.from_settings(s, port=port, name="demo")
    if not keep_data:
        broker.stop()
        broker.wipe()
    return s, broker


def _start_broker(broker: LocalBroker, s: Settings, console: Console) -> None:
    """Start the broker, wait until it answers, and create the topics."""
    from streams.local.broker import ensure_topics

    t0 = time.monotonic()
    with console.status(f"starting Apache Kafka {broker.version} on {broker.bootstrap} "
                        "(first run fetches its jars with Maven)..."):
        broker.start(timeout=120)
    broker_s = time.monotonic() - t0
    console.print(f"[green]broker[/green] ready on {broker.bootstrap} in {broker_s:.1f}s")
    ensure_topics(broker.bootstrap, s.created_topics(), s.topic_partitions())


def _demo_worker(broker: LocalBroker, secret_key: str, demo_dir: Path) -> WorkerProcess:
    """The demo's worker process (not started), configured for the replay and the ads."""
    from streams.local.broker import free_port
    from streams.local.worker_proc import WorkerProcess

    return WorkerProcess(
        env={
            "PERSONA_BROKER_PORT": str(broker.port),
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
        web_port=free_port(),
        log_path=demo_dir / "worker.log",
    )


def _start_worker(worker: WorkerProcess, console: Console) -> None:
    t0 = time.monotonic()
    with console.status("starting the worker..."):
        worker.start()
        worker.wait_ready(timeout=120)
    console.print(f"[green]worker[/green] ready in {time.monotonic() - t0:.1f}s, "
                  f"metrics on {worker.base_url}/metrics (log: {worker.log_path})")


def _replay(worker: WorkerProcess, producer: Any, s: Settings, items: list[Outgoing],
            events: list[Outgoing], rate: float | None,
            console: Console) -> tuple[float, int]:
    """Publish the catalogue, the replay and the bad events, and wait until the worker has
    processed them all; (seconds from the first event to the last processed, events)."""
    from streams.cli.replay import publish

    publish(producer, items)
    console.print(f"published {len(items)} catalogue items")
    bad = [(getattr(s.topics, t), v) for t, v in DEMO_BAD_EVENTS]
    total = len(events) + len(bad)
    started = time.monotonic()
    with Progress(*_bar_columns(), console=console) as progress:
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
        _wait_processed(worker, total, lambda n: progress.update(done, completed=n))
    return time.monotonic() - started, total


def _wait_processed(worker: WorkerProcess, total: int, show: Callable[[float], None]) -> None:
    """Wait (a bounded time) until the worker has counted ``total`` events."""
    from streams.local.worker_proc import WorkerError

    deadline = time.monotonic() + max(120.0, total / 200)
    while time.monotonic() < deadline:
        n_done = _events(worker.metrics())
        show(n_done)
        if n_done >= total:
            break
        if not worker.alive():
            raise WorkerError(f"worker died; log tail:\n{worker.log_tail()}")
        time.sleep(0.25)


def _stop(worker: WorkerProcess | None, broker: LocalBroker, demo_dir: Path, keep_data: bool,
          console: Console) -> None:
    """Stop what the demo started, and remove its data unless it is kept."""
    from streams.local.broker import BrokerError

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


def _experiment_report(worker: WorkerProcess, *, out: Console) -> None:
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


def _report(worker: WorkerProcess, m: dict[str, float], events: list[Outgoing], elapsed: float,
            total: int, *, console: Console, out: Console) -> None:
    """Recommendations for three of the replay's users, and the replay's figures."""
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
    out.print(replay_summary(m, total, elapsed))


def replay_summary(m: dict[str, float], total: int, elapsed: float) -> Table:
    """The replay's figures from the worker's metrics ``m``: ``total`` events published,
    ``elapsed`` seconds from the first publish to the last processed."""
    accepted = _events(m, ("accepted",))
    hits = _sum(m, "persona_recommendation_hits_total")
    checks = _sum(m, "persona_recommendation_hit_checks_total")
    recs = _sum(m, "persona_recommendations_total")
    summary = Table(title="demo summary", title_justify="left")
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    summary.add_row("events replayed", f"{total:,}")
    summary.add_row("accepted", f"{accepted:,.0f}")
    summary.add_row("recommendation events", f"{recs:,.0f}")
    # Counted on top of accepted (a flag, not a final outcome): an accepted event gets a
    # recommendation unless it was rate-limited.
    summary.add_row("rate-limited (counted, not learned, not served)",
                    f"{_events(m, ('rate_limited',)):,.0f}")
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
    return summary


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

    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    bids: dict[str, dict[str, Any]] = field(default_factory=dict)
    # request id -> (clearing price, event types the exchange sent for it)
    results: dict[str, tuple[float, list[str]]] = field(default_factory=dict)
    sent: Counter[str] = field(default_factory=Counter)  # ad-events messages by type
    resent: int = 0  # impressions delivered a second time
    throttled: Counter[str] = field(default_factory=Counter)  # hours ending with pacing < 1
    hours: int = 0
    bidding_s: float = 0.0
    window_s: float = 0.0


@dataclass
class _AdDay:
    """The ad phase's parties: the worker, the producer to its topics, the seeded exchange
    and the users it shows ads to; ``run`` collects what was sent and seen."""

    worker: WorkerProcess
    producer: Any
    topics: Topics
    exchange: AdExchange
    counts: dict[str, Counter[tuple[str, ...]]]  # user -> event counts by genre
    day0: int  # the simulated day's midnight, epoch ms
    run: _AdRun = field(default_factory=_AdRun)

    @property
    def users(self) -> list[str]:
        return list(self.counts)

    def send_hour(self, hour: int, k: int) -> set[str]:
        """Publish ``k`` ad requests at half past ``hour``; their request ids."""
        spacing = max(1, min(200, AD_HOUR_SPAN_MS // k))
        batch = self.exchange.requests(self.users, k,
                                       self.day0 + hour * HOUR_MS + HOUR_MS // 2, spacing)
        for r in batch:
            self.run.requests[r["request_id"]] = r
            self.producer.send(self.topics.ad_requests, key=r["user_id"].encode(),
                               value=orjson.dumps(r))
        self.producer.flush()
        return {r["request_id"] for r in batch}

    def collect_bids(self, consumer: Any, pending: set[str], deadline: float,
                     on_bid: Callable[[], None]) -> None:
        """Read ad-bids until every ``pending`` request is answered (removed from it) or
        the deadline passes, answering each bid as the exchange."""
        from streams.local.worker_proc import WorkerError

        while pending and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=100).values():
                for rec in records:
                    bid = orjson.loads(rec.value)
                    if bid.get("request_id") in pending:
                        pending.discard(bid["request_id"])
                        self.run.bids[bid["request_id"]] = bid
                        on_bid()
                        self.answer(bid)
            if pending and not self.worker.alive():
                raise WorkerError(f"worker died; log tail:\n{self.worker.log_tail()}")

    def answer(self, bid: dict[str, Any]) -> None:
        """Send the exchange's events for one ad-bids record."""
        from streams.cli.adsim import affinity

        run = self.run
        rid = bid["request_id"]
        req = run.requests[rid]
        ad = next((c for c in req["candidates"] if c["ad_id"] == bid.get("ad_id")), None)
        sent = self.exchange.respond(req, bid, affinity(self.counts.get(req["user_id"], {}),
                                                        ad["categories"] if ad else ()))
        run.results[rid] = (self.exchange.clearing_price(req), sorted({e["type"] for e in sent}))
        seen: set[str] = set()
        for e in sent:
            run.resent += e["event_id"] in seen
            seen.add(e["event_id"])
            run.sent[e["type"]] += 1
            # keyed by request: its impression, click and conversion stay in order
            self.producer.send(self.topics.ad_events, key=rid.encode(), value=orjson.dumps(e))

    def wait_counted(self, events_base: float, deadline: float) -> bool:
        """Wait until the worker has counted every ad event sent (then note which
        campaigns pacing held back this hour); False at the deadline."""
        while time.monotonic() < deadline:
            m = self.worker.metrics()
            if _topic_total(m, "ad-events") - events_base >= sum(self.run.sent.values()):
                for c, rate in _by(m, "persona_ad_pacing_multiplier", "campaign").items():
                    self.run.throttled[c] += rate < 1.0
                self.run.hours += 1
                return True
            time.sleep(0.05)
        return False

    def wait_windows(self, console: Console) -> None:
        """Wait (a bounded time) for the last hour's attribution windows to close."""
        # The last hour's windows close on the worker's wall clock. Every impression gets
        # one pCTR label, at its first click or as a no-click when its window closes; a
        # lost bid keeps its reservation until then.
        window_wait = time.monotonic()
        with console.status(f"waiting up to {AD_WINDOW_S + 10}s for the last attribution "
                            "windows to close..."):
            while time.monotonic() - window_wait < AD_WINDOW_S + 10:
                m = self.worker.metrics()
                shown = sum(_by(m, "persona_ad_impressions_total", "campaign").values())
                labels = sum(_by(m, "persona_ad_pctr_labels_total", "campaign").values())
                reserved = sum(_by(m, "persona_ad_budget_reserved", "campaign").values())
                if labels >= shown and reserved <= 1e-9:
                    break
                time.sleep(0.5)
        self.run.window_s = time.monotonic() - window_wait


def _ad_phase(worker: WorkerProcess, producer: Any, s: Settings, bootstrap: str,
              events: list[Outgoing], items: list[Outgoing], n: int, *, console: Console,
              out: Console) -> None:
    """Auctions for one simulated day: ad requests for the replay's users, the worker's
    bids answered by the seeded exchange (streams/cli/adsim.py), then what the worker counted.

    Each simulated hour's requests go out together; the next hour waits until the worker
    has bid on them and counted the exchange's events, so no event arrives after the
    worker's event clock has closed its window (it would be refused as late).
    """
    from kafka import KafkaConsumer

    from streams.cli.adsim import AdExchange, demo_campaigns

    catalogue = demo_campaigns()
    counts, last_ts = _ad_audience(events, items)
    if not counts:
        console.print("[yellow]ad phase skipped: the replay had no users to show ads to[/yellow]")
        return
    day0 = (last_ts // DAY_MS + 1) * DAY_MS  # the UTC day after the replay: a fresh budget day
    day = _AdDay(worker, producer, s.topics, AdExchange(AD_SEED, catalogue), counts, day0)
    _announce_ads(day, n, catalogue, console)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, client_id="persona-demo-ads")
    try:
        _follow_from_end(consumer, s.topics.ad_bids)
        _auction_hours(day, consumer, n, console)
        day.wait_windows(console)
    finally:
        consumer.close()
    _ad_report(worker.metrics(), catalogue, day.run, out=out)


def _ad_audience(events: list[Outgoing],
                 items: list[Outgoing]) -> tuple[dict[str, Counter[tuple[str, ...]]], int]:
    """The replay's users with their event counts by genre, and the replay's last ts."""
    from streams.cli.adsim import user_genre_counts

    genres = {}
    for it in items:
        v = orjson.loads(it.value or b"")
        genres[v["item_id"]] = v.get("categories") or []
    pairs, last_ts = [], 0
    for ev in events:
        v = orjson.loads(ev.value or b"")
        pairs.append((v["user_id"], v["item_id"]))
        last_ts = max(last_ts, int(v["ts"]))
    return user_genre_counts(pairs, genres), last_ts


def _announce_ads(day: _AdDay, n: int, catalogue: dict[str, Any], console: Console) -> None:
    exchange = day.exchange
    console.print(f"[bold]ad phase[/bold]: {n} ad requests for {len(day.users)} users over "
                  f"{time.strftime('%Y-%m-%d', time.gmtime(day.day0 / 1000))} (simulated, UTC), "
                  f"{len(catalogue['campaigns'])} campaigns, attribution window "
                  f"{AD_WINDOW_S}s")
    console.print(f"the exchange (streams/cli/adsim.py, seed {AD_SEED}) clears each auction at the "
                  f"best rival bid (median {exchange.median_price:.2f}) or the floor, and "
                  f"simulates clicks with probability {exchange.base_ctr:.0%} + "
                  f"{exchange.ctr_lift:.0%} x the user's share of replayed events in the "
                  "ad's genres")


def _follow_from_end(consumer: Any, topic: str) -> None:
    """Assign every partition of ``topic`` (waiting up to 15 s for it to exist), from its
    current end: only the bids answering this phase's requests are read."""
    from kafka import TopicPartition

    parts = None
    wait_until = time.monotonic() + 15
    while not parts and time.monotonic() < wait_until:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            time.sleep(0.2)
    tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
    consumer.assign(tps)
    consumer.seek_to_end()
    for tp in tps:
        consumer.position(tp)  # fix "the end" now, before the first request goes out


def _auction_hours(day: _AdDay, consumer: Any, n: int, console: Console) -> None:
    """Send each simulated hour's requests, answer the bids, and wait until the worker has
    counted the exchange's events before the next hour; stops at a deadline."""
    events_base = _topic_total(day.worker.metrics(), "ad-events")
    per_hour = [n // AD_HOURS + (1 if h < n % AD_HOURS else 0) for h in range(AD_HOURS)]
    started = time.monotonic()
    deadline = started + max(60.0, 0.25 * n)
    stopped = ""
    with Progress(*_bar_columns(), console=console) as progress:
        t_req = progress.add_task("ad requests ", total=n)
        t_bid = progress.add_task("bids        ", total=n)
        for hour, k in enumerate(per_hour):
            if not k:
                continue
            progress.update(t_req, description=f"ad requests {hour:02d}:30")
            pending = day.send_hour(hour, k)
            progress.advance(t_req, k)
            day.collect_bids(consumer, pending, deadline, lambda: progress.advance(t_bid))
            day.producer.flush()
            if pending:
                stopped = (f"stopped waiting for bids after {time.monotonic() - started:.0f}s:"
                           f" {len(pending)} request(s) of {hour:02d}:30 unanswered")
                break
            # The next hour moves the worker's clock on: let it count these events first.
            if not day.wait_counted(events_base, deadline):
                stopped = (f"stopped after {time.monotonic() - started:.0f}s: the worker had "
                           f"not counted the ad events of {hour:02d}:30")
                break
    day.run.bidding_s = time.monotonic() - started
    if stopped:
        console.print(f"[yellow]{stopped}[/yellow]")


def _money(x: float) -> str:
    return f"{x:,.2f}"


def _ratio(num: float, den: float, fmt: str = "{:.1%}") -> str:
    return fmt.format(num / den) if den else "n/a"


def _ad_report(m: dict[str, float], catalogue: dict[str, Any], run: _AdRun, *,
               out: Console) -> None:
    """What the worker counted in the ad phase, per campaign, and what the phase sent."""
    campaigns = [c["campaign_id"] for c in catalogue["campaigns"]]
    out.print(_spend_table(m, catalogue, run))
    out.print(_return_table(m, campaigns))
    out.print(_calibration_table(m, campaigns))
    out.print(_outcomes_table(m))
    out.print(_sample_bids_table(run))
    out.print(_ad_summary(m, run))


def _spend_table(m: dict[str, float], catalogue: dict[str, Any], run: _AdRun) -> Table:
    """Per campaign: bids, wins, spend against budget, and the hours pacing held it back."""
    campaigns = [c["campaign_id"] for c in catalogue["campaigns"]]
    budget = {c["campaign_id"]: c for c in catalogue["campaigns"]}
    placed: dict[str, int] = {}
    for b in run.bids.values():
        if b.get("campaign_id") is not None and b.get("no_bid_reason") is None:
            placed[b["campaign_id"]] = placed.get(b["campaign_id"], 0) + 1
    wins = _by(m, "persona_ad_impressions_total", "campaign")
    spend = _by(m, "persona_ad_spend_total", "campaign")
    bid_sum = _by(m, "persona_ad_bid_amount_total", "campaign")
    left = _budget_left(m)
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
    return t


def _budget_left(m: dict[str, float]) -> dict[str, float]:
    """Per campaign, the tighter of its daily and total budgets' remainders."""
    # -1 marks "no such budget"
    left: dict[str, float] = {}
    for period in ("daily", "total"):
        for c, v in _by(m, "persona_ad_budget_remaining", "campaign", period=period).items():
            if v > -0.5:
                left[c] = min(left.get(c, v), max(0.0, v))
    return left


def _return_table(m: dict[str, float], campaigns: list[str]) -> Table:
    """Per campaign: clicks, conversions, revenue and return on spend."""
    wins = _by(m, "persona_ad_impressions_total", "campaign")
    spend = _by(m, "persona_ad_spend_total", "campaign")
    clicks = _by(m, "persona_ad_clicks_total", "campaign")
    convs = _by(m, "persona_ad_conversions_total", "campaign")
    revenue = _by(m, "persona_ad_revenue_total", "campaign")
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
    return t


def _calibration_table(m: dict[str, float], campaigns: list[str]) -> Table:
    """Per campaign: mean pCTR against the observed CTR of the resolved labels."""
    label_clicks = _by(m, "persona_ad_pctr_labels_total", "campaign", label="click")
    label_none = _by(m, "persona_ad_pctr_labels_total", "campaign", label="no_click")
    predicted = _by(m, "persona_ad_pctr_predicted_clicks_total", "campaign")
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
    return t


def _outcomes_table(m: dict[str, float]) -> Table:
    """Ad requests by bid outcome: bids first, then the no-bid reasons, most first."""
    t = Table(title="ad requests by outcome", title_justify="left")
    t.add_column("outcome")
    t.add_column("requests", justify="right")
    outcomes = _by(m, "persona_ad_bids_total", "outcome")
    for o, v in sorted(outcomes.items(), key=lambda kv: (kv[0] != "bid", -kv[1], kv[0])):
        if v > 0:
            t.add_row(o if o == "bid" else f"no bid: {o}", f"{v:,.0f}")
    return t


def _sample_bids_table(run: _AdRun) -> Table:
    """The first bid of every fourth simulated hour, and what the exchange did with it."""
    t = Table(title="sample bids (the first bid of every fourth simulated hour)",
              title_justify="left", caption="user: the raw id the exchange sent, and the "
              "pseudonymous id the worker knows it by", caption_justify="left")
    for col in ("request", "time", "user", "pseudonymous id", "ad", "bid", "pCTR", "result"):
        t.add_column(col, justify="right" if col in ("bid", "pCTR") else "left")
    shown_hours: set[int] = set()
    for rid, req in run.requests.items():
        hour = (req["ts"] % DAY_MS) // HOUR_MS
        b = run.bids.get(rid)
        if hour % 4 or hour in shown_hours or b is None or b.get("no_bid_reason"):
            continue
        shown_hours.add(hour)
        t.add_row(rid, time.strftime("%H:%M:%S", time.gmtime(req["ts"] / 1000)),
                  req["user_id"], str(b["user_id"])[:12] + "…", b["ad_id"], f"{b['bid']:.3f}",
                  f"{b['pctr']:.4f}", _sample_result(b, *run.results[rid]))
    return t


def _ad_summary(m: dict[str, float], run: _AdRun) -> Table:
    """What the phase sent against what the worker counted, and how long it took."""
    events = _by(m, "persona_ad_events_total", "outcome")
    summary = Table(title="ad phase summary", title_justify="left")
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    summary.add_row("ad requests published", f"{len(run.requests):,}")
    summary.add_row("answered on ad-bids (bid or no-bid)", f"{len(run.bids):,}")
    summary.add_row("ad events sent (impressions, clicks, conversions)",
                    ", ".join(f"{run.sent[k]:,}" for k in ("impression", "click", "conversion")))
    summary.add_row("impressions delivered twice (charged once)", f"{run.resent:,}")
    summary.add_row("ad events the worker counted / ignored as duplicates",
                    f"{events.get('counted', 0):,.0f} / {events.get('duplicate', 0):,.0f}")
    refused = {k: v for k, v in events.items() if k not in ("counted", "duplicate") and v > 0}
    summary.add_row("ad events refused", ", ".join(f"{k}: {v:.0f}" for k, v in
                                                   sorted(refused.items())) or "0")
    summary.add_row("auction time (requests, bids, events)", f"{run.bidding_s:.1f}s "
                    f"({len(run.bids) / max(run.bidding_s, 1e-9):,.0f} requests/s)")
    summary.add_row("wait for the last windows to close", f"{run.window_s:.1f}s")
    p50 = _quantile_ms(m, "persona_ad_bid_decision_seconds", 0.5)
    if p50 is not None:
        summary.add_row("bid decision time (median, in process)", p50)
    return summary


def _sample_result(bid: dict[str, Any], price: float, types: list[str]) -> str:
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


# ---------------------------------------------------------------- the verb
def register(app: typer.Typer) -> None:
    """Add ``demo`` to the root command."""
    app.command("demo")(demo)


def demo(
    limit: int | None = typer.Option(None, help="Replay only the first N ratings "
                                        "(default: all 100,000)."),
    rate: float | None = typer.Option(None, help="Max events per second."),
    keep_data: bool = typer.Option(False, help="Keep the demo broker's data afterwards."),
    ad_requests: int = typer.Option(
        DEFAULT_AD_REQUESTS, min=0, help="Ad requests to auction over one simulated day "
        "after the replay, against the campaigns of ops/campaigns.demo.json (0 skips the ad "
        "phase)."),
) -> None:
    """Start a broker and a worker, replay MovieLens 100K, show recommendations and metrics,
    then run ad auctions for the replay's users and show campaign figures."""
    quiet_clients()
    s = load_settings()
    key = ensure_secret_key(s)
    code = run_demo(s, key, limit=limit, rate=rate, keep_data=keep_data, console=err_console,
                    out=std_out, ad_requests=ad_requests)
    raise typer.Exit(code)
