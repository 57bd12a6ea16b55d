"""The ``persona`` command: broker, topics, worker, produce, consume, demo, pseudonymize."""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from pathlib import Path

import typer
from rich.console import Console

from streams.settings import Settings, SettingsError

console = Console(stderr=True)
out = Console()

app = typer.Typer(
    help="persona: real-time personalization on Kafka. Settings come from PERSONA_* "
    "environment variables (see docs/settings.md).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
broker_app = typer.Typer(help="Run the local Apache Kafka broker (KRaft, 127.0.0.1).",
                         no_args_is_help=True)
topics_app = typer.Typer(help="Manage persona's Kafka topics.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")


def _quiet_clients() -> None:
    """kafka-python logs transient connection and scheduling warnings at WARNING; the
    CLI reports failures itself, so only its errors are worth a user's screen."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        console.print(f"[red]settings error:[/red] {exc}")
        raise typer.Exit(2) from None


def _fail(msg: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/red] {msg}")
    return typer.Exit(code)


def ensure_secret_key(settings: Settings) -> str:
    """PERSONA_SECRET_KEY, else the key in <data_dir>/secret.key, made on first use (0600)."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.secret_key_file
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    console.print(f"generated a pseudonymization key in {path} (git-ignored; keep it)")
    return key


# ---------------------------------------------------------------- broker
@broker_app.command("fetch")
def broker_fetch() -> None:
    """Download the Kafka jars from Maven Central once (cached under PERSONA_DATA_DIR)."""
    from streams.broker import BrokerError, LocalBroker

    b = LocalBroker.from_settings(_settings())
    try:
        with console.status(f"fetching Apache Kafka {b.version} jars with Maven..."):
            lib = b.fetch()
    except BrokerError as exc:
        raise _fail(str(exc)) from None
    console.print(f"Kafka {b.version} jars in {lib}")


@broker_app.command("start")
def broker_start(
    timeout: float = typer.Option(90.0, help="Seconds to wait for the broker to answer."),
) -> None:
    """Start the local broker on PERSONA_BROKER_HOST:PERSONA_BROKER_PORT and wait until ready."""
    from streams.broker import BrokerError, LocalBroker

    b = LocalBroker.from_settings(_settings())
    started = time.monotonic()
    try:
        with console.status(f"starting Apache Kafka {b.version} on {b.bootstrap}..."):
            b.start(timeout=timeout)
    except BrokerError as exc:
        raise _fail(str(exc)) from None
    console.print(f"broker ready on {b.bootstrap} in {time.monotonic() - started:.1f}s")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the local broker (controlled shutdown)."""
    from streams.broker import BrokerError, LocalBroker

    b = LocalBroker.from_settings(_settings())
    try:
        b.stop()
    except BrokerError as exc:
        raise _fail(str(exc)) from None
    console.print("broker stopped")


@broker_app.command("status")
def broker_status() -> None:
    """Show whether the local broker runs, its PID, port and log file."""
    from streams.broker import LocalBroker

    st = LocalBroker.from_settings(_settings()).status()
    for k, v in st.items():
        out.print(f"{k:>10}: {v}")
    if not st.get("running"):
        raise typer.Exit(1)


# ---------------------------------------------------------------- topics
@topics_app.command("create")
def topics_create(
    partitions: int | None = typer.Option(None, help="Partitions (default PERSONA_PARTITIONS)."),
) -> None:
    """Create every topic of the contract (DESIGN §2), and the internal events topic."""
    from streams.broker import BrokerError, ensure_topics

    s = _settings()
    try:
        created = ensure_topics(s.bootstrap_servers, s.created_topics(),
                                partitions or s.partitions)
    except BrokerError as exc:
        raise _fail(str(exc)) from None
    console.print(f"created {len(created)} topic(s): {', '.join(created) or '-'}")


# ---------------------------------------------------------------- worker
@app.command("worker")
def worker(
    loglevel: str | None = typer.Option(None, help="Log level (default PERSONA_LOG_LEVEL)."),
) -> None:
    """Run the stream processor (ingest, profiles, recommendations, HTTP on 127.0.0.1)."""
    s = _settings()
    try:
        s.require_secret_key()
    except SettingsError as exc:
        raise _fail(str(exc), 2) from None
    from faust import Worker

    from streams.app import app as faust_app

    w = Worker(faust_app, loglevel=loglevel or s.log_level, quiet=True)
    w.execute_from_commandline()


# ---------------------------------------------------------------- produce / consume
@app.command("produce")
def produce(
    source: str = typer.Argument(..., help="A JSONL file, or 'movielens' for the bundled "
                                 "MovieLens 100K (items, then clicks and purchases)."),
    topic: str | None = typer.Option(None, help="Topic for a JSONL file (e.g. clicks)."),
    rate: float | None = typer.Option(None, help="Max events per second (default: no limit)."),
    limit: int | None = typer.Option(None, help="Send at most this many events."),
) -> None:
    """Publish events to Kafka with a progress bar."""
    from rich.progress import Progress

    from streams.replay import (
        jsonl_records,
        make_producer,
        movielens_events,
        movielens_items,
        publish,
    )

    _quiet_clients()
    s = _settings()
    if source == "movielens":
        records = movielens_items(s.topics) + movielens_events(s.topics, limit)
    else:
        path = Path(source)
        if not path.is_file():
            raise _fail(f"{source}: no such file (or use 'movielens')")
        if not topic:
            raise _fail("--topic is required for a JSONL file")
        records = list(jsonl_records(path, topic))
        if limit is not None:
            records = records[:limit]
    try:
        producer = make_producer(s.bootstrap_servers)
    except Exception as exc:  # kafka-python's NoBrokersAvailable etc.
        raise _fail(f"cannot reach Kafka at {s.bootstrap_servers}: {exc}") from None
    started = time.monotonic()
    with Progress(console=console) as progress:
        task = progress.add_task("publishing", total=len(records))
        n = publish(producer, records, rate, on_sent=lambda k: progress.advance(task, k))
    producer.close()
    took = time.monotonic() - started
    console.print(f"sent {n} events in {took:.1f}s ({n / max(took, 1e-9):,.0f}/s)")


@app.command("consume")
def consume(
    topic: str = typer.Argument(..., help="Topic to tail, e.g. recommendations, dead-letters."),
    from_beginning: bool = typer.Option(False, help="Start at the oldest message."),
    max_messages: int | None = typer.Option(None, "--max", help="Stop after N messages."),
    timeout: float | None = typer.Option(None, help="Stop after N idle seconds."),
    raw: bool = typer.Option(False, help="Print one JSON object per line (for scripts)."),
) -> None:
    """Tail an output topic, readable."""
    import orjson
    from kafka import KafkaConsumer

    _quiet_clients()
    s = _settings()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=s.bootstrap_servers,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=int(timeout * 1000) if timeout else float("inf"),
    )
    n = 0
    try:
        for msg in consumer:
            n += 1
            try:
                value = orjson.loads(msg.value) if msg.value is not None else None
            except orjson.JSONDecodeError:
                value = {"undecodable": repr(msg.value[:200])}
            if raw:
                sys.stdout.write(orjson.dumps(value).decode() + "\n")
                sys.stdout.flush()
            else:
                out.print(f"[dim]{msg.topic}[{msg.partition}]@{msg.offset}[/dim]")
                out.print_json(data=value)
            if max_messages and n >= max_messages:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


@app.command("pseudonymize")
def pseudonymize_cmd(
    user_ids: list[str] = typer.Argument(..., help="Your application's user ids."),
) -> None:
    """Print the pseudonymous id persona uses for each user id (same keyed hash as ingest)."""
    from models.privacy import Pseudonymizer
    from streams.records import ValidationError, normalize_id

    s = _settings()
    key = ensure_secret_key(s)
    p = Pseudonymizer(key.encode("utf-8"))
    for uid in user_ids:
        try:
            sys.stdout.write(f"{uid}\t{p(normalize_id(uid, 'user_id'))}\n")
        except ValidationError as exc:
            raise _fail(f"invalid user id: {exc.detail}") from None


# ---------------------------------------------------------------- demo
@app.command("demo")
def demo(
    limit: int | None = typer.Option(None, help="Replay only the first N ratings "
                                        "(default: all 100,000)."),
    rate: float | None = typer.Option(None, help="Max events per second."),
    keep_data: bool = typer.Option(False, help="Keep the demo broker's data afterwards."),
) -> None:
    """Start a broker and a worker, replay MovieLens 100K, show recommendations and metrics."""
    from streams.demo import run_demo

    _quiet_clients()
    s = _settings()
    key = ensure_secret_key(s)
    code = run_demo(s, key, limit=limit, rate=rate, keep_data=keep_data, console=console,
                    out=out)
    raise typer.Exit(code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
