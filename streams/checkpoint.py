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
import pickle
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from models.ads import PctrModel
from models.bidding import Bidder
from models.engine import Engine

log = logging.getLogger(__name__)

_NAME = re.compile(r"^models-(\d{8})\.pkl$")
# A checkpoint file holds {"format": CHECKPOINT_FORMAT, "engine": <Engine.snapshot()>,
# "extra": {name: <snapshot bytes>}}; a file that is a bare engine snapshot (written
# before the extras existed) still loads.
CHECKPOINT_FORMAT = "persona-checkpoint-1"


class Snapshotable(Protocol):
    """Another model saved in the same checkpoint file as the engine (the ads models)."""

    def snapshot(self) -> bytes: ...

    def restore(self, blob: bytes) -> None: ...


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

    def save(
        self, engine: Engine, extra: Mapping[str, Snapshotable] | None = None
    ) -> tuple[int, Path, int]:
        """Write a new version; return (version, path, bytes). Old ones beyond ``keep`` go.

        ``extra`` models go into the same file, so all of them roll back together.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = self.versions()
        version = existing[-1][0] + 1 if existing else 1
        path = self.directory / f"models-{version:08d}.pkl"
        blob = pickle.dumps(
            {"format": CHECKPOINT_FORMAT, "engine": engine.snapshot(),
             "extra": {name: m.snapshot() for name, m in (extra or {}).items()}},
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
        for _, old in self.versions()[: -self.keep]:
            old.unlink(missing_ok=True)
        return version, path, len(blob)

    def restore_latest(
        self, engine: Engine, extra: Mapping[str, Snapshotable] | None = None
    ) -> int | None:
        """Load the newest checkpoint that loads into ``engine`` (and ``extra``, where the
        file has them; a model the file lacks keeps its state); its version, or None."""
        for version, path in reversed(self.versions()):
            try:
                engine_blob, extra_blobs = _split(path.read_bytes())
                engine.restore(engine_blob)
                for name, model in (extra or {}).items():
                    if name in extra_blobs:
                        model.restore(extra_blobs[name])
            except (OSError, ValueError) as exc:
                log.warning("skipping model checkpoint %s: %s", path.name, exc)
                continue
            log.info("models restored from checkpoint %s (%d updates)", path.name, engine.updates)
            return version
        return None


class AdModels:
    """The bidder's learned models (pCTR, pCVR) as one checkpoint entry."""

    def __init__(self, bidder: Bidder) -> None:
        self.bidder = bidder

    def snapshot(self) -> bytes:
        return pickle.dumps({"pctr": self.bidder.pctr, "pcvr": self.bidder.pcvr},
                            protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes) -> None:
        try:
            state = pickle.loads(blob)  # our own local checkpoint files only
        except Exception as exc:  # any unpickling failure means "not ours"
            raise ValueError(f"not an ads snapshot: {type(exc).__name__}") from None
        if not (isinstance(state, dict) and isinstance(state.get("pctr"), PctrModel)
                and isinstance(state.get("pcvr"), PctrModel)):
            raise ValueError("ads snapshot holds unexpected types")
        self.bidder.pctr, self.bidder.pcvr = state["pctr"], state["pcvr"]


class Pickled:
    """A model kept in ``holder.model`` (of type ``kind``) as one checkpoint entry."""

    def __init__(self, holder: Any, kind: type) -> None:
        self.holder, self.kind = holder, kind

    def snapshot(self) -> bytes:
        return pickle.dumps(self.holder.model, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes) -> None:
        try:
            model = pickle.loads(blob)  # our own local checkpoint files only
        except Exception as exc:  # any unpickling failure means "not ours"
            raise ValueError(f"not a {self.kind.__name__} snapshot: {type(exc).__name__}") from None
        if not isinstance(model, self.kind):
            raise ValueError(f"checkpoint entry is not a {self.kind.__name__}")
        self.holder.model = model


def _split(blob: bytes) -> tuple[bytes, dict[str, bytes]]:
    """(engine snapshot, extra snapshots) of a checkpoint file's bytes."""
    try:
        state = pickle.loads(blob)  # our own local checkpoint files only
    except Exception as exc:  # any unpickling failure means "not ours"
        raise ValueError(f"not a checkpoint: {type(exc).__name__}") from None
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        engine_blob, extra = state.get("engine"), state.get("extra") or {}
        if not isinstance(engine_blob, bytes) or not isinstance(extra, dict):
            raise ValueError("checkpoint holds unexpected types")
        return engine_blob, extra
    return blob, {}  # a bare engine snapshot (older files)


def timed_save(
    checkpointer: Checkpointer, engine: Engine, extra: Mapping[str, Snapshotable] | None = None
) -> tuple[int, int, float]:
    """Save and return (version, bytes, seconds)."""
    started = time.perf_counter()
    version, _, size = checkpointer.save(engine, extra)
    return version, size, time.perf_counter() - started
