"""The console's rollups in the PostgreSQL ledger agree with the raw rows (as in SQLite: see
tests/metering/test_rollups.py), from batches, retried batches and the migration's backfill."""

from __future__ import annotations

from gateway.state import postgres
from gateway.state.config import StateSettings
from tests.metering.test_rollups import check_against_rows, varied_rows


def test_postgres_rollups_from_batches_and_from_the_backfill(pg_schema):
    s = StateSettings(ledger="postgres", postgres_schema=pg_schema)
    postgres.migrate(s)
    sink = postgres.PostgresSink(s)
    conn = sink.connect()
    rows = varied_rows(3000)
    for i in range(0, len(rows), 700):
        sink.write(conn, rows[i:i + 700])
    sink.write(conn, rows[:500])  # a retried batch adds nothing
    reader = postgres.PostgresReader(s)
    check_against_rows(reader.query, rows)
    # Rows that were there before 0004: drop the rollups, re-run the migrations' backfills.
    conn.execute("DROP TABLE latency_hourly; DROP TABLE latency_daily; DROP TABLE checks_hourly; "
                 "DROP TABLE experiment_hourly; DROP INDEX usage_hourly_by_dim; DELETE FROM usage_hourly WHERE dim = 'group'")
    conn.commit()
    for migration in ("0004_console_rollups.sql", "0006_latency_daily.sql"):
        conn.execute((postgres.MIGRATIONS_DIR / migration).read_text())
    conn.commit()
    check_against_rows(reader.query, rows)
    reader.close()
    sink.close(conn)
