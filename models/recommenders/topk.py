"""Where the top of a long score array starts, without partitioning all of it: the cut
every ranking takes before sorting its few best candidates."""

from __future__ import annotations

import math

import numpy as np

# Arrays shorter than this, or with fewer than _SPARSE values per wanted one, are
# partitioned whole: sampling would not save enough to pay for its extra pass.
_SAMPLE_FROM = 2048
_SPARSE = 16


def sample_floor(values: np.ndarray, want: int) -> np.floating | None:
    """At most the ``want``-th largest of ``values``, from a sample of them; None when
    ``values`` is too short for sampling to pay (see ``cut_value``)."""
    n = values.size
    if n < _SAMPLE_FROM or n < _SPARSE * want:
        return None
    sample = values[:: math.isqrt(n // want)]
    return np.partition(sample, sample.size - want)[sample.size - want]


def cut_value(values: np.ndarray, want: int) -> np.floating:
    """The ``want``-th largest of ``values`` (``1 <= want <= values.size``, no NaN): what
    ``np.partition(values, values.size - want)[values.size - want]`` gives.

    A long array is partitioned in two short steps: the ``want``-th largest of every
    s-th value is at most the answer, so the values at or above it hold the top
    ``want``, about ``want * s`` of them; s = sqrt(size / want) makes both steps
    partition about sqrt(size * want) values instead of all of them.

    >>> v = np.arange(10_000.0)[::-1] % 977
    >>> float(cut_value(v, 30)) == float(np.partition(v, v.size - 30)[v.size - 30])
    True
    """
    floor = sample_floor(values, want)
    if floor is not None:
        above = values[values >= floor]
        return np.partition(above, above.size - want)[above.size - want]
    n = values.size
    return np.partition(values, n - want)[n - want]


def at_or_above(
    values: np.ndarray, want: int, floor: np.floating | None = None, margin: float = 0.0
) -> tuple[np.floating, np.ndarray]:
    """``cut_value(values, want)`` and the indices, ascending, of the values at or above
    it less ``margin`` (>= 0); ``floor`` is ``sample_floor(values, want)`` if known.

    One pass over ``values`` fewer than ``cut_value`` then a comparison: the indices at
    or above the sample's floor are kept, and the cut and the values above it are read
    through them.

    >>> v = np.array([3.0, 9.0, 1.0, 9.0, 5.0] * 1000)
    >>> cut, at = at_or_above(v, 2)
    >>> float(cut), at.size, at[:3].tolist()
    (9.0, 2000, [1, 3, 6])
    """
    if floor is None:
        floor = sample_floor(values, want)
    if floor is not None:
        at = np.flatnonzero(values >= floor)
        above = values[at]
        cut = np.partition(above, above.size - want)[above.size - want]
        low = cut - margin if margin else cut
        if low >= floor:
            return cut, at[above >= low]
        return cut, np.flatnonzero(values >= low)
    n = values.size
    cut = np.partition(values, n - want)[n - want]
    return cut, np.flatnonzero(values >= (cut - margin if margin else cut))
