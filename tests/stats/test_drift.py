"""Drift statistics against scipy and hand-computed cases; invariances; bad input."""

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
    assert a == b and a["profile"]["source"] == "ref.csv"


@pytest.mark.parametrize(("n", "m"), [(1000, 1000), (1000, 700), (3001, 1999)])
def test_exact_wasserstein_and_quantiles_on_sorted_arrays_equal_scipy_and_numpy(n, m):
    u, v = np.sort(RNG.normal(0, 1, n)), np.sort(RNG.gamma(2, 1, m))
    assert drift.wasserstein_sorted(u, v) == pytest.approx(stats.wasserstein_distance(u, v), rel=1e-9)
    probs = np.linspace(0, 1, 101)
    assert drift.sorted_quantiles(u, probs) == pytest.approx(np.quantile(u, probs), rel=1e-12)
