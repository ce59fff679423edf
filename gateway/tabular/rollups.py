"""Drift summaries of the prediction log, per five minutes and per hour, so a long window at high
traffic is drift-checked without loading its rows into Python.

A background builder (each replica may run it; its writes are idempotent) summarises every closed
five-minute bucket of raw predictions into mergeable partials (gateway/stats/drift_stream.py: exact
counts per reference bin and category, moments, a KLL sketch), and folds the twelve buckets of a
closed hour into one hour row. They live in `drift_rollups` beside the predictions (SQLite or
PostgreSQL), keyed by the reference profile's content hash: a new profile starts new summaries.

A window [since, now) is then: whole hours from `floor_hour(since)` (the start is aligned down to
the hour, and the report says so), the open hour's closed buckets, and the raw rows after the last
closed bucket (at most five minutes and the settle margin). Rows are summarised from the database,
so a crash loses nothing the log holds; a prediction arriving more than SETTLE_S late (clock skew
between replicas) after its bucket was summarised is not in the summaries. Why not DuckDB: its
SQLite and PostgreSQL scanners are extensions it downloads at run time (impossible offline), and a
DuckDB file admits one writing process, where the log has one writer per replica.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import orjson

from gateway.stats import drift_stream

log = logging.getLogger("gateway.tabular")

BUCKET_S = 300
HOUR_S = 3600
SETTLE_S = 60  # a bucket is summarised once this long has passed after its end (late writes, clock skew)
MAX_RAW_BUCKETS = 3  # a window read reads at most this many unsummarised buckets' rows itself

SCHEMA = """
CREATE TABLE IF NOT EXISTS drift_rollups (
    model TEXT NOT NULL,
    profile TEXT NOT NULL,          -- the reference profile's content hash: bins are per profile
    period INTEGER NOT NULL,        -- 300 (five minutes) or 3600 (an hour)
    start REAL NOT NULL,            -- epoch seconds, a multiple of period
    rows INTEGER NOT NULL,
    summary TEXT NOT NULL,          -- JSON: per column, exact counts and a KLL sketch (base64)
    PRIMARY KEY (model, profile, period, start)
);
"""
UPSERT = ("INSERT INTO drift_rollups (model, profile, period, start, rows, summary) VALUES (?, ?, ?, ?, ?, ?) "
          "ON CONFLICT (model, profile, period, start) DO UPDATE SET rows = excluded.rows, summary = excluded.summary")


class RollupsPending(Exception):
    """Closed hours of the window have no summary yet (the builder is catching up)."""


def columns_of(model: Any) -> dict[str, Any]:
    """What is summarised: the profile's columns that are features of the model, and its prediction."""
    profile = model.profile
    return {name: ref for name, ref in profile.columns.items() if name in model.cfg.features or name == "prediction"}


def _floor(t: float, period: int) -> float:
    return math.floor(t / period) * period


def summarise_rows(model: Any, rows: list[tuple]) -> dict[str, Any]:
    """Partials of raw log rows (ts, features JSON, prediction, label)."""
    from gateway.tabular.service import window_columns  # service imports this module

    cols = columns_of(model)
    partials = drift_stream.partials_for(cols)
    if rows:
        data = window_columns(model, rows)
        data["prediction"] = np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=float)
        for name, part in partials.items():
            part.add(data[name])
    return partials


class Rollups:
    """Reads and builds the summaries of one prediction log (a PredictionStore)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    # ---- reads -----------------------------------------------------------------------------------
    def _stored(self, model: Any, period: int, since: float, until: float) -> dict[float, tuple[int, dict]]:
        rows = self.store.backend.query(
            "SELECT start, rows, summary FROM drift_rollups WHERE model = ? AND profile = ? AND period = ? "
            "AND start >= ? AND start < ?", (model.name, model.profile.content_hash, period, since, until))
        return {float(s): (int(n), orjson.loads(summary)) for s, n, summary in rows}

    def _first_ts(self, model: Any, since: float) -> float | None:
        rows = self.store.backend.query("SELECT MIN(ts) FROM predictions WHERE model = ? AND ts >= ?",
                                        (model.name, since))
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    def window(self, model: Any, since: float, now: float | None = None) -> tuple[dict[str, Any], int, float]:
        """(merged partials, rows, the aligned start) of [floor_hour(since), now). Raises RollupsPending
        when closed hours of the window have not been summarised yet."""
        now = time.time() if now is None else now
        cols = columns_of(model)
        start = _floor(since, HOUR_S)
        open_hour = _floor(now, HOUR_S)
        closed = _floor(now - SETTLE_S, BUCKET_S)
        merged = drift_stream.partials_for(cols)
        total = 0
        first = self._first_ts(model, start)
        if first is None:
            return merged, 0, start
        first_hour = max(start, _floor(first, HOUR_S))
        hours = self._stored(model, HOUR_S, start, open_hour)
        # After the last hour row, the window is read bucket by bucket (the open hour, and an hour the
        # builder has not folded yet); a hole before that is a backfill still to come.
        later = [h for h in _range(first_hour, open_hour, HOUR_S) if h not in hours]
        covered = later[0] if later else open_hour
        if any(h in hours for h in _range(covered, open_hour, HOUR_S)):
            raise RollupsPending("hours of the window have no drift summary yet: the builder is catching up, "
                                 "try again in a minute")
        buckets = self._stored(model, BUCKET_S, covered, closed)
        todo = [b for b in _range(max(covered, _floor(first, BUCKET_S)), closed, BUCKET_S) if b not in buckets]
        if len(todo) > MAX_RAW_BUCKETS:
            raise RollupsPending(f"{len(todo)} five-minute buckets of the window have no drift summary yet: the "
                                 "builder is catching up, try again in a minute")
        for n, summary in [*hours.values(), *buckets.values()]:
            drift_stream.merge_all(merged, drift_stream.from_dict(cols, summary))
            total += n
        for b in todo:  # buckets the builder has not written yet: from their rows
            raw = self.store.window(model.name, b, b + BUCKET_S)
            drift_stream.merge_all(merged, summarise_rows(model, raw))
            total += len(raw)
        tail = self.store.window(model.name, max(closed, covered), now + 1)
        drift_stream.merge_all(merged, summarise_rows(model, tail))
        return merged, total + len(tail), start

    # ---- the builder -----------------------------------------------------------------------------
    def build(self, model: Any, now: float | None = None, horizon: float | None = None) -> int:
        """Summarise every closed bucket and hour of `model` not summarised yet (since `horizon`, or
        the first prediction). Returns how many summaries it wrote."""
        now = time.time() if now is None else now
        if model.profile is None:
            return 0
        first = self._first_ts(model, horizon or 0.0)
        if first is None:
            return 0
        closed = _floor(now - SETTLE_S, BUCKET_S)
        open_hour = _floor(closed, HOUR_S)
        start = _floor(first, HOUR_S)
        hours = set(self._stored(model, HOUR_S, start, open_hour))
        written = 0
        for h in _range(start, open_hour, HOUR_S):
            if h in hours:
                continue
            buckets = self._stored(model, BUCKET_S, h, h + HOUR_S)
            if len(buckets) == HOUR_S // BUCKET_S:  # fold the hour's twelve buckets
                merged = drift_stream.partials_for(columns_of(model))
                for _, summary in buckets.values():
                    drift_stream.merge_all(merged, drift_stream.from_dict(columns_of(model), summary))
                rows = sum(n for n, _ in buckets.values())
            else:  # an hour the builder never saw open (backfill, or it was down): from the raw rows
                raw = self.store.window(model.name, h, h + HOUR_S)
                merged, rows = summarise_rows(model, raw), len(raw)
            self._write(model, HOUR_S, h, rows, merged)
            self.store.backend.execute("DELETE FROM drift_rollups WHERE model = ? AND profile = ? AND period = ? "
                                       "AND start >= ? AND start < ?",
                                       (model.name, model.profile.content_hash, BUCKET_S, h, h + HOUR_S))
            written += 1
        have = set(self._stored(model, BUCKET_S, open_hour, closed))
        for b in _range(max(open_hour, _floor(first, BUCKET_S)), closed, BUCKET_S):
            if b not in have:
                raw = self.store.window(model.name, b, b + BUCKET_S)
                self._write(model, BUCKET_S, b, len(raw), summarise_rows(model, raw))
                written += 1
        return written

    def _write(self, model: Any, period: int, start: float, rows: int, partials: dict[str, Any]) -> None:
        summary = orjson.dumps(drift_stream.to_dict(partials)).decode()
        self.store.backend.execute(UPSERT, (model.name, model.profile.content_hash, period, start, rows, summary))

    def retain(self, model: Any, keep_days: float, now: float | None = None) -> int:
        """Delete predictions (and their summaries) older than keep_days; returns the predictions deleted."""
        cutoff = (time.time() if now is None else now) - keep_days * 86400
        deleted = self.store.backend.execute("DELETE FROM predictions WHERE model = ? AND ts < ?", (model.name, cutoff))
        self.store.backend.execute("DELETE FROM drift_rollups WHERE model = ? AND start < ?",
                                   (model.name, _floor(cutoff, HOUR_S)))
        return deleted


def _range(a: float, b: float, step: int) -> list[float]:
    return [a + i * step for i in range(max(0, int(math.ceil((b - a) / step))))]
