"""Experiment statistics against scipy and published values, plus calibration by
simulation and property tests (valid input never gives NaN; invalid input raises)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from models.marketing.stats import (
    Comparison,
    betainc,
    compare_means,
    compare_rates,
    normal_isf,
    normal_sf,
    t_isf,
    t_sf,
)

DFS = [0.5, 1, 1.5, 2, 3, 5, 9.7, 30, 100, 1_000, 12_345.6, 1e5, 3.9e5, 4.1e5, 1e7, 1e12]


# --- distributions ---------------------------------------------------------------------


@pytest.mark.parametrize("z", [-8.0, -1.0, 0.0, 0.5, 1.96, 3.0, 8.0, 20.0, 37.0])
def test_normal_sf_matches_scipy(z: float) -> None:
    assert normal_sf(z) == pytest.approx(stats.norm.sf(z), rel=1e-13)


@pytest.mark.parametrize("q", [1e-300, 1e-12, 1e-4, 0.025, 0.2, 0.5, 0.8, 0.999])
def test_normal_isf_matches_scipy(q: float) -> None:
    assert normal_isf(q) == pytest.approx(stats.norm.isf(q), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("df", DFS)
def test_t_sf_matches_scipy(df: float) -> None:
    for t in [-3.0, -0.2, 0.0, 0.01, 0.5, 1.0, 1.96, 2.5, 4.0, 8.0, 40.0, 1e3]:
        ref = stats.t.sf(t, df)
        # relative accuracy where a p-value can matter; absolute in the far tail
        assert t_sf(t, df) == pytest.approx(ref, rel=1e-8, abs=1e-20), (t, df)


@pytest.mark.parametrize("df", DFS)
def test_t_isf_matches_scipy(df: float) -> None:
    for q in [0.9, 0.5, 0.4, 0.1, 0.05, 0.025, 0.005, 1e-5, 1e-9]:
        assert t_isf(q, df) == pytest.approx(stats.t.isf(q, df), rel=1e-8, abs=1e-12), (q, df)


def test_betainc_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    for _ in range(2_000):
        a, b = 10 ** rng.uniform(-1, 4, size=2)
        x = float(rng.uniform())
        ref = special.betainc(a, b, x)
        assert betainc(float(a), float(b), x) == pytest.approx(ref, rel=1e-9, abs=1e-250)
    assert betainc(2.0, 3.0, 0.0) == 0.0 and betainc(2.0, 3.0, 1.0) == 1.0


def test_distribution_functions_refuse_bad_arguments() -> None:
    for call in (lambda: normal_isf(0.0), lambda: normal_isf(1.0), lambda: t_sf(1.0, 0.0),
                 lambda: t_sf(math.nan, 3.0), lambda: t_isf(0.0, 3.0), lambda: t_isf(0.1, -1),
                 lambda: betainc(0.0, 1.0, 0.5), lambda: betainc(1.0, 1.0, 1.5)):
        with pytest.raises(ValueError):
            call()


# --- proportions -----------------------------------------------------------------------


def _pooled_z_p(sa: float, na: float, sb: float, nb: float) -> float:
    pooled = (sa + sb) / (na + nb)
    se = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    return float(2 * stats.norm.sf(abs(sb / nb - sa / na) / se))


@pytest.mark.parametrize(("sa", "na", "sb", "nb"), [
    (200, 10_000, 260, 10_000),
    (120, 4_000, 95, 2_500),          # unequal n, b lower
    (0, 500, 7, 800),                  # zero successes in one arm
    (31, 1_000, 31, 1_000),            # identical arms
    (4_990, 5_000, 4_970, 5_000),      # rates near 1
    (1_234.0, 56_789.5, 1_300.0, 57_001.0),  # float counters, as Prometheus reports them
])
def test_rate_p_value_matches_hand_computation_with_scipy(
        sa: float, na: float, sb: float, nb: float) -> None:
    c = compare_rates(sa, na, sb, nb)
    assert c.p_value == pytest.approx(_pooled_z_p(sa, na, sb, nb), rel=1e-10)
    assert c.value_a == sa / na and c.value_b == sb / nb
    assert c.diff == pytest.approx(sb / nb - sa / na)
    # the pooled z-test is Pearson's chi-square on the 2x2 table
    table = [[sa, na - sa], [sb, nb - sb]]
    if sa != sb or na != nb:
        chi2 = stats.chi2_contingency(table, correction=False)
        assert c.p_value == pytest.approx(chi2.pvalue, rel=1e-9)


# Newcombe (1998), "Interval estimation for the difference between independent
# proportions", Stat Med 17:873-890, Table II, method 10 (score, no continuity correction).
# Each row: (m, n) for the first proportion, (m, n) for the second, published interval.
NEWCOMBE = [
    ((56, 70), (48, 80), (0.0524, 0.3339)),
    ((9, 10), (3, 10), (0.1705, 0.8090)),
    ((5, 56), (0, 29), (-0.0381, 0.1926)),
    ((0, 10), (0, 20), (-0.1611, 0.2775)),
    ((0, 10), (0, 10), (-0.2775, 0.2775)),
    ((10, 10), (0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("first", "second", "published"), NEWCOMBE)
def test_difference_interval_matches_newcombe_table(
        first: tuple[int, int], second: tuple[int, int],
        published: tuple[float, float]) -> None:
    # the paper's difference is first - second; ours is b - a
    c = compare_rates(second[0], second[1], first[0], first[1])
    assert c.diff_ci is not None
    assert (round(c.diff_ci[0], 4), round(c.diff_ci[1], 4)) == published


@pytest.mark.parametrize(("s", "n"), [(0, 10), (3, 10), (10, 10), (47, 1_000), (999, 1_000)])
def test_difference_interval_is_built_from_wilson_intervals(s: int, n: int) -> None:
    # Newcombe: lower = d - hypot(p_b - l_b, u_a - p_a), upper = d + hypot(u_b - p_b,
    # p_a - l_a), from scipy's Wilson bounds; against a zero-success control (l_a = p_a
    # = 0) the upper bound is b's Wilson upper bound itself
    lo, hi = stats.binomtest(s, n).proportion_ci(0.95, method="wilson")
    _, hi0 = stats.binomtest(0, 50).proportion_ci(0.95, method="wilson")
    c = compare_rates(0, 50, s, n)
    assert c.diff_ci is not None
    assert c.diff_ci[0] == pytest.approx(s / n - math.hypot(s / n - lo, hi0), abs=1e-12)
    assert c.diff_ci[1] == pytest.approx(hi, abs=1e-12)


def test_lift_interval_is_the_delta_method_on_the_log_ratio() -> None:
    sa, na, sb, nb = 300, 12_000, 370, 11_500
    c = compare_rates(sa, na, sb, nb)
    ratio = (sb / nb) / (sa / na)
    se = math.sqrt(1 / sa - 1 / na + 1 / sb - 1 / nb)
    z = stats.norm.ppf(0.975)
    assert c.lift == pytest.approx(ratio - 1)
    assert c.lift_ci == pytest.approx((ratio * math.exp(-z * se) - 1,
                                       ratio * math.exp(z * se) - 1), rel=1e-12)
    narrow = compare_rates(sa, na, sb, nb, alpha=0.2)
    assert narrow.lift_ci is not None and c.lift_ci is not None
    assert c.lift_ci[0] < narrow.lift_ci[0] < narrow.lift_ci[1] < c.lift_ci[1]


def test_needed_sample_size_is_the_standard_formula() -> None:
    # the textbook case: 10% vs 15%, two-sided 5%, 80% power -> 686 per group
    c = compare_rates(1_000, 10_000, 1_500, 10_000)
    assert c.needed_per_variant == 686
    za, zb = stats.norm.ppf(0.975), stats.norm.ppf(0.8)
    for pa, pb, power in [(0.02, 0.025, 0.8), (0.3, 0.2, 0.9), (0.05, 0.051, 0.8)]:
        pbar = (pa + pb) / 2
        zb = stats.norm.ppf(power)
        n = (za * math.sqrt(2 * pbar * (1 - pbar))
             + zb * math.sqrt(pa * (1 - pa) + pb * (1 - pb))) ** 2 / (pa - pb) ** 2
        got = compare_rates(pa * 1e6, 1e6, pb * 1e6, 1e6, power=power).needed_per_variant
        assert got == math.ceil(n - 1e-6) or got == math.ceil(n)


def test_rate_verdicts() -> None:
    big = compare_rates(2_000, 100_000, 2_300, 100_000)
    assert big.significant and big.conclusive
    assert big.reason.startswith("b is higher than a: significant at the 95% level (p = ")
    lower = compare_rates(2_300, 100_000, 2_000, 100_000)
    assert lower.reason.startswith("b is lower than a")

    small = compare_rates(200, 10_000, 210, 10_000)
    assert not small.significant and not small.conclusive
    assert small.needed_per_variant is not None and small.needed_per_variant > 100_000
    assert small.reason.startswith("too small to conclude: need about ")
    assert "per variant to detect this lift with 80% power" in small.reason

    # significant, but with fewer than 10 successes in a: not conclusive
    few = compare_rates(2, 2_000, 40, 2_000)
    assert few.significant and not few.conclusive
    assert "fewer than 10 successes in a (2)" in few.reason
    # fewer than 10 failures counts the same way
    assert "fewer than 10 failures in b (5)" in compare_rates(900, 1_000, 995, 1_000).reason
    assert "fewer than 100 trials in b (99)" in compare_rates(30, 1_000, 30, 99).reason

    same = compare_rates(500, 10_000, 500, 10_000)
    assert same.p_value == pytest.approx(1.0) and same.reason.startswith("no difference")


def test_degenerate_rates_give_clear_inconclusive_results() -> None:
    none = compare_rates(0, 1_000, 0, 1_000)
    assert none.p_value == 1.0 and none.diff == 0.0 and none.lift is None
    assert none.diff_ci is not None and none.diff_ci[0] < 0 < none.diff_ci[1]
    assert not none.conclusive

    empty = compare_rates(0, 0, 5, 100)
    assert empty.value_a is None and empty.value_b == 0.05 and empty.p_value is None
    assert empty.reason == "too small to conclude: no trials in a"
    assert compare_rates(0, 0, 0, 0).reason == "too small to conclude: no trials in a and b"

    # a control that never converts: lift undefined, everything else fine
    c = compare_rates(0, 5_000, 40, 5_000)
    assert c.lift is None and c.lift_ci is None and c.p_value is not None


@pytest.mark.parametrize("args", [
    (-1, 10, 1, 10), (11, 10, 1, 10), (1, 10, 1, math.nan), (1, math.inf, 1, 10),
    (True, 10, 1, 10), ("1", 10, 1, 10), (1, 10, 1, None),
])
def test_invalid_rate_inputs_raise(args: tuple[object, ...]) -> None:
    with pytest.raises(ValueError):
        compare_rates(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, math.nan, True])
def test_invalid_alpha_raises(alpha: float) -> None:
    with pytest.raises(ValueError):
        compare_rates(10, 100, 20, 100, alpha=alpha)
    with pytest.raises(ValueError):
        compare_means(10.0, 20.0, 10, 10.0, 20.0, 10, alpha=alpha)


def test_rates_are_calibrated_by_simulation() -> None:
    # under the null the test rejects about alpha of the time; the Newcombe interval
    # covers the true difference about 95% of the time (CTR-like rates, modest n)
    rng = np.random.default_rng(2024)
    runs, rejected, covered = 4_000, 0, 0
    pa, pb, n = 0.03, 0.036, 3_000
    for _ in range(runs):
        null = compare_rates(rng.binomial(n, pa), n, rng.binomial(n, pa), n)
        rejected += null.significant
        alt = compare_rates(rng.binomial(n, pa), n, rng.binomial(n, pb), n)
        assert alt.diff_ci is not None
        covered += alt.diff_ci[0] <= pb - pa <= alt.diff_ci[1]
    assert 0.04 <= rejected / runs <= 0.06
    assert 0.94 <= covered / runs <= 0.96


# --- means -----------------------------------------------------------------------------


def _sums(values: np.ndarray) -> tuple[float, float, int]:
    return float(values.sum()), float((values * values).sum()), len(values)


@pytest.mark.parametrize(("mean_a", "sd_a", "n_a", "mean_b", "sd_b", "n_b"), [
    (2.0, 5.0, 500, 2.4, 6.0, 500),
    (10.0, 30.0, 120, 14.0, 2.0, 3_000),    # unequal n and spread
    (1.0, 0.0, 200, 1.5, 3.0, 150),         # zero variance in a
    (0.5, 1.0, 2, 0.7, 1.5, 3),             # tiny samples: df near 1
    (3.0, 1.0, 100_000, 3.001, 1.0, 90_000),
])
def test_welch_matches_scipy_from_stats(mean_a: float, sd_a: float, n_a: int,
                                        mean_b: float, sd_b: float, n_b: int) -> None:
    def sums(mean: float, sd: float, n: int) -> tuple[float, float]:
        return mean * n, sd * sd * (n - 1) + mean * mean * n

    c = compare_means(*sums(mean_a, sd_a, n_a), n_a, *sums(mean_b, sd_b, n_b), n_b)
    ref = stats.ttest_ind_from_stats(mean_b, sd_b, n_b, mean_a, sd_a, n_a, equal_var=False)
    assert c.p_value == pytest.approx(ref.pvalue, rel=1e-7)
    assert c.diff == pytest.approx(mean_b - mean_a, rel=1e-9)


def test_welch_interval_matches_scipy_on_raw_data() -> None:
    rng = np.random.default_rng(5)
    for n_a, n_b in [(300, 300), (80, 1_500), (2_000, 150)]:
        a = rng.lognormal(0.0, 1.2, n_a) * (rng.uniform(size=n_a) < 0.3)
        b = rng.lognormal(0.1, 1.2, n_b) * (rng.uniform(size=n_b) < 0.3)
        c = compare_means(*_sums(a), *_sums(b))
        ref = stats.ttest_ind(b, a, equal_var=False)
        ci = ref.confidence_interval(0.95)
        assert c.p_value == pytest.approx(ref.pvalue, rel=1e-7)
        assert c.diff_ci == pytest.approx((ci.low, ci.high), rel=1e-8)
        assert c.value_a == pytest.approx(a.mean()) and c.value_b == pytest.approx(b.mean())


def test_mean_lift_interval_and_needed_size() -> None:
    c = compare_means(2_000.0, 60_000.0, 1_000, 2_300.0, 75_000.0, 1_000)
    va = (60_000 - 2_000**2 / 1_000) / 999
    vb = (75_000 - 2_300**2 / 1_000) / 999
    ma, mb = 2.0, 2.3
    se_log = math.sqrt(va / (1_000 * ma * ma) + vb / (1_000 * mb * mb))
    z = stats.norm.ppf(0.975)
    assert c.lift == pytest.approx(0.15)
    assert c.lift_ci == pytest.approx(((mb / ma) * math.exp(-z * se_log) - 1,
                                       (mb / ma) * math.exp(z * se_log) - 1))
    n = (z + stats.norm.ppf(0.8)) ** 2 * (va + vb) / (mb - ma) ** 2
    assert c.needed_per_variant == math.ceil(n)
    assert c.reason.startswith("too small to conclude: need about ")


def test_degenerate_means_give_clear_inconclusive_results() -> None:
    # every user spent nothing in both arms: no difference, p = 1
    zero = compare_means(0.0, 0.0, 500, 0.0, 0.0, 500)
    assert zero.p_value == 1.0 and zero.diff == 0.0 and zero.lift is None
    assert not zero.conclusive and zero.reason.startswith("no difference")
    # every user spent exactly 5 in a and 7 in b: the t-test is undefined
    const = compare_means(5.0 * 200, 25.0 * 200, 200, 7.0 * 200, 49.0 * 200, 200)
    assert const.p_value is None and const.diff_ci is None and not const.conclusive
    assert "no variation within either variant" in const.reason
    one = compare_means(3.0, 9.0, 1, 500.0, 3_000.0, 200)
    assert one.p_value is None and "fewer than 2 users in a (1)" in one.reason
    empty = compare_means(0.0, 0.0, 0, 10.0, 30.0, 5)
    assert empty.value_a is None and empty.value_b == 2.0
    assert empty.reason == "too small to conclude: no users in a"
    # a negative control mean (refunds): lift defined, but no log-ratio interval
    neg = compare_means(-100.0, 5_000.0, 100, 50.0, 5_000.0, 100)
    assert neg.lift is not None and neg.lift_ci is None
    # a mean of 0 in a: lift undefined
    assert compare_means(0.0, 400.0, 100, 50.0, 500.0, 100).lift is None


def _running_sums(value: float, n: int) -> tuple[float, float, int]:
    # accumulated one user at a time, as a service's counters are
    total = sumsq = 0.0
    for _ in range(n):
        total += value
        sumsq += value * value
    return total, sumsq, n


def test_running_sums_rounding_is_zero_variance_not_noise() -> None:
    # every user spent 3.3 in a and 4.4 in b: the rounding left in the running sums must
    # not pass for a (tiny) variance that makes the difference look infinitely significant
    a, b = _running_sums(3.3, 10_000), _running_sums(4.4, 10_000)
    assert a[1] / a[2] - (a[0] / a[2]) ** 2 != 0.0  # there is rounding noise to ignore
    c = compare_means(*a, *b)
    assert c.p_value is None and "no variation" in c.reason
    same = compare_means(*_running_sums(19.99, 10_000), *_running_sums(19.99, 10_000))
    assert same.p_value == 1.0
    # and a sum of squares a rounding short of sum^2 / n is accepted, not refused
    s, q, n = _running_sums(0.1, 10_000)
    assert q / n < (s / n) ** 2
    assert compare_means(s, q, n, s, q, n).p_value == 1.0


@pytest.mark.parametrize("args", [
    (1.0, -1.0, 10, 1.0, 1.0, 10),          # negative sum of squares
    (10.0, 1.0, 10, 1.0, 1.0, 10),          # sumsq < sum^2 / n: not one sample's sums
    (1.0, 1.0, -2, 1.0, 1.0, 10),
    (math.nan, 1.0, 10, 1.0, 1.0, 10),
    (1.0, math.inf, 10, 1.0, 1.0, 10),
    (1.0, 1.0, 0, 1.0, 1.0, 10),            # no users but a non-zero sum
    (1.0, 1.0, True, 1.0, 1.0, 10),
    (1e200, 1e300, 10, 1.0, 1.0, 10),       # overflows: refused, never NaN
])
def test_invalid_mean_inputs_raise(args: tuple[object, ...]) -> None:
    with pytest.raises(ValueError):
        compare_means(*args)  # type: ignore[arg-type]


def test_welch_interval_is_calibrated_on_heavy_tailed_revenue() -> None:
    # revenue per user: most users spend nothing, the rest lognormal; n = 2,000 per arm
    rng = np.random.default_rng(11)
    runs, covered, rejected = 1_000, 0, 0
    true_a = 0.2 * math.exp(0.5)  # P(spend) * E[lognormal(0, 1)]
    true_b = 0.25 * math.exp(0.5)
    for _ in range(runs):
        a = rng.lognormal(0, 1, 2_000) * (rng.uniform(size=2_000) < 0.2)
        b = rng.lognormal(0, 1, 2_000) * (rng.uniform(size=2_000) < 0.25)
        a2 = rng.lognormal(0, 1, 2_000) * (rng.uniform(size=2_000) < 0.2)
        c = compare_means(*_sums(a), *_sums(b))
        assert c.diff_ci is not None
        covered += c.diff_ci[0] <= true_b - true_a <= c.diff_ci[1]
        rejected += compare_means(*_sums(a), *_sums(a2)).significant
    assert 0.93 <= covered / runs <= 0.97
    assert 0.03 <= rejected / runs <= 0.07


# --- properties ------------------------------------------------------------------------

COUNTS = st.integers(min_value=0, max_value=10**9)


@st.composite
def rate_inputs(draw: st.DrawFn) -> tuple[float, float, float, float]:
    na, nb = draw(COUNTS), draw(COUNTS)
    sa = draw(st.integers(min_value=0, max_value=na))
    sb = draw(st.integers(min_value=0, max_value=nb))
    if draw(st.booleans()):  # float counters
        return float(sa) * 0.5, na * 0.5 + 0.25, float(sb), float(nb)
    return sa, na, sb, nb


def _no_nan(c: Comparison) -> None:
    for name in Comparison.__slots__:
        value = getattr(c, name)
        for v in (value if isinstance(value, tuple) else (value,)):
            assert not (isinstance(v, float) and math.isnan(v)), name


def _check_estimate_inside(c: Comparison) -> None:
    if c.p_value is not None:
        assert 0.0 <= c.p_value <= 1.0
    if c.diff_ci is not None:
        assert c.diff is not None and c.diff_ci[0] <= c.diff <= c.diff_ci[1]
    if c.lift_ci is not None:
        assert c.lift is not None and c.lift_ci[0] <= c.lift <= c.lift_ci[1]
    if c.conclusive:
        assert c.significant and c.p_value is not None and c.p_value < c.alpha


@settings(max_examples=300, deadline=None)
@given(rate_inputs(), st.sampled_from([0.01, 0.05, 0.1]))
def test_rate_properties(inputs: tuple[float, float, float, float], alpha: float) -> None:
    sa, na, sb, nb = inputs
    c = compare_rates(sa, na, sb, nb, alpha=alpha)
    _no_nan(c)
    _check_estimate_inside(c)
    swapped = compare_rates(sb, nb, sa, na, alpha=alpha)
    assert swapped.p_value == c.p_value and swapped.conclusive == c.conclusive
    if c.diff is not None:
        assert swapped.diff == -c.diff
        assert c.diff_ci is not None and swapped.diff_ci is not None
        assert swapped.diff_ci == pytest.approx((-c.diff_ci[1], -c.diff_ci[0]), abs=1e-12)
    if c.lift_ci is not None:
        # swapping inverts the ratio, 1 + lift -> 1 / (1 + lift), and the bounds swap
        # (compared on the log scale: near a lift of -1 the lift itself has few digits)
        assert swapped.lift_ci is not None
        assert math.log1p(swapped.lift_ci[0]) == pytest.approx(-math.log1p(c.lift_ci[1]),
                                                               rel=1e-9, abs=1e-6)
        assert math.log1p(swapped.lift_ci[1]) == pytest.approx(-math.log1p(c.lift_ci[0]),
                                                               rel=1e-9, abs=1e-6)


@st.composite
def mean_inputs(draw: st.DrawFn) -> tuple[float, float, int]:
    n = draw(st.integers(min_value=0, max_value=5_000))
    if n == 0:
        return 0.0, 0.0, 0
    kind = draw(st.sampled_from(["sample", "constant"]))
    if kind == "constant":
        v = draw(st.floats(min_value=-1e4, max_value=1e6))
        return v * n, v * v * n, n
    values = draw(st.lists(st.floats(min_value=-1e3, max_value=1e6), min_size=1, max_size=40))
    arr = np.resize(np.array(values), n)  # repeat the drawn values up to n users
    return float(arr.sum()), float((arr * arr).sum()), n


@settings(max_examples=300, deadline=None)
@given(mean_inputs(), mean_inputs())
def test_mean_properties(a: tuple[float, float, int], b: tuple[float, float, int]) -> None:
    c = compare_means(*a, *b)
    _no_nan(c)
    _check_estimate_inside(c)
    swapped = compare_means(*b, *a)
    assert swapped.p_value == c.p_value and swapped.conclusive == c.conclusive
    if c.diff is not None:
        assert swapped.diff == -c.diff
    if c.diff_ci is not None:
        assert swapped.diff_ci == pytest.approx((-c.diff_ci[1], -c.diff_ci[0]), rel=1e-12)
