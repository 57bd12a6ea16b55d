"""``persona checkpoints`` (list, adopt) and ``persona rollback``: the signed model
checkpoints the worker saves and loads."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import typer

from streams.cli.common import console, fail, load_settings, wide
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.checkpoint import Checkpointer

checkpoints_app = typer.Typer(
    help="Inspect the signed model checkpoints (<data dir>/checkpoints/<app id>/); roll "
    "back with `persona rollback`.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``rollback`` and the checkpoints group to the root command."""
    app.command("rollback")(rollback_cmd)
    app.add_typer(checkpoints_app, name="checkpoints")


def _checkpointer(settings: Settings, need_key: bool) -> Checkpointer:
    """The worker's checkpointer, with PERSONA_SECRET_KEY (or the key file persona made)."""
    from streams.checkpoint import Checkpointer

    secret = settings.secret_key
    if not secret and settings.secret_key_file.exists():
        secret = settings.secret_key_file.read_text().strip()
    if need_key and not secret:
        raise fail("PERSONA_SECRET_KEY is not set: checkpoints are signed with it, so "
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

    s = load_settings()
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
    screen = wide(120)
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

    cp = _checkpointer(load_settings(), need_key=True)
    try:
        path = cp.adopt(version)
    except CheckpointError as exc:
        raise fail(exc.detail) from None
    console.print(f"signed version {version}: {path}")


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

    cp = _checkpointer(load_settings(), need_key=True)
    try:
        target, moved = cp.rollback(to)
    except CheckpointError as exc:
        raise fail(f"cannot roll back: {exc.detail}") from None
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
            raise fail(f"no running worker loaded it within {wait:g}s; the next worker "
                       "start will")
        time.sleep(0.2)
    if not outcome.get("ok"):
        raise fail(f"the worker could not load version {target}: {outcome.get('detail')}")
    console.print(f"the worker {outcome.get('detail')}")
