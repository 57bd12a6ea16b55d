"""Versioned, signed model checkpoints on local disk, so a restarted worker resumes warm.

Files are ``<data dir>/checkpoints/<app id>/models-<version>.ckpt``, written atomically
(temp file, fsync, rename); the newest ``keep`` are kept. Each file is an 80-byte header
and a pickle::

    b"PRSNCKP2"   magic (8 bytes)
    length        payload bytes, big-endian (8 bytes)
    sha256        SHA-256 of the payload (32 bytes)
    tag           HMAC-SHA256 over magic + length + sha256 (32 bytes), keyed by a key
                  derived from PERSONA_SECRET_KEY
    payload       pickle of {"format", "engine", "extra"}

Why a keyed MAC and not just a checksum: unpickling runs code, so a checkpoint is only as
trustworthy as whoever wrote it. A plain SHA-256 catches truncation and flipped bits, but
anyone able to write the file can rewrite its checksum too; the HMAC needs the secret the
worker already holds, so a file it did not write (planted, tampered, or signed under
another key) is refused before anything is unpickled. The plain SHA-256 is kept as well,
only to tell corruption (``corrupt``) from a wrong key or tampering (``bad_signature``).
Files of the older unsigned layout (``models-<version>.pkl``) are refused (``unsigned``)
by default: ``persona checkpoints adopt VERSION`` signs one an operator vouches for.

Loading takes the newest file that verifies and loads; each refused one is skipped with
a warning and counted (``persona_model_checkpoint_load_failures_total{reason}``). If none
does, the worker starts cold and says so.

Rollback (``persona rollback``) moves the versions newer than the target into
``rolled-back/`` (kept, not deleted) and leaves a ``ROLLBACK`` request file: a running
worker loads the target within about a second (agents/checkpoints.py), a stopped one at
its next start. A running worker keeps its catalogue (what the items topic says now); a
starting one loads the checkpoint's and then reads the items topic from the beginning.
Version numbers count the rolled-back files too, so one is never reused.

Replays are safe: events learned into a snapshot and redelivered after a crash are
dropped by the per-user dedupe window (recovered from its changelog) before they reach
the models. A crash loses at most the learning since the last checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import pickle
import re
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from models import pickles
from models.ads.bidding import Bidder
from models.ads.pctr import PctrModel
from models.checks import is_int
from models.engine import Engine

log = logging.getLogger(__name__)

_NAME = re.compile(r"^models-(\d{8})\.(ckpt|pkl)$")
MAGIC = b"PRSNCKP2"
_HEADER = struct.Struct(">8sQ32s32s")
HEADER_BYTES = _HEADER.size  # 80
ROLLED_BACK = "rolled-back"
ROLLBACK_REQUEST = "ROLLBACK"
ROLLBACK_RESULT = "ROLLBACK.result"
# Why a checkpoint was refused: the label values of the load-failures metric.
FAILURE_REASONS = ("unreadable", "unsigned", "truncated", "corrupt", "bad_signature",
                   "invalid")
# A checkpoint payload is {"format": CHECKPOINT_FORMAT, "engine": <Engine.snapshot()>,
# "extra": {name: <snapshot bytes>}}; a bare engine snapshot (the layout before the
# extras existed) still loads once signed.
CHECKPOINT_FORMAT = "persona-checkpoint-1"
_KEY_LABEL = b"persona/model-checkpoint-signing/v1"


class CheckpointError(ValueError):
    """A checkpoint that must not be loaded; ``reason`` is one of FAILURE_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def signing_key(secret: bytes) -> bytes:
    """The checkpoint MAC key, derived from PERSONA_SECRET_KEY.

    Derived rather than the secret itself, so a checkpoint tag and a pseudonymous user id
    (HMAC of the same secret) can never be the same function of their input.
    """
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def seal(payload: bytes, secret: bytes) -> bytes:
    """Header + payload: the bytes of a checkpoint file."""
    digest = hashlib.sha256(payload).digest()
    head = MAGIC + struct.pack(">Q", len(payload)) + digest
    tag = hmac.new(signing_key(secret), head, hashlib.sha256).digest()
    return head + tag + payload


def unseal(blob: bytes, secret: bytes | None) -> bytes:
    """The payload of a checkpoint file's bytes, or CheckpointError saying why not.

    Nothing is unpickled here: a file fails before its payload is ever interpreted.
    ``secret`` None checks the structure and SHA-256 only (for listing without a key).
    """
    if len(blob) < HEADER_BYTES:
        if MAGIC.startswith(blob[:8]) or blob[:8] == MAGIC:
            raise CheckpointError("truncated", f"{len(blob)} bytes, shorter than the header")
        raise CheckpointError("unsigned", "no persona checkpoint header")
    magic, length, digest, tag = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise CheckpointError("unsigned", "no persona checkpoint header")
    payload = blob[HEADER_BYTES:]
    if len(payload) != length:
        raise CheckpointError("truncated", f"payload has {len(payload)} of {length} bytes")
    if not hmac.compare_digest(hashlib.sha256(payload).digest(), digest):
        raise CheckpointError("corrupt", "SHA-256 of the payload does not match")
    if secret is None:
        return payload
    expected = hmac.new(signing_key(secret), blob[: HEADER_BYTES - 32], hashlib.sha256).digest()
    if not hmac.compare_digest(expected, tag):
        raise CheckpointError("bad_signature", "signed with another PERSONA_SECRET_KEY, or "
                              "tampered with")
    return payload


class Snapshotable(Protocol):
    """Another model saved in the same checkpoint file as the engine (the ads models)."""

    def snapshot(self) -> bytes: ...

    def restore(self, blob: bytes) -> None: ...


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint file as ``persona checkpoints list`` shows it."""

    version: int
    path: Path
    size: int
    mtime: float
    rolled_back: bool
    # "ok", a FAILURE_REASONS value, or "unchecked" (no key to verify with)
    status: str


@dataclass
class Checkpointer:
    directory: Path
    keep: int = 3
    # PERSONA_SECRET_KEY's bytes: signs on save, verifies on load. Without it the
    # checkpointer can list files but neither save nor load.
    secret: bytes | None = field(default=None, repr=False)

    # -- files ------------------------------------------------------------------------------
    @property
    def rolled_back_dir(self) -> Path:
        return self.directory / ROLLED_BACK

    @property
    def rollback_request(self) -> Path:
        return self.directory / ROLLBACK_REQUEST

    @property
    def rollback_result(self) -> Path:
        """What the worker did with the last request: {"version", "ok", "detail", "ts"}."""
        return self.directory / ROLLBACK_RESULT

    def _report_rollback(self, version: int, ok: bool, detail: str) -> None:
        with contextlib.suppress(OSError):
            _write_atomic(self.rollback_result, orjson.dumps(
                {"version": version, "ok": ok, "detail": detail, "ts": time.time()}))
        self.rollback_request.unlink(missing_ok=True)

    def rollback_outcome(self) -> dict[str, Any] | None:
        """The worker's answer to the last rollback request, once it gave one."""
        try:
            outcome = orjson.loads(self.rollback_result.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return outcome if isinstance(outcome, dict) else None

    @staticmethod
    def _scan(directory: Path) -> list[tuple[int, Path]]:
        if not directory.is_dir():
            return []
        found = []
        for p in directory.iterdir():
            m = _NAME.match(p.name)
            if m and p.is_file():
                found.append((int(m.group(1)), p))
        # a signed file sorts after an unsigned one of the same version
        return sorted(found, key=lambda vp: (vp[0], vp[1].suffix == ".ckpt"))

    def versions(self) -> list[tuple[int, Path]]:
        """Checkpoint files in use (not rolled back), oldest first."""
        return self._scan(self.directory)

    def _next_version(self) -> int:
        every = self._scan(self.directory) + self._scan(self.rolled_back_dir)
        return max((v for v, _ in every), default=0) + 1

    def _key(self) -> bytes:
        if not self.secret:
            raise CheckpointError("unreadable", "no PERSONA_SECRET_KEY to sign or verify "
                                  "checkpoints with")
        return self.secret

    def read_payload(self, path: Path) -> bytes:
        """The verified payload of ``path``, or CheckpointError."""
        key = self._key()
        if path.suffix == ".pkl":
            raise CheckpointError("unsigned", "older unsigned checkpoint (persona "
                                  "checkpoints adopt signs one you trust)")
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise CheckpointError("unreadable", exc.strerror or type(exc).__name__) from None
        return unseal(blob, key)

    def status(self, path: Path) -> str:
        """"ok", the reason ``path`` would be refused, or "unchecked" when it looks whole
        but there is no key to check its signature with."""
        if self.secret:
            try:
                self.read_payload(path)
            except CheckpointError as exc:
                return exc.reason
            return "ok"
        if path.suffix == ".pkl":
            return "unsigned"
        try:
            unseal(path.read_bytes(), None)
        except OSError:
            return "unreadable"
        except CheckpointError as exc:
            return exc.reason
        return "unchecked"

    def describe(self) -> list[CheckpointInfo]:
        """Every checkpoint file, in use and rolled back, oldest first, with its status."""
        out = []
        for rolled, directory in ((True, self.rolled_back_dir), (False, self.directory)):
            for version, path in self._scan(directory):
                try:
                    st = path.stat()
                except OSError:
                    continue
                out.append(CheckpointInfo(version, path, st.st_size, st.st_mtime, rolled,
                                          self.status(path)))
        return sorted(out, key=lambda i: (i.version, not i.rolled_back))

    # -- save and load ----------------------------------------------------------------------
    def save(
        self, engine: Engine, extra: Mapping[str, Snapshotable] | None = None
    ) -> tuple[int, Path, int]:
        """Write a new signed version; return (version, path, bytes). Old ones beyond
        ``keep`` go. ``extra`` models go into the same file, so all roll back together."""
        key = self._key()
        self.directory.mkdir(parents=True, exist_ok=True)
        version = self._next_version()
        path = self.directory / f"models-{version:08d}.ckpt"
        payload = pickle.dumps(
            {"format": CHECKPOINT_FORMAT, "engine": engine.snapshot(),
             "extra": {name: m.snapshot() for name, m in (extra or {}).items()}},
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        blob = seal(payload, key)
        _write_atomic(path, blob)
        for _, old in self.versions()[: -self.keep]:
            old.unlink(missing_ok=True)
        return version, path, len(blob)

    def load(
        self, path: Path, engine: Engine, extra: Mapping[str, Snapshotable] | None = None,
        *, keep_catalogue: bool = False,
    ) -> None:
        """Verify ``path``, then load it into ``engine`` (and ``extra``, where the file has
        them; a model the file lacks keeps its state). CheckpointError if refused.
        ``keep_catalogue``: see ``Engine.restore``."""
        payload = self.read_payload(path)
        # Only a verified payload gets here; "invalid" then means a layout this code does
        # not know (e.g. written by another persona version).
        try:
            engine_blob, extra_blobs = _split(payload)
            engine.restore(engine_blob, keep_catalogue=keep_catalogue)
            for name, model in (extra or {}).items():
                if name in extra_blobs:
                    model.restore(extra_blobs[name])
        except ValueError as exc:
            raise CheckpointError("invalid", str(exc)) from None

    def restore_latest(
        self,
        engine: Engine,
        extra: Mapping[str, Snapshotable] | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> int | None:
        """Load the newest checkpoint that verifies and loads; its version, or None.

        A pending rollback request is carried out first. Each refused file is logged
        and reported to ``on_failure(reason)``; if every file is refused, the models stay
        cold and an error says so.
        """
        target = self.pending_rollback()
        if target is not None:
            moved = self._move_newer_than(target)
            log.warning("model rollback to checkpoint %d carried out at start (%d newer "
                        "moved to %s/)", target, len(moved), ROLLED_BACK)
        files = self.versions()
        refused = 0
        for version, path in reversed(files):
            try:
                self.load(path, engine, extra)
            except CheckpointError as exc:
                refused += 1
                log.warning("refusing model checkpoint %s: %s", path.name, exc)
                if on_failure is not None:
                    on_failure(exc.reason)
                continue
            log.info("models restored from checkpoint %s (%d updates)", path.name,
                     engine.updates)
            if target is not None:
                self._report_rollback(target, version == target,
                                      f"loaded version {version} at start")
            return version
        if target is not None:
            self._report_rollback(target, False, "no checkpoint loaded at start")
        if refused:
            log.error("none of the %d model checkpoints in %s could be loaded: starting with "
                      "cold models (see the warnings above)", refused, self.directory)
        else:
            log.info("no model checkpoint in %s yet: starting with cold models",
                     self.directory)
        return None

    # -- rollback ---------------------------------------------------------------------------
    def pending_rollback(self) -> int | None:
        """The version a ``persona rollback`` asked for and no worker applied yet."""
        try:
            raw = self.rollback_request.read_bytes()
        except OSError:
            return None
        try:
            version = orjson.loads(raw)["version"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            version = None
        if not is_int(version):
            log.error("dropping unreadable rollback request %s", self.rollback_request)
            self.rollback_request.unlink(missing_ok=True)
            return None
        return version

    def _move_newer_than(self, version: int) -> list[int]:
        """Move the versions newer than ``version`` into rolled-back/; those moved."""
        moved = []
        for v, path in self.versions():
            if v <= version:
                continue
            self.rolled_back_dir.mkdir(parents=True, exist_ok=True)
            dest = self.rolled_back_dir / path.name
            if dest.exists():
                dest = dest.with_name(f"{path.name}.{time.time_ns()}")
            with contextlib.suppress(FileNotFoundError):  # pruned meanwhile
                path.replace(dest)
                moved.append(v)
        return moved

    def rollback(self, to: int | None = None) -> tuple[int, list[int]]:
        """Make version ``to`` (default: the newest verified one before the newest file)
        the newest: newer ones move to rolled-back/ and a request file tells a running
        worker to load it. A rolled-back ``to`` moves back first. Returns (target, moved);
        CheckpointError if there is no such version or it does not verify."""
        self._key()
        if to is None:
            files = self.versions()
            if not files:
                raise CheckpointError("unreadable", f"no checkpoints in {self.directory}")
            newest = files[-1][0]
            older = [v for v, p in reversed(files) if v < newest and self.status(p) == "ok"]
            if not older:
                raise CheckpointError("unreadable", "no verified checkpoint older than "
                                      f"version {newest} to roll back to")
            to = older[0]
        in_use = [p for v, p in self.versions() if v == to and p.suffix == ".ckpt"]
        parked = [p for v, p in self._scan(self.rolled_back_dir) if v == to]
        path = (in_use or parked or [None])[0]
        if path is None:
            raise CheckpointError("unreadable", f"no signed checkpoint version {to} in "
                                  f"{self.directory}")
        try:
            self.read_payload(path)  # refuse a target that does not verify
        except CheckpointError as exc:
            raise CheckpointError(exc.reason, f"version {to} is refused: {exc}") from None
        self.rollback_result.unlink(missing_ok=True)
        # The request first: a worker that saves meanwhile skips saving, and moves a
        # version written in between aside itself when it applies the request.
        _write_atomic(self.rollback_request, orjson.dumps({"version": to, "ts": time.time()}))
        if path.parent != self.directory:
            path.replace(self.directory / f"models-{to:08d}.ckpt")
        return to, self._move_newer_than(to)

    def apply_rollback(
        self, engine: Engine, extra: Mapping[str, Snapshotable] | None = None
    ) -> int | None:
        """In a running worker: load the requested version's models, if a request is
        pending; the live catalogue stays (``Engine.restore(keep_catalogue=True)``).

        Returns the version loaded, or None if nothing was pending. CheckpointError if the
        requested version is gone or refused (the request is dropped and the models stay).
        """
        target = self.pending_rollback()
        if target is None:
            return None
        try:
            self._move_newer_than(target)  # a save that raced the CLI
            paths = [p for v, p in self.versions() if v == target and p.suffix == ".ckpt"]
            if not paths:
                raise CheckpointError("unreadable", f"checkpoint version {target} is gone")
            # The catalogue stays: it is what the items topic says now, and an item
            # deleted or withdrawn since the checkpoint must stay so.
            self.load(paths[0], engine, extra, keep_catalogue=True)
        except CheckpointError as exc:
            self._report_rollback(target, False, str(exc))
            raise
        except Exception as exc:
            self._report_rollback(target, False, type(exc).__name__)
            raise
        self._report_rollback(target, True, f"loaded version {target} while running")
        return target

    def adopt(self, version: int) -> Path:
        """Sign the older unsigned ``models-<version>.pkl`` an operator vouches for: it
        becomes ``models-<version>.ckpt``; the .pkl moves to rolled-back/."""
        key = self._key()
        legacy = self.directory / f"models-{version:08d}.pkl"
        try:
            payload = legacy.read_bytes()
        except OSError as exc:
            raise CheckpointError("unreadable", f"{legacy}: {exc.strerror}") from None
        if payload[:8] == MAGIC:
            raise CheckpointError("invalid", f"{legacy.name} is already signed")
        target = legacy.with_suffix(".ckpt")
        _write_atomic(target, seal(payload, key))
        self.rolled_back_dir.mkdir(parents=True, exist_ok=True)
        legacy.replace(self.rolled_back_dir / legacy.name)
        return target


def _write_atomic(path: Path, blob: bytes) -> None:
    """Temp file, fsync, rename, fsync the directory: all or nothing, even on power loss."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AdModels:
    """The bidder's learned models (pCTR, pCVR) as one checkpoint entry."""

    def __init__(self, bidder: Bidder) -> None:
        self.bidder = bidder

    def snapshot(self) -> bytes:
        return pickle.dumps({"pctr": self.bidder.pctr, "pcvr": self.bidder.pcvr},
                            protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes) -> None:
        try:
            state = pickles.loads(blob)  # from a verified local checkpoint only
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
            model = pickles.loads(blob)  # from a verified local checkpoint only
        except Exception as exc:  # any unpickling failure means "not ours"
            raise ValueError(f"not a {self.kind.__name__} snapshot: {type(exc).__name__}") from None
        if not isinstance(model, self.kind):
            raise ValueError(f"checkpoint entry is not a {self.kind.__name__}")
        self.holder.model = model


def _split(payload: bytes) -> tuple[bytes, dict[str, bytes]]:
    """(engine snapshot, extra snapshots) of a verified checkpoint payload."""
    try:
        state = pickles.loads(payload)  # verified by unseal() first
    except Exception as exc:  # any unpickling failure means "not ours"
        raise ValueError(f"not a checkpoint: {type(exc).__name__}") from None
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        engine_blob, extra = state.get("engine"), state.get("extra") or {}
        if not isinstance(engine_blob, bytes) or not isinstance(extra, dict):
            raise ValueError("checkpoint holds unexpected types")
        return engine_blob, extra
    return payload, {}  # a bare engine snapshot (older layout)


def timed_save(
    checkpointer: Checkpointer, engine: Engine, extra: Mapping[str, Snapshotable] | None = None
) -> tuple[int, int, float]:
    """Save and return (version, bytes, seconds)."""
    started = time.perf_counter()
    version, _, size = checkpointer.save(engine, extra)
    return version, size, time.perf_counter() - started
