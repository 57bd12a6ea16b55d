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
ads_app = typer.Typer(help="Operate ad bidding: the kill switch.", no_args_is_help=True)
app.add_typer(ads_app, name="ads")
checkpoints_app = typer.Typer(
    help="Inspect the signed model checkpoints (<data dir>/checkpoints/<app id>/); roll "
    "back with `persona rollback`.", no_args_is_help=True)
app.add_typer(checkpoints_app, name="checkpoints")


class _KafkaLog(logging.Handler):
    """kafka-python's log, for the CLI. Its connection layer logs every failed attempt
    (at WARNING and ERROR) and then raises a bare "Unable to bootstrap" timeout: that
    chatter is not printed, but the reason is kept (an authentication or TLS failure
    first) for the CLI's own error message. Other errors are printed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last = self.auth = ""

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("kafka.net"):
            msg = record.getMessage()
            for marker in (" failed: ", "Connection lost: "):
                if marker in msg:
                    reason = msg.split(marker, 1)[1].split(" (backoff")[0].strip()
                    self.last = reason
                    if any(w in reason.upper() for w in ("AUTHENTICATION", "SASL", "SSL",
                                                         "CERTIFICATE")):
                        self.auth = reason
            return
        if record.levelno >= logging.ERROR:
            logging.getLogger().handle(record)


_kafka_log = _KafkaLog()


def _quiet_clients() -> None:
    """kafka-python logs transient connection and scheduling warnings; the CLI reports
    failures itself (with the reason, see _KafkaLog), so only other errors are shown."""
    logging.basicConfig(level=logging.WARNING)
    kafka_logger = logging.getLogger("kafka")
    kafka_logger.setLevel(logging.WARNING)
    kafka_logger.propagate = False
    if _kafka_log not in kafka_logger.handlers:
        kafka_logger.addHandler(_kafka_log)


def _kafka_problem(s: Settings, exc: Exception) -> str:
    """A failed Kafka client call in words, with the reason kafka-python only logged."""
    text = f"cannot reach Kafka at {s.bootstrap_servers} ({s.kafka_security_protocol}): {exc}"
    last = _kafka_log.auth or _kafka_log.last
    if last and last not in text:
        text += f"; last connection error: {last}"
    # A broker often just closes the socket on a failed login, so the reason may not
    # have reached us: name the settings to check whenever security is on.
    if s.kafka_security_protocol.startswith("SASL_"):
        text += ("; if the broker is up, check PERSONA_KAFKA_SASL_USERNAME, "
                 "PERSONA_KAFKA_SASL_PASSWORD and PERSONA_KAFKA_SASL_MECHANISM")
    if s.kafka_security_protocol in ("SSL", "SASL_SSL"):
        text += ("; for TLS, check PERSONA_KAFKA_SSL_CAFILE (the CA that signed the "
                 "broker's certificate) and that the host name matches it")
    return text


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
    from streams.local.broker import BrokerError, LocalBroker

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
    from streams.local.broker import BrokerError, LocalBroker

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
    from streams.local.broker import BrokerError, LocalBroker

    b = LocalBroker.from_settings(_settings())
    try:
        b.stop()
    except BrokerError as exc:
        raise _fail(str(exc)) from None
    console.print("broker stopped")


@broker_app.command("status")
def broker_status() -> None:
    """Show whether the local broker runs, its PID, port and log file."""
    from streams.local.broker import LocalBroker

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
    """Create every topic of the contract (DESIGN §2), and the internal events and ads
    topics (the ads topic always has one partition)."""
    from streams.local.broker import BrokerError, ensure_topics

    _quiet_clients()
    s = _settings()
    try:
        counts = s.topic_partitions()
        if partitions:
            counts = {n: 1 if n == s.ads_topic else partitions for n in counts}
        created = ensure_topics(s.bootstrap_servers, list(counts), counts,
                                client=s.kafka_client_kwargs(), per_topic=s.topic_configs())
    except BrokerError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # kafka-python's timeouts, NoBrokersAvailable etc.
        raise _fail(_kafka_problem(s, exc)) from None
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
    # At level warning or above Faust's terminal spinner sets the root logger to DEBUG,
    # so every debug call of Faust and aiokafka (three per message) built a LogRecord.
    w.spinner = None
    w.execute_from_commandline()


# ---------------------------------------------------------------- ads
def _control(action: str, reason: str) -> None:
    from datetime import UTC, datetime

    import orjson
    from kafka import KafkaProducer

    _quiet_clients()
    s = _settings()
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
        raise _fail(f"cannot send to {s.topics.control}: {_kafka_problem(s, exc)}") from None
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

    from streams.cli.replay import (
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
        console.print("MovieLens events are from 1997-98: the worker must run with "
                      "PERSONA_MAX_EVENT_AGE_S=0, or it dead-letters them as stale_event")
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
        producer = make_producer(s.bootstrap_servers, bootstrap_timeout_ms=10_000,
                                 **s.kafka_client_kwargs())
    except Exception as exc:  # kafka-python's NoBrokersAvailable etc.
        raise _fail(_kafka_problem(s, exc)) from None
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
        raise _fail(_kafka_problem(s, exc)) from None
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
    from models.users.privacy import Pseudonymizer
    from streams.records import ValidationError, normalize_id

    s = _settings()
    key = ensure_secret_key(s)
    p = Pseudonymizer(key.encode("utf-8"))
    for uid in user_ids:
        try:
            sys.stdout.write(f"{uid}\t{p(normalize_id(uid, 'user_id'))}\n")
        except ValidationError as exc:
            raise _fail(f"invalid user id: {exc.detail}") from None


# ---------------------------------------------------------------- checkpoints
def _checkpointer(settings: Settings, need_key: bool):  # type: ignore[no-untyped-def]
    """The worker's checkpointer, with PERSONA_SECRET_KEY (or the key file persona made)."""
    from streams.checkpoint import Checkpointer

    secret = settings.secret_key
    if not secret and settings.secret_key_file.exists():
        secret = settings.secret_key_file.read_text().strip()
    if need_key and not secret:
        raise _fail("PERSONA_SECRET_KEY is not set: checkpoints are signed with it, so "
                    "without it none can be verified", 2)
    return Checkpointer(settings.checkpoint_dir, keep=settings.checkpoint_keep,
                        secret=secret.encode("utf-8") if secret else None)


@checkpoints_app.command("list")
def checkpoints_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the model checkpoints: version, time, size, and whether each verifies
    (signature checked with PERSONA_SECRET_KEY). The worker loads the newest "ok" one
    that is not rolled back."""
    import json
    from datetime import UTC, datetime

    from rich.table import Table

    s = _settings()
    cp = _checkpointer(s, need_key=False)
    infos = cp.describe()
    pending = cp.pending_rollback()
    active = next((i.version for i in reversed(infos)
                   if not i.rolled_back and i.status in ("ok", "unchecked")), None)
    rows = [{"version": i.version,
             "saved": datetime.fromtimestamp(i.mtime, UTC).isoformat(timespec="seconds"),
             "bytes": i.size, "status": i.status,
             "where": "rolled-back" if i.rolled_back else "current",
             "loads": i.version == active and not i.rolled_back,
             "file": str(i.path)} for i in infos]
    if as_json:
        sys.stdout.write(json.dumps({"directory": str(cp.directory), "checkpoints": rows,
                                     "pending_rollback": pending}, indent=2) + "\n")
        return
    if not rows:
        console.print(f"no model checkpoints in {cp.directory}")
        return
    table = Table(title=f"model checkpoints in {cp.directory}")
    for col in ("version", "saved (UTC)", "size", "verified", "where", ""):
        table.add_column(col, justify="right" if col in ("version", "size") else "left")
    for r in rows:
        status = r["status"]
        style = "green" if status == "ok" else "yellow" if status == "unchecked" else "red"
        table.add_row(str(r["version"]), r["saved"][:19].replace("T", " "),
                      f"{r['bytes']:,}", f"[{style}]{status}[/{style}]", r["where"],
                      "<- loads at start" if r["loads"] else "")
    screen = out if out.is_terminal else Console(width=max(out.width, 120))
    screen.print(table)
    if not cp.secret:
        console.print("[yellow]signatures not checked:[/yellow] set PERSONA_SECRET_KEY to "
                      "verify them")
    if pending is not None:
        console.print(f"a rollback to version {pending} is pending: a running worker "
                      "applies it within seconds, a stopped one at its next start")


@checkpoints_app.command("adopt")
def checkpoints_adopt(
    version: int = typer.Argument(..., help="Version of an older unsigned models-<V>.pkl."),
) -> None:
    """Sign an older unsigned checkpoint (models-<V>.pkl, written before checkpoints were
    signed) so the worker loads it again. Only for a file you trust: loading a checkpoint
    runs its pickled code. The .pkl moves to rolled-back/."""
    from streams.checkpoint import CheckpointError

    cp = _checkpointer(_settings(), need_key=True)
    try:
        path = cp.adopt(version)
    except CheckpointError as exc:
        raise _fail(exc.detail) from None
    console.print(f"signed version {version}: {path}")


@app.command("rollback")
def rollback_cmd(
    to: int | None = typer.Option(None, "--to", help="Version to roll back to (default: the "
                                  "newest verified one before the newest). See `persona "
                                  "checkpoints list`."),
    wait: float = typer.Option(0.0, min=0.0, help="Seconds to wait for a running worker to "
                               "load it (exit code 1 if none did; it then loads at start)."),
) -> None:
    """Roll the models back to an earlier checkpoint, in one command.

    Newer checkpoints move to <checkpoint dir>/rolled-back/ (kept, not deleted), so the
    chosen one is the newest: a running worker loads it within about a second without a
    restart, a stopped worker at its next start. The target must verify with
    PERSONA_SECRET_KEY. Roll forward again with --to a rolled-back version.
    """
    from streams.checkpoint import CheckpointError

    cp = _checkpointer(_settings(), need_key=True)
    try:
        target, moved = cp.rollback(to)
    except CheckpointError as exc:
        raise _fail(f"cannot roll back: {exc.detail}") from None
    aside = ", ".join(str(v) for v in moved) or "none"
    console.print(f"rolled back to model checkpoint {target}; newer versions moved to "
                  f"{cp.rolled_back_dir}: {aside}")
    if wait <= 0:
        console.print("a running worker loads it within about a second; a stopped one "
                      "at its next start")
        return
    deadline = time.monotonic() + wait
    while (outcome := cp.rollback_outcome()) is None:
        if time.monotonic() >= deadline:
            raise _fail(f"no running worker loaded it within {wait:g}s; the next worker "
                        "start will")
        time.sleep(0.2)
    if not outcome.get("ok"):
        raise _fail(f"the worker could not load version {target}: {outcome.get('detail')}")
    console.print(f"the worker {outcome.get('detail')}")


# ---------------------------------------------------------------- segments
@app.command("segments")
def segments_cmd(
    url: str = typer.Option("", help="A worker's base URL (default: "
                            "http://PERSONA_WEB_HOST:PERSONA_WEB_PORT)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the segments the worker found, with their sizes and a plain-words description
    (activity, spend level, favourite categories)."""
    import json
    import urllib.request

    from rich.table import Table

    s = _settings()
    base = (url or f"http://{s.web_host}:{s.web_port}").rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/segments", timeout=10) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot read {base}/segments: {exc}") from None
    if as_json:
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return
    if not body.get("enabled"):
        raise _fail("segmentation is off on that worker (PERSONA_SEGMENTS=0)")
    t = Table(title="segments", title_justify="left")
    t.add_column("segment")
    t.add_column("users", justify="right")
    t.add_column("description")
    for entry in body["segments"]:
        t.add_row(entry["name"], f"{entry['size']:,}", entry["description"])
    out.print(t)


# ---------------------------------------------------------------- report
@app.command("report")
def report_cmd(
    url: str = typer.Option("", help="A worker's metrics URL (default: "
                            "http://PERSONA_WEB_HOST:PERSONA_WEB_PORT/metrics)."),
    metrics_file: Path | None = typer.Option(None, "--metrics-file",
                                             help="Read a saved /metrics page instead."),
    experiment: str = typer.Option("", help="Experiment to report (default: every one)."),
    control: str = typer.Option("", help="Control variant (default: the experiment's "
                                "control in PERSONA_EXPERIMENTS_FILE, else the first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    html: Path | None = typer.Option(None, "--html", help="Also write the report, with "
                                     "charts, as one self-contained HTML file here."),
) -> None:
    """Per experiment variant: users, recommendations, CTR, conversion rate, revenue per
    user, and the lift against control with its 95% interval and p-value; says when the
    sample is too small to conclude."""
    import json
    import urllib.request

    from streams.cli.report import as_json as report_json
    from streams.cli.report import figures, render, report

    s = _settings()
    if metrics_file is not None:
        try:
            text = metrics_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise _fail(f"{metrics_file}: {exc.strerror}") from None
    else:
        target = url or f"http://{s.web_host}:{s.web_port}/metrics"
        try:
            with urllib.request.urlopen(target, timeout=10) as resp:
                text = resp.read().decode("utf-8")
        except OSError as exc:
            raise _fail(f"cannot read {target}: {exc}") from None
    try:
        configured = s.read_experiments()
    except SettingsError as exc:
        raise _fail(str(exc), 2) from None
    found = figures(text)
    if experiment:
        found = {experiment: found[experiment]} if experiment in found else {}
    if not found:
        raise _fail("no experiment figures in the metrics (is PERSONA_EXPERIMENTS_FILE set "
                    "on the worker?)")
    out_json = {}
    html_sections = []
    for name, variants in found.items():
        ctrl = control or (configured[name].control if name in configured else next(iter(variants)))
        try:
            rows = report(variants, ctrl)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        html_sections.append((name, ctrl, rows))
        if as_json:
            out_json[name] = {"control": ctrl, "variants": report_json(rows)}
            continue
        render(out, name, ctrl, rows)
    if as_json:
        sys.stdout.write(json.dumps(out_json, indent=2) + "\n")
    if html is not None:
        from datetime import UTC, datetime

        from streams.cli.html_report import ExperimentReport, write_html

        source = str(metrics_file) if metrics_file is not None else target
        try:
            write_html(html, [ExperimentReport(*section) for section in html_sections], source,
                       datetime.now(UTC))
        except OSError as exc:
            raise _fail(f"{html}: {exc.strerror}") from None
        console.print(f"HTML report written to {html}")


# ---------------------------------------------------------------- top
@app.command("top")
def top_cmd(
    url: str = typer.Option("", help="A worker's metrics URL (default: "
                            "http://PERSONA_WEB_HOST:PERSONA_WEB_PORT/metrics)."),
    interval: float = typer.Option(1.0, min=0.1, help="Seconds between scrapes."),
    once: bool = typer.Option(False, "--once", help="Render one frame (totals since the "
                              "worker started) and exit; exit code 1 if it is unreachable."),
    iterations: int | None = typer.Option(None, min=1, help="Stop after N frames (default: "
                                          "until Ctrl-C)."),
) -> None:
    """Live dashboard of one worker: events/s, lag, dead letters, recommendations, CTR and
    conversion by strategy and variant, bids, spend and budgets, kill switch. Exit code 1
    when the last scrape failed."""
    from streams.cli.top import run

    s = _settings()
    target = url or f"http://{s.web_host}:{s.web_port}/metrics"
    # piped output gets room for the side-by-side panels (rich assumes 80 without a terminal)
    screen = out if out.is_terminal else Console(width=max(out.width, 140))
    code = run(target, screen, interval=interval, iterations=1 if once else iterations,
               live=not once)
    raise typer.Exit(code)


# ---------------------------------------------------------------- demo
@app.command("demo")
def demo(
    limit: int | None = typer.Option(None, help="Replay only the first N ratings "
                                        "(default: all 100,000)."),
    rate: float | None = typer.Option(None, help="Max events per second."),
    keep_data: bool = typer.Option(False, help="Keep the demo broker's data afterwards."),
    ad_requests: int = typer.Option(
        600, min=0, help="Ad requests to auction over one simulated day after the replay, "
        "against the campaigns of ops/campaigns.demo.json (0 skips the ad phase)."),
) -> None:
    """Start a broker and a worker, replay MovieLens 100K, show recommendations and metrics,
    then run ad auctions for the replay's users and show campaign figures."""
    from streams.cli.demo import run_demo

    _quiet_clients()
    s = _settings()
    key = ensure_secret_key(s)
    code = run_demo(s, key, limit=limit, rate=rate, keep_data=keep_data, console=console,
                    out=out, ad_requests=ad_requests)
    raise typer.Exit(code)


# ---------------------------------------------------------------- evaluate
DEFAULT_STRATEGIES = "hybrid,cooccurrence,popularity"


@app.command("evaluate")
def evaluate(
    dataset: str | None = typer.Option(
        None, help="ml-100k (default: MovieLens 100K) or synthetic-drift (seeded, drifting)."),
    input_path: Path | None = typer.Option(
        None, "--input", help="Replay this CSV (header user,item,ts[,rating]) or JSONL file "
        "instead; ts in epoch s, epoch ms or ISO-8601 with a zone."),
    limit: int | None = typer.Option(None, min=1, help="Replay only the first N events."),
    k: int = typer.Option(10, "--k", min=1, max=100, help="Length of each recommended list."),
    strategy: str | None = typer.Option(
        None, help=f"Comma-separated strategies to compare (default {DEFAULT_STRATEGIES})."),
    jobs: int | None = typer.Option(
        None, min=1, help="Worker processes, one strategy each (default: min(2, strategies))."),
    exploration: float = typer.Option(
        0.0, min=0.0, max=1.0, help="Share of requests the strategy bandit serves with "
        "another strategy. Default 0: each row measures its strategy alone (with the "
        "service's PERSONA_EXPLORATION every row would drift toward the same bandit)."),
    window: int = typer.Option(10_000, min=1, help="Events per window of the per-window "
                                                   "figures."),
    rating: bool = typer.Option(False, "--rating", help="Rating prediction instead: BiasedMF "
                                "predicts each rating, then learns it; reports MAE and RMSE."),
    seed: int = typer.Option(0, help="Seed of the synthetic-drift stream."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Count and skip bad input rows "
                                  "instead of stopping at the first."),
    json_path: Path | None = typer.Option(None, "--json", help="Write every figure (overall "
                                          "and per window) and the run's parameters here."),
    plot: Path | None = typer.Option(None, help="Write a PNG of the per-window curves here."),
) -> None:
    """Replay a stream test-then-train through the service's models and report quality."""
    from dataclasses import asdict, replace

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from models.engine import STRATEGIES
    from streams.offline.datasets import DatasetMissing
    from streams.offline.evaluate import (
        DATASETS,
        RATING_MODEL,
        InputError,
        ReplayConfig,
        load_dataset,
        read_events,
        replay_rating,
        results_table,
        run_strategies,
        write_json,
        write_plot,
    )

    if input_path is not None and dataset is not None:
        raise _fail("give either --dataset or --input, not both", 2)
    if dataset is not None and dataset not in DATASETS:
        raise _fail(f"unknown --dataset {dataset!r}: choose from {', '.join(DATASETS)}", 2)
    if rating and strategy is not None:
        raise _fail("--rating replays ratings through BiasedMF: --strategy does not apply", 2)
    names = [n.strip() for n in (strategy or DEFAULT_STRATEGIES).split(",") if n.strip()]
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or not names:
        raise _fail(f"unknown strategy {', '.join(unknown) or '(none)'}: choose from "
                    f"{', '.join(STRATEGIES)}", 2)
    names = list(dict.fromkeys(names))  # each once, in the order given
    if plot is not None and plot.suffix.lower() != ".png":
        raise _fail(f"--plot writes a PNG: give a path ending in .png, not {plot}", 2)
    # the service's own hyperparameters, so the figures are the service's
    engine_cfg = _settings().engine_config()
    engine_cfg = replace(engine_cfg, exploration=exploration)
    try:
        if input_path is not None:
            stream = read_events(input_path, skip_bad=skip_bad, require_rating=rating)
        else:
            stream = load_dataset(dataset or "ml-100k", seed=seed)
    except InputError as exc:
        raise _fail(str(exc), 2) from None
    except DatasetMissing as exc:
        raise _fail(str(exc)) from None
    if stream.skipped:
        console.print(f"[yellow]skipped {stream.skipped} bad row(s)[/yellow], e.g.:")
        for err in stream.errors:
            console.print(f"  {err}", markup=False, highlight=False)
    if rating and not stream.has_rating:
        raise _fail(f"--rating needs a rating on every event; {stream.name} has none", 2)
    stream = stream.limited(limit)
    cfg = ReplayConfig(k=k, window=window, engine=engine_cfg)
    n = len(stream.rows)
    models_run = [RATING_MODEL] if rating else names
    jobs = min(jobs or 2, len(models_run))

    started = time.monotonic()
    with Progress(TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        tasks = {m: progress.add_task(m, total=n) for m in models_run}

        def advance(model: str, done: int) -> None:
            progress.advance(tasks[model], done)

        if rating:
            results = {RATING_MODEL: replay_rating(
                stream, cfg, lambda done: advance(RATING_MODEL, done))}
        else:
            results = run_strategies(names, stream, cfg, jobs, advance)
    took = time.monotonic() - started

    source = str(input_path) if input_path is not None else (dataset or "ml-100k")
    title = f"prequential replay of {source}: {n:,} events" + ("" if rating else f", k={k}")
    # piped output gets room for every column (rich assumes 80 without a terminal)
    table_out = out if out.is_terminal else Console(width=max(out.width, 120))
    table_out.print(results_table(results, k, title))
    console.print(f"replayed {n:,} events x {len(models_run)} in {took:.1f}s "
                  f"({jobs} process{'es' if jobs > 1 else ''})")
    params = {
        "mode": "rating" if rating else "ranking",
        "dataset": None if input_path is not None else (dataset or "ml-100k"),
        "input": None if input_path is None else str(input_path),
        "seed": seed if (dataset == "synthetic-drift" and input_path is None) else None,
        "limit": limit,
        "events": n,
        "users": len({r[0] for r in stream.rows}),
        "items": len({r[1] for r in stream.rows}),
        "skipped": stream.skipped,
        "k": k,
        "window": window,
        "exploration": None if rating else engine_cfg.exploration,
        # the hyperparameters every replay shared (each set its own strategy and k)
        "engine": None if rating else {key: v for key, v in asdict(engine_cfg).items()
                                       if key not in ("strategy", "top_k")},
        "strategies": models_run,
        "jobs": jobs,
        "seconds": took,
    }
    if json_path is not None:
        write_json(json_path, params, results)
        console.print(f"figures written to {json_path}")
    if plot is not None:
        write_plot(plot, results, k, title)
        console.print(f"per-window curves drawn in {plot}")


# ---------------------------------------------------------------- evaluate-ads
# One string, not the docstring: typer keeps a docstring's single line breaks after its
# first paragraph, which then wrap badly.
_EVALUATE_ADS_HELP = (
    "Replay the Open Bandit Dataset through the bidder and score its click predictions."
    "\n\nEach logged impression is an ad request with one candidate (the item shown): the "
    "bidder predicts its pCTR, then is told the impression and the click, if any, and "
    "closes attribution windows as event time passes, as the ads agent does. Reports "
    "prequential log loss, AUC and calibration (sum of pCTR / clicks) against a running "
    "mean click rate with the same prior, overall and per campaign, events/s, and whether "
    "the targets are met (log loss <= the baseline's, calibration in [0.8, 1.25])."
    "\n\nThe data comes from the obp wheel: pip install --no-deps obp==0.4.1. Exit codes: "
    "0 done (targets met or not), 1 data not installed, 2 bad usage. See docs/ads.md."
)


@app.command("evaluate-ads", help=_EVALUATE_ADS_HELP)
def evaluate_ads(
    policy: str = typer.Option(
        "random", help="Logging policy of the Open Bandit Dataset sample: random (uniform, "
        "the unbiased log) or bts (Bernoulli Thompson sampling)."),
    campaign: str = typer.Option(
        "pooled", help="OBD campaign: all, men, women, or pooled (the three merged by "
        "timestamp, one model learning them all)."),
    limit: int | None = typer.Option(None, min=1, help="Replay only the first N impressions "
                                     "(default: all, 30,000 pooled)."),
    window_minutes: float = typer.Option(
        30.0, min=0.001, help="Attribution window in event-time minutes (PERSONA_AD_WINDOW_S's "
        "default): a row's negative label is learned when it closes."),
    as_json: bool = typer.Option(False, "--json", help="Print every figure, the targets and "
                                 "the run's parameters as JSON on stdout, instead of the table."),
) -> None:
    """Score pCTR on the Open Bandit Dataset (help: _EVALUATE_ADS_HELP)."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from streams.offline.evaluate_ads import AdsReplayConfig, replay_ads, results_table, targets
    from streams.offline.obd import CAMPAIGNS, POLICIES, POOLED, ObdMissing, load_obd

    if policy not in POLICIES:
        raise _fail(f"unknown --policy {policy!r}: choose from {', '.join(POLICIES)}", 2)
    if campaign not in (POOLED, *CAMPAIGNS):
        raise _fail(f"unknown --campaign {campaign!r}: choose from {POOLED}, "
                    f"{', '.join(CAMPAIGNS)}", 2)
    try:
        sample = load_obd(policy, campaign)
    except ObdMissing as exc:
        raise _fail(str(exc)) from None
    if limit is not None:
        sample.impressions = sample.impressions[:limit]
    cfg = AdsReplayConfig(window_ms=max(1, round(window_minutes * 60_000)))
    n = len(sample.impressions)
    started = time.monotonic()
    with Progress(TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(f"{policy}/{campaign}", total=n)
        result = replay_ads(sample, cfg, lambda done: progress.advance(task, done))
    took = time.monotonic() - started
    met = targets(result["overall"])
    if as_json:
        params = {"policy": policy, "campaign": campaign, "limit": limit,
                  "window_minutes": window_minutes, "seconds": took}
        sys.stdout.write(json.dumps({"params": params, "results": result, "targets": met},
                                    indent=2) + "\n")
    else:
        title = (f"pCTR on OBD {policy}/{campaign}: {n:,} requests, prequential, "
                 f"{window_minutes:g} min window")
        table_out = out if out.is_terminal else Console(width=max(out.width, 120))
        table_out.print(results_table(result, title))
    for name, t in met.items():
        mark = "[green]met[/green]" if t["met"] else "[red]NOT met[/red]"
        console.print(f"target {name}: {t['value']:.5g} {t['target']}: {mark}")
    console.print(f"replayed {n:,} requests ({result['events']:,} events) in {took:.1f}s, "
                  f"{result['events_per_s']:,.0f} events/s")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
