"""The console's rollups (gateway/metering/rollups.py) agree with the raw rows, in SQLite and PostgreSQL,
whether rows arrive in batches or were there before the migration that added the rollups."""

from __future__ import annotations

import json
import random
import re
import sqlite3
from collections import Counter

import numpy as np
import pytest

from gateway.metering import ledger as L
from gateway.metering import rollups
from gateway.state import postgres
from tests.metering.test_ledger import BASE, row

FAMILIES = [[], ["EMAIL_ADDRESS"], ["PERSON", "PHONE_NUMBER"]]


def varied_rows(n: int, seed: int = 3, start: int = 0) -> list[tuple]:
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        r = list(row(i, key=rng.choice(["a", "b", None]), ts=BASE + rng.random() * 5 * 3600))
        r[L.COLUMNS.index("grp")] = rng.choice(["team-x", None])
        r[L.COLUMNS.index("latency_ms")] = rng.lognormvariate(3, 1.2) if i % 11 else None
        if i % 3:
            r[L.COLUMNS.index("experiment")], r[L.COLUMNS.index("variant")] = "exp", rng.choice(["control", "new"])
            r[L.COLUMNS.index("unit_hash")] = f"u{i % 97}"
            r[L.COLUMNS.index("outcome")] = rng.choice(["ok", "ok", "failed", "refused"])
        if i % 2:
            r[L.COLUMNS.index("verdicts")] = json.dumps([
                ["pii", "no-pii", rng.choice(["allow", "flag", "redact"]), 0.9, rng.choice(["ok", "ok", "timeout"]),
                 rng.choice(FAMILIES)],
                ["injection", "inj", "allow", 0.1, "ok"],  # a pre-v8 row: no labels element
            ])
        out.append(tuple(r))
    return out


def expected_checks(rows: list[tuple]) -> Counter:
    want: Counter = Counter()
    for r in rows:
        verdicts = r[L.COLUMNS.index("verdicts")]
        for v in json.loads(verdicts) if verdicts else []:
            base = (int(r[L.COLUMNS.index("ts")] // 3600), v[0], v[1], v[2], v[4])
            want[(*base, "")] += 1
            for label in v[5] if len(v) > 5 else []:
                want[(*base, label)] += 1
    return want


def check_against_rows(query, rows: list[tuple]) -> None:
    got = Counter({tuple(k[:6]): k[6] for k in query("SELECT hour, type, name, action, status, label, n FROM checks_hourly")})
    assert got == expected_checks(rows)
    lat = [r[L.COLUMNS.index("latency_ms")] for r in rows if r[L.COLUMNS.index("latency_ms")] is not None]
    for dim in ("key", "group", "model"):
        hist = query(f"SELECT bucket, SUM(n) FROM latency_hourly WHERE dim = '{dim}' GROUP BY bucket")
        assert sum(n for _, n in hist) == len(lat)
        for q in (0.5, 0.95):
            exact = float(np.quantile(lat, q))
            assert exact / rollups.RATIO <= rollups.percentile(hist, q) <= exact * rollups.RATIO
    by_group = dict(query("SELECT value, SUM(requests) FROM usage_hourly WHERE dim = 'group' GROUP BY value"))
    want = Counter(r[L.COLUMNS.index("grp")] or "" for r in rows)
    assert by_group == dict(want)
    # experiment_hourly adds up to experiment_stats (kept by its own trigger), per variant and column.
    sums = ", ".join(f"SUM({c})" for c in rollups.EXPERIMENT_SUMS)
    hourly = {v: tuple(map(float, rest)) for v, *rest in query(f"SELECT variant, {sums} FROM experiment_hourly GROUP BY variant")}
    stats = {v: tuple(map(float, rest)) for v, *rest in query(
        f"SELECT variant, {', '.join(rollups.EXPERIMENT_SUMS)} FROM experiment_stats")}
    assert hourly.keys() == stats.keys() == {"control", "new"}
    for v in stats:
        assert hourly[v] == pytest.approx(stats[v], rel=1e-9)
    # latency_daily holds the hourly histograms summed per UTC day, for every dimension and value.
    daily = Counter({(d, dim, v, b): n for d, dim, v, b, n in query("SELECT day, dim, value, bucket, n FROM latency_daily")})
    from_hours: Counter = Counter()
    for h, dim, v, b, n in query("SELECT hour, dim, value, bucket, n FROM latency_hourly"):
        from_hours[(h // 24, dim, v, b)] += n
    assert daily and daily == from_hours
    one_key = query("SELECT bucket, SUM(n) FROM latency_hourly WHERE dim = 'key' AND value = 'a' GROUP BY bucket")
    assert sum(n for _, n in one_key) == sum(1 for r in rows if r[L.COLUMNS.index("key")] == "a"
                                            and r[L.COLUMNS.index("latency_ms")] is not None)


def test_bucket_bounds_and_percentile():
    assert all(b2 / b1 == pytest.approx(rollups.RATIO, rel=1e-3) for b1, b2 in zip(rollups.BOUNDS, rollups.BOUNDS[1:]))
    assert rollups.percentile([], 0.5) is None
    conn = sqlite3.connect(":memory:")
    for value, bucket in ((0.1, 0), (0.25, 1), (1.0, 7), (1e9, len(rollups.BOUNDS))):
        assert conn.execute(f"SELECT {rollups.bucket_sql('x', 'sqlite')} FROM (SELECT ? AS x)", (value,)).fetchone()[0] == bucket


def test_postgres_migration_uses_the_same_bounds():
    sql = (postgres.MIGRATIONS_DIR / "0004_console_rollups.sql").read_text()
    arrays = re.findall(r"ARRAY\[([^\]]*)\]", sql)
    assert arrays and all(tuple(float(x) for x in a.split(",")) == rollups.BOUNDS for a in arrays)


def test_sqlite_rollups_from_batches_and_from_the_v8_backfill(tmp_path):
    rows = varied_rows(3000)
    conn = L.connect(tmp_path / "l.db")
    for i in range(0, len(rows), 700):
        L.write_rows(conn, rows[i:i + 700])
    check_against_rows(lambda q: conn.execute(q).fetchall(), rows)
    # A ledger at v7 with rows in it, migrated: the backfill gives the same rollups.
    old = sqlite3.connect(tmp_path / "old.db")
    old.executescript("BEGIN;" + "".join(f"{m}; PRAGMA user_version = {i + 1};" for i, m in enumerate(L.MIGRATIONS[:7]))
                      + "COMMIT;")
    old.executemany(f"INSERT INTO requests ({', '.join(L.COLUMNS)}) VALUES ({', '.join('?' * len(L.COLUMNS))})", rows)
    old.commit()
    L.migrate(old, tmp_path / "old.db")
    check_against_rows(lambda q: old.execute(q).fetchall(), rows)
