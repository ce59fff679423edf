"""Streaming drift partials: exact where a streaming form exists, within the stated bound where sketched."""

import dataclasses
import pickle

import numpy as np
import pytest

from gateway.stats import drift, drift_stream

pytest.importorskip("datasketches", reason="the drift extra (datasketches) is not installed")


def _reference(rng, n=100_000):
    num = rng.normal(0, 1, n)
    num[::40] = np.nan
    return {"num": num, "gamma": rng.gamma(2.0, 1.0, n), "few": rng.integers(0, 6, n).astype(float),
            "cat": rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)}


def _current(rng, n=60_000):
    num = rng.normal(0.1, 1.1, n)
    num[::25] = np.nan
    cat = rng.choice(["a", "b", "c", "e"], n).astype(object)
    cat[::100] = None
    return {"num": num, "gamma": rng.gamma(2.2, 1.0, n), "few": rng.integers(0, 7, n).astype(float), "cat": cat}


def _stream(profile, current, cuts, *, sketch=False):
    """Partials per slice of the window, merged in a shuffled order (the order workers finish in)."""
    pieces = []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        part = drift_stream.partials_for(profile.columns)
        for name, col in current.items():
            part[name].add(col[lo:hi])
        if sketch:
            drift_stream.sketch_all(part)
        pieces.append(pickle.loads(pickle.dumps(part)))  # as they travel from a worker
    order = np.random.default_rng(4).permutation(len(pieces))
    merged = drift_stream.partials_for(profile.columns)
    for i in order:
        drift_stream.merge_all(merged, pieces[i])
    return drift_stream.results(profile.columns, merged, {}, profile.sorted_samples)


@pytest.mark.parametrize("keep_sample", [False, True])
def test_exact_partials_equal_the_in_memory_engine(keep_sample):
    rng = np.random.default_rng(1)
    profile = drift.fit(_reference(rng), keep_sample=keep_sample)
    current = _current(rng)
    memory = drift.compare(profile, current).columns
    streamed = _stream(profile, current, [0, 7, 20_000, 20_001, 45_000, 60_000])
    for m, s in zip(memory, streamed):
        mean = m.metrics.pop("mean", None), s.metrics.pop("mean", None)
        assert dataclasses.asdict(m) == dataclasses.asdict(s), m.column  # everything else identical
        if mean[0] is not None:
            assert mean[1] == pytest.approx(mean[0], rel=1e-12)  # batch sums, not one pairwise sum


@pytest.mark.parametrize("keep_sample", [False, True])
def test_sketched_ks_and_wasserstein_are_within_their_stated_bounds(keep_sample):
    rng = np.random.default_rng(2)
    profile = drift.fit(_reference(rng, 300_000), keep_sample=keep_sample)
    current = _current(rng, 400_000)
    exact = {c.column: c for c in drift.compare(profile, current).columns}
    for s in _stream(profile, current, [0, 100_000, 250_000, 400_000], sketch=True):
        e = exact[s.column]
        if s.kind == "categorical":
            assert s.sketch is None and s.metrics == e.metrics  # counts are exact in any engine
            continue
        assert s.sketch["kind"] == "kll" and s.sketch["k"] == drift_stream.KLL_K
        assert s.metrics["psi"] == e.metrics["psi"] and s.n_current == e.n_current and s.n_missing == e.n_missing
        assert abs(s.metrics["ks_d"] - e.metrics["ks_d"]) <= s.sketch["ks_d_bound"], s.column
        # against W1 on the same quantile grid (what the bound is stated for) ...
        grid = dataclasses.replace(profile, sorted_samples={})
        ref_q = (drift.sorted_quantiles(profile.sorted_samples[s.column], np.linspace(0, 1, drift.N_QUANTILES))
                 if keep_sample else profile.columns[s.column].quantiles)
        cur = np.sort(current[s.column][~np.isnan(current[s.column])])
        on_grid = drift.normalised(grid.columns[s.column], drift.profile_wasserstein(
            ref_q, drift.sorted_quantiles(cur, np.linspace(0, 1, drift.N_QUANTILES))))
        assert abs(s.metrics["wasserstein"] - on_grid) <= s.sketch["wasserstein_bound"], s.column
        # ... and the decision agrees with the exact engine's on these clear-cut columns
        assert s.drifted == e.drifted, s.column


def test_sketch_bound_holds_for_a_tiny_shift_near_the_threshold():
    """Where a decision is close, the sketch's error must stay inside the bound (measured over seeds)."""
    worst = 0.0
    for seed in range(5):
        rng = np.random.default_rng(10 + seed)
        profile = drift.fit({"x": rng.normal(0, 1, 200_000)}, keep_sample=True)
        current = {"x": rng.normal(0.01, 1, 500_000)}
        e = drift.compare(profile, current).columns[0]
        s = _stream(profile, current, [0, 250_000, 500_000], sketch=True)[0]
        worst = max(worst, abs(s.metrics["ks_d"] - e.metrics["ks_d"]) / s.sketch["ks_d_bound"])
    assert worst <= 1.0


def test_an_empty_part_and_an_all_missing_column_merge_cleanly():
    rng = np.random.default_rng(3)
    profile = drift.fit({"x": rng.normal(0, 1, 1000), "c": rng.choice(["a", "b"], 1000).astype(object)})
    out = _stream(profile, {"x": np.full(50, np.nan), "c": np.array([None] * 50, dtype=object)}, [0, 0, 50])
    assert [c.note for c in out] == ["current column is empty (all missing or invalid)",
                                     "reference or current column is empty"]
    assert out[0].n_missing == 50 and out[1].n_missing == 50
