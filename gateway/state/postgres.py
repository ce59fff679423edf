"""The ledger in PostgreSQL (`state.ledger: postgres`): versioned migrations, the batch writer behind
gateway/metering/ledger.py's writer thread, and the read side every report uses.

Writes: each batch is COPYed into a per-connection staging table, then one statement inserts what is
new (ON CONFLICT on the request id does nothing) and adds exactly those rows to the hourly and
experiment rollups, in the same transaction. A retried batch, a second replica replaying the same
journal, or a batch retried after a lost COMMIT reply therefore never counts a row twice.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.metering import rollups
from gateway.metering.ledger import COLUMNS, COUNT_IF, DIMENSIONS, FEEDBACK_COLUMNS
from gateway.metering.outcome import FAILED, REFUSED
from gateway.state.config import StateError, StateSettings, redacted

log = logging.getLogger("gateway.ledger")

MIGRATIONS_DIR = Path(__file__).with_name("postgres_migrations")
_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) in order; versions are 1, 2, 3, ... with no gap."""
    found = sorted((int(m.group(1)), p.name, p.read_text()) for p in MIGRATIONS_DIR.iterdir()
                   if (m := _MIGRATION_FILE.match(p.name)))
    for expected, (version, name, _) in enumerate(found, 1):
        if version != expected:
            raise RuntimeError(f"{MIGRATIONS_DIR}: migration {name} should be number {expected:04d}")
    return found


def where(settings: StateSettings) -> str:
    url = settings.postgres_url() or ""
    return f"{redacted(url)} (state.postgres_url_env: ${settings.postgres_url_env})"


def connect(settings: StateSettings, *, autocommit: bool = False):
    """A connection whose search_path is the gateway's schema. Raises StateError naming the field."""
    import psycopg

    url = settings.postgres_url()
    if not url:
        raise StateError(f"state.postgres_url_env: env var {settings.postgres_url_env} is not set (the PostgreSQL "
                         "URL for state.ledger: postgres, e.g. postgresql://gateway@127.0.0.1:5432/gateway)")
    if not url.startswith(("postgresql://", "postgres://")):
        raise StateError(f"state.postgres_url_env: ${settings.postgres_url_env} must be a postgresql:// URL "
                         f"(got one starting {url.split(':', 1)[0][:20]!r}:)")
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=max(1, round(settings.timeout_s * 5)),
                               application_name="llm-gateway",
                               options=f"-c search_path={settings.postgres_schema}")
    except psycopg.ProgrammingError as e:  # a URL psycopg cannot parse
        raise StateError(f"state.postgres_url_env: ${settings.postgres_url_env} is not a PostgreSQL URL "
                         f"({_libpq_text(e)})") from None
    except psycopg.OperationalError as e:
        text = _libpq_text(e)
        if "password" in text or "authentication" in text:
            raise StateError(f"PostgreSQL at {where(settings)} refused the credentials: {text}") from None
        raise StateError(f"cannot reach PostgreSQL at {where(settings)}: {text}") from None


def _libpq_text(e: BaseException) -> str:
    """libpq's whole message joined on one line (it spreads "connection to ... failed: ...", the server's
    FATAL and a hint over several lines, and the part worth reading is not always the first)."""
    text = " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip())
    return (text or type(e).__name__)[:300]


def schema_version(conn) -> int:
    """0 when the schema has no gateway tables yet."""
    row = conn.execute("SELECT to_regclass('schema_version')").fetchone()
    if row[0] is None:
        return 0
    return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]


def installed_version(settings: StateSettings) -> int:
    """The schema version in the database (0: no gateway tables yet)."""
    conn = connect(settings)
    try:
        return schema_version(conn)
    finally:
        conn.close()


def migrate(settings: StateSettings) -> tuple[int, int]:
    """Apply pending migrations in one transaction, serialised across replicas by an advisory lock.
    Returns (version before, version after); raises StateError if the database is newer than this code."""
    steps = migrations()
    conn = connect(settings)
    try:
        with conn.transaction():
            # Replicas starting together: the first takes the lock and migrates, the others wait and
            # then find nothing to do.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"llm-gateway-migrate:{settings.postgres_schema}",))
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{settings.postgres_schema}"')
            before = schema_version(conn)
            _refuse_newer(settings, before, len(steps))
            if before == 0:
                conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL, "
                             "applied_at timestamptz NOT NULL DEFAULT now())")
            for version, name, sql in steps[before:]:
                conn.execute(sql)
                conn.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)", (version, name))
        return before, len(steps)
    finally:
        conn.close()


def _refuse_newer(settings: StateSettings, version: int, known: int) -> None:
    if version > known:
        raise StateError(f"the ledger schema in PostgreSQL at {where(settings)}, schema "
                         f"{settings.postgres_schema!r}, is at version {version}, newer than this gateway knows "
                         f"({known}); upgrade the gateway")


def check(settings: StateSettings) -> None:
    """Start-up: reachable, credentials accepted, schema at this code's version (migrating it first
    when `state.migrate_on_start`). Raises StateError."""
    if settings.migrate_on_start:
        before, after = migrate(settings)
        if before != after:
            log.warning("PostgreSQL ledger schema %r migrated from version %d to %d", settings.postgres_schema,
                        before, after)
        return
    version, known = installed_version(settings), len(migrations())
    _refuse_newer(settings, version, known)
    if version < known:
        raise StateError(f"the ledger schema in PostgreSQL at {where(settings)} is at version {version}; this gateway "
                         f"needs {known}: run `gateway db migrate` (state.migrate_on_start is false)")


# ---- writing ------------------------------------------------------------------------------------
_STAGE = ", ".join(COLUMNS)
_FB = ", ".join(FEEDBACK_COLUMNS)
_BLOCKED = """verdicts LIKE '%"block"%'"""
# The SQLite rollup's dimensions, as rows of a VALUES list (their expressions read the inserted row `i`).
_DIMS = ", ".join(f"('{dim}', {expr})" for dim, expr in DIMENSIONS)
_ADD = ("requests", "errors", "input_tokens", "cached_tokens", "output_tokens", "cost_usd", "priced", "unpriced",
        "estimated", "latency_ms_sum", "refused", "cache_hits", "saved_usd")
_STATS_ADD = ("n", "errors", "blocks", "latency_sum", "latency_sq", "cost_n", "cost_sum", "cost_sq", "tokens_sum",
              "tokens_sq")
# One statement: the rows not seen before, and their contribution to every rollup. ORDER BY on each
# upsert takes row locks in primary-key order, so two replicas flushing together do not deadlock.
_MERGE_REQUESTS = f"""
WITH i AS (
    INSERT INTO requests ({_STAGE}) SELECT {_STAGE} FROM requests_stage ORDER BY ts
    ON CONFLICT (request_id) DO NOTHING
    RETURNING *
), hourly AS (
    INSERT INTO usage_hourly (hour, dim, value, {", ".join(_ADD)})
    SELECT floor(i.ts / 3600)::bigint, d.dim, d.value, COUNT(*), {COUNT_IF(f"i.outcome = '{FAILED}'")},
           SUM(i.input_tokens), SUM(i.cached_tokens), SUM(i.output_tokens), COALESCE(SUM(i.cost_usd), 0),
           COUNT(i.cost_usd), {COUNT_IF("i.cost_usd IS NULL AND i.usage_source != 'none'")},
           {COUNT_IF("i.usage_source = 'estimated'")}, COALESCE(SUM(i.latency_ms), 0),
           {COUNT_IF(f"i.outcome = '{REFUSED}'")}, {COUNT_IF("i.cache = 'hit'")}, COALESCE(SUM(i.saved_usd), 0)
    FROM i CROSS JOIN LATERAL (VALUES {_DIMS}) AS d (dim, value)
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (hour, dim, value) DO UPDATE SET {", ".join(f"{c} = usage_hourly.{c} + excluded.{c}" for c in _ADD)}
), units AS (
    INSERT INTO experiment_units SELECT experiment, variant, unit_hash, MIN(ts) FROM i
    WHERE experiment IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
), stats AS (
    INSERT INTO experiment_stats
    SELECT experiment, variant, COUNT(*), {COUNT_IF(f"outcome = '{FAILED}'")}, {COUNT_IF(_BLOCKED)},
           SUM(COALESCE(latency_ms, 0)), SUM(COALESCE(latency_ms * latency_ms, 0)),
           COUNT(cost_usd), COALESCE(SUM(cost_usd), 0), COALESCE(SUM(cost_usd * cost_usd), 0),
           SUM(input_tokens + output_tokens),
           SUM((input_tokens + output_tokens)::float8 * (input_tokens + output_tokens))
    FROM i WHERE experiment IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (experiment, variant) DO UPDATE SET
        {", ".join(f"{c} = experiment_stats.{c} + excluded.{c}" for c in _STATS_ADD)}
){rollups.postgres_rollup_ctes(_DIMS, f"outcome = '{FAILED}'")}
SELECT COUNT(*) FROM i
"""
_MERGE_FEEDBACK = f"""
WITH i AS (
    INSERT INTO feedback ({_FB}) SELECT {_FB} FROM feedback_stage ORDER BY ts
    ON CONFLICT (dedup_key, metric) DO NOTHING
    RETURNING *
)
INSERT INTO feedback_units
SELECT experiment, metric, variant, unit_hash, COUNT(*), SUM(value), MAX(value), MIN(ts) FROM i
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
ON CONFLICT (experiment, metric, variant, unit_hash) DO UPDATE SET
    n = feedback_units.n + excluded.n, total = feedback_units.total + excluded.total,
    max_value = GREATEST(feedback_units.max_value, excluded.max_value)
"""


# Rows adapted per GIL hand-off: psycopg formats each row in Python, and a 2,000-row batch in one go
# would keep the event loop waiting for milliseconds.
_YIELD_EVERY = 16


class PostgresSink:
    """What gateway/metering/ledger.py's writer thread writes through when `state.ledger: postgres`."""

    def __init__(self, settings: StateSettings) -> None:
        import psycopg

        self.settings = settings
        self.where = where(settings)
        # psycopg.Error covers a dropped connection, a restart, a deadlock: all retried (idempotently).
        self.errors: tuple[type[BaseException], ...] = (psycopg.Error, StateError, OSError, TypeError, ValueError)
        self._psycopg = psycopg

    def is_data_error(self, e: BaseException) -> bool:
        """A refusal of the data itself (a constraint, a value out of range, a Python value psycopg cannot
        send: ProgrammingError without an SQLSTATE), which the writer sets aside instead of retrying. A
        missing table or privilege (ProgrammingError with one) is retried, loudly."""
        pg = self._psycopg
        return (isinstance(e, (pg.DataError, pg.IntegrityError, TypeError, ValueError))
                or (isinstance(e, pg.ProgrammingError) and getattr(e, "sqlstate", None) is None))

    def connect(self):
        conn = connect(self.settings)
        with conn.transaction():
            # Session-private staging tables, emptied by every commit.
            conn.execute(f"CREATE TEMP TABLE requests_stage ON COMMIT DELETE ROWS AS SELECT {_STAGE} FROM requests "
                         "WITH NO DATA")
            conn.execute(f"CREATE TEMP TABLE feedback_stage ON COMMIT DELETE ROWS AS SELECT {_FB} FROM feedback "
                         "WITH NO DATA")
        return conn

    def write(self, conn, rows: Sequence[Sequence[Any]], feedback: Sequence[Sequence[Any]] = ()) -> int:
        """Returns the rows that were new (the others were in the ledger already)."""
        added = 0
        with conn.transaction():
            cur = conn.cursor()
            # A batch's sorts and groupings fit in memory (the default 4 MB spills a 20k-row batch to disk).
            cur.execute("SET LOCAL work_mem = '64MB'")
            # The verdict rollup's JSON functions are estimated at 100 rows each, so a 2,000-row batch
            # looks like 20M rows to the planner and JIT compiles it: ~1.3 s per batch instead of 40 ms.
            cur.execute("SET LOCAL jit = off")
            if feedback:
                with cur.copy(f"COPY feedback_stage ({_FB}) FROM STDIN") as copy:
                    for row in feedback:
                        copy.write_row(row)
                cur.execute(_MERGE_FEEDBACK)
            if rows:
                with cur.copy(f"COPY requests_stage ({_STAGE}) FROM STDIN") as copy:
                    for n, row in enumerate(rows, 1):
                        copy.write_row(row)
                        if n % _YIELD_EVERY == 0:
                            time.sleep(0)  # hand the GIL to the event loop between chunks, as the SQLite writer does
                added = cur.execute(_MERGE_REQUESTS).fetchone()[0]
        return added

    @staticmethod
    def close(conn) -> None:
        with contextlib.suppress(Exception):  # closing a connection the server already dropped
            conn.close()


# ---- reading ------------------------------------------------------------------------------------
class PostgresReader:
    """Reports and lookups (gateway usage, ab report, feedback, spend at start-up, tabular windows).
    Queries are written once for both backends with `?` placeholders; connections are reused."""

    def __init__(self, settings: StateSettings, max_idle: int = 4) -> None:
        import psycopg

        self.settings = settings
        self.where = where(settings)
        self._errors = (psycopg.Error,)
        self._idle: queue.LifoQueue = queue.LifoQueue(maxsize=max_idle)

    @staticmethod
    def day_of(seconds: str) -> str:
        return f"to_char(to_timestamp({seconds}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        from gateway.metering.ledger import LedgerUnavailable

        args = tuple(params) or None
        if args is not None:
            sql = psycopg_sql(sql)
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            try:
                conn = connect(self.settings, autocommit=True)
            except StateError as e:
                raise LedgerUnavailable(str(e)) from None
        try:
            rows = conn.execute(sql, args).fetchall()
        except self._errors as e:
            PostgresSink.close(conn)
            raise LedgerUnavailable(f"PostgreSQL ledger at {self.where}: {_libpq_text(e)}") from None
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()
        # SUM over bigint is numeric in PostgreSQL: hand reports plain ints and floats, as SQLite does.
        return [tuple(_plain(v) for v in row) for row in rows]

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def psycopg_sql(sql: str) -> str:
    """A query written for both backends (`?` placeholders) in psycopg's form: `%s`, and a literal % (a
    LIKE pattern) doubled, as psycopg wants once there are parameters."""
    return sql.replace("%", "%%").replace("?", "%s")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class PostgresPredictionLog:
    """The tabular prediction log's backend (gateway/tabular/store.py) with `state.ledger: postgres`:
    the `predictions` and `alert_deliveries` tables of the same schema, so every replica sees every
    prediction, label and webhook delivery."""

    def __init__(self, settings: StateSettings) -> None:
        import psycopg

        self.settings = settings
        self.where = where(settings)
        self.errors: tuple[type[BaseException], ...] = (psycopg.Error, StateError, OSError)
        self._reader = PostgresReader(settings)

    def setup(self) -> None:
        """The table comes with the ledger's migrations (checked at start-up)."""

    def connect(self):
        return connect(self.settings)

    @staticmethod
    def write(conn, pending: list[tuple[str, Any]]) -> None:
        from gateway.tabular.store import _INSERT, UPDATES, insert_params

        with conn.transaction():
            cur = conn.cursor()
            for kind, payload in pending:
                if kind == "insert":
                    cur.executemany(psycopg_sql(_INSERT), insert_params(payload))
                else:
                    cur.execute(psycopg_sql(UPDATES[kind]), payload)

    def query(self, sql: str, params: tuple) -> list[tuple]:
        return self._reader.query(sql, params)

    def execute(self, sql: str, params: tuple) -> int:
        """One write outside the writer thread (drift summaries, retention); returns the rows changed."""
        with connect(self.settings) as conn, conn.transaction():
            return conn.execute(psycopg_sql(sql), params).rowcount

    def close(self) -> None:
        self._reader.close()
