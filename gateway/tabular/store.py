"""The prediction log of tabular models: features, prediction, and the label when it arrives.

SQLite in the state directory, written by one thread in batches (requests never wait on disk).
Labels are idempotent per prediction id: the same label twice is fine, a different one is refused.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

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
"""


class LabelConflict(ValueError):
    pass


class PredictionStore:
    def __init__(self, path: Path, flush_interval_s: float = 0.2) -> None:
        self.path = Path(path)
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(SCHEMA)
        self._thread.start()

    def close(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=5)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

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

    # ---- reads (worker threads) -----------------------------------------------------------------
    def lookup_label(self, prediction_id: str) -> tuple[float | None] | None:
        with self._connect() as conn:
            row = conn.execute("SELECT label FROM predictions WHERE id = ?", (prediction_id,)).fetchone()
        return None if row is None else (row[0],)

    def window(self, model: str, since: float, until: float | None = None) -> list[tuple]:
        """(ts, features JSON, prediction, label) of `model` in [since, until), oldest first."""
        with self._connect() as conn:
            return conn.execute(
                "SELECT ts, features, prediction, label FROM predictions WHERE model = ? AND ts >= ? AND ts < ? "
                "ORDER BY ts", (model, since, until if until is not None else time.time() + 1)).fetchall()

    def labelled_before(self, model: str, before: float, limit: int = 100_000) -> list[tuple]:
        with self._connect() as conn:
            return conn.execute(
                "SELECT prediction, label FROM predictions WHERE model = ? AND ts < ? AND label IS NOT NULL "
                "ORDER BY ts DESC LIMIT ?", (model, before, limit)).fetchall()

    # ---- writer thread --------------------------------------------------------------------------
    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
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
                    conn = conn or self._connect()
                    with conn:
                        for kind, payload in pending:
                            if kind == "insert":
                                conn.executemany(
                                    "INSERT OR IGNORE INTO predictions (id, model, ts, features, prediction, "
                                    "prediction_label) VALUES (?, ?, ?, ?, ?, ?)",
                                    [(i, m, ts, json.dumps(f), p if isinstance(p, (int, float)) else None,
                                      None if isinstance(p, (int, float)) else str(p)) for i, m, ts, f, p in payload])
                                self.written += len(payload)
                            else:
                                conn.execute("UPDATE predictions SET label = ?, label_ts = ? WHERE id = ? "
                                             "AND label IS NULL", payload)
                    pending.clear()
                except sqlite3.Error as e:  # kept in memory and retried: nothing recorded is dropped
                    self.write_errors += 1
                    log.error("tabular log write to %s failed (%s); %d items kept, retrying", self.path, e, len(pending))
                    if conn is not None:
                        conn.close()
                        conn = None
                    if stopping:
                        time.sleep(0.5)
                        continue
            if stopping and not pending:
                break
        if conn is not None:
            conn.close()
