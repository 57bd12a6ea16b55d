"""``persona worker``: run the stream processor in this process."""

from __future__ import annotations

import typer

from streams.cli.common import fail, load_settings
from streams.settings import SettingsError


def register(app: typer.Typer) -> None:
    """Add ``worker`` to the root command."""
    app.command("worker")(worker)


def worker(
    loglevel: str | None = typer.Option(None, help="Log level (default PERSONA_LOG_LEVEL)."),
) -> None:
    """Run the stream processor (ingest, profiles, recommendations, HTTP on 127.0.0.1)."""
    s = load_settings()
    try:
        s.require_secret_key()
    except SettingsError as exc:
        raise fail(str(exc), 2) from None
    # Faust and the worker app load only here, so `persona --help` and the other verbs
    # start without them.
    from streams.app import run_worker
    from streams.runtime import Runtime, install
    from streams.worker import app as faust_app

    # The runtime before the worker: a bad campaigns, experiments or audiences file is a
    # clear error here, and the models resume from the newest checkpoint.
    try:
        install(Runtime(s)).restore()
    except SettingsError as exc:
        raise fail(str(exc), 2) from None

    run_worker(faust_app, loglevel or s.log_level)
