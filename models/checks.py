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
from typing import TypeGuard


def is_int(value: object) -> TypeGuard[int]:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_integral(value: object) -> TypeGuard[Integral]:
    """An integral number (``int``, numpy integers) that is not a ``bool``."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """An ``int`` or ``float`` that is not a ``bool`` (NaN and infinities included)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_real(value: object) -> TypeGuard[Real]:
    """A real number of any type (numpy floats too) that is not a ``bool``."""
    return isinstance(value, Real) and not isinstance(value, bool)


def is_finite(value: object) -> bool:
    """A real number, not a ``bool``, neither NaN nor infinite."""
    return is_real(value) and math.isfinite(float(value))


def check_int(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """``value`` if it is an int (not a bool) in ``[low, high]`` (``None``: unbounded on
    that side); else ``ValueError``.

    >>> check_int("seed", 0, low=0), check_int("n", 256, 1, 256)
    (0, 256)
    >>> check_int("n", 257, 1, 256)
    Traceback (most recent call last):
    ...
    ValueError: n must be an int in [1, 256], got 257
    >>> check_int("draws", True, low=100)
    Traceback (most recent call last):
    ...
    ValueError: draws must be an int >= 100, got True
    """
    if not is_int(value) or (low is not None and value < low) or (
        high is not None and value > high
    ):
        if low is not None and high is not None:
            bound = f" in [{low}, {high}]"
        elif low is not None:
            bound = f" >= {low}"
        else:
            bound = "" if high is None else f" <= {high}"
        raise ValueError(f"{name} must be an int{bound}, got {value!r}")
    return value


def _as_float(value: object, plain: bool) -> float | None:
    """``value`` as a float if it is a number of the accepted kind that a float can hold
    (NaN and infinities included); else None."""
    if type(value) is float:  # the common case first, without ABCs
        return value
    if not (is_number(value) if plain else is_real(value)):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:  # an int (or Fraction) beyond any float: not a usable number
        return None


def _within(v: float, low: float, high: float, low_open: bool, high_open: bool) -> bool:
    # NaN fails every comparison; the finiteness test is needed only for open-ended ranges.
    return (
        math.isfinite(v)
        and (low < v if low_open else low <= v)
        and (v < high if high_open else v <= high)
    )


def is_in_range(
    value: object,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    plain: bool = False,
) -> TypeGuard[Real]:
    """A finite number, not a ``bool``, in ``[low, high]`` (``low_open`` / ``high_open``:
    excluding that end). Any real number counts (numpy scalars, ``Fraction``), or with
    ``plain`` only ``int`` and ``float``, the kinds JSON decodes to. An int too large for a
    float is not in any range.

    >>> is_in_range(0.5, 0, 1), is_in_range(0, 0, 1, low_open=True), is_in_range(True, 0, 1)
    (True, False, False)
    >>> is_in_range(float("inf")), is_in_range(float("nan")), is_in_range(10**400)
    (False, False, False)
    >>> from fractions import Fraction
    >>> is_in_range(Fraction(1, 2), 0, 1), is_in_range(Fraction(1, 2), 0, 1, plain=True)
    (True, False)
    """
    v = _as_float(value, plain)
    return v is not None and _within(v, low, high, low_open, high_open)


def describe_range(
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> str:
    """What ``is_in_range`` with these bounds accepts, in the words of an error message.

    >>> describe_range(), describe_range(0, low_open=True), describe_range(high=1)
    ('a finite number', 'a finite number > 0', 'a finite number <= 1')
    >>> describe_range(0, 1, high_open=True), describe_range(0, 1e12)
    ('a number in [0, 1)', 'a number in [0, 1e+12]')
    """
    if low == -math.inf and high == math.inf:
        return "a finite number"
    if high == math.inf:
        return f"a finite number {'>' if low_open else '>='} {low:g}"
    if low == -math.inf:
        return f"a finite number {'<' if high_open else '<='} {high:g}"
    return f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_number(
    name: str,
    value: object,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    plain: bool = False,
) -> float:
    """``value`` as a float if ``is_in_range`` (same arguments); else ``ValueError`` saying
    what ``name`` must be (``describe_range``).

    >>> check_number("amount", 2, 0, 1e12), check_number("sum_a", -1.5)
    (2.0, -1.5)
    >>> check_number("switch_margin", 1.0, 0, 1, high_open=True)
    Traceback (most recent call last):
    ...
    ValueError: switch_margin must be a number in [0, 1), got 1.0
    >>> check_number("sum_a", "3")
    Traceback (most recent call last):
    ...
    ValueError: sum_a must be a finite number, got '3'
    """
    v = value if type(value) is float else _as_float(value, plain)  # per event: short way
    if v is None or not _within(v, low, high, low_open, high_open):
        what = describe_range(low, high, low_open=low_open, high_open=high_open)
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return v


def check_positive(name: str, value: object, *, plain: bool = False) -> float:
    """``value`` as a float if it is a finite number > 0 (a half-life, a scale, a prior);
    else ``ValueError``. ``plain``: as for ``is_in_range``.

    >>> check_positive("half_life_ms", 3_600_000)
    3600000.0
    >>> check_positive("half_life_ms", 0)
    Traceback (most recent call last):
    ...
    ValueError: half_life_ms must be a finite number > 0, got 0
    """
    if type(value) is float and 0.0 < value < math.inf:  # per event: the short way first
        return value
    return check_number(name, value, 0.0, low_open=True, plain=plain)


def check_non_negative(name: str, value: object) -> float:
    """``value`` as a float if it is a finite number >= 0 (a count, a weight, an amount);
    else ``ValueError``.

    >>> check_non_negative("trials", 0)
    0.0
    >>> check_non_negative("weight of 'A'", float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: weight of 'A' must be a finite number >= 0, got inf
    """
    return check_number(name, value, 0.0)


def check_probability(name: str, value: object, *, exclusive: bool = False) -> float:
    """``value`` as a float if it is a number in [0, 1] (``exclusive``: in (0, 1), for a
    significance level or a confidence); else ``ValueError``.

    >>> check_probability("p", 1), check_probability("alpha", 0.05, exclusive=True)
    (1.0, 0.05)
    >>> check_probability("alpha", 1, exclusive=True)
    Traceback (most recent call last):
    ...
    ValueError: alpha must be a number in (0, 1), got 1
    """
    return check_number(name, value, 0.0, 1.0, low_open=exclusive, high_open=exclusive)


# Latest timestamp accepted by default (about 285,000 years): beyond it an int leaves the
# 64-bit range the tables' JSON writes, and time differences stop being exact floats.
MAX_TS_MS = 2**53


def check_ts(name: str, value: object, high: int = MAX_TS_MS) -> int:
    """``value`` as an int if it is an integral number (numpy ints too; not a ``bool``)
    of epoch milliseconds in ``[0, high]``; else ``ValueError``.

    >>> check_ts("ts_ms", 1_700_000_000_000), check_ts("now_ms", 0)
    (1700000000000, 0)
    >>> check_ts("now_ms", 1.5)
    Traceback (most recent call last):
    ...
    ValueError: now_ms must be an int in [0, 2**53] (epoch ms), got 1.5
    """
    if type(value) is int and 0 <= value <= high:  # the common case first, without ABCs
        return value
    if not is_integral(value) or not 0 <= int(value) <= high:
        bound = "2**53" if high == MAX_TS_MS else str(high)
        raise ValueError(f"{name} must be an int in [0, {bound}] (epoch ms), got {value!r}")
    return int(value)


def is_unicode(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8: no lone surrogate, which the JSON of tables and
    topics cannot carry.

    >>> is_unicode("caf\u00e9"), is_unicode("a" + chr(0xD800))
    (True, False)
    """
    if text.isascii():  # the common case, without encoding anything
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_id(value: object, max_chars: int | None = None) -> TypeGuard[str]:
    """A non-empty string of valid Unicode (``is_unicode``) of at most ``max_chars``
    characters (``None``: any length): what a user, item or campaign id must be.

    >>> is_id("u1"), is_id(""), is_id(7), is_id("a" * 300, max_chars=256)
    (True, False, False, False)
    """
    return (
        isinstance(value, str)
        and value != ""
        and (max_chars is None or len(value) <= max_chars)
        and is_unicode(value)
    )


def check_id(name: str, value: object, max_chars: int | None = None) -> str:
    """``value`` if ``is_id``; else ``ValueError`` (showing at most 80 characters of it).

    >>> check_id("user_id", "u1")
    'u1'
    >>> check_id("user_id", "")
    Traceback (most recent call last):
    ...
    ValueError: user_id must be a non-empty string of valid Unicode, got ''
    >>> check_id("item_id", "i" * 9, max_chars=8)
    Traceback (most recent call last):
    ...
    ValueError: item_id must be a non-empty string of valid Unicode, at most 8 characters, \
got 'iiiiiiiii'
    """
    if not is_id(value, max_chars):
        cap = "" if max_chars is None else f", at most {max_chars} characters"
        raise ValueError(f"{name} must be a non-empty string of valid Unicode{cap}, got "
                         f"{repr(value)[:80]}")
    return value


def check_ids(name: str, value: object, cap: int, max_chars: int | None = None) -> tuple[str, ...]:
    """``value`` as a tuple if it is a list or tuple of at most ``cap`` ids, each passing
    ``check_id`` (as "each of ``name``"); else ``ValueError``. A lone string is refused: it
    would otherwise read as a list of its characters.

    >>> check_ids("categories", ["Comedy", "Drama"], cap=4)
    ('Comedy', 'Drama')
    >>> check_ids("target_segments", "loyal", cap=4)
    Traceback (most recent call last):
    ...
    ValueError: target_segments must be a list of strings, got 'loyal'
    >>> check_ids("categories", ["a", "b", "c"], cap=2)
    Traceback (most recent call last):
    ...
    ValueError: categories has 3 entries, the cap is 2
    """
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of strings, got {value!r}")
    if len(value) > cap:
        raise ValueError(f"{name} has {len(value)} entries, the cap is {cap}")
    return tuple(check_id(f"each of {name}", v, max_chars) for v in value)
