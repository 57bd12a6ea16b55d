"""Per-user token buckets on event time: a bot's burst is flagged, a fast replay is not.

Time is the events' own ``ts``, not the wall clock, so replaying a year of history in a
minute limits nobody who did not burst at the time. The user map is an LRU of bounded
size: a flood of never-seen ids costs at most ``max_users`` entries.
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_MAX_USERS = 100_000


class UserRateLimiter:
    """A token bucket per user: ``rate_per_s`` tokens per second of event time, at most
    ``burst``; each event takes one, or is *limited* when none is left.

    A limited event takes nothing, so a bot that keeps bursting stays limited only as long
    as it bursts. Events older than the user's newest add no tokens (time never runs back).
    ``rate_per_s`` or ``burst`` 0 switches it off: every event is allowed and nothing is
    stored. A user evicted from the LRU comes back with a full bucket.

    >>> rl = UserRateLimiter(rate_per_s=1, burst=2)
    >>> [rl.allow("u", ts) for ts in (0, 0, 0, 500, 1500)]
    [True, True, False, False, True]
    >>> UserRateLimiter(0, 2).allow("u", 0), len(UserRateLimiter(0, 2))
    (True, 0)
    """

    def __init__(self, rate_per_s: float, burst: int,
                 max_users: int = DEFAULT_MAX_USERS) -> None:
        if rate_per_s < 0 or burst < 0:
            raise ValueError("rate_per_s and burst must be >= 0")
        if max_users < 1:
            raise ValueError("max_users must be >= 1")
        self.rate_per_s = float(rate_per_s)
        self.burst = int(burst)
        self.max_users = int(max_users)
        self._per_ms = self.rate_per_s / 1000.0
        # user -> [tokens, newest ts_ms]; oldest-used first
        self._users: OrderedDict[str, list[float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0 and self.burst > 0

    def allow(self, user: str, ts_ms: int) -> bool:
        """Take a token for ``user``'s event at ``ts_ms``; False if the user is over it."""
        if not self.enabled:
            return True
        users = self._users
        state = users.get(user)
        if state is None:
            if len(users) >= self.max_users:
                users.popitem(last=False)
            users[user] = [self.burst - 1.0, float(ts_ms)]
            return True
        users.move_to_end(user)
        tokens, last = state
        if ts_ms > last:
            tokens = min(float(self.burst), tokens + (ts_ms - last) * self._per_ms)
            state[1] = float(ts_ms)
        if tokens >= 1.0:
            state[0] = tokens - 1.0
            return True
        state[0] = tokens
        return False

    def forget(self, user: str) -> None:
        """Drop ``user``'s bucket (an erased user leaves nothing behind)."""
        self._users.pop(user, None)

    def __len__(self) -> int:
        return len(self._users)

    def __repr__(self) -> str:
        return (f"UserRateLimiter(rate_per_s={self.rate_per_s:g}, burst={self.burst}, "
                f"max_users={self.max_users}, users={len(self._users)})")
