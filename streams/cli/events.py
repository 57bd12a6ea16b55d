"""``persona produce``, ``consume`` and ``pseudonymize``: events into and out of Kafka,
and the pseudonymous ids ingest gives users."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from streams.cli.common import (
    console,
    ensure_secret_key,
    fail,
    kafka_problem,
    load_settings,
    out,
    quiet_clients,
)


def register(app: typer.Typer) -> None:
    """Add ``produce``, ``consume`` and ``pseudonymize`` to the root command."""
    app.command("produce")(produce)
    app.command("consume")(consume)
    app.command("pseudonymize")(pseudonymize_cmd)


def produce(
    source: str = typer.Argument(..., help="A JSONL file, or 'movielens' for the bundled "
                                 "MovieLens 100K (items, then clicks and purchases)."),
    topic: str | None = typer.Option(None, help="Topic for a JSONL file (e.g. clicks)."),
    rate: float | None = typer.Option(None, help="Max events per second (default: no limit)."),
    limit: int | None = typer.Option(None, help="Send at most this many events."),
) -> None:
    """Publish events to Kafka with a progress bar."""
    from rich.progress import Progress

    from streams.cli.replay import (
        jsonl_records,
        make_producer,
        movielens_events,
        movielens_items,
        publish,
    )

    quiet_clients()
    s = load_settings()
    if source == "movielens":
        records = movielens_items(s.topics) + movielens_events(s.topics, limit)
        console.print("MovieLens events are from 1997-98: the worker must run with "
                      "PERSONA_MAX_EVENT_AGE_S=0, or it dead-letters them as stale_event")
    else:
        path = Path(source)
        if not path.is_file():
            raise fail(f"{source}: no such file (or use 'movielens')")
        if not topic:
            raise fail("--topic is required for a JSONL file")
        records = list(jsonl_records(path, topic))
        if limit is not None:
            records = records[:limit]
    try:
        producer = make_producer(s.bootstrap_servers, bootstrap_timeout_ms=10_000,
                                 **s.kafka_client_kwargs())
    except Exception as exc:  # kafka-python's NoBrokersAvailable etc.
        raise fail(kafka_problem(s, exc)) from None
    started = time.monotonic()
    with Progress(console=console) as progress:
        task = progress.add_task("publishing", total=len(records))
        n = publish(producer, records, rate, on_sent=lambda k: progress.advance(task, k))
    producer.close()
    took = time.monotonic() - started
    console.print(f"sent {n} events in {took:.1f}s ({n / max(took, 1e-9):,.0f}/s)")


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

    quiet_clients()
    s = load_settings()
    try:
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=s.bootstrap_servers,
            auto_offset_reset="earliest" if from_beginning else "latest",
            enable_auto_commit=False,
            group_id=None,
            consumer_timeout_ms=int(timeout * 1000) if timeout else float("inf"),
            bootstrap_timeout_ms=10_000,
            **s.kafka_client_kwargs(),
        )
    except Exception as exc:  # kafka-python's timeouts, NoBrokersAvailable etc.
        raise fail(kafka_problem(s, exc)) from None
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


def pseudonymize_cmd(
    user_ids: list[str] = typer.Argument(..., help="Your application's user ids."),
) -> None:
    """Print the pseudonymous id persona uses for each user id (same keyed hash as ingest)."""
    from models.users.privacy import Pseudonymizer
    from streams.records import ValidationError, normalize_id

    s = load_settings()
    key = ensure_secret_key(s)
    p = Pseudonymizer(key.encode("utf-8"))
    for uid in user_ids:
        try:
            sys.stdout.write(f"{uid}\t{p(normalize_id(uid, 'user_id'))}\n")
        except ValidationError as exc:
            raise fail(f"invalid user id: {exc.detail}") from None
