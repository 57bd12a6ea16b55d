"""What every ``persona`` verb shares: the consoles, settings and error exits, the
quieting of kafka-python's log, and the pseudonymization key."""

from __future__ import annotations

import logging
import os
import secrets

import typer
from rich.console import Console

from streams.settings import Settings, SettingsError

# Progress, status and errors go to stderr, so stdout carries only the command's output.
console = Console(stderr=True)
out = Console()


def wide(width: int) -> Console:
    """``out``, or when piped a console ``width`` columns wide: rich assumes 80 without a
    terminal, too narrow for the tables' columns."""
    return out if out.is_terminal else Console(width=max(out.width, width))


class KafkaLog(logging.Handler):
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


kafka_log = KafkaLog()


def quiet_clients() -> None:
    """kafka-python logs transient connection and scheduling warnings; the CLI reports
    failures itself (with the reason, see KafkaLog), so only other errors are shown."""
    logging.basicConfig(level=logging.WARNING)
    kafka_logger = logging.getLogger("kafka")
    kafka_logger.setLevel(logging.WARNING)
    kafka_logger.propagate = False
    if kafka_log not in kafka_logger.handlers:
        kafka_logger.addHandler(kafka_log)


def kafka_problem(s: Settings, exc: Exception) -> str:
    """A failed Kafka client call in words, with the reason kafka-python only logged."""
    text = f"cannot reach Kafka at {s.bootstrap_servers} ({s.kafka_security_protocol}): {exc}"
    last = kafka_log.auth or kafka_log.last
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


def load_settings() -> Settings:
    """The settings from PERSONA_* variables; a bad one exits with code 2."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        console.print(f"[red]settings error:[/red] {exc}")
        raise typer.Exit(2) from None


def fail(msg: str, code: int = 1) -> typer.Exit:
    """Print ``msg`` as an error; the caller raises the returned exit (so type checkers
    see the command end there)."""
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
