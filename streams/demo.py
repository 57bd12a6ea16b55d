"""``persona demo``: broker + worker + MovieLens replay + recommendations and metrics.

Everything it starts runs on 127.0.0.1 under <data_dir>/demo and is stopped at the end,
also on Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streams.settings import Settings

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
) -> int:
    from streams.broker import BrokerError, LocalBroker, ensure_topics, free_port
    from streams.replay import make_producer, movielens_events, movielens_items, publish
    from streams.worker_proc import WorkerError, WorkerProcess

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
        ensure_topics(broker.bootstrap, s.created_topics(), s.partitions)

        web_port = free_port()
        worker = WorkerProcess(
            env={
                "PERSONA_BROKER_PORT": str(port),
                "PERSONA_BOOTSTRAP": broker.bootstrap,
                "PERSONA_SECRET_KEY": secret_key,
                "PERSONA_DATA_DIR": str(demo_dir),
                "PERSONA_LOG_LEVEL": os.environ.get("PERSONA_LOG_LEVEL", "warning"),
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
        producer.close()
        m = worker.metrics()
        _report(worker, m, events, elapsed, total, console=console, out=out)
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
                  caption=f"pseudonymous id {body['user_id']}; strategy {body['strategy']} "
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
