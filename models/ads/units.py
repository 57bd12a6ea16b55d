"""The units of the ads state: money in integer micros (1e-6 currency units, so sums are
exact) and event time in epoch milliseconds, grouped into UTC days for daily budgets."""

from __future__ import annotations

import math
from typing import Final

MICROS: Final = 1_000_000
DAY_MS: Final = 86_400_000
HOUR_MS: Final = 3_600_000
MAX_TS_MS: Final = 4_102_444_800_000  # 2100-01-01, as streams/records.py


def micros_floor(x: float) -> int:
    """The largest m with m / MICROS <= x (float division, as readers will compute).

    >>> micros_floor(0.1), micros_floor(2.5e-7)
    (100000, 0)
    """
    m = math.floor(x * MICROS)
    while m / MICROS > x:
        m -= 1
    while (m + 1) / MICROS <= x:
        m += 1
    return m


def micros_ceil(x: float) -> int:
    """The smallest m with m / MICROS >= x.

    >>> micros_ceil(0.1), micros_ceil(2.5e-7)
    (100000, 1)
    """
    m = math.ceil(x * MICROS)
    while m / MICROS < x:
        m += 1
    while (m - 1) / MICROS >= x:
        m -= 1
    return m


def to_micros(amount: float) -> int:
    """A cost in integer micros, rounded to the nearest (how charges are counted).

    >>> to_micros(0.1234564), to_micros(2)
    (123456, 2000000)
    """
    return round(float(amount) * MICROS)


def utc_day(ts_ms: int) -> int:
    """The UTC day index of epoch-ms ``ts_ms`` (days since 1970-01-01): budgets' days.

    >>> utc_day(86_400_000 - 1), utc_day(86_400_000)
    (0, 1)
    """
    return ts_ms // DAY_MS
