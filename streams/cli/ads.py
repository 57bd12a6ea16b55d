"""``persona ads``: the kill switch of ad bidding, sent to the worker on the control
topic."""

from __future__ import annotations

import typer

from streams.cli.common import console, fail, kafka_problem, load_settings, quiet_clients

ads_app = typer.Typer(help="Operate ad bidding: the kill switch.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ads group to the root command."""
    app.add_typer(ads_app, name="ads")


def _control(action: str, reason: str) -> None:
    """Send ``action`` (with the operator's reason) on the control topic."""
    from datetime import UTC, datetime

    import orjson
    from kafka import KafkaProducer

    quiet_clients()
    s = load_settings()
    payload = {"action": action, "ts": datetime.now(UTC).isoformat(timespec="milliseconds")}
    if reason:
        payload["reason"] = reason
    try:
        # An operator's switch: fail within seconds when Kafka is unreachable.
        producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all",
                                 bootstrap_timeout_ms=10_000, max_block_ms=10_000,
                                 client_id="persona-ads-control", **s.kafka_client_kwargs())
        producer.send(s.topics.control, value=orjson.dumps(payload)).get(timeout=10)
        producer.close()
    except Exception as exc:  # kafka-python's NoBrokersAvailable, timeouts etc.
        raise fail(f"cannot send to {s.topics.control}: {kafka_problem(s, exc)}") from None
    console.print(f"sent {action} to topic {s.topics.control}")


@ads_app.command("kill")
def ads_kill(reason: str = typer.Option("", help="Why (kept in the control topic).")) -> None:
    """Stop all bidding now: every ad request gets no_bid kill_switch until `ads resume`.

    The worker applies it within a second and keeps it across restarts.
    """
    _control("ads_kill", reason)


@ads_app.command("resume")
def ads_resume(reason: str = typer.Option("", help="Why (kept in the control topic).")) -> None:
    """Resume bidding after `ads kill` (PERSONA_ADS_KILL_SWITCH=true still wins)."""
    _control("ads_resume", reason)
