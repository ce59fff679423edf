"""Drift statistics against scipy and hand-computed cases; invariances; bad input."""

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from gateway.stats import drift

RNG = np.random.default_rng(5)


def numeric_ref(values):
    return drift.fit({"x": np.asarray(values, float)}).columns["x"]


@pytest.mark.parametrize(("n", "m"), [(300, 200), (5000, 8000), (40_000, 25_000)])
def test_ks_equals_scipy_with_the_reference_sample(n, m):
    a, b = RNG.normal(0, 1, n), RNG.normal(0.05, 1.1, m)
    d, p = drift.ks_test(numeric_ref(a), np.sort(b), np.sort(a))
    ref = stats.ks_2samp(a, b)  # scipy picks exact / asymptotic by size, like we do
    assert d == pytest.approx(ref.statistic, abs=1e-12) and p == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-300)


def test_ks_from_the_profile_sketch_is_close():
    a, b = RNG.normal(0, 1, 200_000), RNG.normal(0.1, 1, 50_000)
    d, _ = drift.ks_test(numeric_ref(a), np.sort(b))
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=0.002)


def test_chi_square_both_modes_equal_scipy():
    ref, cur = np.array([500, 300, 200.0]), np.array([90, 70, 40.0])
    out = drift.chi2_tests(ref, cur)
    chi2, p, _, _ = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert out["chi2"] == pytest.approx(chi2) and out["chi2_p"] == pytest.approx(p)
    gof = stats.chisquare(cur, ref / ref.sum() * cur.sum())
    assert out["chi2_gof"] == pytest.approx(gof.statistic) and out["chi2_gof_p"] == pytest.approx(gof.pvalue)
    assert out["cramers_v"] == pytest.approx(math.sqrt(chi2 / (ref.sum() + cur.sum())))


def test_psi_js_kl_hand_computed_and_invariances():
    assert drift.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert drift.kl([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    assert drift.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    p, q = [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]
    assert drift.js_distance(p, q) == pytest.approx(drift.js_distance(q, p))  # symmetric
    assert drift.psi(p, q) == pytest.approx(drift.psi(q, p))  # PSI is symmetric too
    for f in (drift.psi, drift.kl, drift.js_distance):
        assert f(p, p) == pytest.approx(0.0, abs=1e-12)
    # an empty bin costs a large but finite amount (EPS = 1e-4)
    assert math.isfinite(drift.psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]))


def test_wasserstein_normalised_exact_and_from_sketch():
    a = RNG.normal(10, 2, 50_000)
    b = a + 2.0  # shifted by one reference standard deviation
    ref = numeric_ref(a)
    exact = drift.wasserstein_normed(ref, np.sort(b), np.sort(a))
    assert exact == pytest.approx(stats.wasserstein_distance(a, b) / a.std(ddof=1))
    assert exact == pytest.approx(1.0, abs=0.01)
    assert drift.wasserstein_normed(ref, np.sort(b)) == pytest.approx(exact, abs=0.01)
    assert drift.wasserstein_normed(ref, np.sort(a)) == pytest.approx(0.0, abs=0.005)


def test_identical_data_shows_no_drift_in_any_metric():
    a = RNG.normal(0, 1, 20_000)
    col = drift.compare_column("x", numeric_ref(a), a.copy(), ref_sample=a)
    assert col.metrics["psi"] == pytest.approx(0, abs=1e-9) and col.metrics["js"] == pytest.approx(0, abs=1e-9)
    assert col.metrics["ks_d"] == 0 and col.metrics["wasserstein"] == 0 and not col.drifted


def test_automatic_test_choice_and_detection():
    ref_num = RNG.normal(0, 1, 100_000)
    ref_cat = RNG.choice(["a", "b", "c"], 100_000, p=[0.5, 0.3, 0.2]).astype(object)
    profile = drift.fit({"num": ref_num, "cat": ref_cat})
    small = drift.compare(profile, {"num": RNG.normal(0, 1, 500), "cat": RNG.choice(["a", "b", "c"], 500).astype(object)})
    tests = {c.column: (c.test, c.effect_size) for c in small.columns}
    assert tests["num"][0] == "ks" and "ks_d" in tests["num"][1]
    assert tests["cat"][0] == "chi2" and "cramers_v" in tests["cat"][1]
    assert next(c for c in small.columns if c.column == "cat").drifted  # uniform vs 50/30/20 at n = 500
    big_same = drift.compare(profile, {"num": RNG.normal(0, 1, 50_000),
                                       "cat": RNG.choice(["a", "b", "c"], 50_000, p=[0.5, 0.3, 0.2]).astype(object)})
    assert {c.test for c in big_same.columns} == {"wasserstein", "js"}
    assert big_same.drifted_columns == 0 and not big_same.dataset_drift
    big_shift = drift.compare(profile, {"num": RNG.normal(0.3, 1, 50_000),
                                        "cat": RNG.choice(["a", "b", "c"], 50_000, p=[0.5, 0.3, 0.2]).astype(object)})
    assert [c.column for c in big_shift.columns if c.drifted] == ["num"]
    assert big_shift.share_drifted == 0.5 and big_shift.dataset_drift  # threshold 0.5


def test_false_alarm_rate_of_p_value_tests_on_stationary_data():
    profile = drift.fit({f"c{i}": RNG.normal(0, 1, 20_000) for i in range(10)})
    alarms = 0
    for _ in range(100):
        report = drift.compare(profile, {f"c{i}": RNG.normal(0, 1, 300) for i in range(10)})
        alarms += report.drifted_columns > 0
    assert alarms / 100 <= 0.1  # Holm keeps the family-wise rate at about alpha = 0.05


def test_per_column_rules_and_bh():
    profile = drift.fit({"x": RNG.normal(0, 1, 10_000)})
    rep = drift.compare(profile, {"x": RNG.normal(0.5, 1, 10_000)}, rules={"x": drift.ColumnRule("psi", 0.05)},
                        correction="bh")
    assert rep.columns[0].test == "psi" and rep.columns[0].threshold == 0.05 and rep.columns[0].drifted
    with pytest.raises(ValueError, match="does not apply"):
        drift.compare(drift.fit({"c": np.array(["a", "b"] * 50, dtype=object)}),
                      {"c": np.array(["a"] * 100, dtype=object)}, rules={"c": drift.ColumnRule("ks")})


def test_bad_input_is_reported_not_fatal():
    profile = drift.fit({
        "num": RNG.normal(0, 1, 1000), "const": np.full(1000, 3.0), "empty": np.full(1000, np.nan),
        "cat": RNG.choice(["a", "b"], 1000).astype(object), "gone": RNG.normal(0, 1, 1000),
    })
    current = {
        "num": np.array(["1.5", "oops", "", "0.2"] * 100, dtype=object),  # non-numeric values in a numeric column
        "const": np.full(400, 4.0), "empty": RNG.normal(0, 1, 400),
        "cat": RNG.choice(["a", "b", "zebra"], 400).astype(object), "new": RNG.normal(0, 1, 400),
    }
    rep = drift.compare(profile, current)
    cols = {c.column: c for c in rep.columns}
    assert cols["num"].n_invalid == 100 and cols["num"].n_missing == 100 and cols["num"].n_current == 200
    assert "constant in the reference" in cols["const"].note and cols["const"].drifted
    assert "reference column is empty" in cols["empty"].note and cols["empty"].test is None
    assert "never had" in cols["cat"].note and cols["cat"].metrics["unseen_share"] > 0.2
    assert any("gone" in p for p in rep.problems) and any("new" in p for p in rep.problems)
    with pytest.raises(ValueError, match="empty"):
        drift.compare(profile, {"num": np.array([], float)})


def test_profile_round_trip_keeps_lineage_and_results(tmp_path):
    data = {"x": RNG.normal(0, 1, 5000), "c": RNG.choice(["u", "v"], 5000).astype(object)}
    profile = drift.fit(data, source="ref.csv")
    profile.save(tmp_path / "ref.profile")
    loaded = drift.Profile.load(tmp_path / "ref.profile")
    assert loaded.content_hash == profile.content_hash == drift.fingerprint(data)
    assert loaded.rows == 5000 and loaded.schema == {"x": "numeric", "c": "categorical"}
    cur = {"x": RNG.normal(0.2, 1, 3000), "c": RNG.choice(["u", "v"], 3000).astype(object)}
    a, b = drift.compare(profile, cur).to_json(), drift.compare(loaded, cur).to_json()
    assert a.pop("engine")["name"] == b.pop("engine")["name"] == "memory"  # wall times differ
    assert a == b and a["profile"]["source"] == "ref.csv"


@pytest.mark.parametrize(("n", "m"), [(1000, 1000), (1000, 700), (3001, 1999)])
def test_exact_wasserstein_and_quantiles_on_sorted_arrays_equal_scipy_and_numpy(n, m):
    u, v = np.sort(RNG.normal(0, 1, n)), np.sort(RNG.gamma(2, 1, m))
    assert drift.wasserstein_sorted(u, v) == pytest.approx(stats.wasserstein_distance(u, v), rel=1e-9)
    probs = np.linspace(0, 1, 101)
    assert drift.sorted_quantiles(u, probs) == pytest.approx(np.quantile(u, probs), rel=1e-12)


@pytest.mark.parametrize("tie_kind", ["none", "rounded", "few_values", "one_sided", "shared_values"])
def test_ks_statistic_on_sorted_samples_equals_scipy_with_ties(tie_kind):
    rng = np.random.default_rng(11)
    a, b = rng.normal(0, 1, 30_000), rng.normal(0.03, 1, 20_000)
    if tie_kind == "rounded":  # many ties inside and across the samples
        a, b = np.round(a, 1), np.round(b, 1)
    elif tie_kind == "few_values":
        a, b = rng.integers(0, 4, 30_000).astype(float), rng.integers(0, 5, 20_000).astype(float)
    elif tie_kind == "one_sided":  # ties only in the current sample, values interleaved with the reference
        b = np.round(b, 2)
    elif tie_kind == "shared_values":  # no ties inside the current sample, many of its values in the reference
        a, b = np.round(a, 2), np.unique(np.round(b, 3))
    d = drift.ks_statistic_sorted(np.sort(a), np.sort(b))
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert drift.ks_statistic_sorted(np.sort(b), np.sort(a)) == pytest.approx(d, abs=1e-12)


def test_sorted_bin_shares_equal_the_searches_and_np_histogram():
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(0, 1, 50_000), 2)  # values on the edges too
    edges = np.unique(np.quantile(x, np.linspace(0, 1, 11)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1) / x.size
    assert np.array_equal(drift.sorted_props(np.sort(x), edges), expected)
    hist_edges = np.linspace(-2, 2, 31)
    assert np.array_equal(drift.sorted_hist_props(np.sort(x), hist_edges), drift.hist_props(x, hist_edges))


def test_float32_columns_give_the_float64_answers():
    """float32 columns are sorted and compared as float32 (half the memory traffic); their values are
    exactly those of the float64 copies, so every statistic must be the same."""
    rng = np.random.default_rng(8)
    ref32 = rng.normal(0, 1, 40_000).astype(np.float32)
    cur32 = (rng.normal(0.1, 1, 30_000)).astype(np.float32)
    cur32[::97] = np.nan
    for keep in (False, True):
        p32, p64 = (drift.fit({"x": ref32}, keep_sample=keep, content_hash="h"),
                    drift.fit({"x": ref32.astype(np.float64)}, keep_sample=keep, content_hash="h"))
        assert p32.columns == p64.columns
        r32 = drift.compare(p32, {"x": cur32}).columns[0]
        r64 = drift.compare(p64, {"x": cur32.astype(np.float64)}).columns[0]
        assert r32.metrics == pytest.approx(r64.metrics, rel=1e-12, abs=1e-15) and r32.n_missing == r64.n_missing


def test_kept_sample_gives_the_same_report_as_the_raw_reference(tmp_path):
    rng = np.random.default_rng(9)
    ref = {f"c{i}": rng.normal(0, 1, 20_000) for i in range(5)}
    ref["c0"][::50] = np.nan
    cur = {f"c{i}": rng.normal(0.05 * i, 1, 15_000) for i in range(5)}
    kept = drift.fit(ref, keep_sample=True)
    assert set(kept.sorted_samples) == set(ref) and not np.isnan(kept.sorted_samples["c0"]).any()
    a = drift.compare(kept, cur).to_json()
    b = drift.compare(dataclasses.replace(kept, sorted_samples={}), cur, reference=ref).to_json()  # same profile
    a.pop("engine"), b.pop("engine")
    assert a == b
    kept.save(tmp_path / "ref.profile")  # the kept values are never saved
    saved = (tmp_path / "ref.profile").read_text()
    assert "sorted_samples" not in saved and len(saved) < 200_000
    assert drift.Profile.load(tmp_path / "ref.profile").sorted_samples == {}


@pytest.mark.parametrize("shift", [0.0, 0.002, 0.05, 1.0])
def test_blockwise_ks_equals_the_value_by_value_answer(shift):
    """The block bound must never skip the block holding the extreme: same D as searching every value
    (and as scipy), from no drift (a flat, noisy gap: many candidate blocks) to a large shift."""
    rng = np.random.default_rng(int(shift * 1000) + 1)
    for n, m in ((200_000, 200_000), (50_000, 150_001), (120_000, 9_000)):
        a, b = rng.normal(0, 1, n), rng.normal(shift, 1.0 + shift / 10, m)
        u, v = np.sort(a), np.sort(b)
        d = drift.ks_statistic_sorted(u, v)
        assert d == drift._ks_every_value(u, v, v[1:] != v[:-1])
        assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
