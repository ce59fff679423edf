import math

import numpy as np
import pytest
from scipy import stats

from gateway.stats.agreement import cohen_kappa, mcnemar, mean_ci, paired_mean_test, wilson


def test_kappa_matches_the_textbook_example():
    # Cohen (1960)-style 2x2: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> p_o 0.7, p_e 0.5, kappa 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    k = cohen_kappa(a, b)
    assert k["accuracy"] == pytest.approx(0.7) and k["kappa"] == pytest.approx(0.4)
    assert k["confusion"] == {"no/no": 15, "no/yes": 10, "yes/no": 5, "yes/yes": 20}
    assert cohen_kappa(["p", "f"], ["p", "f"])["kappa"] == 1.0


def test_mcnemar_exact_against_binomial():
    base = [True] * 30 + [False] * 10
    cand = [True] * 22 + [False] * 8 + [True] * 2 + [False] * 8  # 8 lost, 2 gained
    r = mcnemar(base, cand)
    assert (r["baseline_only"], r["candidate_only"]) == (8, 2)
    assert r["p_two_sided"] == pytest.approx(stats.binomtest(2, 10, 0.5).pvalue)
    assert r["p_worse"] == pytest.approx(stats.binomtest(8, 10, 0.5, alternative="greater").pvalue)
    assert mcnemar([True], [True])["p_worse"] == 1.0


def test_intervals_and_paired_mean():
    lo, hi = wilson(80, 100)
    assert lo == pytest.approx(0.7112, abs=1e-3) and hi == pytest.approx(0.8667, abs=1e-3)
    m, lo, hi = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5 and lo < 2.5 < hi
    assert math.isnan(wilson(0, 0)[0])
    rng = np.random.default_rng(0)
    base = rng.normal(0.8, 0.05, 200)
    assert paired_mean_test(base, base - 0.05)["p_worse"] < 1e-6
    assert paired_mean_test(base, base + 0.01)["p_worse"] > 0.5
