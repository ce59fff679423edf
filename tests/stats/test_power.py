from statistics import NormalDist

import numpy as np
import pytest

from gateway.stats import ab, power


@pytest.mark.parametrize(("d", "expected"), [(0.8, 26), (0.5, 64), (0.2, 394)])
def test_t_test_sample_sizes_match_gpower(d, expected):
    # G*Power 3.1, t tests - means: difference between two independent means, two tails, alpha 0.05,
    # power 0.80, allocation 1: n per group 26 / 64 / 394 (Cohen's large, medium, small effects).
    assert power.sample_size_means(d, 1.0) == (expected, expected)


def test_proportion_sample_size_matches_the_formula_and_delivers_the_power():
    p1, p2 = 0.10, 0.12
    z = NormalDist().inv_cdf
    p_bar = (p1 + p2) / 2
    n = ((z(0.975) * (2 * p_bar * (1 - p_bar)) ** 0.5 + z(0.8) * (p1 * (1 - p1) + p2 * (1 - p2)) ** 0.5) ** 2
         / (p2 - p1) ** 2)
    n_c, n_t = power.sample_size_proportions(p1, p2)
    assert n_c == n_t == int(np.ceil(n))
    rng = np.random.default_rng(3)
    x_c, x_t = rng.binomial(n_c, p1, 4000), rng.binomial(n_t, p2, 4000)
    hits = np.mean([ab.z_test_proportions(a, n_c, b, n_t).p_value < 0.05 for a, b in zip(x_c, x_t)])
    assert 0.77 <= hits <= 0.83


def test_unequal_allocation_and_bad_input():
    n_c, n_t = power.sample_size_proportions(0.1, 0.12, ratio=2)
    assert n_t == 2 * n_c or n_t == 2 * n_c + 1
    with pytest.raises(ValueError):
        power.sample_size_proportions(0.1, 0.1)
    with pytest.raises(ValueError):
        power.sample_size_means(0, 1)
    assert power.days_to_reach(1000, 250, 2.0) == pytest.approx(6.0)
    assert power.days_to_reach(1000, 0, 2.0) is None
