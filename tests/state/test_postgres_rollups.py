"""Drift summaries of the tabular log in PostgreSQL: built by one replica, read by another, with the
same exact counts as the SQLite log holding the same predictions."""

from __future__ import annotations

import pytest

from gateway.state import postgres
from gateway.state.config import StateSettings
from gateway.tabular import rollups
from gateway.tabular.store import PredictionStore
from tests.tabular.test_rollups import HOUR, NOW, drift_results, fill, make_model

pytest.importorskip("datasketches", reason="the drift extra (datasketches) is not installed")


def test_summaries_in_postgres_equal_sqlite(pg_schema, tmp_path):
    s = StateSettings(ledger="postgres", postgres_schema=pg_schema)
    postgres.migrate(s)
    model = make_model()
    results = {}
    for name, store in (("postgres", PredictionStore(backend=postgres.PostgresPredictionLog(s), flush_interval_s=0.01)),
                        ("sqlite", PredictionStore(tmp_path / "tabular.db", flush_interval_s=0.01))):
        store.start()
        fill(store, model, NOW - 3 * HOUR, NOW, 300, seed=11, shift=4)
        assert rollups.Rollups(store).build(model, now=NOW) > 0
        store.close()
        # another replica's store reads what the first one summarised
        reader = PredictionStore(backend=postgres.PostgresPredictionLog(s)) if name == "postgres" else \
            PredictionStore(tmp_path / "tabular.db")
        partials, n, start = rollups.Rollups(reader).window(model, NOW - 2.5 * HOUR, NOW)
        assert rollups.Rollups(reader).build(model, now=NOW) == 0
        results[name] = (n, start, {c.column: c for c in drift_results(model, partials)})
        reader.backend.close()
    (n_pg, start_pg, pg), (n_lite, start_lite, lite) = results["postgres"], results["sqlite"]
    assert (n_pg, start_pg) == (n_lite, start_lite) and n_pg > 0
    for name, c in lite.items():
        assert (pg[name].n_current, pg[name].n_missing) == (c.n_current, c.n_missing)
        assert pg[name].metrics["psi"] == pytest.approx(c.metrics["psi"], abs=1e-12)
        if c.kind == "numeric":
            assert abs(pg[name].metrics["ks_d"] - c.metrics["ks_d"]) <= 2 * c.sketch["ks_d_bound"]
