"""The console reads whichever ledger is configured: every query it makes gives the same answer on the
PostgreSQL ledger as on the SQLite one, for the same rows."""

from __future__ import annotations

import time

import pytest

from gateway.console import experiment_series, queries
from gateway.console.example_data import example_feedback, example_rows
from gateway.experiments.config import ExperimentsFile
from gateway.metering import ledger as L
from gateway.state import postgres
from gateway.state.config import StateSettings
from tests.helpers import REPO
from tests.state.test_postgres_ledger import close_enough


def test_console_queries_agree_on_sqlite_and_postgres(pg_schema, tmp_path):
    now = time.time()
    # In time order, as traffic arrives: SQLite's unit rollups keep the first row's time where PostgreSQL's
    # keep the earliest, which differ only for rows written out of order.
    rows = sorted(example_rows(3000, days=3, now=now, seed=5), key=lambda r: r[1])
    feedback = sorted(example_feedback(rows, seed=5), key=lambda r: r[2])
    conn = L.connect(tmp_path / "l.db")
    L.write_rows(conn, rows, feedback)
    conn.close()
    s = StateSettings(ledger="postgres", postgres_schema=pg_schema)
    postgres.migrate(s)
    sink = postgres.PostgresSink(s)
    pconn = sink.connect()
    sink.write(pconn, rows, feedback)
    sink.close(pconn)
    lite, pg = L.SqliteReader(tmp_path / "l.db"), postgres.PostgresReader(s)
    import yaml

    exp = ExperimentsFile.model_validate(yaml.safe_load((REPO / "policies" / "experiments.yaml").read_text())).experiments[0]
    for bucket in ("hour", "day"):
        w = queries.window_for(now - 4 * 86400, now, bucket)
        checks = [
            lambda r: queries.overview(r, w),
            lambda r: queries.overview(r, w, "model", "claude-sonnet"),
            lambda r: [queries.breakdown(r, w, d) for d in queries.BREAKDOWNS],
            lambda r: queries.guardrails(r, w),
            lambda r: queries.requests_page(r, queries.RequestFilter(now - 4 * 86400, now, key="support-bot",
                                                                     status="2xx", check="no-pii"), 2, 20),
            lambda r: queries.one_request(r, rows[7][0]),
            lambda r: experiment_series.series(r, exp, 86400 if bucket == "day" else 3600),
        ]
        for i, fn in enumerate(checks):
            a, b = fn(lite), fn(pg)
            assert _diff(_plain(a), _plain(b)) is None, (bucket, i, _diff(_plain(a), _plain(b)))
    pg.close()


def _plain(x):
    """Tuples to lists and Decimals to floats, so the two backends' answers compare field by field."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, (int, float)):
        return float(x)
    return float(x) if hasattr(x, "__float__") else x


pytestmark = pytest.mark.timeout(300)


def _diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{path}: keys {sorted(a)} vs {sorted(b)}"
        return next((d for k in a if (d := _diff(a[k], b[k], f"{path}.{k}"))), None)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} items"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := _diff(x, y, f"{path}[{i}]"))), None)
    return None if close_enough(a, b) else f"{path}: {a!r} vs {b!r}"
