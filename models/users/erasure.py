"""Erase markers: all that is kept of an erased user, for a grace period.

A user's privacy requests and clicks travel different input topics, so an erase can
overtake clicks the user made before it. The marker holds the erase's event time (and
when it was written, for its own expiry) and nothing else; an event of the user at or
before that time is dropped, so it cannot rebuild what the erase deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.checks import is_int


def make_marker(erase_ts_ms: int, now_ms: int,
                old: Mapping[str, Any] | None = None) -> dict[str, int]:
    """The marker of an erase at ``erase_ts_ms`` applied at ``now_ms`` (wall clock):
    ``{"t": now_ms, "e": erase time}``.

    The erase time is at most ``now_ms``: an erase stamped in the future must not drop
    the user's events to come. A repeated erase keeps the later of the two times (an
    older one arriving late takes nothing back).

    >>> make_marker(5_000, 9_000)
    {'t': 9000, 'e': 5000}
    >>> make_marker(50_000, 9_000), make_marker(3_000, 9_500, {"t": 9_000, "e": 5_000})
    ({'t': 9000, 'e': 9000}, {'t': 9500, 'e': 5000})
    """
    erased = min(int(erase_ts_ms), int(now_ms))
    before = erased_at(old)
    return {"t": int(now_ms), "e": erased if before is None else max(before, erased)}


def erased_at(marker: Mapping[str, Any] | None) -> int | None:
    """The erase time a marker holds (None: no marker, or not one)."""
    e = None if marker is None else marker.get("e")
    return e if is_int(e) else None


def before_erase(marker: Mapping[str, Any] | None, ts_ms: int) -> bool:
    """Whether an event at ``ts_ms`` is from before the erase ``marker`` records (at or
    before its time): then nothing of it may be kept.

    >>> m = make_marker(5_000, 9_000)
    >>> before_erase(m, 4_999), before_erase(m, 5_000), before_erase(m, 5_001)
    (True, True, False)
    >>> before_erase(None, 0)
    False
    """
    e = erased_at(marker)
    return e is not None and ts_ms <= e


def marker_expired(marker: Mapping[str, Any] | None, cutoff_ms: int) -> bool:
    """Whether a marker was written before ``cutoff_ms`` (wall clock): its grace period
    is over, so it goes.

    >>> marker_expired(make_marker(5_000, 9_000), 9_001), marker_expired(None, 9_001)
    (True, False)
    >>> marker_expired(make_marker(5_000, 9_000), 9_000)
    False
    """
    t = None if marker is None else marker.get("t")
    return is_int(t) and t < cutoff_ms
