"""Exact intervals against known values, coverage and error rates by simulation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrobust.errors import GenrobustError
from genrobust.stats import (
    FAILS,
    HOLDS,
    UNDECIDED,
    SequentialTest,
    clopper_pearson,
    plan_sample_size,
    simulate_sequential,
    verdict,
)


@pytest.mark.parametrize(
    ("k", "n", "conf", "lo", "hi"),
    [
        (0, 10, 0.95, 0.0, 0.30849710),  # 1 − 0.025^(1/10)
        (10, 10, 0.95, 0.69150290, 1.0),
        (5, 10, 0.95, 0.18708603, 0.81291397),
        (1, 3, 0.95, 0.00840351, 0.90570967),
        (95, 100, 0.95, 0.88714, 0.98357),  # R: binom.test(95, 100)
    ],
)
def test_clopper_pearson_known_values(k, n, conf, lo, hi):
    got = clopper_pearson(k, n, conf)
    assert got == pytest.approx((lo, hi), abs=5e-5)


@pytest.mark.parametrize(("k", "n", "conf"), [(95, 100, 0.99), (3, 50, 0.9), (4990, 5000, 0.95)])
def test_bounds_solve_the_binomial_tail_equations(k, n, conf):
    """The defining property, checked with the binomial distribution rather than the beta quantiles."""
    from scipy.stats import binom

    lo, hi = clopper_pearson(k, n, conf)
    a = (1 - conf) / 2
    assert binom.sf(k - 1, n, lo) == pytest.approx(a, rel=1e-6)  # P(X ≥ k | lo) = α/2
    assert binom.cdf(k, n, hi) == pytest.approx(a, rel=1e-6)  # P(X ≤ k | hi) = α/2


def test_zero_successes_has_a_closed_form():
    for n in (1, 7, 100, 10_000):
        assert clopper_pearson(0, n, 0.9)[1] == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), data=st.data())
def test_interval_contains_the_estimate(n, data):
    k = data.draw(st.integers(0, n))
    lo, hi = clopper_pearson(k, n, 0.95)
    assert 0 <= lo <= k / n <= hi <= 1


@pytest.mark.parametrize("p", [0.5, 0.9, 0.99])
def test_coverage_by_simulation(p):
    rng = np.random.default_rng(0)
    n, reps = 200, 2000
    ks = rng.binomial(n, p, size=reps)
    covered = np.mean([lo <= p <= hi for lo, hi in (clopper_pearson(int(k), n, 0.95) for k in ks)])
    assert covered >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / reps)


def test_plan_sample_size_meets_the_width():
    n = plan_sample_size(0.01, 0.95)
    lo, hi = clopper_pearson(n // 2, n, 0.95)
    assert (hi - lo) / 2 <= 0.01
    lo, hi = clopper_pearson((n - 20) // 2, n - 20, 0.95)
    assert (hi - lo) / 2 > 0.01
    assert 9000 < n < 10_500  # the normal approximation says ≈ 9,604
    assert plan_sample_size(0.01, 0.95, p=0.98) < n / 3


def test_verdicts_and_bad_input():
    assert verdict(9_990, 10_000, delta=0.05) == HOLDS
    assert verdict(9_000, 10_000, delta=0.05) == FAILS
    assert verdict(95, 100, delta=0.05) == UNDECIDED
    for bad in (lambda: clopper_pearson(3, 0), lambda: clopper_pearson(5, 3), lambda: verdict(1, 2, delta=1.5)):
        with pytest.raises(GenrobustError):
            bad()
    with pytest.raises(GenrobustError, match="delta"):
        SequentialTest(delta=0)
    with pytest.raises(GenrobustError, match="outcomes must be 0/1"):
        SequentialTest(delta=0.05).update([2, 3, 1])
    with pytest.raises(GenrobustError, match="outcomes must be 0/1"):
        SequentialTest(delta=0.05).update([0.5])
    assert SequentialTest(delta=0.05).update([True, False, 1]) == UNDECIDED


def _simulate(p, delta, alpha, runs, horizon, seed):
    return simulate_sequential(p, delta=delta, alpha=alpha, runs=runs, horizon=horizon, seed=seed)


def test_sequential_error_rate_at_the_boundary_stays_below_alpha():
    """At P = 1 − δ any verdict that excludes it is an error; peeking after every batch must not inflate it."""
    alpha, runs = 0.05, 400
    decisions, _ = _simulate(p=0.95, delta=0.05, alpha=alpha, runs=runs, horizon=20_000, seed=1)
    wrong = np.mean(decisions == FAILS)
    assert wrong <= alpha + 2 * np.sqrt(alpha * (1 - alpha) / runs), wrong


def test_sequential_decides_early_and_right_when_far_from_the_threshold():
    for p, expected in ((0.97, HOLDS), (0.93, FAILS)):
        decisions, stops = _simulate(p=p, delta=0.05, alpha=0.05, runs=60, horizon=10_000, seed=2)
        assert np.mean(decisions == expected) >= 0.9
        assert not np.any(decisions == (FAILS if expected == HOLDS else HOLDS))
        assert np.median(stops) < 5_000


def test_mcnemar_exact_matches_the_binomial_test():
    from scipy.stats import binomtest

    from genrobust.stats import mcnemar_exact

    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == 1.0
    for a, b in ((5, 0), (0, 7), (9, 2), (20, 35)):
        assert mcnemar_exact(a, b) == pytest.approx(binomtest(a, a + b, 0.5).pvalue, rel=1e-9)
    with pytest.raises(GenrobustError, match="non-negative integers"):
        mcnemar_exact(-1, 2)


def test_bonferroni_fails_holds_the_familywise_error_at_alpha():
    """Ten classes all exactly at 1 − δ: per-class verdicts make some class "fail" about one run in five (0.18 at
    n = 2000); the Bonferroni check keeps the overall "fails" at ≤ 5%."""
    from genrobust.stats import bonferroni_fails

    rng = np.random.default_rng(0)
    k = rng.binomial(2000, 0.95, size=(1500, 10))
    alone = np.mean([any(verdict(int(x), 2000, 0.05) == "fails" for x in row) for row in k])
    fw = np.mean([any(bonferroni_fails(int(x), 2000, 0.05, 0.95, 10) for x in row) for row in k])
    assert alone > 0.12 and fw <= 0.05
    assert bonferroni_fails(1850, 2000, 0.05, 0.95, 10) and not bonferroni_fails(1872, 2000, 0.05, 0.95, 10)
    assert verdict(1872, 2000, 0.05) == "fails"  # alone it fails
    with pytest.raises(GenrobustError, match="invalid counts"):
        bonferroni_fails(5, 4, 0.05, 0.95, 10)


def test_bonferroni_fails_agrees_with_the_sequential_test_at_its_level():
    """For sequential counts, the check is the test's own martingale against m/α: with m = 1 it says fails
    exactly where SequentialTest decided fails, and a test run at α/m decides fails only where it says so."""
    from genrobust.stats import bonferroni_fails

    rng = np.random.default_rng(3)
    for p in (0.90, 0.93, 0.94):
        for _ in range(20):
            x = (rng.random(5000) < p).astype(int)
            t1 = SequentialTest(delta=0.05, alpha=0.05)
            t1.update(x)
            if t1.decision == "fails":
                k, n = t1.decided_successes, t1.decided_at
                assert bonferroni_fails(k, n, 0.05, 0.95, 1, sequential=True)
            t10 = SequentialTest(delta=0.05, alpha=0.005)
            t10.update(x)
            if t10.decision == "fails":
                assert bonferroni_fails(t10.decided_successes, t10.decided_at, 0.05, 0.95, 10, sequential=True)
