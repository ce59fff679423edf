"""Agreement and paired comparisons for eval runs. Pure numpy/scipy.

- Cohen's kappa between two raters (e.g. an LLM judge and human labels), with the confusion table.
- McNemar's exact test on paired pass/fail outcomes (same cases, two targets): only the discordant
  pairs carry information; under no difference each is equally likely to favour either target.
- Wilson score interval for a pass rate; t interval for a mean.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import stats


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> dict:
    """kappa = (p_o - p_e) / (1 - p_e) over the categories either rater used."""
    if len(a) != len(b) or not a:
        raise ValueError("two equally long, non-empty rating lists are needed")
    cats = sorted(set(a) | set(b))
    n = len(a)
    table = Counter(zip(a, b))
    p_o = sum(table[(c, c)] for c in cats) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[c] * cb[c] for c in cats) / (n * n)
    kappa = 1.0 if p_e == 1 else (p_o - p_e) / (1 - p_e)
    return {"n": n, "accuracy": p_o, "kappa": kappa, "categories": cats,
            "confusion": {f"{x}/{y}": table[(x, y)] for x in cats for y in cats}}


def mcnemar(baseline: Sequence[bool], candidate: Sequence[bool]) -> dict:
    """Exact McNemar test; `p_worse` is one-sided: the candidate passes fewer cases than the baseline."""
    b = sum(1 for x, y in zip(baseline, candidate) if x and not y)  # baseline passed, candidate failed
    c = sum(1 for x, y in zip(baseline, candidate) if y and not x)
    n = b + c
    if n == 0:
        return {"discordant": 0, "baseline_only": 0, "candidate_only": 0, "p_two_sided": 1.0, "p_worse": 1.0}
    two = min(1.0, 2 * stats.binom.cdf(min(b, c), n, 0.5))
    worse = float(stats.binom.sf(b - 1, n, 0.5))  # P(X >= b) under H0
    return {"discordant": n, "baseline_only": b, "candidate_only": c, "p_two_sided": float(two), "p_worse": worse}


def paired_mean_test(baseline: Sequence[float], candidate: Sequence[float]) -> dict:
    """Paired t-test on per-case score differences (candidate - baseline); `p_worse` one-sided."""
    d = np.asarray(candidate, float) - np.asarray(baseline, float)
    if d.size < 2 or np.allclose(d, d[0]):
        return {"mean_diff": float(d.mean()) if d.size else 0.0, "p_worse": 1.0 if (d.size == 0 or d[0] >= 0) else 0.0}
    t = stats.ttest_1samp(d, 0.0, alternative="less")
    return {"mean_diff": float(d.mean()), "p_worse": float(t.pvalue)}


def wilson(passed: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = passed / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    a = np.asarray([v for v in values if v is not None and not math.isnan(v)], float)
    if a.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(a.mean())
    if a.size < 2:
        return (m, math.nan, math.nan)
    half = float(stats.t.ppf(0.5 + level / 2, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))
    return (m, m - half, m + half)
