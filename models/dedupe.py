"""Per-user event-id deduplication with bounded memory, as pure functions.

The state is a plain list (JSON-able, so it can live in a changelog-backed table):
``[[event_key, fingerprint], ...]``, oldest first, at most ``window`` entries.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Outcome = Literal["new", "duplicate", "conflict"]


def event_key(event_id: str) -> str:
    """A short, fixed-size key for an event id, so long ids do not bloat the state.

    >>> event_key("e-1") == event_key("e-1"), len(event_key("e-1"))
    (True, 16)
    """
    return hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).hexdigest()


def check_and_add(
    state: list[list[str]] | None, event_id: str, fingerprint: str, window: int
) -> tuple[list[list[str]], Outcome]:
    """Return the new state and whether ``event_id`` is new, a duplicate or a conflict.

    A conflict is a known event id arriving with a different payload fingerprint: it is
    not applied again either, but callers report it separately.

    >>> s, o = check_and_add(None, "e1", "f1", window=2); o
    'new'
    >>> check_and_add(s, "e1", "f1", window=2)[1]
    'duplicate'
    >>> check_and_add(s, "e1", "other", window=2)[1]
    'conflict'
    """
    if window < 1:
        raise ValueError("window must be >= 1")
    entries = list(state) if state else []
    key = event_key(event_id)
    for k, fp in entries:
        if k == key:
            return entries, ("duplicate" if fp == fingerprint else "conflict")
    entries.append([key, fingerprint])
    if len(entries) > window:
        del entries[: len(entries) - window]
    return entries, "new"
