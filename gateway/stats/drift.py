"""Data drift between a reference and a current window, per column and for the dataset. Pure numpy/scipy.

Per numeric column: PSI over 10 reference-quantile bins, KL(current || reference) over the same bins,
Jensen-Shannon distance (base 2, in [0, 1]), Wasserstein-1 distance divided by the reference standard
deviation, and the two-sample KS test (statistic D and p-value). Per categorical column: chi-square
(contingency test of reference vs current counts by default - both are samples; goodness-of-fit
against the reference proportions on request), Cramer's V, JS distance and PSI over categories.
Categories never seen in the reference are pooled into one `<unseen>` category.

Empty bins: proportions are clipped to at least EPS = 1e-4 and renormalised before PSI and KL, so
an empty bin adds a large but finite term instead of infinity.

Automatic choice per column (the decisive test; every other metric is reported too):
  numeric,     current n <= 1000:  KS test, drift if the Holm-adjusted p < alpha; effect size D
  numeric,     current n >  1000:  Wasserstein / reference std >= 0.1
  categorical, current n <= 1000:  chi-square contingency, drift if the Holm-adjusted p < alpha;
                                   effect size Cramer's V
  categorical, current n >  1000:  JS distance >= 0.1
Large samples make p-values flag trivial shifts, so they are decided by effect sizes. Any column
can name its own test and threshold. Dataset drift: the share of drifted columns >= a threshold
(default 0.5). p-value tests are corrected for multiple testing across columns (Holm by default, or
Benjamini-Hochberg).
"""

from __future__ import annotations

import hashlib
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from gateway.stats.ab import benjamini_hochberg, holm

EPS = 1e-4
N_BINS = 10
N_QUANTILES = 1001
N_HIST = 30
SMALL_SAMPLE = 1000
EXACT_KS_MAX_N = 10_000  # scipy's own switch from the exact to the asymptotic KS distribution
KS_BLOCK = 64  # values of the current sample per block when bounding the KS gap
UNSEEN = "<unseen>"
# Cells that mean "no value" in a text column that should be numeric (Arrow's CSV null markers).
MISSING_TEXT = frozenset({"", "na", "n/a", "nan", "-nan", "null", "none", "#n/a", "#na", "#n/a n/a"})
TESTS = ("ks", "wasserstein", "psi", "kl", "js", "chi2", "chi2_gof")
P_VALUE_TESTS = ("ks", "chi2", "chi2_gof")
DEFAULT_THRESHOLDS = {"ks": 0.05, "chi2": 0.05, "chi2_gof": 0.05, "wasserstein": 0.1, "js": 0.1, "psi": 0.2,
                      "kl": 0.1}


# ---- fitted reference ----------------------------------------------------------------------------
# The profile's data classes live in gateway/stats/profile.py (no scipy), so a server that only loads
# a profile at start-up does not import scipy.
from gateway.stats.profile import CategoricalRef, NumericRef, Profile  # noqa: E402


def fingerprint(columns: dict[str, np.ndarray]) -> str:
    """The data's content hash: a sha256 over each column's name and digest, in name order."""
    return _combine({name: column_digest(a) for name, a in columns.items()})


def column_digest(a: np.ndarray) -> bytes:
    # Per column, so fit hashes the columns in its worker threads (hashlib releases the GIL).
    data = memoryview(np.ascontiguousarray(a)).cast("B") if a.dtype != object else "\x1f".join(map(str, a)).encode()
    return hashlib.sha256(data).digest()  # a view of the array: no copy


def _combine(digests: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(digests):
        h.update(name.encode() + b"\0" + digests[name])
    return "sha256:" + h.hexdigest()


def fit(columns: dict[str, np.ndarray], *, source: str = "", content_hash: str | None = None,
        keep_sample: bool = False) -> Profile:
    """Profile a reference dataset: float arrays are numeric (NaN = missing), object arrays categorical.
    `keep_sample`: keep each numeric column's sorted values on the profile (`sorted_samples`, never
    saved), so a comparison in the same process gets exact KS and Wasserstein without sorting again."""
    rows = max((len(a) for a in columns.values()), default=0)

    def one(item: tuple[str, np.ndarray]) -> tuple:
        name, a = item
        return (name, *_fit_column(a), None if content_hash else column_digest(a))

    fitted = _pool_map(one, columns.items())
    digest = content_hash or _combine({name: d for name, _, _, d in fitted})
    profile = Profile({name: ref for name, ref, _, _ in fitted}, rows, digest, source)
    if keep_sample:
        profile.sorted_samples = {name: s for name, _, s, _ in fitted if s is not None}
    return profile


def _fit_column(a: np.ndarray) -> tuple[NumericRef | CategoricalRef, np.ndarray | None]:
    if a.dtype.kind in "fiub":
        present = valid_floats(a)[0]
        if present.size == 0:
            return NumericRef(0, int(a.size), math.nan, math.nan, math.nan, math.nan, [], [1.0], [], [], []), None
        present.sort()
        edges = np.unique(sorted_quantiles(present, np.linspace(0, 1, N_BINS + 1)[1:-1]))
        lo, hi = sorted_quantiles(present, np.array([0.005, 0.995]))
        hist_edges = np.linspace(lo, hi if hi > lo else lo + 1, N_HIST + 1)
        ref = NumericRef(
            int(present.size), int(a.size - present.size), float(present.mean(dtype=np.float64)),
            float(present.std(ddof=1, dtype=np.float64)) if present.size > 1 else 0.0, float(present[0]),
            float(present[-1]), edges.tolist(), sorted_props(present, edges).tolist(),
            sorted_quantiles(present, np.linspace(0, 1, N_QUANTILES)).tolist(), hist_edges.tolist(),
            sorted_hist_props(present, hist_edges).tolist())
        return ref, present
    values, counts = np.unique(categories(a), return_counts=True)
    missing = int(counts[values == ""].sum()) if (values == "").any() else 0
    return CategoricalRef(int(a.size - missing), missing,
                          {str(v): int(c) for v, c in zip(values, counts) if v != ""}), None


def valid_floats(a: np.ndarray) -> tuple[np.ndarray, int]:
    """(a copy of the non-NaN values, how many were NaN). float32 stays float32: its values, compared
    and sorted as they are, give the same statistics as their float64 copies at half the memory
    traffic (sums and means are taken in float64)."""
    values = a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)
    nan = np.isnan(values)
    missing = int(np.count_nonzero(nan))
    return (values[~nan] if missing else values.copy()), missing


def sorted_quantiles(a: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """np.quantile's default ('linear') method on an already sorted array, without re-partitioning it."""
    pos = np.asarray(probs, float) * (a.size - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, a.size - 1)
    low, high = a[lo].astype(np.float64), a[hi].astype(np.float64)
    return low + (high - low) * (pos - lo)


def wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """Exact W1 between two samples given sorted: the integral of |F_u^-1(t) - F_v^-1(t)| over the merged
    grid of quantile levels i/n and j/m (equal to scipy.stats.wasserstein_distance, without its re-sorting)."""
    n, m = u.size, v.size
    if n == m:
        d = np.subtract(u, v, dtype=np.float64)
        return float(np.abs(d, out=d).mean())
    t = np.sort(np.concatenate([np.arange(1, n + 1) / n, np.arange(1, m + 1) / m]), kind="stable")
    dt = np.diff(t, prepend=0.0)
    iu = np.clip(np.ceil(t * n - 1e-9).astype(np.int64) - 1, 0, n - 1)
    iv = np.clip(np.ceil(t * m - 1e-9).astype(np.int64) - 1, 0, m - 1)
    return float(np.sum(dt * np.abs(np.subtract(u[iu], v[iv], dtype=np.float64))))


def ks_statistic_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """sup |F_u - F_v| of two sorted samples, equal to scipy's ks_2samp statistic, in exact integer
    counts ((F_u - F_v) * n * m). Between two of v's values F_v is flat while F_u rises, so the
    extremes lie at each of v's values and just before it: the gap needs how many of u lie below
    each value of v. Blocks of v bound that gap from their end points (both F are monotone), so
    only the few blocks that could hold the extreme are searched value by value."""
    n, m = u.size, v.size
    new_value = v[1:] != v[:-1]
    if m < 8 * KS_BLOCK or not new_value.all():  # small, or ties inside v: every value
        return _ks_every_value(u, v, new_value)
    starts = np.arange(0, m, KS_BLOCK, dtype=np.int64)
    ends = np.minimum(starts + KS_BLOCK, m)
    low = np.searchsorted(u, v[starts], "left")  # u below each block's first value
    high = np.searchsorted(u, v[ends - 1], "right")  # u at or below its last value
    attained = int(np.max(np.abs(low * m - starts * n)))  # the gap just before each block: exact values
    could = np.flatnonzero((high * m - starts * n > attained) | (ends * n - low * m > attained))
    if could.size == 0:
        return attained / (n * m)
    j = (starts[could, None] + np.arange(KS_BLOCK)).ravel()
    j = j[j < m]
    at = v[j]
    left = np.searchsorted(u, at, "left")
    right = np.searchsorted(u, at, "right")
    before, after = left * m - j * n, right * m - (j + 1) * n
    return max(attained, int(np.abs(before).max()), int(np.abs(after).max())) / (n * m)


def _ks_every_value(u: np.ndarray, v: np.ndarray, new_value: np.ndarray) -> float:
    n, m = u.size, v.size
    at, below, upto = (v, None, None) if new_value.all() else distinct_values(v)
    left = np.searchsorted(u, at, "left")  # how many of u lie below each value
    probe = np.minimum(left, n - 1)
    tied = u[probe] == at  # u holds this value too, so F_u also jumps at it
    tied &= left < n
    # (F_u - F_v) * n * m just before each value of v (integers: exact)
    gap = left * m
    gap -= np.arange(0, m * n, n, dtype=np.int64) if below is None else below * n
    d_before = max(int(gap.max()), -int(gap.min()))
    if below is None and not tied.any():
        # at each value F_v rises by 1/m and F_u stays: the gap there is the gap before it, minus n
        return max(d_before, int(gap.max()) - n, n - int(gap.min())) / (n * m)
    if upto is None:
        upto = np.arange(1, m + 1, dtype=np.int64)
    right = left.copy()
    right[tied] = np.searchsorted(u, at[tied], "right")
    gap_at = right * m - upto * n
    return max(d_before, int(gap_at.max()), -int(gap_at.min())) / (n * m)


def categories(a: np.ndarray) -> np.ndarray:
    return np.array(["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in a], dtype=object)


def sorted_props(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share per reference bin (bin k: edges[k-1] <= x < edges[k]) of sorted values: a search per edge,
    not per value."""
    counts = np.diff(np.concatenate([[0], np.searchsorted(sorted_values, edges, "left"), [sorted_values.size]]))
    return counts / max(sorted_values.size, 1)


def hist_props(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of `values` per equal-width bin (outliers in the end bins): the profile's picture, and the
    console's current-window bars beside it."""
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return counts / max(counts.sum(), 1)


def sorted_hist_props(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """hist_props of sorted values (equal to it: np.histogram's bins are [e_i, e_i+1), the last closed)."""
    return sorted_props(sorted_values, np.asarray(edges)[1:-1])


# ---- distances ------------------------------------------------------------------------------------
def _clip(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), EPS, None)
    return p / p.sum()


def psi(ref_props: np.ndarray, cur_props: np.ndarray) -> float:
    r, c = _clip(ref_props), _clip(cur_props)
    return float(np.sum((c - r) * np.log(c / r)))


def kl(ref_props: np.ndarray, cur_props: np.ndarray) -> float:
    """KL(current || reference), in nats."""
    r, c = _clip(ref_props), _clip(cur_props)
    return float(np.sum(c * np.log(c / r)))


def js_distance(ref_props: np.ndarray, cur_props: np.ndarray) -> float:
    return float(jensenshannon(np.asarray(ref_props, float), np.asarray(cur_props, float), base=2))


def wasserstein_normed(ref: NumericRef, cur_sorted: np.ndarray, ref_sorted: np.ndarray | None = None) -> float:
    """W1 / reference std. Exact with the reference sample, else from the reference quantile sketch."""
    return normalised(ref, wasserstein_raw(ref, cur_sorted, ref_sorted))


def wasserstein_raw(ref: NumericRef, cur_sorted: np.ndarray, ref_sorted: np.ndarray | None = None) -> float:
    if ref_sorted is not None:
        return wasserstein_sorted(ref_sorted, cur_sorted)
    return profile_wasserstein(ref.quantiles, sorted_quantiles(cur_sorted, np.linspace(0, 1, N_QUANTILES)))


def profile_wasserstein(ref_quantiles: Any, cur_quantiles: np.ndarray) -> float:
    """W1 on the profile's grid of N_QUANTILES quantile levels."""
    return float(np.mean(np.abs(np.asarray(ref_quantiles) - cur_quantiles)))


def normalised(ref: NumericRef, w: float) -> float:
    return float(w / ref.std) if ref.std > 0 else (0.0 if w == 0 else math.inf)


def ks_test(ref: NumericRef, cur_sorted: np.ndarray, ref_sorted: np.ndarray | None = None) -> tuple[float, float]:
    """(D, two-sided p). With the reference sample: scipy's ks_2samp result (exact distribution up to
    10,000 per sample, Smirnov's asymptotic one beyond, as scipy does). With only the profile: D from
    the 1,001-point quantile sketch (accurate to about 0.001) and the asymptotic p-value."""
    m = cur_sorted.size
    if ref_sorted is not None:
        n = ref_sorted.size
        if max(n, m) <= EXACT_KS_MAX_N:
            res = stats.ks_2samp(ref_sorted, cur_sorted)
            return float(res.statistic), float(res.pvalue)
        d = ks_statistic_sorted(ref_sorted, cur_sorted)
    else:
        n = ref.n
        q = np.asarray(ref.quantiles)
        at, below, upto = distinct_values(cur_sorted)
        # sup |F_ref - F_cur| with F_ref piecewise linear through the profile's quantiles: between two
        # points of (current values U profile quantiles) F_cur is flat and F_ref monotone, so the
        # extremes are the right values and the left limits at those points.
        d = max(sup_gap(profile_cdf(q, at, "right"), upto / m, profile_cdf(q, at, "left"), below / m),
                sup_gap(profile_cdf(q, q, "right"), np.searchsorted(cur_sorted, q, "right") / m,
                        profile_cdf(q, q, "left"), np.searchsorted(cur_sorted, q, "left") / m))
    return d, ks_p_value(d, n, m)


def distinct_values(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct values of sorted v, how many of v lie below each, how many lie at or below it)."""
    last = np.flatnonzero(np.concatenate([v[1:] != v[:-1], [True]]))  # the last copy of each distinct value
    return v[last], np.concatenate([[0], last[:-1] + 1]), last + 1


def sup_gap(f_right: np.ndarray, g_right: np.ndarray, f_left: np.ndarray, g_left: np.ndarray) -> float:
    return float(max(np.max(np.abs(f_right - g_right)), np.max(np.abs(f_left - g_left))))


def profile_cdf(q: np.ndarray, x: np.ndarray, side: str = "right") -> np.ndarray:
    """The reference CDF a profile describes, at x: linear between its N_QUANTILES quantiles, with a
    jump where quantiles repeat (a value the reference holds many times). side="left": the left
    limit F(x-). For continuous data this is np.interp(x, q, levels)."""
    size = q.size
    i = np.searchsorted(q, x, side)  # right: how many quantiles are <= x; left: how many are < x
    lo, hi = np.clip(i - 1, 0, size - 1), np.clip(i, 0, size - 1)
    span = q[hi] - q[lo]
    frac = np.divide(x - q[lo], span, out=np.zeros(np.shape(x)), where=span > 0)
    f = (lo + frac * (hi - lo)) / (size - 1)
    f[i == 0] = 0.0
    f[i == size] = 1.0
    return f


def ks_p_value(d: float, n: int, m: int) -> float:
    """Two-sided p of D for samples of n and m, as scipy's ks_2samp computes it past its exact range."""
    big, small = max(n, m), min(n, m)
    en = big * small / (big + small)
    return float(np.clip(stats.kstwo.sf(d, np.round(en)), 0, 1))


def chi2_tests(ref_counts: np.ndarray, cur_counts: np.ndarray) -> dict[str, float]:
    """Contingency (reference and current both samples) and goodness-of-fit (current vs reference
    proportions); Cramer's V as the effect size."""
    keep = (ref_counts + cur_counts) > 0
    r, c = ref_counts[keep], cur_counts[keep]
    out = {"chi2": math.nan, "chi2_p": 1.0, "chi2_gof": math.nan, "chi2_gof_p": 1.0, "cramers_v": 0.0}
    if r.size < 2 or c.sum() == 0 or r.sum() == 0:
        return out
    table = np.vstack([r, c])
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    out.update(chi2=float(chi2), chi2_p=float(p), cramers_v=float(math.sqrt(chi2 / table.sum())))
    expected = _clip(r / r.sum()) * c.sum()
    gof, gof_p = stats.chisquare(c, expected)
    out.update(chi2_gof=float(gof), chi2_gof_p=float(gof_p))
    return out


# ---- comparing ------------------------------------------------------------------------------------
@dataclass
class ColumnRule:
    test: str | None = None  # one of TESTS; None = automatic
    threshold: float | None = None


@dataclass
class ColumnDrift:
    column: str
    kind: str
    test: str | None = None
    value: float | None = None  # the decisive test's statistic (or p-value for p-value tests)
    threshold: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    effect_size: dict[str, float] = field(default_factory=dict)
    drifted: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    n_reference: int = 0
    n_current: int = 0
    n_missing: int = 0
    n_invalid: int = 0
    note: str | None = None
    sketch: dict[str, Any] | None = None  # KS/Wasserstein came from a quantile sketch: its kind, k, bounds
    # The current window's picture beside the profile's: shares per hist_edges bin (numeric) or per
    # picture_categories (categorical), so every engine's report renders the same charts.
    histogram: list[float] | None = None


def compare_column(name: str, ref: NumericRef | CategoricalRef, cur: np.ndarray, rule: ColumnRule | None = None,
                   ref_sample: np.ndarray | None = None) -> ColumnDrift:
    rule = rule or ColumnRule()
    if ref.kind == "numeric":
        return _compare_numeric(name, ref, cur, rule, ref_sample)
    return _compare_categorical(name, ref, cur, rule)


def numeric_values(cur: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(valid floats, missing, invalid): non-numeric strings in a numeric column are invalid, not 0."""
    if cur.dtype.kind in "fiub":
        values, missing = valid_floats(cur)
        return values, missing, 0
    out, missing, invalid = [], 0, 0
    for v in cur:
        if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v.strip().lower()
                                                                       in MISSING_TEXT):
            missing += 1
            continue
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            invalid += 1
    return np.asarray(out, float), missing, invalid


@dataclass
class NumericSummary:
    """What the numeric tests need from a current column: computed from its values in memory, or
    merged from a stream's partial summaries (gateway/stats/drift_stream.py)."""

    n: int
    missing: int
    invalid: int
    props: np.ndarray  # share per reference bin
    mean: float
    ks_d: float
    ks_p: float
    wasserstein: float  # W1, not yet divided by the reference std
    histogram: np.ndarray | None = None  # share per bin of the profile's picture (hist_edges)
    sketch: dict[str, Any] | None = None  # set when KS and Wasserstein came from a quantile sketch


def _compare_numeric(name: str, ref: NumericRef, cur: np.ndarray, rule: ColumnRule,
                     ref_sample: np.ndarray | None) -> ColumnDrift:
    values, missing, invalid = numeric_values(cur)
    if ref.n == 0 or values.size == 0:
        return numeric_result(name, ref, NumericSummary(int(values.size), missing, invalid, np.zeros(0), math.nan,
                                                        math.nan, 1.0, math.nan), rule)
    values.sort()
    ref_sorted = None
    if ref_sample is not None and ref_sample.dtype.kind == "f":
        ref_sorted = ref_sample if _is_sorted(ref_sample) else np.sort(ref_sample[~np.isnan(ref_sample)])
    return numeric_result(name, ref, exact_summary(ref, values, missing, invalid, ref_sorted), rule)


def exact_summary(ref: NumericRef, values: np.ndarray, missing: int, invalid: int,
                  ref_sorted: np.ndarray | None = None) -> NumericSummary:
    """The summary of a whole current column, its valid values given sorted (not empty): exact KS and
    Wasserstein against the raw reference when given, else against the profile's quantile sketch."""
    d, p = ks_test(ref, values, ref_sorted)
    return NumericSummary(int(values.size), missing, invalid, sorted_props(values, np.asarray(ref.edges)),
                          float(values.mean(dtype=np.float64)), d, p, wasserstein_raw(ref, values, ref_sorted),
                          sorted_hist_props(values, np.asarray(ref.hist_edges)) if ref.hist_edges else None)


def _is_sorted(a: np.ndarray) -> bool:
    """Cheap check that a reference sample came sorted without NaNs (drift.fit's sorted_samples)."""
    return a.size < 2 or bool(a[0] <= a[a.size // 2] <= a[-1] and np.all(a[:-1] <= a[1:]))


def numeric_result(name: str, ref: NumericRef, s: NumericSummary, rule: ColumnRule) -> ColumnDrift:
    """A numeric column's metrics and verdict from its summary: the same for every engine."""
    out = ColumnDrift(name, "numeric", n_reference=ref.n, n_current=s.n, n_missing=s.missing, n_invalid=s.invalid)
    if ref.n == 0:
        out.note = "reference column is empty (all missing): nothing to compare"
        return out
    if s.n == 0:
        out.note = "current column is empty (all missing or invalid)"
        return out
    out.metrics = {"psi": psi(ref.props, s.props), "kl": kl(ref.props, s.props), "js": js_distance(ref.props, s.props),
                   "wasserstein": normalised(ref, s.wasserstein), "ks_d": s.ks_d, "ks_p": s.ks_p, "mean": s.mean,
                   "reference_mean": ref.mean}
    out.histogram = None if s.histogram is None else [float(x) for x in s.histogram]
    notes = []
    if ref.std == 0:
        notes.append("constant in the reference: Wasserstein is not normalised (inf when it moved)")
    if s.sketch:
        out.sketch = s.sketch
        notes.append(f"KS and Wasserstein from a KLL quantile sketch (k={s.sketch['k']}): KS D within "
                     f"{s.sketch['ks_d_bound']:.4f}, Wasserstein within {s.sketch['wasserstein_bound']:.4f} of exact")
    out.note = "; ".join(notes) or None
    test = rule.test or ("ks" if s.n <= SMALL_SAMPLE else "wasserstein")
    _decide(out, test, rule.threshold, {"ks": (s.ks_p, {"ks_d": s.ks_d})})
    return out


def _compare_categorical(name: str, ref: CategoricalRef, cur: np.ndarray, rule: ColumnRule) -> ColumnDrift:
    labels = categories(cur)
    present = labels[labels != ""]
    values, counts = np.unique(present, return_counts=True)
    return categorical_result(name, ref, dict(zip(values.tolist(), counts.tolist())), int(labels.size - present.size),
                              rule)


def categorical_result(name: str, ref: CategoricalRef, cur_map: dict[str, int], missing: int,
                       rule: ColumnRule) -> ColumnDrift:
    """A categorical column's metrics and verdict from its category counts: the same for every engine."""
    n = sum(cur_map.values())
    out = ColumnDrift(name, "categorical", n_reference=ref.n, n_current=n, n_missing=missing)
    if ref.n == 0 or n == 0:
        out.note = "reference or current column is empty"
        return out
    cats = sorted(ref.counts)
    unseen = sum(c for v, c in cur_map.items() if v not in ref.counts)
    ref_counts = np.array([ref.counts[k] for k in cats] + [0], float)
    cur_counts = np.array([cur_map.get(k, 0) for k in cats] + [unseen], float)
    chi = chi2_tests(ref_counts, cur_counts)
    ref_p, cur_p = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
    out.metrics = {"psi": psi(ref_p, cur_p), "kl": kl(ref_p, cur_p), "js": js_distance(ref_p, cur_p),
                   "unseen_share": float(unseen / n), **chi}
    out.histogram = [cur_map.get(k, 0) / n for k in picture_categories(ref)]
    if unseen:
        out.note = f"{unseen} value(s) in categories the reference never had (pooled as {UNSEEN})"
    test = rule.test or ("chi2" if n <= SMALL_SAMPLE else "js")
    _decide(out, test, rule.threshold, {"chi2": (chi["chi2_p"], {"cramers_v": chi["cramers_v"]}),
                                        "chi2_gof": (chi["chi2_gof_p"], {"cramers_v": chi["cramers_v"]})})
    return out


def settle_alone(result: ColumnDrift) -> ColumnDrift:
    """A column tested on its own (prediction drift): a p-value test needs no multiple-testing
    correction, so its adjusted p is its p."""
    if result.p_value is not None:
        result.p_adjusted = result.p_value
        result.drifted = result.p_value < result.threshold
    return result


def picture_categories(ref: CategoricalRef) -> list[str]:
    """The categories a report's picture shows: the reference's 20 most frequent."""
    return sorted(ref.counts, key=ref.counts.get, reverse=True)[:20]


def _decide(out: ColumnDrift, test: str, threshold: float | None, pvalue_tests: dict[str, tuple[float, dict]]) -> None:
    if test not in TESTS or (test in P_VALUE_TESTS and test not in pvalue_tests):
        raise ValueError(f"column {out.column!r}: test {test!r} does not apply to {out.kind} columns")
    out.test = test
    out.threshold = DEFAULT_THRESHOLDS[test] if threshold is None else threshold
    if test in P_VALUE_TESTS:
        out.p_value, out.effect_size = pvalue_tests[test]
        out.value = out.p_value  # decided after the multiple-testing correction
    else:
        out.value = out.metrics[test]
        out.drifted = bool(out.value >= out.threshold)


@dataclass
class DriftReport:
    profile: dict[str, Any]  # which reference this was computed against (lineage)
    columns: list[ColumnDrift]
    drifted_columns: int
    share_drifted: float
    dataset_threshold: float
    dataset_drift: bool
    correction: str
    problems: list[str]
    current_rows: int
    # How it was computed (lineage): engine ("memory", "stream", "dask"), rows read, wall seconds,
    # the inputs, and which columns' KS/Wasserstein came from a sketch.
    engine: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def compare(profile: Profile, current: dict[str, np.ndarray], *, rules: dict[str, ColumnRule] | None = None,
            dataset_threshold: float = 0.5, correction: Literal["holm", "bh"] = "holm",
            reference: dict[str, np.ndarray] | None = None) -> DriftReport:
    """Compare a current window against a fitted profile. KS and Wasserstein are exact against the raw
    reference when it is given (or kept on the profile by fit(keep_sample=True)), else against the
    profile's quantile sketch."""
    started = time.perf_counter()
    rules = rules or {}
    rows = max((len(a) for a in current.values()), default=0)
    if rows == 0:
        raise ValueError("the current window is empty: no rows to compare")
    problems = schema_problems(profile, list(current))
    samples = reference if reference is not None else profile.sorted_samples

    def one(name: str) -> ColumnDrift:
        ref = profile.columns[name]
        cur = current[name]
        if ref.kind == "categorical" and cur.dtype.kind == "f" and not np.isnan(cur).all():
            problems.append(f"{name}: categorical in the reference, numeric now; compared as categories")
        return compare_column(name, ref, cur, rules.get(name), samples.get(name))

    results = _pool_map(one, [c for c in profile.columns if c in current])
    return assemble(profile, results, problems, rows, dataset_threshold=dataset_threshold, correction=correction,
                    engine={"name": "memory", "rows_read": rows, "wall_s": round(time.perf_counter() - started, 3)})


def schema_problems(profile: Profile, current_columns: list[str]) -> list[str]:
    problems = []
    missing = [c for c in profile.columns if c not in current_columns]
    extra = [c for c in current_columns if c not in profile.columns]
    if missing:
        problems.append(f"columns missing from the current data: {', '.join(missing)}")
    if extra:
        problems.append(f"columns not in the reference (ignored): {', '.join(extra)}")
    return problems


def assemble(profile: Profile, results: list[ColumnDrift], problems: list[str], rows: int, *,
             dataset_threshold: float, correction: str, engine: dict[str, Any]) -> DriftReport:
    """The report from per-column results: multiple-testing correction, dataset verdict, lineage."""
    tested = [r for r in results if r.p_value is not None]
    adjust = holm if correction == "holm" else benjamini_hochberg
    for r, p_adj in zip(tested, adjust([r.p_value for r in tested]) if tested else []):
        r.p_adjusted = p_adj
        r.drifted = bool(p_adj < r.threshold)
    drifted = sum(r.drifted for r in results)
    compared = sum(r.test is not None for r in results)
    share = drifted / compared if compared else 0.0
    lineage = {"source": profile.source, "content_hash": profile.content_hash, "rows": profile.rows,
               "created_at": profile.created_at}
    engine = {**engine, "sketched_columns": [r.column for r in results if r.sketch]}
    return DriftReport(lineage, results, drifted, share, dataset_threshold, share >= dataset_threshold and compared > 0,
                       correction, problems, rows, engine)


def _pool_map(fn, items) -> list:
    items = list(items)
    if len(items) < 4:
        return [fn(x) for x in items]
    # numpy's sort, searchsorted and quantile release the GIL: columns use both cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(fn, items))
