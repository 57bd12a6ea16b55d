"""The ads agent's clock for closing attribution windows: event time, moved on by wall time
while no events arrive."""

from __future__ import annotations

import time
from collections.abc import Callable


class EventClock:
    """The newest event ts seen, moved on by wall time while no events arrive: windows
    close in a quiet period too, and a replay of old events is not closed early by
    today's clock. ``monotonic``: seconds from a monotonic clock (injectable for tests).

    >>> wall = [100.0]
    >>> c = EventClock(monotonic=lambda: wall[0])
    >>> c.now_ms()  # no event yet
    0
    >>> c.saw(5_000); wall[0] += 2.5; c.now_ms()
    7500
    >>> c.saw(1_000); c.now_ms()  # an older event moves nothing
    7500
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self.event_ms = 0
        self.wall_at_event = monotonic()

    def saw(self, ts_ms: int) -> None:
        if ts_ms > self.event_ms:
            self.event_ms = ts_ms
            self.wall_at_event = self._monotonic()

    def now_ms(self) -> int:
        if not self.event_ms:
            return 0
        return self.event_ms + int((self._monotonic() - self.wall_at_event) * 1000)
