"""``persona schema [TOPIC]``: the JSON Schema (draft 2020-12) of a public topic's messages,
or of every public topic as one object keyed by topic."""

from __future__ import annotations

import sys

import typer

from streams.cli.common import fail
from streams.schema import TOPICS, UnknownTopic, schema_json


def schema(
    topic: str | None = typer.Argument(
        None, show_default=False,
        help=f"A public topic: {', '.join(TOPICS)}. All of them when omitted."),
) -> None:
    """Print the JSON Schema of a public topic (generated from the record declarations,
    like docs/contract.md's field tables)."""
    try:
        text = schema_json(topic)
    except UnknownTopic as exc:
        raise fail(str(exc), 2) from None
    # Plain JSON on stdout, for piping into a validator or a file.
    sys.stdout.write(text + "\n")


def register(app: typer.Typer) -> None:
    """Add ``schema`` to the root command."""
    app.command("schema")(schema)
