"""models.checks: the shared checks accept exactly what the inline checks they replaced
accepted, refuse every bool, and name the field in their messages."""

from __future__ import annotations

import math
from fractions import Fraction
from numbers import Integral, Real
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.checks import (
    MAX_TS_MS,
    check_id,
    check_int,
    check_non_negative,
    check_number,
    check_positive,
    check_probability,
    check_ts,
    describe_range,
    is_id,
    is_in_range,
    is_int,
    is_integral,
    is_number,
    is_real,
    is_unicode,
)

# Everything a caller or a decoded message might pass where a number is expected.
VALUES = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([10**400, -(10**400), 2**53, 2**53 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.fractions(max_denominator=1000),
    st.floats(width=32).map(np.float32),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(np.int64),
    st.sampled_from([None, "1", b"1", [1.0], {}, 1j]),
)
BOUNDS = st.one_of(st.just(-math.inf), st.just(math.inf),
                   st.floats(-1e6, 1e6, allow_nan=False), st.integers(-5, 5))


@given(VALUES)
def test_no_predicate_or_check_accepts_a_bool(value: Any) -> None:
    if isinstance(value, bool):
        assert not any(f(value) for f in (is_int, is_integral, is_number, is_real, is_in_range))
        for check in (lambda v: check_int("x", v), lambda v: check_number("x", v),
                      lambda v: check_ts("x", v), lambda v: check_probability("x", v)):
            with pytest.raises(ValueError):
                check(value)


@given(VALUES, BOUNDS, BOUNDS, st.booleans(), st.booleans(), st.booleans())
def test_check_number_returns_the_value_inside_the_bounds_or_names_the_field(
    value: Any, low: float, high: float, low_open: bool, high_open: bool, plain: bool
) -> None:
    kw = {"low_open": low_open, "high_open": high_open}
    try:
        v = check_number("field_x", value, low, high, plain=plain, **kw)
    except ValueError as exc:
        assert not is_in_range(value, low, high, plain=plain, **kw)
        assert str(exc) == (f"field_x must be {describe_range(low, high, **kw)}, "
                            f"got {value!r}")
        return
    assert is_in_range(value, low, high, plain=plain, **kw)
    assert type(v) is float and math.isfinite(v) and v == float(value)
    assert (low < v if low_open else low <= v) and (v < high if high_open else v <= high)
    assert not isinstance(value, bool)
    assert isinstance(value, (int, float) if plain else Real)


# The inline checks that models/users and models/marketing carried before models.checks,
# as (accepted?) predicates, next to the shared call that replaced each. They agree on
# every value (where the old ones raised OverflowError, on an int beyond any float, the
# shared ones raise ValueError).
LEGACY: list[tuple[str, Any, Any]] = [
    ("amount in [0, 1e12] (Real)",
     lambda a: not (isinstance(a, bool) or not isinstance(a, Real)
                    or not 0.0 <= float(a) <= 1e12),
     lambda a: check_number("amount", a, 0.0, 1e12)),
    ("half-life > 0 (Real)",
     lambda h: not (isinstance(h, bool) or not isinstance(h, Real)
                    or not 0.0 < float(h) < math.inf),
     lambda h: check_positive("half_life_ms", h)),
    ("scale > 0 (int, float)",
     lambda h: not (isinstance(h, bool) or not isinstance(h, (int, float))
                    or not 0.0 < float(h) < math.inf),
     lambda h: check_positive("spend_cap", h, plain=True)),
    ("weight >= 0 (Real)",
     lambda w: not (isinstance(w, bool) or not isinstance(w, Real)
                    or not 0 <= float(w) < math.inf),
     lambda w: check_non_negative("weight", w)),
    ("count >= 0, two messages (Real)",
     lambda c: not (isinstance(c, bool) or not isinstance(c, Real)
                    or not (math.isfinite(float(c)) and float(c) >= 0)),
     lambda c: check_non_negative("n_a", c)),
    ("alpha in (0, 1) (Real)",
     lambda a: not (isinstance(a, bool) or not isinstance(a, Real) or not 0 < float(a) < 1),
     lambda a: check_probability("alpha", a, exclusive=True)),
    ("sum finite (Real)",
     lambda s: not (isinstance(s, bool) or not isinstance(s, Real)
                    or not math.isfinite(float(s))),
     lambda s: check_number("sum_a", s)),
    ("sync number finite (int, float)",
     lambda s: not (isinstance(s, bool) or not isinstance(s, (int, float))
                    or not math.isfinite(s)),
     lambda s: check_number("x", s, plain=True)),
    ("switch_margin in [0, 1) (int, float)",
     lambda m: not (isinstance(m, bool) or not isinstance(m, (int, float))
                    or not 0.0 <= float(m) < 1.0),
     lambda m: check_number("switch_margin", m, 0.0, 1.0, high_open=True, plain=True)),
    ("audience share in (0, 1] (int, float)",
     lambda s: not (isinstance(s, bool) or not isinstance(s, (int, float))
                    or not math.isfinite(s) or not 0.0 < float(s) <= 1.0),
     lambda s: check_number("share", s, 0.0, 1.0, low_open=True, plain=True)),
    ("int >= 1",
     lambda n: not (isinstance(n, bool) or not isinstance(n, int) or n < 1),
     lambda n: check_int("k", n, low=1)),
    ("int in [1, 256]",
     lambda n: not (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 256),
     lambda n: check_int("max_categories", n, 1, 256)),
    ("ts in [0, 2**53] (Integral)",
     lambda t: not (isinstance(t, bool) or not isinstance(t, Integral)
                    or not 0 <= t <= 2**53),
     lambda t: check_ts("ts_ms", t)),
]


@pytest.mark.parametrize("legacy, shared", [case[1:] for case in LEGACY],
                         ids=[case[0] for case in LEGACY])
@given(value=VALUES)
def test_shared_checks_accept_what_the_inline_ones_did(legacy: Any, shared: Any,
                                                       value: Any) -> None:
    try:
        accepted = legacy(value)
    except OverflowError:  # an int beyond any float: the shared check refuses it instead
        accepted = False
    try:
        shared(value)
    except ValueError:
        assert not accepted
    else:
        assert accepted


@given(st.integers(min_value=-(2**64), max_value=2**64))
def test_check_ts_accepts_exactly_the_range_and_numpy_ints(t: int) -> None:
    ok = 0 <= t <= MAX_TS_MS
    for value in ([t, np.int64(t)] if -(2**63) <= t < 2**63 else [t]):
        if ok:
            out = check_ts("ts_ms", value)
            assert type(out) is int and out == t
        else:
            with pytest.raises(ValueError, match=r"^ts_ms must be an int in \[0, 2\*\*53\]"):
                check_ts("ts_ms", value)


def test_check_ts_refuses_floats_and_names_a_custom_bound() -> None:
    for bad in (1.0, 1.5, "1", None, True):
        with pytest.raises(ValueError, match="now_ms"):
            check_ts("now_ms", bad)
    assert check_ts("ts_ms", 10, high=10) == 10
    with pytest.raises(ValueError, match=r"ts_ms must be an int in \[0, 10\] \(epoch ms\)"):
        check_ts("ts_ms", 11, high=10)


def test_plain_refuses_numpy_and_fractions_that_real_accepts() -> None:
    for value in (np.float32(0.5), np.int64(1), Fraction(1, 2)):
        assert is_in_range(value, 0, 1)
        assert not is_in_range(value, 0, 1, plain=True)
    assert is_in_range(np.float64(0.5), 0, 1, plain=True)  # a float subclass


def test_check_int_messages_name_the_bounds() -> None:
    assert check_int("n", 5) == 5
    for kw, text in (({}, "n must be an int, got 'x'"),
                     ({"low": 0}, "n must be an int >= 0, got 'x'"),
                     ({"high": 9}, "n must be an int <= 9, got 'x'"),
                     ({"low": 0, "high": 9}, r"n must be an int in \[0, 9\], got 'x'")):
        with pytest.raises(ValueError, match=f"^{text}$"):
            check_int("n", "x", **kw)
    with pytest.raises(ValueError):
        check_int("n", 10, high=9)
    with pytest.raises(ValueError):
        check_int("n", np.int64(3))  # an int, not any Integral


@given(st.text(max_size=20), st.one_of(st.none(), st.integers(0, 20)))
def test_is_id_is_a_non_empty_encodable_string_within_the_cap(text: str,
                                                              cap: int | None) -> None:
    try:
        text.encode("utf-8")
        encodes = True
    except UnicodeEncodeError:
        encodes = False
    expected = text != "" and encodes and (cap is None or len(text) <= cap)
    assert is_id(text, cap) == expected
    assert is_unicode(text) == encodes
    if expected:
        assert check_id("user_id", text, cap) == text
    else:
        with pytest.raises(ValueError, match="^user_id must be a non-empty string"):
            check_id("user_id", text, cap)


def test_check_id_refuses_non_strings_and_shortens_what_it_shows() -> None:
    for bad in (None, 7, b"u1", ["u1"]):
        assert not is_id(bad)
    with pytest.raises(ValueError) as info:
        check_id("item_id", "x" * 1000, max_chars=256)
    assert len(str(info.value)) < 200 and "at most 256 characters" in str(info.value)


def test_describe_range_words() -> None:
    assert describe_range() == "a finite number"
    assert describe_range(0.0) == "a finite number >= 0"
    assert describe_range(0, low_open=True) == "a finite number > 0"
    assert describe_range(high=0, high_open=True) == "a finite number < 0"
    assert describe_range(0, 36_500.0, low_open=True) == "a number in (0, 36500]"
