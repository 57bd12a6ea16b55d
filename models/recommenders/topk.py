"""Where the top of a long score array starts, without partitioning all of it: the cut
every ranking takes before sorting its few best candidates."""

from __future__ import annotations

import math

import numpy as np

# Arrays shorter than this, or with fewer than _SPARSE values per wanted one, are
# partitioned whole: sampling would not save enough to pay for its extra pass.
_SAMPLE_FROM = 2048
_SPARSE = 16


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
    n = values.size
    if n >= _SAMPLE_FROM and n >= _SPARSE * want:
        sample = values[:: math.isqrt(n // want)]
        floor = np.partition(sample, sample.size - want)[sample.size - want]
        above = values[values >= floor]
        return np.partition(above, above.size - want)[above.size - want]
    return np.partition(values, n - want)[n - want]
