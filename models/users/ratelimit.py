"""Per-user rate limit on event time: a bot's burst is flagged, a fast replay is not.

Time is the events' own ``ts``, not the wall clock, so replaying a year of history in a
minute limits nobody who did not burst at the time. The limit is a count per user and
event-time window, so how many events it limits does not depend on the order in which
they arrive: the clicks and purchases topics are consumed by two agents at their own
pace, one possibly far ahead of the other. The user map is an LRU of bounded size: a
flood of never-seen ids costs at most ``max_users`` entries.
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_MAX_USERS = 100_000
# Windows kept per user. The two input topics' consumers each touch their own window
# of a user (the least recently used goes first): more are needed only while one is far
# behind the other in event time. At 8, a user costs about 200 bytes with one window and
# 530 with all 8 (finished windows stay until pushed out).
DEFAULT_MAX_WINDOWS = 8


class UserRateLimiter:
    """At most ``burst`` events per user in each window of ``burst / rate_per_s``
    seconds of event time (windows aligned on the epoch; 10 s for 100 at 10/s): in the
    long run ``rate_per_s``, as a token bucket of that size, but with a result that does
    not depend on the order in which the events arrive.

    Every event counts in its (user, window): the first ``burst`` are allowed, the rest
    *limited*, so a window of n events limits ``max(0, n - burst)`` whatever order they
    come in. An event older than the user's newest counts in its own window, not
    against the newest. A burst that straddles a window edge can get up to ``2 * burst``
    through.

    Each user keeps the ``max_windows`` windows it used last (least recently used
    dropped first, counted in ``windows_dropped``: mostly finished windows never seen
    again); a dropped window seen again restarts at 0, so the bound errs lenient, never
    strict. ``rate_per_s`` or ``burst`` 0 switches it off: every event is allowed and
    nothing is stored. A user evicted from the LRU (counted in ``evictions``) comes back
    with no events counted.

    >>> rl = UserRateLimiter(rate_per_s=1, burst=2)  # 2 events per 2 s window
    >>> [rl.allow("u", ts) for ts in (0, 1_999, 1_000, 2_000, 500)]
    [True, True, False, True, False]
    >>> UserRateLimiter(0, 2).allow("u", 0), len(UserRateLimiter(0, 2))
    (True, 0)
    """

    def __init__(self, rate_per_s: float, burst: int, max_users: int = DEFAULT_MAX_USERS,
                 max_windows: int = DEFAULT_MAX_WINDOWS) -> None:
        if rate_per_s < 0 or burst < 0:
            raise ValueError("rate_per_s and burst must be >= 0")
        if max_users < 1:
            raise ValueError("max_users must be >= 1")
        if max_windows < 1:
            raise ValueError("max_windows must be >= 1")
        self.rate_per_s = float(rate_per_s)
        self.burst = int(burst)
        self.max_users = int(max_users)
        self.max_windows = int(max_windows)
        # Whole milliseconds, at least 1: windows are ts_ms // window_ms.
        self.window_ms = (max(1, round(self.burst * 1000 / self.rate_per_s))
                          if self.enabled else 0)
        # user -> flat [window, count, window, count, ...], least recently used first
        # (one small list, not a dict, per user); users oldest-used first.
        self._users: OrderedDict[str, list[int]] = OrderedDict()
        # Users dropped from the LRU to make room (read by the worker's metrics).
        self.evictions = 0
        # Windows dropped from a user's list to make room (each errs lenient).
        self.windows_dropped = 0

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0 and self.burst > 0

    def allow(self, user: str, ts_ms: int) -> bool:
        """Count ``user``'s event at ``ts_ms``; False if its window is already full."""
        if not self.enabled:
            return True
        window = int(ts_ms) // self.window_ms
        users = self._users
        counts = users.get(user)
        if counts is None:
            if len(users) >= self.max_users:
                users.popitem(last=False)
                self.evictions += 1
            users[user] = [window, 1]
            return True
        users.move_to_end(user)
        if counts[-2] == window:  # the usual case: the window used last
            return self._count(counts, len(counts) - 1)
        for i in range(0, len(counts) - 2, 2):
            if counts[i] == window:
                counts.append(window)
                counts.append(counts[i + 1])
                del counts[i:i + 2]
                return self._count(counts, len(counts) - 1)
        if len(counts) >= 2 * self.max_windows:
            del counts[0:2]
            self.windows_dropped += 1
        counts.append(window)
        counts.append(1)
        return True

    def _count(self, counts: list[int], i: int) -> bool:
        if counts[i] >= self.burst:
            return False
        counts[i] += 1
        return True

    def forget(self, user: str) -> None:
        """Drop ``user``'s counts (an erased user leaves nothing behind)."""
        self._users.pop(user, None)

    def __len__(self) -> int:
        return len(self._users)

    def __repr__(self) -> str:
        return (f"UserRateLimiter(rate_per_s={self.rate_per_s:g}, burst={self.burst}, "
                f"max_users={self.max_users}, users={len(self._users)})")
