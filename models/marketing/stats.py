"""Statistics for experiment reports: compare two variants' rates (CTR, conversion) or
means (revenue per user) with a confidence interval, a p-value and a plain verdict.

Pure Python (``math``, ``statistics``): the normal and Student t distributions are
computed here, the t through the regularized incomplete beta function.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from statistics import NormalDist

from models.checks import check_non_negative, check_number, check_probability

_STANDARD_NORMAL = NormalDist()
_MAX_ITERATIONS = 10_000
_TINY = 1e-300
# Above this many degrees of freedom the t distribution is computed from the normal with
# the Abramowitz & Stegun 26.7.8 correction (as R's pt does); error O(1/df^2).
_LARGE_DF = 4e5


# --- distributions --------------------------------------------------------------------


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z, accurate far into the tail.

    >>> round(normal_sf(1.959963984540054), 6)
    0.025
    """
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def normal_isf(q: float) -> float:
    """The z with P(Z > z) = q, for q in (0, 1).

    >>> round(normal_isf(0.025), 6)
    1.959964
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    return -_STANDARD_NORMAL.inv_cdf(q)


def _beta_fraction(a: float, b: float, x: float) -> float:
    # Continued fraction for I_x(a, b) (modified Lentz; Numerical Recipes 6.4), which
    # converges quickly for x < (a + 1) / (a + b + 2).
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITERATIONS + 1):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            step = d * c
            h *= step
        if abs(step - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def betainc(a: float, b: float, x: float, *, complement: float | None = None) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and x in [0, 1].

    ``complement`` is 1 - x when the caller can compute it more accurately than
    ``1 - x`` (the tails of the t distribution need it).

    >>> round(betainc(2.0, 3.0, 0.4), 10)  # 1 - (1-x)^4 - 4x(1-x)^3 ... = 0.5248
    0.5248
    """
    if not (a > 0 and b > 0 and 0.0 <= x <= 1.0):
        raise ValueError(f"betainc needs a, b > 0 and x in [0, 1], got {a}, {b}, {x}")
    y = 1.0 - x if complement is None else complement
    if x == 0.0:
        return 0.0
    if y == 0.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log(y))
    if x < (a + 1.0) / (a + b + 2.0):
        return min(1.0, math.exp(log_front) * _beta_fraction(a, b, x) / a)
    return max(0.0, 1.0 - math.exp(log_front) * _beta_fraction(b, a, y) / b)


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` > 0 degrees of freedom (not necessarily an
    integer: Welch's test gives fractional ones).

    >>> round(t_sf(2.0, 10), 8)
    0.03669402
    """
    if not df > 0 or math.isnan(t):
        raise ValueError(f"t_sf needs df > 0 and a number t, got t={t!r}, df={df!r}")
    if math.isinf(df):
        return normal_sf(t)
    if df > _LARGE_DF:
        c = 1.0 / (4.0 * df)
        return normal_sf(t * (1.0 - c) / math.sqrt(1.0 + t * t * 2.0 * c))
    if t < 0:
        return 1.0 - t_sf(-t, df)
    if math.isinf(t):
        return 0.0
    # P(|T| > t) = I_{df/(df+t^2)}(df/2, 1/2); both arguments computed without cancelling
    tt = t * t
    x = df / (df + tt)
    y = tt / (df + tt)
    return 0.5 * betainc(0.5 * df, 0.5, x, complement=y)


def _t_pdf(t: float, df: float) -> float:
    if df > _LARGE_DF:
        return math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)
    log_c = math.lgamma(0.5 * (df + 1)) - math.lgamma(0.5 * df) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - 0.5 * (df + 1) * math.log1p(t * t / df))


def t_isf(q: float, df: float) -> float:
    """The t with P(T > t) = q, for q in (0, 1) and ``df`` > 0.

    >>> round(t_isf(0.025, 10), 6)
    2.228139
    """
    if not 0.0 < q < 1.0 or not df > 0:
        raise ValueError(f"t_isf needs q in (0, 1) and df > 0, got q={q!r}, df={df!r}")
    if q > 0.5:
        return -t_isf(1.0 - q, df)
    if q == 0.5:
        return 0.0
    # The t tail is heavier than the normal one, so the normal quantile is a lower
    # bound; safeguarded Newton on sf(t) - q inside a bracket that only shrinks.
    lo = normal_isf(q)
    hi = max(2.0 * lo, 1.0)
    while t_sf(hi, df) > q:
        lo, hi = hi, 2.0 * hi
    x = lo
    for _ in range(200):
        f = t_sf(x, df) - q
        if f == 0.0:
            return x
        if f > 0:
            lo = x
        else:
            hi = x
        pdf = _t_pdf(x, df)
        candidate = x + f / pdf if pdf > 0 else math.inf
        if not lo < candidate < hi:
            candidate = 0.5 * (lo + hi)
        if abs(candidate - x) <= 1e-14 * max(1.0, abs(x)) or hi - lo <= 1e-14 * hi:
            return candidate
        x = candidate
    return x


# --- comparisons ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    """Variant b against variant a (usually the control).

    ``value_a`` and ``value_b`` are the rates (``compare_rates``) or means
    (``compare_means``); ``diff`` is b - a and ``lift`` (b - a) / a, each with a
    ``1 - alpha`` confidence interval. ``p_value`` is two-sided; ``significant`` means
    p < alpha. ``conclusive`` adds the minimum-sample guards; ``reason`` says in plain
    words why (or why not), and ``needed_per_variant`` is about how many trials (or
    users) per variant would detect the observed difference with the requested power.
    A quantity that is undefined for these inputs (a rate without trials, a lift over
    zero, an interval with no variation) is None, never NaN.

    >>> c = compare_rates(200, 10_000, 260, 10_000)
    >>> c.value_a, c.value_b, round(c.lift, 2), c.conclusive
    (0.02, 0.026, 0.3, True)
    >>> c.reason
    'b is higher than a: significant at the 95% level (p = 0.0047)'
    """

    value_a: float | None
    value_b: float | None
    n_a: float
    n_b: float
    diff: float | None
    diff_ci: tuple[float, float] | None
    lift: float | None
    lift_ci: tuple[float, float] | None
    p_value: float | None
    significant: bool
    conclusive: bool
    reason: str
    needed_per_variant: int | None
    alpha: float
    method: str


def _round_up_2(n: int) -> str:
    # "about 12,000" reads better than "about 11,873": two significant figures, rounded up
    if n < 100:
        return f"{n:,}"
    scale = 10 ** (len(str(n)) - 2)
    return f"{-(-n // scale) * scale:,}"


def _needed(spread: float, diff: float) -> int | None:
    # Sample size per variant = spread / diff^2, ``spread`` being the squared numerator of
    # the standard formula; None when the difference is 0 or the size is not finite.
    if diff == 0:
        return None
    try:
        n = spread / (diff * diff)
    except (OverflowError, ZeroDivisionError):
        return None
    return max(2, math.ceil(n)) if math.isfinite(n) else None


def _log_ratio_ci(lift: float, se_log: float, z: float) -> tuple[float, float] | None:
    # Delta method on log(b / a): symmetric on the log scale, so the interval always
    # holds the estimate and swapping a and b maps it to (1/(1+hi) - 1, 1/(1+lo) - 1).
    try:
        log_ratio = math.log1p(lift)
        lo = math.expm1(log_ratio - z * se_log)
        hi = math.expm1(log_ratio + z * se_log)
    except (OverflowError, ValueError):
        return None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return (min(lo, lift), max(hi, lift))


def _verdict(
    *, p_value: float | None, alpha: float, diff: float | None, guards: list[str],
    needed: int | None, n_min: float, power: float,
) -> tuple[bool, bool, str]:
    significant = p_value is not None and p_value < alpha
    level = f"{100 * (1 - alpha):.4g}%"
    need = (f"need about {_round_up_2(needed)} per variant to detect this lift with "
            f"{100 * power:.4g}% power" if needed is not None else "")
    if guards:
        more = [need] if needed is not None and needed > n_min else []
        return significant, False, "too small to conclude: " + "; ".join(guards + more)
    assert p_value is not None and diff is not None
    if significant:
        direction = "higher" if diff > 0 else "lower"
        return True, True, (f"b is {direction} than a: significant at the {level} level "
                            f"(p = {p_value:.2g})")
    if diff == 0:
        return False, False, f"no difference observed (p = {p_value:.2g})"
    if needed is not None and needed > n_min:
        return False, False, f"too small to conclude: {need} (p = {p_value:.2g})"
    if needed is None:
        return False, False, (f"the observed difference is too small to detect at any "
                              f"practical sample size (p = {p_value:.2g})")
    return False, False, f"no significant difference at the {level} level (p = {p_value:.2g})"


def _relative(diff: float, base: float) -> float | None:
    # (b - a) / a, None when a is 0 or so close to it that the ratio overflows
    if base == 0:
        return None
    try:
        lift = diff / base
    except OverflowError:
        return None
    return lift if math.isfinite(lift) else None


def _finite_or_raise(*values: float | None) -> None:
    for v in values:
        if v is not None and not math.isfinite(v):
            raise ValueError("inputs out of range: the comparison overflowed")


def _check_levels(alpha: float, power: float) -> None:
    check_probability("alpha", alpha, exclusive=True)
    check_probability("power", power, exclusive=True)


def _no_data(
    value_a: float | None, value_b: float | None, n_a: float, n_b: float, reason: str,
    alpha: float, method: str,
) -> Comparison:
    # An arm without data: nothing to estimate or test, only the values that exist.
    return Comparison(
        value_a=value_a, value_b=value_b, n_a=n_a, n_b=n_b, diff=None, diff_ci=None,
        lift=None, lift_ci=None, p_value=None, significant=False, conclusive=False,
        reason=reason, needed_per_variant=None, alpha=float(alpha), method=method)


def _conclude(
    *, value_a: float, value_b: float, n_a: float, n_b: float, diff: float,
    diff_ci: tuple[float, float] | None, lift: float | None,
    lift_ci: tuple[float, float] | None, p_value: float | None, guards: list[str],
    needed: int | None, alpha: float, power: float, method: str,
) -> Comparison:
    # The verdict on the estimates; an estimate that overflowed is refused, not reported.
    significant, conclusive, reason = _verdict(
        p_value=p_value, alpha=float(alpha), diff=diff, guards=guards, needed=needed,
        n_min=min(n_a, n_b), power=float(power))
    _finite_or_raise(value_a, value_b, diff, lift, *(diff_ci or ()), *(lift_ci or ()))
    return Comparison(
        value_a=value_a, value_b=value_b, n_a=n_a, n_b=n_b, diff=diff, diff_ci=diff_ci,
        lift=lift, lift_ci=lift_ci, p_value=p_value, significant=significant,
        conclusive=conclusive, reason=reason, needed_per_variant=needed, alpha=float(alpha),
        method=method)


def wilson_interval(successes: float, trials: float, z: float) -> tuple[float, float]:
    """Wilson score interval of a rate (``trials`` > 0) at normal quantile ``z``.

    >>> [round(v, 4) for v in wilson_interval(5, 100, 1.959964)]
    [0.0215, 0.1118]
    """
    p = successes / trials
    z2n = z * z / trials
    centre = (p + 0.5 * z2n) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / trials + 0.25 * z2n / trials)
    # clamped so that rounding can never put p outside its own interval
    return (min(max(0.0, centre - half), p), max(min(1.0, centre + half), p))


_RATES_METHOD = ("pooled two-proportion z-test; Newcombe hybrid score interval for the "
                 "difference; delta method on the log rate ratio for the lift")


def _check_rates(
    successes_a: float, trials_a: float, successes_b: float, trials_b: float, alpha: float,
    power: float,
) -> tuple[float, float, float, float]:
    # (s_a, n_a, s_b, n_b) as floats, or ValueError naming the first bad argument
    s_a = check_non_negative("successes_a", successes_a)
    n_a = check_non_negative("trials_a", trials_a)
    s_b = check_non_negative("successes_b", successes_b)
    n_b = check_non_negative("trials_b", trials_b)
    for s, n, arm in ((s_a, n_a, "a"), (s_b, n_b, "b")):
        if s > n:
            raise ValueError(f"successes_{arm} ({s:g}) cannot exceed trials_{arm} ({n:g})")
    _check_levels(alpha, power)
    return s_a, n_a, s_b, n_b


def _newcombe_interval(
    s_a: float, n_a: float, s_b: float, n_b: float, z: float,
) -> tuple[float, float]:
    # Newcombe's method 10: combine the Wilson intervals of both rates (n_a, n_b > 0).
    p_a, p_b = s_a / n_a, s_b / n_b
    diff = p_b - p_a
    l_a, u_a = wilson_interval(s_a, n_a, z)
    l_b, u_b = wilson_interval(s_b, n_b, z)
    return (min(diff - math.hypot(p_b - l_b, u_a - p_a), diff),
            max(diff + math.hypot(u_b - p_b, p_a - l_a), diff))


def _pooled_p_value(s_a: float, n_a: float, s_b: float, n_b: float, diff: float) -> float:
    # Two-sided p of the pooled two-proportion z-test of ``diff`` (n_a, n_b > 0).
    pooled = (s_a + s_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
    if se0 > 0:
        return min(1.0, math.erfc(abs(diff) / se0 / math.sqrt(2.0)))
    # every trial in both arms succeeded, or none did: no difference to test
    return 1.0 if diff == 0 else 0.0


def _rate_lift(
    s_a: float, n_a: float, s_b: float, n_b: float, diff: float, z: float,
) -> tuple[float | None, tuple[float, float] | None]:
    # The lift and its interval; a rate ratio with a zero rate has no log interval.
    if not s_a > 0:
        return None, None
    lift = _relative(diff, s_a / n_a)
    if lift is None or not s_b > 0:
        return lift, None
    se_log = math.sqrt(max(0.0, 1.0 / s_a - 1.0 / n_a + 1.0 / s_b - 1.0 / n_b))
    return lift, _log_ratio_ci(lift, se_log, z)


def _rates_needed(p_a: float, p_b: float, z: float, power: float) -> int | None:
    # The standard sample size for two proportions at the observed rates.
    z_power = normal_isf(1.0 - power)
    mean_rate = 0.5 * (p_a + p_b)
    spread = (z * math.sqrt(2.0 * mean_rate * (1.0 - mean_rate))
              + z_power * math.sqrt(p_a * (1.0 - p_a) + p_b * (1.0 - p_b))) ** 2
    return _needed(spread, p_b - p_a)


def _rate_guards(
    s_a: float, n_a: float, s_b: float, n_b: float, min_trials: float, min_successes: float,
) -> list[str]:
    # Why the normal approximation behind the p-value cannot be trusted yet, if it cannot.
    guards = []
    for arm, n in (("a", n_a), ("b", n_b)):
        if n < min_trials:
            guards.append(f"fewer than {min_trials:g} trials in {arm} ({n:g})")
    for arm, s, n in (("a", s_a, n_a), ("b", s_b, n_b)):
        if s < min_successes:
            guards.append(f"fewer than {min_successes:g} successes in {arm} ({s:g})")
        elif n - s < min_successes:
            guards.append(f"fewer than {min_successes:g} failures in {arm} ({n - s:g})")
    return guards


def compare_rates(
    successes_a: float, trials_a: float, successes_b: float, trials_b: float,
    alpha: float = 0.05, *, power: float = 0.8, min_trials: float = 100,
    min_successes: float = 10,
) -> Comparison:
    """Compare two proportions (CTR, conversion rate): b against a.

    - p-value: the pooled two-proportion z-test (the textbook test, equal to Pearson's
      chi-square on the 2x2 table).
    - interval of the difference: Newcombe's hybrid score interval (his method 10, built
      from Wilson intervals): unlike Wald it keeps its coverage for small rates and
      small counts, and is still informative with zero successes.
    - interval of the lift: delta method on the log of the rate ratio; undefined (None)
      with zero successes in either arm.
    - conclusive: significant, with at least ``min_trials`` trials and ``min_successes``
      successes and failures in each arm (below that the normal approximation behind
      the p-value is not trustworthy). ``needed_per_variant`` is the standard sample
      size for two proportions at the observed rates (two-sided ``alpha``, ``power``).

    Counts may be floats (Prometheus counters are). Both arms with zero successes (or
    zero failures) give p = 1: the data show no difference.

    >>> c = compare_rates(48, 80, 56, 70)  # Newcombe (1998), Table II, example (a)
    >>> round(c.diff, 4), tuple(round(x, 4) for x in c.diff_ci)
    (0.2, (0.0524, 0.3339))
    >>> compare_rates(3, 50, 5, 50).reason
    'too small to conclude: fewer than 100 trials in a (50); fewer than 100 trials in b \
(50); fewer than 10 successes in a (3); fewer than 10 successes in b (5); need about 730 \
per variant to detect this lift with 80% power'
    """
    s_a, n_a, s_b, n_b = _check_rates(successes_a, trials_a, successes_b, trials_b, alpha,
                                      power)
    if n_a == 0 or n_b == 0:
        missing = " and ".join(arm for arm, n in (("a", n_a), ("b", n_b)) if n == 0)
        return _no_data(s_a / n_a if n_a else None, s_b / n_b if n_b else None, n_a, n_b,
                        f"too small to conclude: no trials in {missing}", alpha, _RATES_METHOD)
    z = normal_isf(alpha / 2)
    p_a, p_b = s_a / n_a, s_b / n_b
    diff = p_b - p_a
    diff_ci = _newcombe_interval(s_a, n_a, s_b, n_b, z)
    p_value = _pooled_p_value(s_a, n_a, s_b, n_b, diff)
    lift, lift_ci = _rate_lift(s_a, n_a, s_b, n_b, diff, z)
    needed = _rates_needed(p_a, p_b, z, power)
    guards = _rate_guards(s_a, n_a, s_b, n_b, min_trials, min_successes)
    return _conclude(
        value_a=p_a, value_b=p_b, n_a=n_a, n_b=n_b, diff=diff, diff_ci=diff_ci, lift=lift,
        lift_ci=lift_ci, p_value=p_value, guards=guards, needed=needed, alpha=alpha,
        power=power, method=_RATES_METHOD)


def mean_and_variance(total: float, sumsq: float, n: float, arm: str) -> tuple[float, float]:
    """Mean and sample variance from running sums (``n`` > 1); ``arm`` names the sample
    in errors. A variance below what float sums can resolve counts as 0."""
    mean = total / n
    second = sumsq / n
    # Running float sums of n values carry a relative error of up to about n * eps, and
    # second - mean^2 cancels catastrophically when the spread is small next to the mean:
    # below that resolution the variance is zero, not rounding noise, and a small deficit
    # is rounding, not inconsistent input.
    resolution = max(64.0, 4.0 * n) * sys.float_info.epsilon
    square = mean * mean
    if second < square * (1.0 - resolution) - sys.float_info.min:
        raise ValueError(f"sumsq_{arm} is smaller than sum_{arm}^2 / n_{arm}: not the sums "
                         "of one set of values")
    excess = second - square
    if excess <= resolution * second:
        excess = 0.0
    variance = excess * n / (n - 1.0) if n > 1 else 0.0
    return mean, variance


_MEANS_METHOD = ("Welch t-test (Welch-Satterthwaite df) for the difference; delta method on "
                 "the log ratio of means for the lift")


def _check_sums(
    sum_a: float, sumsq_a: float, n_a: float, sum_b: float, sumsq_b: float, n_b: float,
    alpha: float, power: float,
) -> tuple[float, float, float, float, float, float]:
    # (sum, sumsq, n) of each arm as floats, or ValueError naming the first bad argument
    total_a = float(sum_a)
    total_b = float(sum_b)
    for name, value in (("sum_a", sum_a), ("sum_b", sum_b)):
        check_number(name, value)
    q_a = check_non_negative("sumsq_a", sumsq_a)
    q_b = check_non_negative("sumsq_b", sumsq_b)
    count_a = check_non_negative("n_a", n_a)
    count_b = check_non_negative("n_b", n_b)
    _check_levels(alpha, power)
    return total_a, q_a, count_a, total_b, q_b, count_b


def _empty_arms(
    total_a: float, q_a: float, count_a: float, total_b: float, q_b: float, count_b: float,
) -> list[str]:
    # The arms without users; ValueError if one has none but nonzero sums.
    empty = []
    for arm, n, t, q in (("a", count_a, total_a, q_a), ("b", count_b, total_b, q_b)):
        if n == 0:
            if t != 0 or q != 0:
                raise ValueError(f"n_{arm} is 0 but sum_{arm} or sumsq_{arm} is not")
            empty.append(arm)
    return empty


def _welch(
    diff: float, w_a: float, n_a: float, w_b: float, n_b: float, alpha: float,
) -> tuple[float | None, tuple[float, float] | None]:
    # Welch's p-value and interval of ``diff`` (``w``: variance / n of each arm); None
    # where the test is undefined (fewer than 2 users, or unequal means without variation).
    if n_a < 2 or n_b < 2:
        return None, None
    se2 = w_a + w_b
    if not se2 > 0:
        return (1.0, (diff, diff)) if diff == 0 else (None, None)
    se = math.sqrt(se2)
    # Welch-Satterthwaite, written with shares of se2 so tiny variances cannot
    # underflow to 0 / 0
    share_a, share_b = w_a / se2, w_b / se2
    df = 1.0 / (share_a * share_a / (n_a - 1.0) + share_b * share_b / (n_b - 1.0))
    p_value = min(1.0, 2.0 * t_sf(abs(diff) / se, df))
    half = t_isf(alpha / 2, df) * se
    return p_value, (min(diff - half, diff), max(diff + half, diff))


def _mean_lift_ci(
    lift: float | None, mean_a: float, mean_b: float, w_a: float, w_b: float, alpha: float,
) -> tuple[float, float] | None:
    # Delta method on the log ratio of means: only defined for two positive means.
    if lift is None or not (mean_a > 0 and mean_b > 0):
        return None
    try:
        se_log = math.sqrt(w_a / mean_a / mean_a + w_b / mean_b / mean_b)
    except (OverflowError, ZeroDivisionError):
        se_log = math.inf
    return _log_ratio_ci(lift, se_log, normal_isf(alpha / 2))


def _mean_guards(n_a: float, n_b: float, min_n: float, p_value: float | None) -> list[str]:
    # Why the t-test cannot be trusted (or run) yet, if it cannot.
    guards = []
    for arm, n in (("a", n_a), ("b", n_b)):
        if n < 2:
            guards.append(f"fewer than 2 users in {arm} ({n:g}): no variance")
        elif n < min_n:
            guards.append(f"fewer than {min_n:g} users in {arm} ({n:g})")
    if p_value is None and not (n_a < 2 or n_b < 2):
        guards.append("no variation within either variant: the t-test is undefined")
    return guards


def compare_means(
    sum_a: float, sumsq_a: float, n_a: float, sum_b: float, sumsq_b: float, n_b: float,
    alpha: float = 0.05, *, power: float = 0.8, min_n: float = 100,
) -> Comparison:
    """Compare two means (revenue per user) from sufficient statistics: for each arm the
    sum of the values, the sum of their squares, and their count, which a service can
    keep as running counters.

    - p-value and interval of the difference: Welch's t-test (no equal-variance
      assumption, Welch-Satterthwaite degrees of freedom). Revenue is heavy-tailed: the
      t-test leans on the central limit theorem, so it needs a good number of users, and
      one whale can move a mean a lot; ``min_n`` guards the first, not the second.
    - interval of the lift: delta method on the log of the ratio of means (both means
      must be > 0, else None).
    - ``needed_per_variant``: n = (z_{alpha/2} + z_power)^2 (var_a + var_b) / diff^2.

    Both arms without variation give p = 1 if their means are equal and no p-value
    otherwise (the test is undefined).

    >>> c = compare_means(1000.0, 30000.0, 500, 1200.0, 40000.0, 500)
    >>> round(c.diff, 2), round(c.lift, 2), round(c.p_value, 3), c.conclusive
    (0.4, 0.2, 0.434, False)
    >>> c.reason
    'too small to conclude: need about 6,500 per variant to detect this lift with 80% \
power (p = 0.43)'
    """
    total_a, q_a, count_a, total_b, q_b, count_b = _check_sums(
        sum_a, sumsq_a, n_a, sum_b, sumsq_b, n_b, alpha, power)
    empty = _empty_arms(total_a, q_a, count_a, total_b, q_b, count_b)
    if empty:
        return _no_data(total_a / count_a if count_a else None,
                        total_b / count_b if count_b else None, count_a, count_b,
                        f"too small to conclude: no users in {' and '.join(empty)}", alpha,
                        _MEANS_METHOD)
    mean_a, var_a = mean_and_variance(total_a, q_a, count_a, "a")
    mean_b, var_b = mean_and_variance(total_b, q_b, count_b, "b")
    diff = mean_b - mean_a
    lift = _relative(diff, mean_a)
    w_a = var_a / count_a if count_a > 1 else 0.0
    w_b = var_b / count_b if count_b > 1 else 0.0
    p_value, diff_ci = _welch(diff, w_a, count_a, w_b, count_b, alpha)
    # A p-value with some variation means the t-test ran: the lift has an interval too.
    lift_ci = (_mean_lift_ci(lift, mean_a, mean_b, w_a, w_b, alpha)
               if p_value is not None and w_a + w_b > 0 else None)
    guards = _mean_guards(count_a, count_b, min_n, p_value)
    z = normal_isf(alpha / 2)
    z_power = normal_isf(1.0 - power)
    needed = _needed((z + z_power) ** 2 * (var_a + var_b), diff)
    return _conclude(
        value_a=mean_a, value_b=mean_b, n_a=count_a, n_b=count_b, diff=diff, diff_ci=diff_ci,
        lift=lift, lift_ci=lift_ci, p_value=p_value, guards=guards, needed=needed,
        alpha=alpha, power=power, method=_MEANS_METHOD)
