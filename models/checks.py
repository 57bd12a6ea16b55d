"""Checks on the values that reach a model: numbers, ids, timestamps, weights.

One place for what was written out inline in many modules. ``bool`` is a subclass of
``int`` in Python, so ``True`` would pass ``isinstance(x, int)``: every predicate here
refuses booleans. The ``check_*`` functions return the value (converted) or raise
``ValueError`` with a message that names the field, never anything but the bad value.

>>> is_int(3), is_int(True), is_int(3.0)
(True, False, False)
>>> is_number(2.5), is_number(False), is_number(float("nan"))
(True, False, True)
>>> is_finite(float("inf")), is_finite(1)
(False, True)
>>> check_int("k", 0, low=1)
Traceback (most recent call last):
...
ValueError: k must be an int >= 1, got 0
"""

from __future__ import annotations

import math
from numbers import Integral, Real


def is_int(value: object) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_integral(value: object) -> bool:
    """An integral number (``int``, numpy integers) that is not a ``bool``."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """An ``int`` or ``float`` that is not a ``bool`` (NaN and infinities included)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """A real number of any type (numpy floats too) that is not a ``bool``."""
    return isinstance(value, Real) and not isinstance(value, bool)


def is_finite(value: object) -> bool:
    """A real number, not a ``bool``, neither NaN nor infinite."""
    return is_real(value) and math.isfinite(float(value))  # type: ignore[arg-type]


def check_int(name: str, value: object, low: int | None = None) -> int:
    """``value`` if it is an int (not a bool) of at least ``low``; else ``ValueError``."""
    if not is_int(value) or (low is not None and value < low):  # type: ignore[operator]
        bound = "" if low is None else f" >= {low}"
        raise ValueError(f"{name} must be an int{bound}, got {value!r}")
    return value  # type: ignore[return-value]
