import sqlite3
import time

from gateway.metering.ledger import COLUMNS, MIGRATIONS, Ledger, SqliteReader, connect, spend_by
from gateway.metering.outcome import outcome


def row(i, key="k", cost=0.01, ts=None):
    values = dict.fromkeys(COLUMNS)
    values.update(request_id=f"r{i}", ts=ts or time.time(), endpoint="chat.completions", key=key, stream=0,
                  status=200, input_tokens=1, cached_tokens=0, output_tokens=2, reasoning_tokens=0,
                  usage_source="upstream", cost_usd=cost, outcome="ok")
    return tuple(values[c] for c in COLUMNS)


BASE = 1_790_000_000.0


def mixed_rows(n: int, seed: int = 7) -> list[tuple]:
    """Rows over six hours from BASE with keys, models, outcomes, prices and (every third) an
    experiment, like real traffic."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = list(row(i, key=rng.choice(["a", "b", None]), cost=rng.choice([0.01, 0.02, None]),
                     ts=BASE + rng.random() * 6 * 3600))
        r[COLUMNS.index("served_model")] = rng.choice(["m1", "m2"])
        status, error = rng.choice([(200, None), (200, None), (502, "http_502"), (200, "stream_cut"), (429, "rpm"),
                                    (499, None)])
        r[COLUMNS.index("status")], r[COLUMNS.index("error")] = status, error
        r[COLUMNS.index("outcome")] = outcome(status, error)
        if i % 3 == 0:
            r[COLUMNS.index("experiment")], r[COLUMNS.index("variant")] = "exp", rng.choice(["control", "new"])
            r[COLUMNS.index("unit_hash")] = f"u{i % 97}"
            r[COLUMNS.index("verdicts")] = '[["request","pii","block",1.0,"ok"]]' if i % 7 == 0 else None
        if status == 200 and error is None:  # the response cache: hits (with what they saved), misses, neither
            cache = rng.choice(["hit", "miss", None])
            r[COLUMNS.index("cache")] = cache
            if cache == "hit":
                r[COLUMNS.index("saved_usd")] = rng.choice([0.003, 0.007])
        out.append(tuple(r))
    return out


def count(path):
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]


def test_writes_batches_and_flushes_on_close(tmp_path):
    ledger = Ledger(tmp_path / "l.db", flush_interval_s=0.05)
    ledger.start()
    for i in range(5000):
        ledger.record(row(i))
    ledger.close()
    assert count(tmp_path / "l.db") == 5000 and ledger.written == 5000
    conn = connect(tmp_path / "l.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_locked_database_is_retried_and_rows_kept(tmp_path):
    path = tmp_path / "l.db"
    connect(path).close()
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    errors = []
    ledger = Ledger(path, flush_interval_s=0.05, on_write_error=lambda: errors.append(1))
    ledger.start()
    for i in range(10):
        ledger.record(row(i))
    deadline = time.monotonic() + 20
    while not errors and time.monotonic() < deadline:
        time.sleep(0.05)
    assert errors and ledger.pending() >= 10 and "locked" in ledger.last_error
    blocker.rollback()
    blocker.close()
    ledger.close()
    assert count(path) == 10 and ledger.dropped == 0


def test_unwritable_path_does_not_raise_and_recovers(tmp_path):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the ledger's folder should be")
    ledger = Ledger(blocked / "l.db", flush_interval_s=0.05)
    ledger.start()
    ledger.record(row(1))
    deadline = time.monotonic() + 10
    while ledger.write_errors == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ledger.write_errors >= 1
    blocked.unlink()  # the operator fixes the disk problem
    deadline = time.monotonic() + 30
    while ledger.written == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    ledger.close()
    assert count(blocked / "l.db") == 1


def test_max_pending_drops_oldest_and_counts(tmp_path):
    blocked = tmp_path / "f"
    blocked.write_text("")
    ledger = Ledger(blocked / "l.db", flush_interval_s=0.01, max_pending=5)
    ledger.start()
    for i in range(20):
        ledger.record(row(i))
    deadline = time.monotonic() + 10
    while ledger.dropped < 15 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ledger.dropped == 15
    ledger.close(timeout=10)


def test_spend_by_key_since(tmp_path):
    ledger = Ledger(tmp_path / "l.db", flush_interval_s=0.01)
    ledger.start()
    ledger.record(row(1, "a", 1.0, ts=100))
    ledger.record(row(2, "a", 2.0, ts=200))
    ledger.record(row(3, "b", None, ts=200))
    ledger.close()
    assert spend_by(SqliteReader(tmp_path / "l.db"), 150, "key") == {"a": 2.0}
    assert spend_by(SqliteReader(tmp_path / "missing.db"), 0, "key") == {}


def test_report_from_rollup_equals_raw_aggregation(tmp_path):

    from gateway.metering.report import GROUPINGS, in_dialect, usage_rows

    path = tmp_path / "l.db"
    ledger = Ledger(path, flush_interval_s=0.01)
    ledger.start()
    base = BASE
    for r in mixed_rows(3000):
        ledger.record(r)
    ledger.close()
    since, until = base + 1234.5, base + 5 * 3600 + 17  # not on hour boundaries
    for by in GROUPINGS:
        fast = {r[by]: r for r in usage_rows(SqliteReader(path), since, until, by)}
        with sqlite3.connect(path) as conn:
            # errors: 5xx, or a 200 stream that ended with an error (not the client leaving); refused: 4xx but 499
            raw = conn.execute(f"SELECT {in_dialect(SqliteReader(path), GROUPINGS[by][0])}, COUNT(*), "
                               "SUM(status >= 500 OR (status < 400 AND error IS NOT NULL)), "
                               "SUM(status >= 400 AND status < 499), SUM(cost_usd) "
                               "FROM requests WHERE ts >= ? AND ts < ? GROUP BY 1", (since, until)).fetchall()
        assert {name: (n, e, f) for name, n, e, f, _ in raw} == {
            k: (v["requests"], v["errors"], v["refused"]) for k, v in fast.items()}
        for name, _, _, _, cost in raw:
            assert (fast[name]["cost_usd"] is None) == (cost is None)
            if cost is not None:
                assert abs(fast[name]["cost_usd"] - cost) < 1e-9


def test_migration_backfills_rollup_from_existing_rows(tmp_path):
    path = tmp_path / "l.db"
    conn = sqlite3.connect(path)
    conn.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version = 1; COMMIT;")  # a v1 ledger
    v1 = COLUMNS[:COLUMNS.index("experiment")]  # the columns a v1 ledger has
    with conn:
        conn.executemany(f"INSERT INTO requests ({', '.join(v1)}) VALUES ({', '.join('?' * len(v1))})",
                         [row(i, ts=1_790_000_000 + i)[:len(v1)] for i in range(10)])
    conn.close()
    conn = connect(path)  # migrates to the current version
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("SELECT SUM(requests) FROM usage_hourly WHERE dim = 'key'").fetchone()[0] == 10


def test_two_writers_on_one_file_keep_the_rollup_exact(tmp_path):
    """Workers of `gateway serve --workers N` share one ledger file: concurrent batches must not be
    rolled up twice (each writer reads MAX(id) under the write lock)."""
    import threading

    path = tmp_path / "l.db"
    connect(path).close()
    writers = [Ledger(path, flush_interval_s=0.001, batch_rows=7, journal_dir=False) for _ in range(2)]
    for w in writers:
        w.start()

    def feed(w, base):
        for i in range(3000):
            w.record(row(base + i))

    threads = [threading.Thread(target=feed, args=(w, n * 100_000)) for n, w in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in writers:
        w.close()
    with sqlite3.connect(path) as conn:
        raw = conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
        rolled = conn.execute("SELECT SUM(requests) FROM usage_hourly WHERE dim = 'key'").fetchone()[0]
    assert raw == 6000 and rolled == 6000


def test_concurrent_first_connections_migrate_once(tmp_path):
    import concurrent.futures

    path = tmp_path / "fresh.db"

    def open_it(_):
        conn = connect(path)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.close()
        return version

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert set(pool.map(open_it, range(8))) == {len(MIGRATIONS)}


def test_a_row_sqlite_refuses_is_set_aside_and_the_rest_land(tmp_path):
    ledger = Ledger(tmp_path / "l.db", flush_interval_s=0.01)
    ledger.start()
    bad = list(row(99, "k", 0.1))
    bad[COLUMNS.index("ts")] = None  # NOT NULL
    for r in [row(1, "k", 0.1), tuple(bad), row(2, "k", 0.1)]:
        ledger.record(r)
    ledger.close()
    assert ledger.rejected == 1
    with connect(tmp_path / "l.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 2
    assert '"kind": "request"' in ledger.rejected_path.read_text()
