"""Versioned model checkpoints on local disk, so a restarted worker resumes warm.

Files are ``<data dir>/checkpoints/<app id>/models-<version>.pkl``, written atomically
(temp file, fsync, rename); the newest ``keep`` are kept, so a bad model can be rolled
back by deleting the newest file. Loading takes the newest file that loads.

Replays are safe: events learned into a snapshot and redelivered after a crash are
dropped by the per-user dedupe window (recovered from its changelog) before they reach
the models. A crash loses at most the learning since the last checkpoint.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from models.engine import Engine

log = logging.getLogger(__name__)

_NAME = re.compile(r"^models-(\d{8})\.pkl$")


@dataclass
class Checkpointer:
    directory: Path
    keep: int = 3

    def versions(self) -> list[tuple[int, Path]]:
        """Checkpoint files, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for p in self.directory.iterdir():
            m = _NAME.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    def save(self, engine: Engine) -> tuple[int, Path, int]:
        """Write a new version; return (version, path, bytes). Old ones beyond ``keep`` go."""
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = self.versions()
        version = existing[-1][0] + 1 if existing else 1
        path = self.directory / f"models-{version:08d}.pkl"
        blob = engine.snapshot()
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
        for _, old in self.versions()[: -self.keep]:
            old.unlink(missing_ok=True)
        return version, path, len(blob)

    def restore_latest(self, engine: Engine) -> int | None:
        """Load the newest checkpoint that loads into ``engine``; its version, or None."""
        for version, path in reversed(self.versions()):
            try:
                engine.restore(path.read_bytes())
            except (OSError, ValueError) as exc:
                log.warning("skipping model checkpoint %s: %s", path.name, exc)
                continue
            log.info("models restored from checkpoint %s (%d updates)", path.name, engine.updates)
            return version
        return None


def timed_save(checkpointer: Checkpointer, engine: Engine) -> tuple[int, int, float]:
    """Save and return (version, bytes, seconds)."""
    started = time.perf_counter()
    version, _, size = checkpointer.save(engine)
    return version, size, time.perf_counter() - started
