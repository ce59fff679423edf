"""Drift summaries of the prediction log (SQLite here; PostgreSQL in tests/state/test_postgres_rollups.py):
built from the log's rows, merged for a window, equal to the raw rows' exact counts, within the
sketch bound for KS, idempotent, folded per hour, and bounded by keep_days."""

from __future__ import annotations

import time

import numpy as np
import pytest

from gateway.stats import drift
from gateway.tabular import rollups, service
from gateway.tabular.config import TabularModelConfig
from gateway.tabular.store import PredictionStore

pytest.importorskip("datasketches", reason="the drift extra (datasketches) is not installed")

HOUR = 3600.0
NOW = 1_800_000_000.0 + 40 * 60 + 17  # 40 min 17 s into an hour


def make_model(keep_days=None):
    rng = np.random.default_rng(0)
    reference = {"spend": rng.gamma(2, 30, 20_000), "calls": rng.poisson(2, 20_000).astype(float),
                 "plan": rng.choice(["basic", "pro", "enterprise"], 20_000).astype(object),
                 "prediction": rng.uniform(0, 1, 20_000)}
    cfg = TabularModelConfig(url="http://127.0.0.1:9/predict", keep_days=keep_days, features={
        "spend": {"type": "number"}, "calls": {"type": "integer"},
        "plan": {"type": "category", "values": ["basic", "pro", "enterprise"]}})
    return service.TabularModel("churn", cfg, drift.fit(reference))


def fill(store, model, start, end, per_hour, seed, shift=0.0):
    """Predictions spread over [start, end), written through the store's writer like real traffic."""
    rng = np.random.default_rng(seed)
    n = int((end - start) / HOUR * per_hour)
    ts = np.sort(rng.uniform(start, end, n))
    rows = []
    for i, t in enumerate(ts):
        feats = {"spend": float(rng.gamma(2, 30 + shift)), "calls": int(rng.poisson(2)),
                 "plan": str(rng.choice(["basic", "pro", "enterprise"]))}
        if i % 97 == 0:
            del feats["spend"]  # missing values are counted, as in the raw report
        rows.append((f"{seed}-{i}", model.name, float(t), feats, float(rng.uniform(0, 1))))
    store.record(rows)
    deadline = time.time() + 20
    target = store.written + len(rows)
    while store.written < target and time.time() < deadline:
        time.sleep(0.02)
    return n


@pytest.fixture
def store(tmp_path):
    s = PredictionStore(tmp_path / "tabular.db", flush_interval_s=0.01)
    s.start()
    yield s
    s.close()


def exact_report(store, model, since, until):
    rows = store.window(model.name, since, until)
    cols = service.window_columns(model, rows)
    refs = {k: v for k, v in model.profile.columns.items() if k in model.cfg.features}
    return drift.compare(drift.Profile(refs, 0, model.profile.content_hash, ""), cols), len(rows)


def test_summaries_equal_the_raw_rows_and_builds_are_idempotent(store):
    model = make_model()
    fill(store, model, NOW - 5 * HOUR - 600, NOW, 600, seed=1, shift=5)
    r = rollups.Rollups(store)
    written = r.build(model, now=NOW)
    # 6 hours touched: 5 closed hours (from the first prediction's hour) + the open hour's closed buckets
    open_hour = NOW - (NOW % HOUR)
    closed = (NOW - rollups.SETTLE_S) // 300 * 300
    assert written == 5 + int((closed - open_hour) / 300)
    assert r.build(model, now=NOW) == 0  # nothing new: idempotent
    since = NOW - 4.5 * HOUR
    partials, n, start = r.window(model, since, NOW)
    assert start == since - (since % HOUR)  # aligned down to the hour
    exact, n_exact = exact_report(store, model, start, NOW + 1)
    assert n == n_exact
    results = {c.column: c for c in drift_results(model, partials)}
    for e in exact.columns:
        s = results[e.column]
        assert (s.n_current, s.n_missing) == (e.n_current, e.n_missing)
        if e.kind == "categorical":
            assert s.metrics == e.metrics
        else:
            assert s.metrics["psi"] == pytest.approx(e.metrics["psi"], abs=1e-12)
            assert s.metrics["mean"] == pytest.approx(e.metrics["mean"], rel=1e-9)
            assert abs(s.metrics["ks_d"] - e.metrics["ks_d"]) <= s.sketch["ks_d_bound"]


def drift_results(model, partials):
    from gateway.stats import drift_stream

    refs = {k: v for k, v in model.profile.columns.items() if k in model.cfg.features}
    return drift_stream.results(refs, partials, {}, {})


def test_closed_hours_fold_their_buckets_and_late_builders_backfill(store):
    model = make_model()
    fill(store, model, NOW - 2 * HOUR, NOW, 400, seed=2)
    r = rollups.Rollups(store)
    early = NOW - HOUR - 10 * 60  # the builder ran while the previous hour was open: buckets
    r.build(model, now=early)
    periods = store.backend.query("SELECT period, COUNT(*) FROM drift_rollups GROUP BY period", ())
    assert dict(periods) == {3600: 1, 300: 5}  # the hour before, and the open hour's 0:00-0:25 buckets
    r.build(model, now=NOW)  # that hour closed: folded into one hour row, its buckets gone
    hours = store.backend.query("SELECT start, rows FROM drift_rollups WHERE period = 3600 ORDER BY start", ())
    buckets = store.backend.query("SELECT start FROM drift_rollups WHERE period = 300", ())
    assert [h for h, _ in hours] == [NOW - NOW % HOUR - 2 * HOUR, NOW - NOW % HOUR - HOUR]
    assert all(b >= NOW - NOW % HOUR for (b,) in buckets)
    counts = store.backend.query("SELECT COUNT(*) FROM predictions WHERE ts >= ? AND ts < ?",
                                 (hours[1][0], hours[1][0] + HOUR))
    assert hours[1][1] == counts[0][0]


def test_a_window_with_unsummarised_closed_hours_says_so(store):
    model = make_model()
    fill(store, model, NOW - 3 * HOUR, NOW, 200, seed=3)
    with pytest.raises(rollups.RollupsPending, match="no drift summary yet"):
        rollups.Rollups(store).window(model, NOW - 3 * HOUR, NOW)


def test_compute_drift_reads_big_windows_from_the_summaries(store, monkeypatch):
    model = make_model()
    fill(store, model, time.time() - 3 * HOUR, time.time(), 900, seed=4, shift=20)
    monkeypatch.setattr(service, "RAW_LIMIT", 1000)
    pending = service.compute_drift(store, model, 2 * HOUR)
    assert pending["status"] == "summaries_pending" and "try again" in pending["message"]
    rollups.Rollups(store).build(model)
    out = service.compute_drift(store, model, 2 * HOUR)
    assert out["status"] == "ok" and out["data_drift"]["engine"]["name"] == "summaries"
    assert out["window"]["aligned_to_hour"] and out["window"]["rows"] > 1000
    spend = next(c for c in out["data_drift"]["columns"] if c["column"] == "spend")
    assert spend["drifted"] and spend["sketch"]["kind"] == "kll"  # a real shift is found
    assert "prediction_drift" in out and out["performance"]["status"] == "insufficient_labels"
    monkeypatch.setattr(service, "RAW_LIMIT", 10**9)
    raw = service.compute_drift(store, model, 2 * HOUR)
    assert raw["data_drift"]["engine"]["name"] == "memory"
    assert [c["drifted"] for c in raw["data_drift"]["columns"]] == [c["drifted"] for c in out["data_drift"]["columns"]]


def test_keep_days_deletes_old_predictions_and_summaries(store):
    model = make_model(keep_days=1)
    old = fill(store, model, NOW - 30 * HOUR, NOW - 20 * HOUR, 50, seed=5)
    recent = fill(store, model, NOW - 2 * HOUR, NOW, 50, seed=6)
    expired = store.backend.query("SELECT COUNT(*) FROM predictions WHERE ts < ?", (NOW - 86400,))[0][0]
    assert 0 < expired < old
    r = rollups.Rollups(store)
    r.build(model, now=NOW)
    assert r.retain(model, 1, now=NOW) == expired
    assert store.backend.query("SELECT COUNT(*) FROM predictions", ())[0][0] == old + recent - expired
    oldest = store.backend.query("SELECT MIN(start) FROM drift_rollups", ())[0][0]
    assert oldest >= NOW - 86400 - HOUR


def test_a_summary_of_another_profile_is_never_merged(store):
    model = make_model()
    fill(store, model, NOW - 2 * HOUR, NOW, 100, seed=7)
    rollups.Rollups(store).build(model, now=NOW)
    rng = np.random.default_rng(9)
    other = service.TabularModel("churn", model.cfg, drift.fit({"spend": rng.normal(0, 1, 500),
                                                               "calls": rng.normal(0, 1, 500),
                                                               "plan": rng.choice(["a"], 500).astype(object)}))
    # a new profile starts its own summaries: the old ones are not read for it
    with pytest.raises(rollups.RollupsPending):
        rollups.Rollups(store).window(other, NOW - 2 * HOUR, NOW)


def test_the_running_gateway_summarises_its_log_and_applies_keep_days(tmp_path, monkeypatch):
    """The summariser task itself, in a real gateway: old predictions deleted by keep_days, closed hours
    and buckets summarised, and a big window answered from them over HTTP."""
    import json
    import sqlite3

    import httpx

    from gateway.tabular.store import SqliteLog
    from tests.helpers import REPO, running_gateway, write_policies
    from tests.tabular.test_service import FEATURES

    monkeypatch.setattr(service, "SUMMARISE_EVERY_S", 0.2)
    monkeypatch.setattr(service, "RAW_LIMIT", 100)
    root = write_policies(tmp_path, f"""
upstreams: {{mock: {{type: mock}}}}
models: {{echo: {{targets: [{{upstream: mock, model: echo}}]}}}}
server: {{watch_interval_s: 0}}
tabular:
  churn:
    url: http://127.0.0.1:9/predict
    features: {FEATURES}
    reference: churn.profile
    keep_days: 1
    drift: {{min_rows: 50}}
""")
    (root / "churn.profile").write_bytes((REPO / "policies/tabular/churn.profile").read_bytes())
    state = root / "state"
    state.mkdir()
    SqliteLog(state / "tabular.db").setup()
    now = time.time()
    rng = np.random.default_rng(2)
    rows = [(f"old-{i}", "churn", now - 3 * 86400 + i, 0.5) for i in range(40)]
    rows += [(f"new-{i}", "churn", now - 2 * HOUR + i * 20, 0.5) for i in range(300)]
    with sqlite3.connect(state / "tabular.db") as conn:
        conn.executemany("INSERT INTO predictions (id, model, ts, features, prediction) VALUES (?, ?, ?, ?, ?)",
                         [(i, m, ts, json.dumps({"tenure_months": float(rng.gamma(2, 12)),
                                                 "monthly_spend": float(rng.normal(60, 20)),
                                                 "support_calls": int(rng.poisson(1.5)), "plan": "basic"}), p)
                          for i, m, ts, p in rows])
    with running_gateway(root, ledger=state / "ledger.db") as gw:
        deadline = time.time() + 30
        while time.time() < deadline:
            with sqlite3.connect(state / "tabular.db") as conn:
                old = conn.execute("SELECT COUNT(*) FROM predictions WHERE ts < ?", (now - 86400,)).fetchone()[0]
                hours = conn.execute("SELECT COUNT(*) FROM drift_rollups WHERE period = 3600").fetchone()[0]
            if old == 0 and hours >= 1:
                break
            time.sleep(0.2)
        assert old == 0 and hours >= 1
        r = httpx.get(gw.url + "/v1/tabular/churn/drift?window=3h", timeout=30).json()
        metrics = httpx.get(gw.url + "/metrics", timeout=30).text
    assert 'gateway_tabular_predictions_deleted_total{model="churn"} 40.0' in metrics
    assert 'gateway_drift_summaries_written_total{model="churn"}' in metrics
    assert 'gateway_drift_summary_errors_total{model="churn"}' not in metrics
    assert r["status"] == "ok" and r["data_drift"]["engine"]["name"] == "summaries"
    assert r["window"]["rows"] == 300 and r["window"]["aligned_to_hour"] is True
