"""The console's rollups beside usage_hourly: latency histograms and check verdict counts per hour.

`latency_hourly` keeps, per hour and rollup dimension value, how many requests fell in each latency
bucket (bounds grow by 1.25x from 0.25 ms to ~10 min), so p50/p95 over a month of traffic read a few
thousand rows instead of a million; `latency_daily` keeps the same per UTC day, for charts in days.
`checks_hourly` counts check runs per hour by check type, name, action and run status (label ''), and separately what they found (label: a pii entity type, an
injection family, a denied topic), from the `verdicts` JSON of each row. Both are written in the
same transaction as the raw rows, by SQLite (gateway/metering/ledger.py) or PostgreSQL
(gateway/state/postgres.py), from the SQL built here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

# Bucket i holds latencies in [BOUNDS[i-1], BOUNDS[i]); bucket 0 is below BOUNDS[0], the last one
# is at or above BOUNDS[-1].
RATIO = 1.25
BOUNDS: tuple[float, ...] = tuple(round(0.25 * RATIO ** i, 4) for i in range(66))

LATENCY_TABLE_SQLITE = """
CREATE TABLE latency_hourly (
    hour INTEGER NOT NULL, dim TEXT NOT NULL, value TEXT NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (dim, hour, value, bucket)  -- read as one dimension over a range of hours
) WITHOUT ROWID;
CREATE INDEX usage_hourly_by_dim ON usage_hourly(dim, hour);
CREATE TABLE checks_hourly (
    hour INTEGER NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL, action TEXT NOT NULL, status TEXT NOT NULL,
    label TEXT NOT NULL,            -- '' counts check runs; otherwise what a run found (never text)
    n INTEGER NOT NULL,
    PRIMARY KEY (hour, type, name, action, status, label)
) WITHOUT ROWID;
CREATE TABLE experiment_hourly (
    experiment TEXT NOT NULL, variant TEXT NOT NULL, hour INTEGER NOT NULL,
    n INTEGER NOT NULL, errors INTEGER NOT NULL, blocks INTEGER NOT NULL,
    latency_sum REAL NOT NULL, latency_sq REAL NOT NULL,
    cost_n INTEGER NOT NULL, cost_sum REAL NOT NULL, cost_sq REAL NOT NULL,
    tokens_sum REAL NOT NULL, tokens_sq REAL NOT NULL,
    PRIMARY KEY (experiment, variant, hour)
) WITHOUT ROWID;
"""
# The same histograms per UTC day: a month's chart in days reads 24x fewer rows (ledger v9, PostgreSQL 0006).
LATENCY_DAILY_TABLE_SQLITE = """
CREATE TABLE latency_daily (
    day INTEGER NOT NULL, dim TEXT NOT NULL, value TEXT NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (dim, day, value, bucket)
) WITHOUT ROWID;
"""
# (table, period column, seconds per period) of the latency histograms, hourly and daily.
LATENCY_TABLES = (("latency_hourly", "hour", 3600), ("latency_daily", "day", 86400))
# experiment_stats per hour: what the console's confidence sequences over time are computed from.
_BLOCKED = """verdicts LIKE '%"block"%'"""
EXPERIMENT_SUMS = ("n", "errors", "blocks", "latency_sum", "latency_sq", "cost_n", "cost_sum", "cost_sq",
                   "tokens_sum", "tokens_sq")


def _experiment_select(hour: str, failed: str, blocked: str) -> str:
    return f"""SELECT experiment, variant, {hour}, COUNT(*), SUM(CASE WHEN {failed} THEN 1 ELSE 0 END),
           SUM(CASE WHEN {blocked} THEN 1 ELSE 0 END), SUM(COALESCE(latency_ms, 0)),
           SUM(COALESCE(latency_ms * latency_ms, 0)), COUNT(cost_usd), COALESCE(SUM(cost_usd), 0),
           COALESCE(SUM(cost_usd * cost_usd), 0), SUM(input_tokens + output_tokens),
           SUM((input_tokens + output_tokens) * 1.0 * (input_tokens + output_tokens))"""


def sqlite_experiment_rollup(where: str, failed: str) -> str:
    return f"""
    INSERT INTO experiment_hourly (experiment, variant, hour, {", ".join(EXPERIMENT_SUMS)})
    {_experiment_select("CAST(ts / 3600 AS INTEGER)", failed, _BLOCKED)}
    FROM requests WHERE experiment IS NOT NULL AND {where} GROUP BY 1, 2, 3
    ON CONFLICT (experiment, variant, hour) DO UPDATE SET
        {", ".join(f"{c} = {c} + excluded.{c}" for c in EXPERIMENT_SUMS)}"""


def bucket_sql(column: str, dialect: str) -> str:
    """The bucket number of `column` in SQL: how many bounds are at or below it (portable: SQLite
    builds without math functions have no log())."""
    if dialect == "postgres":
        return f"width_bucket({column}, ARRAY[{', '.join(map(repr, BOUNDS))}]::float8[])"
    return _search(column, 0, len(BOUNDS))


def _search(column: str, lo: int, hi: int) -> str:
    """A balanced CASE over BOUNDS[lo:hi]: about 7 comparisons per row instead of 66."""
    if lo == hi:
        return str(lo)
    mid = (lo + hi) // 2
    return f"CASE WHEN {column} < {BOUNDS[mid]!r} THEN {_search(column, lo, mid)} ELSE {_search(column, mid + 1, hi)} END"


def sqlite_latency_rollup(dim: str, expr: str, where: str, daily: bool = False) -> str:
    table, period, seconds = LATENCY_TABLES[daily]
    return f"""
    INSERT INTO {table} ({period}, dim, value, bucket, n)
    SELECT CAST(ts / {seconds} AS INTEGER), '{dim}', {expr}, {bucket_sql("latency_ms", "sqlite")}, COUNT(*)
    FROM requests WHERE latency_ms IS NOT NULL AND {where} GROUP BY 1, 3, 4
    ON CONFLICT (dim, {period}, value, bucket) DO UPDATE SET n = n + excluded.n"""


def sqlite_checks_rollup(where: str) -> list[str]:
    """Two statements: runs (label ''), then what the runs found. Rows with a malformed verdicts field
    are left out of the rollup (not out of the ledger)."""
    head = "INSERT INTO checks_hourly (hour, type, name, action, status, label, n) SELECT CAST(r.ts / 3600 AS INTEGER), "
    cols = ("json_extract(v.value, '$[0]'), json_extract(v.value, '$[1]'), json_extract(v.value, '$[2]'), "
            "COALESCE(json_extract(v.value, '$[4]'), 'ok')")
    tail = "GROUP BY 1, 2, 3, 4, 5, 6 ON CONFLICT (hour, type, name, action, status, label) DO UPDATE SET n = n + excluded.n"
    base = f"FROM requests r, json_each(r.verdicts) v WHERE r.verdicts IS NOT NULL AND json_valid(r.verdicts) AND {where}"
    return [f"{head}{cols}, '', COUNT(*) {base} {tail}",
            f"{head}{cols}, CAST(l.value AS TEXT), COUNT(*) FROM requests r, json_each(r.verdicts) v, "
            f"json_each(v.value, '$[5]') l WHERE r.verdicts IS NOT NULL AND json_valid(r.verdicts) AND {where} "
            f"AND json_type(v.value, '$[5]') = 'array' {tail}"]


def postgres_rollup_ctes(dims_values: str, failed: str) -> str:
    """CTEs for gateway/state/postgres.py's merge statement, over the CTE `i` of newly inserted rows."""
    latency = {table: f"""INSERT INTO {table} ({period}, dim, value, bucket, n)
    SELECT floor(i.ts / {seconds})::bigint, d.dim, d.value, {bucket_sql("i.latency_ms", "postgres")}, COUNT(*)
    FROM i CROSS JOIN LATERAL (VALUES {dims_values}) AS d (dim, value)
    WHERE i.latency_ms IS NOT NULL
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (dim, {period}, value, bucket) DO UPDATE SET n = {table}.n + excluded.n"""
               for table, period, seconds in LATENCY_TABLES}
    return f""", latency AS (
    {latency["latency_hourly"]}
), latency_days AS (
    {latency["latency_daily"]}
), checks AS (
    INSERT INTO checks_hourly (hour, type, name, action, status, label, n)
    SELECT hour, type, name, action, status, label, COUNT(*) FROM (
        SELECT floor(i.ts / 3600)::bigint AS hour, v ->> 0 AS type, v ->> 1 AS name, v ->> 2 AS action,
               COALESCE(v ->> 4, 'ok') AS status, l.label
        FROM i CROSS JOIN LATERAL jsonb_array_elements(i.verdicts::jsonb) v
        CROSS JOIN LATERAL (SELECT '' AS label UNION ALL SELECT jsonb_array_elements_text(
            CASE jsonb_typeof(v -> 5) WHEN 'array' THEN v -> 5 ELSE '[]'::jsonb END)) l
        WHERE i.verdicts IS NOT NULL
    ) found GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (hour, type, name, action, status, label) DO UPDATE SET n = checks_hourly.n + excluded.n
), experiment_hours AS (
    INSERT INTO experiment_hourly (experiment, variant, hour, {", ".join(EXPERIMENT_SUMS)})
    {_experiment_select("floor(ts / 3600)::bigint", failed, _BLOCKED)}
    FROM i WHERE experiment IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (experiment, variant, hour) DO UPDATE SET
        {", ".join(f"{c} = experiment_hourly.{c} + excluded.{c}" for c in EXPERIMENT_SUMS)}
)"""


def percentile(counts: Iterable[tuple[int, int]], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram given as (bucket, count) pairs, interpolated geometrically
    inside its bucket: within a factor of 1.25 of the exact value."""
    pairs = sorted((b, n) for b, n in counts if n)
    total = sum(n for _, n in pairs)
    if not total:
        return None
    rank = q * total
    seen = 0
    for bucket, n in pairs:
        if seen + n >= rank:
            lo = BOUNDS[bucket - 1] if bucket > 0 else BOUNDS[0] / RATIO
            hi = BOUNDS[bucket] if bucket < len(BOUNDS) else BOUNDS[-1] * RATIO
            frac = (rank - seen) / n
            return round(math.exp(math.log(lo) + frac * (math.log(hi) - math.log(lo))), 3)
        seen += n
    return BOUNDS[-1]
