"""The ``persona`` command: the root typer app, to which each verb module of
``streams/cli/`` adds its commands."""

from __future__ import annotations

from importlib import import_module

import typer

app = typer.Typer(
    help="persona: real-time personalization on Kafka. Settings come from PERSONA_* "
    "environment variables (see docs/settings.md).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# The modules of streams/cli/ whose ``register(app)`` adds their verbs; adding a verb
# module is one more name here. `persona --help` lists the commands in this order, then
# the groups (broker, topics, ads, checkpoints) in this order. Each module imports only
# typer and rich at the top: Faust, Kafka clients and the data load inside the commands.
VERB_MODULES = ("worker", "events", "broker", "ads", "checkpoints", "marketing", "demo",
                "evaluate", "schema")

for _name in VERB_MODULES:
    import_module(f"streams.cli.{_name}").register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
