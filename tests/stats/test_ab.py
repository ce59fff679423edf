"""A/B statistics against references: closed forms computed here independently, and scipy."""

import math
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats

from gateway.stats import ab

RNG = np.random.default_rng(42)


def test_two_proportion_z_test_matches_closed_form():
    x_c, n_c, x_t, n_t = 480, 5000, 545, 5000
    p_c, p_t = x_c / n_c, x_t / n_t
    p = (x_c + x_t) / (n_c + n_t)
    z = (p_t - p_c) / math.sqrt(p * (1 - p) * (1 / n_c + 1 / n_t))  # statsmodels' proportions_ztest
    got = ab.z_test_proportions(x_c, n_c, x_t, n_t)
    assert got.statistic == pytest.approx(z, rel=1e-12)
    assert got.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)
    se = math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
    assert got.ci == pytest.approx((p_t - p_c - 1.959963984540054 * se, p_t - p_c + 1.959963984540054 * se))


def test_welch_matches_scipy():
    for _ in range(20):
        a = RNG.normal(10, 3, RNG.integers(5, 300))
        b = RNG.normal(10.5, 1, RNG.integers(5, 300))
        ref = stats.ttest_ind(b, a, equal_var=False)
        got = ab.welch_test(ab.Summary.of(a), ab.Summary.of(b))
        assert got.statistic == pytest.approx(ref.statistic, rel=1e-9)
        assert got.p_value == pytest.approx(ref.pvalue, rel=1e-9)
        assert got.df == pytest.approx(ref.df, rel=1e-9)
        lo, hi = ref.confidence_interval(0.95)
        assert got.ci == pytest.approx((lo, hi), rel=1e-9)


def test_summary_from_sums_equals_from_values():
    a = RNG.exponential(2.0, 1000)
    s1, s2 = ab.Summary.of(a), ab.Summary.from_sums(a.size, a.sum(), (a * a).sum())
    assert (s1.n, s1.mean) == (s2.n, pytest.approx(s2.mean)) and s1.var == pytest.approx(s2.var, rel=1e-9)
    assert ab.Summary.proportion(30, 100).var == pytest.approx(np.var([1] * 30 + [0] * 70, ddof=1))


def _coverage(trials, estimate):
    hits = sum(lo <= truth <= hi for lo, hi, truth in (estimate() for _ in range(trials)))
    return hits / trials


def test_relative_lift_interval_covers_at_nominal_rate():
    def one():
        c = RNG.normal(10, 4, 400)
        t = RNG.normal(11, 4, 400)
        _, (lo, hi) = ab.relative_lift(ab.Summary.of(c), ab.Summary.of(t))
        return lo, hi, 0.1

    assert 0.93 <= _coverage(2000, one) <= 0.97


def test_ratio_metric_delta_method_covers_at_nominal_rate():
    def arm(cost_per_unit):
        conversions = RNG.poisson(2.0, 500) + 1
        cost = conversions * cost_per_unit + RNG.normal(0, 1, 500)
        return ab.ratio_estimate(cost, conversions)

    def one():
        res = ab.ratio_test(arm(3.0), arm(3.2))
        return res.ci[0], res.ci[1], 0.2

    assert 0.93 <= _coverage(1500, one) <= 0.97


def test_cuped_reduces_variance_and_keeps_the_effect():
    n = 20000
    pre = RNG.normal(50, 10, 2 * n)
    post = 0.8 * pre + RNG.normal(0, 6, 2 * n)
    post[n:] += 0.5  # treatment effect
    adjusted, theta, reduction = ab.cuped(post, pre)
    slope = np.polyfit(pre, post, 1)[0]
    assert theta == pytest.approx(slope, rel=1e-6)
    rho2 = np.corrcoef(post, pre)[0, 1] ** 2
    assert reduction == pytest.approx(rho2, abs=0.01)
    raw = ab.welch_test(ab.Summary.of(post[:n]), ab.Summary.of(post[n:]))
    adj = ab.welch_test(ab.Summary.of(adjusted[:n]), ab.Summary.of(adjusted[n:]))
    assert adj.diff == pytest.approx(0.5, abs=0.1)
    assert (adj.ci[1] - adj.ci[0]) < 0.7 * (raw.ci[1] - raw.ci[0])


def test_srm_matches_scipy_chisquare_and_alerts_only_on_real_mismatch():
    counts, weights = [10000, 10300, 4950], [0.4, 0.4, 0.2]
    ref = stats.chisquare(counts, np.array(weights) * sum(counts))
    got = ab.sample_ratio_mismatch(counts, weights)
    assert got.chi2 == pytest.approx(ref.statistic) and got.p_value == pytest.approx(ref.pvalue)
    assert not ab.sample_ratio_mismatch([5012, 4988], [0.5, 0.5]).mismatch
    assert ab.sample_ratio_mismatch([5300, 4700], [0.5, 0.5]).mismatch


def test_chance_to_beat_control():
    assert ab.chance_to_beat_proportions(500, 5000, 500, 5000) == pytest.approx(0.5, abs=0.01)
    assert ab.chance_to_beat_proportions(500, 5000, 600, 5000) > 0.99
    c, t = ab.Summary(1000, 10.0, 4.0), ab.Summary(1000, 10.1, 4.0)
    assert ab.chance_to_beat_means(c, t) == pytest.approx(NormalDist().cdf(0.1 / math.sqrt(0.008)))


def test_multiple_comparison_corrections():
    p = [0.01, 0.04, 0.03, 0.005, 0.20]
    assert ab.benjamini_hochberg(p) == pytest.approx(stats.false_discovery_control(p, method="bh").tolist())
    # Holm by hand: sorted 0.005*5, 0.01*4, 0.03*3, 0.04*2, 0.2*1 with running max
    assert ab.holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.2])


def test_constant_arms_give_certain_answers_not_a_shrug():
    from gateway.stats.sequential import msprt

    same, other = ab.Summary(50, 58.0, 0.0), ab.Summary(60, 70.0, 0.0)
    assert ab.welch_test(same, other).p_value == 0.0 and ab.welch_test(same, same).p_value == 1.0
    assert msprt(same, other).p_value == 0.0 and msprt(same, other).ci == (12.0, 12.0)
    assert msprt(same, same).p_value == 1.0
