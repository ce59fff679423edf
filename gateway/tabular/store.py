"""The prediction log of tabular models: features, prediction, and the label when it arrives.

SQLite in the state directory (or PostgreSQL with `state.ledger: postgres`: gateway/state/postgres.py
has that backend), written by one thread in batches (requests never wait on disk). Labels are
idempotent per prediction id: the same label twice is fine, a different one is refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from gateway.metering.ledger import one_line
from gateway.state.sqlite_wal import use_wal

log = logging.getLogger("gateway.tabular")

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    ts REAL NOT NULL,
    features TEXT NOT NULL,      -- JSON object of the validated feature values
    prediction REAL,             -- number / probability of the positive class
    prediction_label TEXT,       -- class label when the model returns one
    label REAL,
    label_ts REAL
);
CREATE INDEX IF NOT EXISTS predictions_model_ts ON predictions (model, ts);
-- the labelled ones, for performance over a window without scanning every prediction in it
CREATE INDEX IF NOT EXISTS predictions_labelled ON predictions (model, ts) WHERE label IS NOT NULL;
CREATE TABLE IF NOT EXISTS alert_deliveries (
    model TEXT NOT NULL,
    ts REAL NOT NULL,                -- when the delivery ended (delivered or given up)
    delivered INTEGER NOT NULL,      -- 1: a 2xx answer; 0: every attempt failed
    http_status INTEGER,             -- the last answer's status (NULL: no answer, see error)
    error TEXT,                      -- the last failure's kind ("HTTP 500", "ClientConnectorError")
    attempts INTEGER NOT NULL,
    data_drift INTEGER NOT NULL,
    performance_degraded INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_deliveries_model_ts ON alert_deliveries (model, ts);
"""


_INSERT = ("INSERT INTO predictions (id, model, ts, features, prediction, prediction_label) VALUES (?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (id) DO NOTHING")
_LABEL = "UPDATE predictions SET label = ?, label_ts = ? WHERE id = ? AND label IS NULL"
_ALERT = ("INSERT INTO alert_deliveries (model, ts, delivered, http_status, error, attempts, data_drift, "
          "performance_degraded) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
# The statement of each queued write other than an insert (those go through executemany).
UPDATES = {"label": _LABEL, "alert": _ALERT}
ALERT_FIELDS = ("model", "ts", "delivered", "http_status", "error", "attempts", "data_drift", "performance_degraded")


class LabelConflict(ValueError):
    pass


def insert_params(payload: list[tuple]) -> list[tuple]:
    """Rows as stored: features as JSON, a numeric prediction or a class label."""
    return [(i, m, ts, json.dumps(f), p if isinstance(p, (int, float)) else None,
             None if isinstance(p, (int, float)) else str(p)) for i, m, ts, f, p in payload]


class SqliteLog:
    """The embedded backend: tabular.db beside the ledger."""

    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)

    def setup(self) -> None:
        from gateway.tabular.rollups import SCHEMA as ROLLUPS

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as conn:
            conn.executescript(SCHEMA + ROLLUPS)

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=5)
        use_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def write(self, conn: sqlite3.Connection, pending: list[tuple[str, Any]]) -> None:
        with conn:
            for kind, payload in pending:
                if kind == "insert":
                    conn.executemany(_INSERT, insert_params(payload))
                else:
                    conn.execute(UPDATES[kind], payload)

    def query(self, sql: str, params: tuple) -> list[tuple]:
        conn = self.connect()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def execute(self, sql: str, params: tuple) -> int:
        """One write outside the writer thread (drift summaries, retention); returns the rows changed."""
        conn = self.connect()
        try:
            with conn:
                return conn.execute(sql, params).rowcount
        finally:
            conn.close()

    def close(self) -> None:
        pass


class PredictionStore:
    def __init__(self, path: Path | None = None, flush_interval_s: float = 0.2, *, backend: Any = None) -> None:
        """`path`: a SQLite file; or `backend` (gateway/state/postgres.py PostgresPredictionLog)."""
        self.backend = backend if backend is not None else SqliteLog(path)
        self.where = self.backend.where
        self.flush_interval_s = flush_interval_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tabular-writer", daemon=True)
        # Ids written recently or still queued, with their label: feedback for a prediction that is not
        # on disk yet is still recognised (and ordered after its insert by the same queue).
        self._recent: OrderedDict[str, float | None] = OrderedDict()
        self._lock = threading.Lock()
        self.written = 0
        self.write_errors = 0

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self.backend.setup()
        self._thread.start()

    def close(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self.backend.close()

    # ---- writes (event loop) --------------------------------------------------------------------
    def record(self, rows: list[tuple[str, str, float, dict[str, Any], Any]]) -> None:
        """(id, model, ts, features, prediction) per row; queued, written within flush_interval_s."""
        with self._lock:
            for r in rows:
                self._recent[r[0]] = None
            while len(self._recent) > 200_000:
                self._recent.popitem(last=False)
        self._queue.put(("insert", rows))

    def label(self, prediction_id: str, value: float, known_on_disk: tuple[float | None] | None) -> str:
        """Attach ground truth. `known_on_disk`: (label,) read from the database, or None if absent
        there. Returns "recorded" or "unchanged"; raises KeyError (unknown id) or LabelConflict."""
        with self._lock:
            if prediction_id in self._recent:
                current = self._recent[prediction_id]
            elif known_on_disk is not None:
                current = known_on_disk[0]
            else:
                raise KeyError(prediction_id)
            if current is not None:
                if current == value:
                    return "unchanged"
                raise LabelConflict(f"prediction {prediction_id} already has label {current:g}; got {value:g}")
            self._recent[prediction_id] = value
        self._queue.put(("label", (value, time.time(), prediction_id)))
        return "recorded"

    def record_alert(self, model: str, *, delivered: bool, http_status: int | None, error: str | None,
                     attempts: int, data_drift: bool, performance_degraded: bool) -> None:
        """A drift webhook delivery's outcome, kept beside the predictions: every replica's console
        lists it, and it outlives the process (the webhook URL is not kept: it may carry a token)."""
        self._queue.put(("alert", (model, time.time(), int(delivered), http_status, error, attempts,
                                   int(data_drift), int(performance_degraded))))

    # ---- reads (worker threads) -----------------------------------------------------------------
    def lookup_label(self, prediction_id: str) -> tuple[float | None] | None:
        rows = self.backend.query("SELECT label FROM predictions WHERE id = ?", (prediction_id,))
        return None if not rows else (rows[0][0],)

    def window(self, model: str, since: float, until: float | None = None) -> list[tuple]:
        """(ts, features JSON, prediction, label) of `model` in [since, until), oldest first."""
        return self.backend.query(
            "SELECT ts, features, prediction, label FROM predictions WHERE model = ? AND ts >= ? AND ts < ? "
            "ORDER BY ts", (model, since, until if until is not None else time.time() + 1))

    def alerts(self, model: str, limit: int = 50) -> list[dict[str, Any]]:
        """The latest webhook deliveries of `model`, newest first."""
        rows = self.backend.query(f"SELECT {', '.join(ALERT_FIELDS)} FROM alert_deliveries WHERE model = ? "
                                  "ORDER BY ts DESC LIMIT ?", (model, limit))
        return [dict(zip(ALERT_FIELDS, r)) for r in rows]

    def count_upto(self, model: str, since: float, limit: int) -> int:
        """Predictions of `model` since `since`, counted up to `limit` (bounded work on a big log)."""
        rows = self.backend.query("SELECT COUNT(*) FROM (SELECT 1 FROM predictions WHERE model = ? AND ts >= ? "
                                  "LIMIT ?) AS w", (model, since, limit))
        return int(rows[0][0])

    def labelled_since(self, model: str, since: float, limit: int = 100_000) -> list[tuple]:
        """(prediction, label) of the latest `limit` labelled predictions since `since`, oldest first."""
        rows = self.backend.query(
            "SELECT prediction, label FROM predictions WHERE model = ? AND ts >= ? AND label IS NOT NULL "
            "ORDER BY ts DESC LIMIT ?", (model, since, limit))
        return rows[::-1]

    def labelled_before(self, model: str, before: float, limit: int = 100_000) -> list[tuple]:
        return self.backend.query(
            "SELECT prediction, label FROM predictions WHERE model = ? AND ts < ? AND label IS NOT NULL "
            "ORDER BY ts DESC LIMIT ?", (model, before, limit))

    # ---- writer thread --------------------------------------------------------------------------
    def _run(self) -> None:
        conn = None
        pending: list[tuple[str, Any]] = []
        while True:
            stopping = self._stop.wait(self.flush_interval_s)
            try:
                while True:
                    pending.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            if pending:
                try:
                    conn = conn or self.backend.connect()
                    self.backend.write(conn, pending)
                    self.written += sum(len(p) for kind, p in pending if kind == "insert")
                    pending.clear()
                except self.backend.errors as e:  # kept in memory and retried: nothing recorded is dropped
                    self.write_errors += 1
                    log.error("tabular log write to %s failed (%s); %d items kept, retrying", self.where,
                              one_line(e), len(pending))
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            conn.close()
                        conn = None
                    if stopping:
                        time.sleep(0.5)
                        continue
            if stopping and not pending:
                break
        if conn is not None:
            conn.close()
