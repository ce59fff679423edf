"""The PostgreSQL ledger (state.ledger: postgres) on the machine's real server: migrations, writes that
a retry never duplicates, reports equal to the SQLite ledger's, the tabular log, and a server
stopped and started under load losing and duplicating nothing."""

from __future__ import annotations

import math
import random
import threading
import time

import psycopg
import pytest

from gateway.metering.ledger import COLUMNS, Ledger, SqliteReader
from gateway.metering.report import GROUPINGS, usage_rows
from gateway.state import postgres
from gateway.state.config import StateError, StateSettings
from gateway.state.ledger import open_ledger, open_reader
from tests.helpers import POSTGRES_URL, private_postgres
from tests.metering.test_ledger import BASE, mixed_rows, row


def settings(schema: str, **kw) -> StateSettings:
    return StateSettings(ledger="postgres", postgres_schema=schema, **kw)


def close_enough(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and (math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
                                                    or (math.isnan(a) and math.isnan(b)))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close_enough(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(close_enough(x, y) for x, y in zip(a, b))
    return a == b


def test_migrations_are_versioned_and_a_newer_schema_is_refused(pg_schema):
    s = settings(pg_schema)
    known = len(postgres.migrations())
    assert postgres.migrate(s) == (0, known)
    assert postgres.migrate(s) == (known, known)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        names = conn.execute(f"SELECT version, name FROM {pg_schema}.schema_version ORDER BY 1").fetchall()
        assert [v for v, _ in names] == list(range(1, known + 1)) and names[0][1] == "0001_ledger.sql"
        conn.execute(f"INSERT INTO {pg_schema}.schema_version (version, name) VALUES ({known + 1}, 'from-the-future')")
    with pytest.raises(StateError, match="newer than this gateway knows"):
        postgres.check(s)
    with pytest.raises(StateError, match="newer than this gateway knows"):
        postgres.migrate(s)


def test_an_unmigrated_schema_is_refused_when_migrate_on_start_is_off(pg_schema):
    with pytest.raises(StateError, match="run `gateway db migrate`"):
        postgres.check(settings(pg_schema, migrate_on_start=False))
    postgres.migrate(settings(pg_schema))
    postgres.check(settings(pg_schema, migrate_on_start=False))


def test_replicas_starting_together_migrate_once(pg_schema):
    results, errors = [], []

    def start():
        try:
            results.append(postgres.migrate(settings(pg_schema)))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    known = len(postgres.migrations())
    assert not errors and sorted(results) == [(0, known)] + [(known, known)] * 3


def test_a_retried_batch_adds_nothing_twice(pg_schema):
    s = settings(pg_schema)
    postgres.migrate(s)
    sink = postgres.PostgresSink(s)
    conn = sink.connect()
    rows = mixed_rows(500)
    feedback = [(f"r{i}", "rating", BASE + i, "exp", "new", f"u{i}", 4.0) for i in range(20)]
    try:
        assert sink.write(conn, rows, feedback) == 500
        before = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall())
                  for t in ("usage_hourly", "experiment_stats", "experiment_units", "feedback_units")}
        assert sink.write(conn, rows[:250] + rows, feedback) == 0  # a retry, and a journal replayed twice
        after = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in before}
        assert after == before
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM requests").fetchone() == (500, 500)
    finally:
        conn.close()


def test_reports_read_the_same_from_postgres_as_from_sqlite(pg_schema, tmp_path):
    from gateway.experiments.config import Experiment
    from gateway.experiments.report import build_report

    s = settings(pg_schema)
    postgres.migrate(s)
    pg = open_ledger(s, tmp_path / "pg" / "ledger.db", flush_interval_s=0.01)
    lite = Ledger(tmp_path / "lite.db", flush_interval_s=0.01)
    rows = mixed_rows(3000)
    rng = random.Random(3)
    feedback = [(f"unit:exp:u{u}", m, BASE + u, "exp", rng.choice(["control", "new"]), f"u{u}",
                 float(rng.randint(0, 1)) if m == "converted" else float(rng.randint(1, 5)))
                for u in range(97) for m in ("converted", "rating")]
    for ledger in (pg, lite):
        ledger.start()
        for r in rows:
            ledger.record(r)
        for f in feedback + feedback[:30]:  # repeats are ignored by both
            ledger.record_feedback(f)
        ledger.close()
    assert pg.write_errors == 0 and pg.written == 3000
    reader, lite_reader = open_reader(s, tmp_path / "unused.db"), SqliteReader(tmp_path / "lite.db")
    try:
        since, until = BASE + 1234.5, BASE + 5 * 3600 + 17  # whole hours from the rollup, the ends from raw rows
        for by in GROUPINGS:
            got, want = usage_rows(reader, since, until, by), usage_rows(lite_reader, since, until, by)
            assert want and close_enough(got, want), by
        exp = Experiment.model_validate({
            "name": "exp", "variants": [{"name": "control", "weight": 0.5}, {"name": "new", "weight": 0.5}],
            "models": ["echo"], "metrics": {"converted": {"type": "proportion"}, "rating": {"type": "mean"}}})
        got, want = build_report(reader, exp, now=BASE + 86400), build_report(lite_reader, exp, now=BASE + 86400)
        assert want["variants"] and close_enough(got, want), list(_diff(got, want))[:5]
    finally:
        reader.close()


def test_tabular_predictions_and_labels_in_postgres(pg_schema):
    from gateway.tabular.store import PredictionStore

    s = settings(pg_schema)
    postgres.migrate(s)
    store = PredictionStore(backend=postgres.PostgresPredictionLog(s), flush_interval_s=0.01)
    store.start()
    now = time.time()
    store.record([(f"p{i}", "churn", now + i * 0.001, {"age": 30 + i}, 0.25 * (i % 4)) for i in range(40)])
    store.record([("p-label", "churn", now, {"age": 1}, "yes")])
    deadline = time.time() + 10
    while store.written < 41 and time.time() < deadline:
        time.sleep(0.02)
    assert store.label("p3", 1.0, store.lookup_label("p3")) == "recorded"
    store.record_alert("churn", delivered=False, http_status=None, error="ClientConnectorError", attempts=4,
                       data_drift=True, performance_degraded=False)
    store.close()
    # a second replica's store sees what the first wrote, and refuses a conflicting label
    other = PredictionStore(backend=postgres.PostgresPredictionLog(s))
    rows = other.window("churn", now - 1)
    assert len(rows) == 41 and other.lookup_label("p3") == (1.0,)
    with pytest.raises(ValueError, match="already has label"):
        other.label("p3", 0.0, other.lookup_label("p3"))
    assert len(other.labelled_before("churn", now + 10)) == 1
    [alert] = other.alerts("churn")
    assert (alert["delivered"], alert["http_status"], alert["error"], alert["attempts"], alert["data_drift"]) == (
        0, None, "ClientConnectorError", 4, 1)
    other.backend.close()


def test_postgres_stopped_and_started_under_load_loses_and_duplicates_nothing(tmp_path):
    """A private server (so stopping it disturbs nothing else), rows recorded continuously while it is
    stopped for 2 s and started again: every row lands once, rollups agree with the rows."""
    with private_postgres() as (url, restart):
        import os

        os.environ["GATEWAY_POSTGRES_URL"] = url
        try:
            s = settings("gateway", timeout_s=0.5)
            postgres.migrate(s)
            ledger = open_ledger(s, tmp_path / "state" / "ledger.db", flush_interval_s=0.05)
            ledger.start()
            sent, stop = [], threading.Event()

            def load():
                i = 0
                while not stop.is_set():
                    r = list(row(i, "k", 0.001, ts=time.time()))
                    ledger.record(tuple(r))
                    sent.append(r[0])
                    i += 1
                    if i % 50 == 0:
                        time.sleep(0.005)

            t = threading.Thread(target=load)
            t.start()
            time.sleep(1.0)
            restart(2.0)
            time.sleep(1.5)
            stop.set()
            t.join()
            ledger.close()
            assert ledger.write_errors > 0  # the outage was seen, and ridden out
            reader = open_reader(s, tmp_path / "unused.db")
            total, distinct = reader.query("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM requests")[0]
            rolled = reader.query("SELECT SUM(requests) FROM usage_hourly WHERE dim = 'key'")[0][0]
            reader.close()
            assert len(sent) > 1000
            assert total == distinct == len(sent) == rolled
        finally:
            os.environ.pop("GATEWAY_POSTGRES_URL", None)


def _diff(a, b, path=""):
    if isinstance(a, dict):
        for k in a:
            yield from _diff(a[k], b.get(k), f"{path}.{k}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _diff(x, y, f"{path}[{i}]")
    elif not close_enough(a, b):
        yield path, a, b


def test_a_row_the_database_refuses_is_set_aside_and_the_rest_land(pg_schema, tmp_path):
    import json

    s = settings(pg_schema)
    postgres.migrate(s)
    ledger = open_ledger(s, tmp_path / "ledger.db", flush_interval_s=0.01)
    ledger.start()
    rows = mixed_rows(100)
    bad = list(rows[50])
    bad[COLUMNS.index("request_id")], bad[COLUMNS.index("input_tokens")] = "gw-bad", 2**40  # out of range
    for r in [*rows[:50], tuple(bad), *rows[50:]]:
        ledger.record(r)
    ledger.close()
    assert ledger.written == 101 and ledger.rejected == 1
    reader = open_reader(s, tmp_path / "unused.db")
    assert reader.query("SELECT COUNT(*) FROM requests")[0][0] == 100
    reader.close()
    kept = [json.loads(line) for line in ledger.rejected_path.read_text().splitlines()]
    assert [k["row"][0] for k in kept] == ["gw-bad"] and "out of range" in kept[0]["error"]
