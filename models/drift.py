"""Drift detection on the online models' quality: River's ADWIN over a stream of per-event
quality values (a recommender's prequential hit, a click model's log loss per label).

Bad values (not a number, NaN, inf, outside the stream's range) are counted, never fed to
the detector: one NaN would make ADWIN's window mean NaN for good.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Literal

from river import drift as river_drift

from models.checks import check_int, check_probability, is_real

# Log loss of a prediction clipped to [1e-12, 1 - 1e-12] (what the ads agent scores) is at
# most -ln(1e-12) ~ 27.6: anything above this is not a log loss.
MAX_LOG_LOSS = 30.0
# Observations the "recent" mean follows (an exponential average): it says which way a
# detected change went.
RECENT = 100

Direction = Literal["better", "worse"]
DIRECTIONS: tuple[Direction, ...] = ("better", "worse")


@dataclass(frozen=True, slots=True)
class QualityStream:
    """How a model's quality stream is read: its metric name, which way is better, the
    range a valid value lies in, and how many values are averaged into one ADWIN input.

    >>> STREAMS["recommender"].metric, STREAMS["pctr"].higher_is_better
    ('hit_rate', False)
    """

    metric: str
    higher_is_better: bool
    low: float
    high: float
    # ADWIN assumes independent values. Log loss per label is heavy-tailed (a click costs
    # ~460x a non-click at 1% CTR) and hits come in bursts (one user's session): fed one
    # by one, both raise alarms on streams that do not drift. The mean of each 10 values
    # is near-normal and far less correlated (tests/unit/test_drift.py measures both ways:
    # on the MovieLens 100K replay, 9 detections one by one, none in tens).
    batch: int = 10


# The streams persona monitors (metric labels: bounded, fixed here).
STREAMS: dict[str, QualityStream] = {
    "recommender": QualityStream("hit_rate", True, 0.0, 1.0),
    "pctr": QualityStream("log_loss", False, 0.0, MAX_LOG_LOSS),
    "pcvr": QualityStream("log_loss", False, 0.0, MAX_LOG_LOSS),
}


@dataclass(frozen=True, slots=True)
class Change:
    """A detected change: at which valid observation (1-based), the mean of the window
    before it, the recent mean (about the last ``RECENT`` values) and the direction."""

    at: int
    before: float
    after: float
    direction: Direction


class DriftMonitor:
    """ADWIN (Bifet and Gavaldà 2007, River's ``drift.ADWIN``) on one quality stream.

    ``observe`` takes one value and says whether a change was detected. Values outside
    [``low``, ``high``], NaN, infinities and non-numbers are ignored and counted
    (``n_ignored``). ``batch`` > 1 feeds ADWIN the mean of each ``batch`` consecutive
    values. ``mean`` is the mean since the last detected change (ADWIN's window: River
    restarts it at each detection), ``width`` its number of values. A detection's
    direction compares the recent mean with the window's: "worse" is lower when
    ``higher_is_better``, else higher.

    Memory is bounded: ADWIN keeps O(log n) buckets for a window of n values, the rest is
    a few numbers. ``delta`` is ADWIN's confidence (smaller: fewer false alarms, later
    detections); ``clock`` how often (in ADWIN inputs) it checks for a change.

    >>> m = DriftMonitor(low=0.0, high=1.0)
    >>> hits = [1.0 if i % 5 == 0 else 0.0 for i in range(5_000)]  # hit rate 0.2
    >>> misses = [1.0 if i % 50 == 0 else 0.0 for i in range(5_000)]  # then 0.02
    >>> [i for i, x in enumerate(hits + misses) if m.observe(x)]  # 184 values after it
    [5183]
    >>> m.last.direction, round(m.last.before, 2), round(m.mean, 2), m.n_detections
    ('worse', 0.19, 0.02, 1)
    >>> m.observe(float("nan")), m.observe(7.0), m.n_ignored
    (False, False, 2)
    """

    def __init__(
        self,
        *,
        delta: float = 0.002,
        clock: int = 32,
        batch: int = 1,
        low: float = -math.inf,
        high: float = math.inf,
        higher_is_better: bool = True,
        recent: int = RECENT,
    ) -> None:
        check_probability("delta", delta, exclusive=True)
        for name, value in (("clock", clock), ("batch", batch), ("recent", recent)):
            check_int(name, value, low=1)
        if not (_real(low) and _real(high) and float(low) < float(high)):
            raise ValueError(f"low and high must be numbers with low < high, got {low!r}, "
                             f"{high!r}")
        self.delta = float(delta)
        self.clock = clock
        self.batch = batch
        self.low = float(low)
        self.high = float(high)
        self.higher_is_better = bool(higher_is_better)
        self.recent = recent
        self._adwin = river_drift.ADWIN(delta=self.delta, clock=clock)
        self._n = 0  # valid values observed
        self._ignored = 0
        self._detections = 0
        self._sum = 0.0  # of the values since the last detection: ADWIN's window
        self._count = 0
        self._pending = 0.0  # sum of the values of the batch being filled
        self._filled = 0
        self._recent_mean = math.nan
        self._alpha = 1.0 / recent
        self.last: Change | None = None

    def observe(self, value: object) -> bool:
        """Account one value; True if it completed the evidence for a change."""
        if type(value) is not float:
            try:  # bools (a hit) and ints count; strings and None do not
                if not isinstance(value, Real):
                    raise TypeError
                value = float(value)
            except (TypeError, ValueError, OverflowError):
                self._ignored += 1
                return False
        if not self.low <= value <= self.high:  # NaN fails too
            self._ignored += 1
            return False
        self._n += 1
        self._sum += value
        self._count += 1
        recent = self._recent_mean
        if recent == recent:  # not NaN
            self._recent_mean = recent + (value - recent) * self._alpha
        else:
            self._recent_mean = value
        if self.batch > 1:
            self._pending += value
            self._filled += 1
            if self._filled < self.batch:
                return False
            value = self._pending / self.batch
            self._pending = 0.0
            self._filled = 0
        adwin = self._adwin
        adwin.update(value)
        if not adwin.drift_detected:
            return False
        before = self._sum / self._count
        after = self._recent_mean
        worse = after < before if self.higher_is_better else after > before
        self.last = Change(self._n, before, after, "worse" if worse else "better")
        self._detections += 1
        # River restarts its window at the next update: so do the mean and the batch.
        self._sum, self._count = 0.0, 0
        self._pending, self._filled = 0.0, 0
        return True

    @property
    def mean(self) -> float:
        """Mean of the values since the last detected change (NaN before any)."""
        return self._sum / self._count if self._count else math.nan

    @property
    def recent_mean(self) -> float:
        """Exponential average over about the last ``recent`` values (NaN before any)."""
        return self._recent_mean

    @property
    def width(self) -> int:
        """Values since the last detected change (the window ``mean`` is over)."""
        return self._count

    @property
    def n_observed(self) -> int:
        """Valid values observed since the monitor was made."""
        return self._n

    @property
    def n_ignored(self) -> int:
        """Values refused: non-numbers, NaN, infinities, values outside [low, high]."""
        return self._ignored

    @property
    def n_detections(self) -> int:
        """Changes detected since the monitor was made."""
        return self._detections


def monitor_for(stream: str, delta: float = 0.002) -> DriftMonitor:
    """A monitor set up for one of ``STREAMS``.

    >>> monitor_for("pctr").batch, monitor_for("recommender").high
    (10, 1.0)
    """
    s = STREAMS[stream]
    return DriftMonitor(delta=delta, batch=s.batch, low=s.low, high=s.high,
                        higher_is_better=s.higher_is_better)


def _real(value: object) -> bool:
    return is_real(value) and not math.isnan(float(value))
