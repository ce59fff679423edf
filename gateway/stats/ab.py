"""A/B statistics on per-variant summaries (n, mean, sample variance), so SQL aggregates suffice.

Fixed-horizon tests (two-proportion z, Welch t), absolute and relative lift with confidence intervals
(delta method), ratio metrics (delta method), CUPED, sample-ratio mismatch, Bayesian chance to beat
control, and Holm / Benjamini-Hochberg corrections. Sequential (always-valid) inference lives in
`sequential.py`, sample sizes in `power.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

SRM_ALPHA = 0.001  # sample-ratio mismatch alerts below this p-value (a broken split, not noise)


@dataclass(frozen=True, slots=True)
class Summary:
    """One variant's metric: count, mean and sample variance (ddof=1)."""

    n: int
    mean: float
    var: float

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> Summary:
        a = np.asarray(values, dtype=float)
        return cls(int(a.size), float(a.mean()) if a.size else math.nan,
                   float(a.var(ddof=1)) if a.size > 1 else math.nan)

    @classmethod
    def from_sums(cls, n: int, total: float, total_sq: float) -> Summary:
        """From COUNT, SUM(x), SUM(x*x): what a database aggregates cheaply."""
        mean = total / n if n else math.nan
        var = (total_sq - n * mean * mean) / (n - 1) if n > 1 else math.nan
        return cls(n, mean, max(var, 0.0) if not math.isnan(var) else var)

    @classmethod
    def proportion(cls, successes: int, n: int) -> Summary:
        p = successes / n if n else math.nan
        return cls(n, p, p * (1 - p) * n / (n - 1) if n > 1 else math.nan)

    @property
    def se2(self) -> float:
        """Variance of the mean."""
        return self.var / self.n


@dataclass(frozen=True, slots=True)
class TestResult:
    statistic: float
    p_value: float
    diff: float  # treatment - control
    ci: tuple[float, float]  # for the difference
    df: float | None = None


def z_test_proportions(x_c: int, n_c: int, x_t: int, n_t: int, alpha: float = 0.05) -> TestResult:
    """Two-proportion z-test: pooled standard error for the test, unpooled for the interval."""
    p_c, p_t = x_c / n_c, x_t / n_t
    pooled = (x_c + x_t) / (n_c + n_t)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    diff = p_t - p_c
    z = diff / se_pooled if se_pooled > 0 else 0.0
    p = 2 * stats.norm.sf(abs(z))
    se = math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
    q = stats.norm.ppf(1 - alpha / 2)
    return TestResult(z, float(p), diff, (diff - q * se, diff + q * se))


def welch_test(c: Summary, t: Summary, alpha: float = 0.05) -> TestResult:
    """Welch's t-test (unequal variances), Welch-Satterthwaite degrees of freedom."""
    se2 = c.se2 + t.se2
    diff = t.mean - c.mean
    if se2 <= 0:  # both arms constant: any difference is certain, none is certainly none
        return TestResult(math.copysign(math.inf, diff) if diff else 0.0, 0.0 if diff else 1.0, diff, (diff, diff),
                          float(c.n + t.n - 2))
    df = se2**2 / (c.se2**2 / (c.n - 1) + t.se2**2 / (t.n - 1))
    tstat = diff / math.sqrt(se2)
    p = 2 * stats.t.sf(abs(tstat), df)
    q = stats.t.ppf(1 - alpha / 2, df)
    half = q * math.sqrt(se2)
    return TestResult(tstat, float(p), diff, (diff - half, diff + half), df)


def relative_lift(c: Summary, t: Summary, alpha: float = 0.05) -> tuple[float, tuple[float, float]]:
    """(treatment / control - 1) with a delta-method interval (independent groups)."""
    if c.mean == 0:
        return math.nan, (math.nan, math.nan)
    lift = t.mean / c.mean - 1
    var = t.se2 / c.mean**2 + t.mean**2 * c.se2 / c.mean**4
    half = stats.norm.ppf(1 - alpha / 2) * math.sqrt(var)
    return lift, (lift - half, lift + half)


@dataclass(frozen=True, slots=True)
class RatioEstimate:
    """sum(Y)/sum(X) over units (e.g. cost per conversion), with its delta-method variance."""

    ratio: float
    var: float
    n: int


def ratio_estimate(y: Sequence[float] | np.ndarray, x: Sequence[float] | np.ndarray) -> RatioEstimate:
    y, x = np.asarray(y, float), np.asarray(x, float)
    n = y.size
    my, mx = y.mean(), x.mean()
    cov = np.cov(y, x, ddof=1)
    var = (cov[0, 0] / mx**2 - 2 * my * cov[0, 1] / mx**3 + my**2 * cov[1, 1] / mx**4) / n
    return RatioEstimate(float(my / mx), float(var), int(n))


def ratio_test(c: RatioEstimate, t: RatioEstimate, alpha: float = 0.05) -> TestResult:
    diff = t.ratio - c.ratio
    se = math.sqrt(c.var + t.var)
    z = diff / se if se > 0 else 0.0
    q = stats.norm.ppf(1 - alpha / 2)
    return TestResult(z, float(2 * stats.norm.sf(abs(z))), diff, (diff - q * se, diff + q * se))


def cuped(y: np.ndarray, x_pre: np.ndarray) -> tuple[np.ndarray, float, float]:
    """CUPED (Deng et al. 2013): y - theta (x - mean x), theta = cov(y, x) / var(x), estimated on all
    units of all variants together (so the adjustment is the same for everyone and stays unbiased).
    Returns (adjusted y, theta, share of variance removed)."""
    y, x = np.asarray(y, float), np.asarray(x_pre, float)
    vx = x.var(ddof=1)
    theta = float(np.cov(y, x, ddof=1)[0, 1] / vx) if vx > 0 else 0.0
    adjusted = y - theta * (x - x.mean())
    vy = y.var(ddof=1)
    return adjusted, theta, float(1 - adjusted.var(ddof=1) / vy) if vy > 0 else 0.0


@dataclass(frozen=True, slots=True)
class SRMResult:
    chi2: float
    p_value: float
    mismatch: bool
    expected: tuple[float, ...]


def sample_ratio_mismatch(counts: Sequence[int], weights: Sequence[float], alpha: float = SRM_ALPHA) -> SRMResult:
    """Chi-square goodness of fit of observed units per variant against the configured weights."""
    counts_a = np.asarray(counts, float)
    w = np.asarray(weights, float)
    expected = counts_a.sum() * w / w.sum()
    if counts_a.sum() == 0:
        return SRMResult(0.0, 1.0, False, tuple(expected))
    chi2, p = stats.chisquare(counts_a, expected)
    return SRMResult(float(chi2), float(p), bool(p < alpha), tuple(float(e) for e in expected))


def chance_to_beat_proportions(x_c: int, n_c: int, x_t: int, n_t: int, *, draws: int = 200_000,
                               seed: int = 0) -> float:
    """P(p_t > p_c) under independent Beta(1 + x, 1 + n - x) posteriors (uniform priors); seeded Monte
    Carlo, so reports are reproducible (standard error < 0.0012 at 200k draws)."""
    rng = np.random.default_rng(seed)
    pc = rng.beta(1 + x_c, 1 + n_c - x_c, draws)
    pt = rng.beta(1 + x_t, 1 + n_t - x_t, draws)
    return float((pt > pc).mean())


def chance_to_beat_means(c: Summary, t: Summary) -> float:
    """P(mu_t > mu_c) with flat priors: the posterior of each mean is N(mean, var/n)."""
    se = math.sqrt(c.se2 + t.se2)
    return float(stats.norm.cdf((t.mean - c.mean) / se)) if se > 0 else 0.5


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error rate)."""
    p = np.asarray(p_values, float)
    m = p.size
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted.tolist()


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate)."""
    p = np.asarray(p_values, float)
    m = p.size
    order = np.argsort(p)[::-1]
    adjusted = np.empty(m)
    running = 1.0
    for k, i in enumerate(order):
        rank = m - k
        running = min(running, p[i] * m / rank)
        adjusted[i] = running
    return adjusted.tolist()
