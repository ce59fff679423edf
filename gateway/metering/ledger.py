"""The usage ledger: one row per request, in SQLite (WAL), written in batches by a background thread.

The event loop appends the row to the write-ahead journal (gateway/metering/journal.py) and a
queue, before the response is written. The writer commits every `flush_interval_s` or
`batch_rows`, whichever comes first. Durability: a crash of the gateway process loses no row
(what was not committed yet is replayed from the journal at the next start, idempotently by
request id); with `metering.journal: false` it loses the rows queued since the last commit (the
last 0.2 s). A power loss may lose journal lines not yet written back by the kernel and the last
committed transactions (SQLite's WAL NORMAL trade-off). A full, locked or read-only disk is
reported (log + metric) and retried; rows wait in memory meanwhile, up to `max_pending`, beyond
which the oldest are dropped and counted - the proxy itself never stops.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.metering import journal, rollups
from gateway.metering.outcome import FAILED, OUTCOME_SQL, REFUSED, outcome
from gateway.state.sqlite_wal import use_wal

log = logging.getLogger("gateway.ledger")

COLUMNS = (
    "request_id", "ts", "endpoint", "key", "grp", "user_id", "model", "served_model", "upstream",
    "prompt_name", "prompt_version", "prompt_hash", "stream", "status", "error",
    "input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens", "usage_source",
    "cost_usd", "price_key", "latency_ms", "upstream_ms", "overhead_ms", "attempts", "verdicts",
    "experiment", "variant", "unit_hash", "outcome", "cache", "saved_usd", "cache_write_tokens",
)
FEEDBACK_COLUMNS = ("dedup_key", "metric", "ts", "experiment", "variant", "unit_hash", "value")

# SQL counting the rows where a condition holds, in a form SQLite and PostgreSQL both accept (a
# boolean cannot be SUMmed in PostgreSQL).
COUNT_IF = "SUM(CASE WHEN {} THEN 1 ELSE 0 END)".format

# Rollup dimensions of usage_hourly and how each is read from a raw row. `model` is the public name
# the client asked for (failed requests have no served model, and must land in the same row as the
# successful ones); `served` is what answered.
DIMENSIONS = (
    ("key", "COALESCE(key, '')"),
    ("model", "COALESCE(model, '')"),
    ("served", "COALESCE(served_model, '')"),
    ("prompt", "COALESCE(prompt_name || '@' || prompt_version, '')"),
    ("upstream", "COALESCE(upstream, '')"),
    ("group", "COALESCE(grp, '')"),
)


def _rollup_select(dim: str, expr: str) -> str:
    """Errors are `failed` outcomes (gateway/metering/outcome.py), refusals counted apart; cache hits
    and what they saved (gateway/cache/)."""
    return f"""
    SELECT CAST(ts / 3600 AS INTEGER), '{dim}', {expr},
           COUNT(*), COALESCE(SUM(outcome = '{FAILED}'), 0), SUM(input_tokens), SUM(cached_tokens),
           SUM(output_tokens), COALESCE(SUM(cost_usd), 0), COUNT(cost_usd),
           SUM(cost_usd IS NULL AND usage_source != 'none'), SUM(usage_source = 'estimated'),
           COALESCE(SUM(latency_ms), 0), COALESCE(SUM(outcome = '{REFUSED}'), 0),
           COALESCE(SUM(cache = 'hit'), 0), COALESCE(SUM(saved_usd), 0)
    FROM requests"""


def _rollup_select_v5(dim: str, expr: str) -> str:
    """Frozen copy of what migration v5 ran (its table had no cache columns yet)."""
    return f"""
    SELECT CAST(ts / 3600 AS INTEGER), '{dim}', {expr},
           COUNT(*), COALESCE(SUM(outcome = '{FAILED}'), 0), SUM(input_tokens), SUM(cached_tokens),
           SUM(output_tokens), COALESCE(SUM(cost_usd), 0), COUNT(cost_usd),
           SUM(cost_usd IS NULL AND usage_source != 'none'), SUM(usage_source = 'estimated'),
           COALESCE(SUM(latency_ms), 0), COALESCE(SUM(outcome = '{REFUSED}'), 0)
    FROM requests"""


# What migration v5 rolled up by (a frozen copy: DIMENSIONS may grow).
_DIMENSIONS_V5 = (
    ("key", "COALESCE(key, '')"),
    ("model", "COALESCE(model, '')"),
    ("served", "COALESCE(served_model, '')"),
    ("prompt", "COALESCE(prompt_name || '@' || prompt_version, '')"),
    ("upstream", "COALESCE(upstream, '')"),
)


# Frozen copies of what migration v2 ran (a released migration never changes).
_DIMENSIONS_V2 = (
    ("key", "COALESCE(key, '')"),
    ("model", "COALESCE(served_model, model, '')"),
    ("prompt", "COALESCE(prompt_name || '@' || prompt_version, '')"),
    ("upstream", "COALESCE(upstream, '')"),
)


def _rollup_select_v2(dim: str, expr: str) -> str:
    return f"""
    SELECT CAST(ts / 3600 AS INTEGER), '{dim}', {expr},
           COUNT(*), SUM(status >= 400), SUM(input_tokens), SUM(cached_tokens), SUM(output_tokens),
           COALESCE(SUM(cost_usd), 0), COUNT(cost_usd), SUM(cost_usd IS NULL AND usage_source != 'none'),
           SUM(usage_source = 'estimated'), COALESCE(SUM(latency_ms), 0)
    FROM requests"""


def _experiment_trigger(failed_new: str) -> str:
    """The trigger keeping experiment_stats per request row; `failed_new`: what counts as an error."""
    return f"""
    CREATE TRIGGER requests_experiment_rollup AFTER INSERT ON requests WHEN NEW.experiment IS NOT NULL BEGIN
        INSERT OR IGNORE INTO experiment_units VALUES (NEW.experiment, NEW.variant, NEW.unit_hash, NEW.ts);
        INSERT INTO experiment_stats VALUES (
            NEW.experiment, NEW.variant, 1, {failed_new}, COALESCE(NEW.verdicts LIKE '%"block"%', 0),
            COALESCE(NEW.latency_ms, 0), COALESCE(NEW.latency_ms * NEW.latency_ms, 0),
            NEW.cost_usd IS NOT NULL, COALESCE(NEW.cost_usd, 0), COALESCE(NEW.cost_usd * NEW.cost_usd, 0),
            NEW.input_tokens + NEW.output_tokens,
            (NEW.input_tokens + NEW.output_tokens) * (NEW.input_tokens + NEW.output_tokens))
        ON CONFLICT (experiment, variant) DO UPDATE SET
            n = n + 1, errors = errors + excluded.errors, blocks = blocks + excluded.blocks,
            latency_sum = latency_sum + excluded.latency_sum, latency_sq = latency_sq + excluded.latency_sq,
            cost_n = cost_n + excluded.cost_n, cost_sum = cost_sum + excluded.cost_sum,
            cost_sq = cost_sq + excluded.cost_sq, tokens_sum = tokens_sum + excluded.tokens_sum,
            tokens_sq = tokens_sq + excluded.tokens_sq;
    END;
"""


def _experiment_stats_backfill(failed: str) -> str:
    """experiment_stats rebuilt from the rows already in the ledger, with the same error rule."""
    return f"""
    INSERT INTO experiment_stats
        SELECT experiment, variant, COUNT(*), SUM({failed}), SUM(COALESCE(verdicts LIKE '%"block"%', 0)),
               SUM(COALESCE(latency_ms, 0)), SUM(COALESCE(latency_ms * latency_ms, 0)),
               COUNT(cost_usd), COALESCE(SUM(cost_usd), 0), COALESCE(SUM(cost_usd * cost_usd), 0),
               SUM(input_tokens + output_tokens),
               SUM((input_tokens + output_tokens) * (input_tokens + output_tokens))
        FROM requests WHERE experiment IS NOT NULL GROUP BY 1, 2;
"""


# Each entry moves the schema one version up (PRAGMA user_version). Never edit a released entry:
# append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL,
        ts REAL NOT NULL,               -- unix seconds (UTC) when the request arrived
        endpoint TEXT NOT NULL,
        key TEXT, grp TEXT, user_id TEXT,
        model TEXT,                     -- the public model the client asked for
        served_model TEXT, upstream TEXT,
        prompt_name TEXT, prompt_version INTEGER, prompt_hash TEXT,
        stream INTEGER NOT NULL,
        status INTEGER NOT NULL,        -- HTTP status sent (499: client went away)
        error TEXT,                     -- short error kind, never a message
        input_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL,
        usage_source TEXT NOT NULL,     -- upstream | estimated | none
        cost_usd REAL,                  -- NULL: no price known for the served model
        price_key TEXT,
        latency_ms REAL, upstream_ms REAL, overhead_ms REAL,
        attempts INTEGER,
        verdicts TEXT                   -- JSON [[type, check, action, score, status], ...]; never text
    );
    CREATE INDEX requests_ts ON requests(ts);
    CREATE INDEX requests_key_ts ON requests(key, ts);
    """,
    # v2: hourly rollup per dimension (key, model, prompt, upstream), kept in the same transaction as
    # the raw rows: a report over months of traffic reads (hours x distinct values) rows, not millions.
    """
    CREATE TABLE usage_hourly (
        hour INTEGER NOT NULL,          -- floor(ts / 3600)
        dim TEXT NOT NULL,              -- key | model | prompt | upstream
        value TEXT NOT NULL,            -- '' when the request had none (no key, no prompt, ...)
        requests INTEGER NOT NULL, errors INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL, priced INTEGER NOT NULL, unpriced INTEGER NOT NULL, estimated INTEGER NOT NULL,
        latency_ms_sum REAL NOT NULL,
        PRIMARY KEY (hour, dim, value)
    ) WITHOUT ROWID;
    """ + "".join(f"INSERT INTO usage_hourly {_rollup_select_v2(dim, expr)} WHERE true GROUP BY 1, 3;"
                  for dim, expr in _DIMENSIONS_V2),
    # v3: A/B experiments. Requests record their experiment, variant and a hash of the unit id (never
    # the id itself). Feedback is idempotent per (request or unit, metric): a repeat is ignored, and
    # the per-unit rollup (kept by a trigger, so ignored repeats never count) makes reports read units
    # rather than every outcome row.
    """
    ALTER TABLE requests ADD COLUMN experiment TEXT;
    ALTER TABLE requests ADD COLUMN variant TEXT;
    ALTER TABLE requests ADD COLUMN unit_hash TEXT;
    CREATE INDEX requests_experiment ON requests(experiment, unit_hash) WHERE experiment IS NOT NULL;
    CREATE INDEX requests_request_id ON requests(request_id);
    CREATE TABLE feedback (
        dedup_key TEXT NOT NULL,        -- the request id, or unit:<experiment>:<unit hash>
        metric TEXT NOT NULL,
        ts REAL NOT NULL,
        experiment TEXT NOT NULL, variant TEXT NOT NULL, unit_hash TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (dedup_key, metric)
    ) WITHOUT ROWID;
    CREATE TABLE feedback_units (
        experiment TEXT NOT NULL, metric TEXT NOT NULL, variant TEXT NOT NULL, unit_hash TEXT NOT NULL,
        n INTEGER NOT NULL, total REAL NOT NULL, max_value REAL NOT NULL, first_ts REAL NOT NULL,
        PRIMARY KEY (experiment, metric, variant, unit_hash)
    ) WITHOUT ROWID;
    CREATE TRIGGER feedback_rollup AFTER INSERT ON feedback BEGIN
        INSERT INTO feedback_units VALUES (NEW.experiment, NEW.metric, NEW.variant, NEW.unit_hash, 1, NEW.value,
                                           NEW.value, NEW.ts)
        ON CONFLICT (experiment, metric, variant, unit_hash) DO UPDATE SET
            n = n + 1, total = total + excluded.total, max_value = max(max_value, excluded.max_value);
    END;
    """,
    # v4: per-experiment rollups kept by a trigger on each request row, so a report reads two rows per
    # variant and one per unit instead of scanning every request of the experiment.
    """
    CREATE TABLE experiment_units (
        experiment TEXT NOT NULL, variant TEXT NOT NULL, unit_hash TEXT NOT NULL, first_ts REAL NOT NULL,
        PRIMARY KEY (experiment, variant, unit_hash)
    ) WITHOUT ROWID;
    CREATE INDEX experiment_units_by_unit ON experiment_units(experiment, unit_hash);
    DROP INDEX requests_experiment;  -- v3's unit lookup index: experiment_units serves it now
    CREATE TABLE experiment_stats (
        experiment TEXT NOT NULL, variant TEXT NOT NULL,
        n INTEGER NOT NULL, errors INTEGER NOT NULL, blocks INTEGER NOT NULL,
        latency_sum REAL NOT NULL, latency_sq REAL NOT NULL,
        cost_n INTEGER NOT NULL, cost_sum REAL NOT NULL, cost_sq REAL NOT NULL,
        tokens_sum REAL NOT NULL, tokens_sq REAL NOT NULL,
        PRIMARY KEY (experiment, variant)
    ) WITHOUT ROWID;
    """ + _experiment_trigger("NEW.status >= 500") + """
    INSERT OR IGNORE INTO experiment_units
        SELECT experiment, variant, unit_hash, MIN(ts) FROM requests WHERE experiment IS NOT NULL GROUP BY 1, 2, 3;
    """ + _experiment_stats_backfill("status >= 500") + """
    """,
    # v5: one definition of a failed request (gateway/metering/outcome.py) stored per row, used by the
    # usage rollup (errors = failed, refused apart) and the experiment rollup (a stream cut after its
    # 200 counted as a success before); `model` rolls up under the public name, `served` added; request
    # ids unique, so a replayed journal (gateway/metering/journal.py) never adds a row twice.
    f"""
    ALTER TABLE requests ADD COLUMN outcome TEXT;
    UPDATE requests SET outcome = {OUTCOME_SQL};
    DELETE FROM requests WHERE id NOT IN (SELECT MIN(id) FROM requests GROUP BY request_id);
    DROP INDEX requests_request_id;
    CREATE UNIQUE INDEX requests_request_id ON requests(request_id);
    ALTER TABLE usage_hourly ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
    DELETE FROM usage_hourly;
    """ + "".join(f"INSERT INTO usage_hourly {_rollup_select_v5(dim, expr)} WHERE true GROUP BY 1, 3;"
                  for dim, expr in _DIMENSIONS_V5) + """
    DROP TRIGGER requests_experiment_rollup;
    """ + _experiment_trigger(f"NEW.outcome = '{FAILED}'") + """
    DELETE FROM experiment_stats;
    """ + _experiment_stats_backfill(f"outcome = '{FAILED}'") + """
    """,
    # v6: the response cache (gateway/cache/): whether a request was served from it (hit) or went
    # upstream and may be stored (miss), and the cost a hit saved, priced as the original answer.
    # Rows before it have neither; the rollup gains hit and saving totals (zero for old hours).
    """
    ALTER TABLE requests ADD COLUMN cache TEXT;
    ALTER TABLE requests ADD COLUMN saved_usd REAL;
    ALTER TABLE usage_hourly ADD COLUMN cache_hits INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_hourly ADD COLUMN saved_usd REAL NOT NULL DEFAULT 0;
    """,
    # v7: prompt-cache writes, part of input_tokens that providers such as Anthropic bill apart
    # (cost_usd already includes them at the write price). NULL on rows from before it.
    """
    ALTER TABLE requests ADD COLUMN cache_write_tokens INTEGER;
    """,
    # v8: the console's rollups (gateway/metering/rollups.py): a `group` dimension in usage_hourly,
    # latency histograms per dimension and check verdict counts per hour, backfilled from the rows.
    # (It calls the current rollup builders: if one of them changes, freeze a copy for this entry.)
    f"""
    INSERT INTO usage_hourly {_rollup_select("group", "COALESCE(grp, '')")} WHERE true GROUP BY 1, 3;
    {rollups.LATENCY_TABLE_SQLITE}
    """ + "".join(rollups.sqlite_latency_rollup(dim, expr, "true") + ";" for dim, expr in DIMENSIONS)
    + "".join(sql + ";" for sql in rollups.sqlite_checks_rollup("true"))
    + rollups.sqlite_experiment_rollup("true", f"outcome = '{FAILED}'") + ";",
    # v9: latency histograms per UTC day (the console's month in days), summed from the hourly ones.
    rollups.LATENCY_DAILY_TABLE_SQLITE + """
    INSERT INTO latency_daily (day, dim, value, bucket, n)
    SELECT hour / 24, dim, value, bucket, SUM(n) FROM latency_hourly GROUP BY 1, 2, 3, 4;
    """,
]

# A repeated id is skipped (a replayed journal, a retried batch); any other constraint is an error the
# writer reports (OR IGNORE would also drop a row with a NULL where none is allowed, silently).
_INSERT = (f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
           "ON CONFLICT (request_id) DO NOTHING")
_INSERT_FEEDBACK = (f"INSERT INTO feedback ({', '.join(FEEDBACK_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(FEEDBACK_COLUMNS))}) ON CONFLICT (dedup_key, metric) DO NOTHING")
# The rollup is computed by SQLite itself over the rows just inserted (by rowid range): done in
# Python it would hold the GIL for milliseconds per batch and stall the event loop.
_ROLLUP = [
    f"""INSERT INTO usage_hourly {_rollup_select(dim, expr)} WHERE id BETWEEN ? AND ? GROUP BY 1, 3
    ON CONFLICT (hour, dim, value) DO UPDATE SET
        requests = requests + excluded.requests, errors = errors + excluded.errors,
        input_tokens = input_tokens + excluded.input_tokens, cached_tokens = cached_tokens + excluded.cached_tokens,
        output_tokens = output_tokens + excluded.output_tokens, cost_usd = cost_usd + excluded.cost_usd,
        priced = priced + excluded.priced, unpriced = unpriced + excluded.unpriced,
        estimated = estimated + excluded.estimated, latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum,
        refused = refused + excluded.refused, cache_hits = cache_hits + excluded.cache_hits,
        saved_usd = saved_usd + excluded.saved_usd"""
    for dim, expr in DIMENSIONS
] + [rollups.sqlite_latency_rollup(dim, expr, "id BETWEEN ? AND ?", daily) for daily in (False, True)
     for dim, expr in DIMENSIONS] + (
    rollups.sqlite_checks_rollup("r.id BETWEEN ? AND ?")) + [
    rollups.sqlite_experiment_rollup("id BETWEEN ? AND ?", f"outcome = '{FAILED}'")]
# Rows per executemany call: small enough that the writer hands the GIL back to the event loop often
# (a large batch would hold it for milliseconds), large enough to stay efficient.
_CHUNK = 64


class _Feedback(tuple):
    """Marks a feedback row in the shared queue (request rows are plain tuples)."""

    __slots__ = ()


class _Retire:
    """Queued after the last row of a journal segment: once the rows before it are committed, the
    segment can go."""

    __slots__ = ("segment",)

    def __init__(self, segment: journal.Segment) -> None:
        self.segment = segment


def write_rows(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]],
               feedback: Sequence[Sequence[Any]] = ()) -> int:
    """Insert raw rows and their rollup (and feedback) in one transaction. Returns the rows that were
    new (a request id already in the ledger is skipped)."""
    with conn:
        # The write lock first: between reading MAX(id) and inserting, another process on the same file
        # (a second worker) could insert rows, and the rollup of this id range would count them twice.
        conn.execute("BEGIN IMMEDIATE")
        if feedback:
            conn.executemany(_INSERT_FEEDBACK, feedback)
        if not rows:
            return 0
        first = (conn.execute("SELECT COALESCE(MAX(id), 0) FROM requests").fetchone()[0]) + 1
        for i in range(0, len(rows), _CHUNK):
            conn.executemany(_INSERT, rows[i:i + _CHUNK])
            time.sleep(0)  # let the event loop thread run between chunks
        last = conn.execute("SELECT COALESCE(MAX(id), 0) FROM requests").fetchone()[0]
        for statement in _ROLLUP:
            conn.execute(statement, (first, last))
        return max(0, last - first + 1)


class LedgerUnavailable(ValueError):
    """The ledger cannot be read (not a gateway ledger, or its database is down); the message says which."""


class SqliteSink:
    """The embedded ledger file, as the writer thread sees it (gateway/state/postgres.py has the other)."""

    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError, OverflowError, TypeError, ValueError)

    @staticmethod
    def is_data_error(e: BaseException) -> bool:
        """A refusal of the data itself (retrying the same rows cannot help), not a full or locked disk."""
        return isinstance(e, (sqlite3.IntegrityError, sqlite3.InterfaceError, OverflowError, TypeError, ValueError))

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)

    def connect(self) -> sqlite3.Connection:
        return connect(self.path)

    @staticmethod
    def write(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]], feedback: Sequence[Sequence[Any]] = ()) -> int:
        return write_rows(conn, rows, feedback)

    @staticmethod
    def close(conn: sqlite3.Connection) -> None:
        conn.close()


class SqliteReader:
    """Read-only queries on the ledger file; a ledger not written yet (no file) reads as empty.
    Queries are shared with the PostgreSQL reader: `?` placeholders, `day_of` for dates."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)

    @staticmethod
    def day_of(seconds: str) -> str:
        return f"date({seconds}, 'unixepoch')"

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        if not self.path.exists():
            return []
        try:
            conn = connect(self.path, readonly=True)
        except sqlite3.Error as e:
            raise LedgerUnavailable(f"{self.path}: cannot open the ledger ({e})") from None
        try:
            return conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as e:
            if "no such table" in str(e) and _schema_version(conn) == 0:
                return []  # created but never migrated: nothing recorded yet
            raise LedgerUnavailable(f"{self.path}: not a usable gateway ledger ({e})") from None
        finally:
            conn.close()

    def close(self) -> None:
        pass


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=5)
        use_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn, path)
    return conn


def migrate(conn: sqlite3.Connection, path: Path | None = None) -> None:
    if _schema_version(conn) == len(MIGRATIONS):
        return
    # Two workers starting together must not both run the same steps: a lock file beside the ledger
    # serialises them, and the version is read again once it is held.
    lock = open(path.with_name(path.name + ".migrate-lock"), "a") if path is not None else None  # noqa: SIM115
    try:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        version = _schema_version(conn)
        if version == len(MIGRATIONS):
            return
        # All pending steps in one transaction: a reader (gateway usage, a test) never sees a
        # half-migrated ledger, and a crash mid-way leaves the old version intact.
        steps = "".join(f"{MIGRATIONS[i]}; PRAGMA user_version = {i + 1};" for i in range(version, len(MIGRATIONS)))
        with conn:
            conn.executescript(f"BEGIN; {steps} COMMIT;")
    finally:
        if lock is not None:
            lock.close()


def _schema_version(conn: sqlite3.Connection) -> int:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(f"ledger schema version {version} is newer than this gateway knows "
                           f"({len(MIGRATIONS)}); upgrade the gateway")
    return version


class Ledger:
    def __init__(
        self,
        path: Path,
        *,
        flush_interval_s: float = 0.2,
        batch_rows: int = 2000,
        max_pending: int = 1_000_000,
        on_write_error: Callable[[], None] | None = None,
        on_written: Callable[[int], None] | None = None,
        journal_dir: Path | None | bool = True,
        sink: Any = None,
        reader: Any = None,
    ) -> None:
        """`path`: the SQLite ledger file, and where the journal lives beside it. `sink` / `reader`:
        where rows go and are read from (default: that file; gateway/state/ledger.py picks PostgreSQL).
        `journal_dir`: where the write-ahead journal lives (True: beside the ledger, `<file>.journal`;
        False / None: no journal, a crash loses the last flush interval's rows)."""
        self.path = Path(path)
        self.sink = sink if sink is not None else SqliteSink(self.path)
        self.reader = reader if reader is not None else SqliteReader(self.path)
        self.where = self.sink.where
        # Journal segments a previous run left that could not be replayed at start-up (the database
        # was down): the writer retries them.
        self._leftovers = False
        self.journal_dir = (self.path.with_name(self.path.name + ".journal") if journal_dir is True
                            else Path(journal_dir) if journal_dir else None)
        self._journal: journal.Journal | None = None
        self.replayed = 0
        self.flush_interval_s = flush_interval_s
        self.batch_rows = batch_rows
        self.max_pending = max_pending
        self._on_error = on_write_error or (lambda: None)
        self._on_written = on_written or (lambda n: None)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._stop = threading.Event()
        self.written = 0
        self._unwritten = 0  # rows the writer holds after a failed write
        self.dropped = 0
        # Rows the database refused as data (a constraint, a type): set aside in a file, so one bad row
        # never holds back the rows after it, and nothing is lost.
        self.rejected = 0
        self.rejected_path = self.path.with_name(self.path.name + ".rejected.jsonl")
        self.write_errors = 0
        self.last_error: str | None = None

    # ---- event-loop side (cheap) -----------------------------------------------------------------
    def record(self, row: Sequence[Any]) -> None:
        """Journal the row (if the journal is on), then queue it for the next batch."""
        if self._journal is None:
            self._queue.put(row)
        else:
            self._journal.append(journal.REQUEST, row, self._queue.put, row)

    def record_feedback(self, row: Sequence[Any]) -> None:
        """A FEEDBACK_COLUMNS tuple; a repeat of (dedup_key, metric) is ignored when written."""
        if self._journal is None:
            self._queue.put(_Feedback(row))
        else:
            self._journal.append(journal.FEEDBACK, row, self._queue.put, _Feedback(row))

    def pending(self) -> int:
        """Rows queued but not yet committed (approximate)."""
        return self._queue.qsize() + self._unwritten

    def recover(self) -> int:
        """Replay journal segments left by a process that died (idempotent: rows already committed
        are ignored by request id). Call before reading the ledger at start-up. Returns rows replayed;
        a segment that cannot be written is kept, and retried by the writer once it runs."""
        if self.journal_dir is None:
            return 0
        total = 0
        conn = None
        self._leftovers = False
        try:
            for path, fd in journal.leftovers(self.journal_dir):
                try:
                    requests, feedback, bad = journal.read_segment(fd)
                    requests = [r for r in map(_upgrade_row, requests) if r is not None]
                    if conn is None:
                        conn = self.sink.connect()
                    added = self._write(conn, requests, feedback)
                    total += len(requests)
                    log.warning("replayed %s from a previous run: %d rows (%d new; rows already in the ledger are "
                                "skipped), %d feedback rows%s", path.name, len(requests), added, len(feedback),
                                f"; {bad} unreadable line(s) skipped" if bad else "")
                except self.sink.errors as e:
                    log.error("could not replay the ledger journal %s into %s (%s); kept, retried later",
                              path, self.where, e)
                    self._leftovers = True
                    os.close(fd)
                    if conn is not None:
                        self.sink.close(conn)
                        conn = None
                    continue
                journal.discard(path, fd)
        finally:
            if conn is not None:
                self.sink.close(conn)
        self.replayed += total
        return total

    def start(self) -> None:
        if self.journal_dir is not None:
            try:
                self._journal = journal.Journal(self.journal_dir)
            except OSError as e:  # an unwritable state directory: run on, without crash safety, loudly
                log.error("cannot open the ledger journal in %s (%s): a crash will lose up to %.1fs of rows",
                          self.journal_dir, e, self.flush_interval_s)
        self._thread.start()

    def close(self, timeout: float = 30) -> None:
        """Flush everything queued, then stop. Called on shutdown."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("ledger writer did not finish within %.0fs; unwritten rows are lost", timeout)

    # ---- writer thread ---------------------------------------------------------------------------
    def _write(self, conn: Any, rows: Sequence[Sequence[Any]], feedback: Sequence[Sequence[Any]] = ()) -> int:
        """One batch; if the database refuses its data, row by row, with the refused rows set aside."""
        try:
            return self.sink.write(conn, rows, feedback)
        except self.sink.errors as e:
            if not self.sink.is_data_error(e):
                raise
            log.error("the ledger at %s refused a batch of %d rows (%s); writing them one by one", self.where,
                      len(rows) + len(feedback), one_line(e))
        added = 0
        for kind, items in (("request", rows), ("feedback", feedback)):
            for item in items:
                try:
                    added += self.sink.write(conn, [item], ()) if kind == "request" else self.sink.write(conn, (), [item])
                except self.sink.errors as e:
                    if not self.sink.is_data_error(e):
                        raise
                    self._reject(kind, item, e)
        return added

    def _reject(self, kind: str, item: Sequence[Any], e: BaseException) -> None:
        import json

        self.rejected += 1
        self._on_error()
        try:
            with open(self.rejected_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"kind": kind, "row": list(item), "error": one_line(e)}, default=str) + "\n")
            where = f"kept in {self.rejected_path}"
        except OSError as oe:
            where = f"and could not be kept ({oe})"
        # the row itself is not logged (user ids, key names): it is in the file
        log.error("the ledger at %s refused a %s row (%s); %s", self.where, kind, one_line(e), where)

    def _run(self) -> None:
        # The writer sleeps a whole flush interval, then drains the queue at once: waking per row
        # would cost a GIL hand-off and a context switch for every request.
        conn = None
        pending: deque[Sequence[Any]] = deque()
        feedback: list[Sequence[Any]] = []
        retire: list[journal.Segment] = []  # journal segments whose rows are all queued
        backoff = 0.0
        shutdown_tries = 0
        put = self._queue.put
        while True:
            stopping = self._stop.wait(backoff or self.flush_interval_s)
            if self._journal is not None:
                self._journal.rotate(lambda old: put(_Retire(old)))
            try:
                while True:
                    item = self._queue.get_nowait()
                    if isinstance(item, _Retire):
                        retire.append(item.segment)
                    else:
                        (feedback if isinstance(item, _Feedback) else pending).append(item)
            except queue.Empty:
                pass
            if self._leftovers and not backoff:
                self.recover()
            while len(pending) > self.max_pending:
                pending.popleft()
                self.dropped += 1
            if pending or feedback:
                try:
                    if conn is None:
                        conn = self.sink.connect()
                    if feedback:
                        self._write(conn, (), feedback)
                        feedback.clear()
                    while pending:
                        batch = [pending[i] for i in range(min(len(pending), self.batch_rows))]
                        self._write(conn, batch)
                        for _ in batch:
                            pending.popleft()
                        self.written += len(batch)
                        self._on_written(len(batch))
                    self._unwritten = 0
                    for segment in retire:
                        journal.Journal.retire(segment)
                    retire.clear()
                    if backoff:
                        log.warning("ledger writes recovered (%s)", self.where)
                    backoff = 0.0
                    self.last_error = None
                except self.sink.errors as e:
                    self.write_errors += 1
                    self._unwritten = len(pending) + len(feedback)
                    self._on_error()
                    if self.last_error != one_line(e):
                        log.error("ledger write to %s failed (%s); %d rows kept (in memory and in the journal), "
                                  "retrying", self.where, one_line(e), len(pending))
                    self.last_error = one_line(e)
                    backoff = min(max(backoff * 2, 0.5), 10.0)
                    if conn is not None:
                        self.sink.close(conn)
                        conn = None
                    if stopping:
                        shutdown_tries += 1
                        if shutdown_tries >= 3:
                            log.error("shutting down with %d ledger rows unwritten: %s", len(pending), e)
                            break
                        backoff = 1.0
            if stopping and not pending and not feedback:
                break
        if conn is not None:
            self.sink.close(conn)
        if self._journal is not None:
            committed = not pending and not feedback
            if committed:
                for segment in retire:
                    journal.Journal.retire(segment)
            else:
                for segment in retire:
                    os.close(segment.fd)
            self._journal.close(committed)


def one_line(e: BaseException) -> str:
    """The first line of an error, for logs (PostgreSQL's carry a multi-line DETAIL with row values)."""
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__


def _upgrade_row(row: tuple) -> tuple | None:
    """A journal row written by an older gateway (before `outcome`) gets its outcome; unknown shapes
    are skipped."""
    if len(row) == len(COLUMNS):
        return row
    if len(row) == len(COLUMNS) - 1:
        status, error = row[COLUMNS.index("status")], row[COLUMNS.index("error")]
        return (*row, outcome(status, error))
    log.error("skipped a journal row with %d fields (this gateway writes %d)", len(row), len(COLUMNS))
    return None


def spend_by(reader: Any, since_ts: float, column: str) -> dict[str, float]:
    """Sum of cost per `column` (key or grp) since `since_ts`: rebuilds budget counters at start-up."""
    assert column in ("key", "grp")
    rows = reader.query(f"SELECT {column}, SUM(cost_usd) FROM requests WHERE ts >= ? AND {column} IS NOT NULL "
                        f"AND cost_usd IS NOT NULL GROUP BY {column}", (since_ts,))
    return {k: v for k, v in rows}
