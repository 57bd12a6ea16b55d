"""``persona broker`` (fetch, start, stop, status of the local Kafka broker) and
``persona topics create``."""

from __future__ import annotations

import time

import typer

from streams.cli.common import console, fail, kafka_problem, load_settings, out, quiet_clients

broker_app = typer.Typer(help="Run the local Apache Kafka broker (KRaft, 127.0.0.1).",
                         no_args_is_help=True)
topics_app = typer.Typer(help="Manage persona's Kafka topics.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the broker and topics groups to the root command."""
    app.add_typer(broker_app, name="broker")
    app.add_typer(topics_app, name="topics")


@broker_app.command("fetch")
def broker_fetch() -> None:
    """Download the Kafka jars from Maven Central once (cached under PERSONA_DATA_DIR)."""
    from streams.local.broker import BrokerError, LocalBroker

    b = LocalBroker.from_settings(load_settings())
    try:
        with console.status(f"fetching Apache Kafka {b.version} jars with Maven..."):
            lib = b.fetch()
    except BrokerError as exc:
        raise fail(str(exc)) from None
    console.print(f"Kafka {b.version} jars in {lib}")


@broker_app.command("start")
def broker_start(
    timeout: float = typer.Option(90.0, help="Seconds to wait for the broker to answer."),
) -> None:
    """Start the local broker on PERSONA_BROKER_HOST:PERSONA_BROKER_PORT and wait until ready."""
    from streams.local.broker import BrokerError, LocalBroker

    b = LocalBroker.from_settings(load_settings())
    started = time.monotonic()
    try:
        with console.status(f"starting Apache Kafka {b.version} on {b.bootstrap}..."):
            b.start(timeout=timeout)
    except BrokerError as exc:
        raise fail(str(exc)) from None
    console.print(f"broker ready on {b.bootstrap} in {time.monotonic() - started:.1f}s")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the local broker (controlled shutdown)."""
    from streams.local.broker import BrokerError, LocalBroker

    b = LocalBroker.from_settings(load_settings())
    try:
        b.stop()
    except BrokerError as exc:
        raise fail(str(exc)) from None
    console.print("broker stopped")


@broker_app.command("status")
def broker_status() -> None:
    """Show whether the local broker runs, its PID, port and log file."""
    from streams.local.broker import LocalBroker

    st = LocalBroker.from_settings(load_settings()).status()
    for k, v in st.items():
        out.print(f"{k:>10}: {v}")
    if not st.get("running"):
        raise typer.Exit(1)


@topics_app.command("create")
def topics_create(
    partitions: int | None = typer.Option(None, help="Partitions (default PERSONA_PARTITIONS)."),
) -> None:
    """Create every topic of the contract (docs/contract.md), and the internal events and
    ads topics (the ads topic always has one partition)."""
    from streams.local.broker import BrokerError, ensure_topics

    quiet_clients()
    s = load_settings()
    try:
        counts = s.topic_partitions()
        if partitions:
            counts = {n: 1 if n == s.ads_topic else partitions for n in counts}
        created = ensure_topics(s.bootstrap_servers, list(counts), counts,
                                client=s.kafka_client_kwargs(), per_topic=s.topic_configs())
    except BrokerError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # kafka-python's timeouts, NoBrokersAvailable etc.
        raise fail(kafka_problem(s, exc)) from None
    console.print(f"created {len(created)} topic(s): {', '.join(created) or '-'}")
