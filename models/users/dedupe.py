"""Per-user event-id deduplication with bounded memory, as pure functions.

The state is a plain list (JSON-able, so it can live in a changelog-backed table), oldest
first, at most ``window`` entries. Each entry is one string of 32 hex characters: the
event id's key (``event_key``, 16) then its payload fingerprint's (``fingerprint_key``, 16).
One string per entry, not a pair: a full window of 256 is 256 objects to decode and hold
instead of 768 (about 23 KB instead of 52 KB as Python objects, 9 KB instead of 10 KB
as JSON).

Windows written before (entries ``[event_key, fingerprint]``) are read as they are and
rewritten in this form on the next write. The reverse does not hold: a version before
this one fails on a string entry, so rolling back past it needs the ``d`` lists of the
profiles changelog emptied (or this reader backported).

Collision risk: keys are 64-bit hashes, so a new event is taken for a duplicate only if
its key equals one of the at most ``window - 1`` others in its user's window: about
256 / 2**64 = 1.4e-17 per event (1.4e-5 over 10**12 events). The fingerprint's 64 bits
(a hash of it, unless it already is 16 hex characters) only tell a redelivery from a
conflict, and both are dropped.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Outcome = Literal["new", "duplicate", "conflict"]

KEY_CHARS = 16  # hex characters of each of the two keys in an entry
_ENTRY = 2 * KEY_CHARS
_HEX = "0123456789abcdef"


def event_key(event_id: str) -> str:
    """A short, fixed-size key for an event id, so long ids do not bloat the state.

    >>> event_key("e-1") == event_key("e-1"), len(event_key("e-1"))
    (True, 16)
    """
    return hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).hexdigest()


def fingerprint_key(fingerprint: str) -> str:
    """The fixed-size form of a payload fingerprint kept in an entry: the fingerprint
    itself when it already is 16 lowercase hex characters (what ingest computes,
    ``streams.records.wire_fingerprint``), else a 64-bit hash of it.

    >>> fingerprint_key("0123456789abcdef"), len(fingerprint_key("")), len(fingerprint_key("f"))
    ('0123456789abcdef', 16, 16)
    """
    if len(fingerprint) == KEY_CHARS and not fingerprint.strip(_HEX):
        return fingerprint
    return hashlib.blake2b(fingerprint.encode("utf-8"), digest_size=8,
                           person=b"fingerprint").hexdigest()


def _entry(e: object) -> str | None:
    """One entry in the current form; None for one that cannot be read (corrupt)."""
    if type(e) is str:
        return e if len(e) == _ENTRY else None
    if isinstance(e, (list, tuple)) and len(e) == 2:  # the older [event_key, fingerprint]
        key = str(e[0])
        return key + fingerprint_key(str(e[1])) if len(key) == KEY_CHARS else None
    return None


def _entries(state: list | None) -> tuple[list[str], str]:
    """The state's entries in the current form and all of them joined into one string."""
    if not state:
        return [], ""
    entries = list(state)
    if type(entries[0]) is str and type(entries[-1]) is str:
        # The current form (a window is always rewritten whole): checked, not assumed.
        try:
            joined = "".join(entries)
        except TypeError:
            joined = ""
        if len(joined) == _ENTRY * len(entries):
            return entries, joined
    entries = [e for e in map(_entry, entries) if e is not None]
    return entries, "".join(entries)


def keys(state: list | None) -> list[str]:
    """The event keys in a state, oldest first (either form).

    >>> keys(check_and_add(None, "e1", "f", window=2)[0]) == [event_key("e1")]
    True
    """
    return [e[:KEY_CHARS] for e in _entries(state)[0]]


def check_and_add(
    state: list | None, event_id: str, fingerprint: str, window: int
) -> tuple[list[str], Outcome]:
    """Return the new state and whether ``event_id`` is new, a duplicate or a conflict.

    A conflict is a known event id arriving with a different payload fingerprint: it is
    not applied again either, but callers report it separately.

    >>> s, o = check_and_add(None, "e1", "f1", window=2); o, len(s), len(s[0])
    ('new', 1, 32)
    >>> check_and_add(s, "e1", "f1", window=2)[1]
    'duplicate'
    >>> check_and_add(s, "e1", "other", window=2)[1]
    'conflict'
    >>> old = [[event_key("e0"), "f0"]]  # a window written before entries were strings
    >>> check_and_add(old, "e0", "f0", window=2)[1], check_and_add(old, "e0", "x", window=2)[1]
    ('duplicate', 'conflict')
    """
    if window < 1:
        raise ValueError("window must be >= 1")
    entries, joined = _entries(state)
    key = event_key(event_id)
    fp = fingerprint_key(fingerprint)
    if entries:
        # One C-level search over the joined entries; a match must start an entry.
        i = joined.find(key)
        while i >= 0 and i % _ENTRY:
            i = joined.find(key, i + 1)
        if i >= 0:
            known = joined[i + KEY_CHARS: i + _ENTRY]
            return entries, ("duplicate" if known == fp else "conflict")
    entries.append(key + fp)
    if len(entries) > window:
        del entries[: len(entries) - window]
    return entries, "new"
