"""Sample sizes for planning (`gateway ab power`): how many units per variant a test needs.

Proportions: the normal-approximation formula without continuity correction (Fleiss, Levin & Paik,
"Statistical Methods for Rates and Proportions", eq. 4.14). Means: exact power of the two-sided
two-sample t-test from the noncentral t distribution, as G*Power computes it.
"""

from __future__ import annotations

import math

from scipy import stats


def sample_size_proportions(p_control: float, p_treatment: float, *, alpha: float = 0.05, power: float = 0.8,
                            ratio: float = 1.0) -> tuple[int, int]:
    """(control n, treatment n) to detect p_control -> p_treatment; ratio = n_treatment / n_control."""
    if not (0 < p_control < 1 and 0 < p_treatment < 1) or p_control == p_treatment:
        raise ValueError("proportions must lie strictly between 0 and 1 and differ")
    k = ratio
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    p_bar = (p_control + k * p_treatment) / (1 + k)
    numerator = (z_a * math.sqrt(p_bar * (1 - p_bar) * (1 + 1 / k))
                 + z_b * math.sqrt(p_control * (1 - p_control) + p_treatment * (1 - p_treatment) / k)) ** 2
    n_c = math.ceil(numerator / (p_treatment - p_control) ** 2)
    return n_c, math.ceil(k * n_c)


def t_test_power(n_control: int, n_treatment: int, effect_size: float, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample t-test for a standardised difference (Cohen's d)."""
    df = n_control + n_treatment - 2
    nc = effect_size / math.sqrt(1 / n_control + 1 / n_treatment)
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def sample_size_means(delta: float, sd: float, *, alpha: float = 0.05, power: float = 0.8,
                      ratio: float = 1.0) -> tuple[int, int]:
    """(control n, treatment n) to detect a difference `delta` in means with standard deviation `sd`."""
    if delta == 0 or sd <= 0:
        raise ValueError("delta must be non-zero and sd positive")
    d = abs(delta) / sd
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    n = max(2, math.floor(z * z * (1 + 1 / ratio) / (d * d)) - 2)  # normal approximation, then step up
    while t_test_power(n, max(2, math.ceil(ratio * n)), d, alpha) < power:
        n += 1
    return n, max(2, math.ceil(ratio * n))


def days_to_reach(needed_per_variant: int, observed_per_variant: int, days_running: float) -> float | None:
    """Days until the needed sample is reached at the traffic seen so far (None: no traffic yet)."""
    if observed_per_variant >= needed_per_variant:
        return 0.0
    if observed_per_variant <= 0 or days_running <= 0:
        return None
    rate = observed_per_variant / days_running
    return (needed_per_variant - observed_per_variant) / rate
