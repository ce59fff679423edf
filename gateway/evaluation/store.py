"""Tracked eval runs: SQLite `eval.db` in the state directory (beside the ledger)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, ts REAL NOT NULL, suite TEXT NOT NULL, suite_path TEXT, suite_hash TEXT,
    dataset_hash TEXT, git_commit TEXT, targets TEXT, metrics TEXT, gates TEXT, status TEXT
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL, target TEXT NOT NULL, case_id TEXT NOT NULL, passed INTEGER, result TEXT,
    PRIMARY KEY (run_id, target, case_id)
);
"""


def _connect(state: Path) -> sqlite3.Connection:
    state.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(state / "eval.db", timeout=10)
    conn.executescript(SCHEMA)
    return conn


def git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def save_run(state: Path, *, suite: str, suite_path: Path, suite_hash: str, dataset_hash: str,
             targets: list[dict[str, Any]], metrics: dict[str, Any], gates: list[dict[str, Any]], status: str,
             results: list[dict[str, Any]]) -> str:
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(3).hex()
    conn = _connect(state)
    with conn:
        conn.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                     (run_id, time.time(), suite, str(suite_path), suite_hash, dataset_hash,
                      git_commit(suite_path.parent), json.dumps(targets), json.dumps(metrics, default=_nan),
                      json.dumps(gates), status))
        conn.executemany("INSERT INTO results VALUES (?,?,?,?,?)",
                         [(run_id, r["target"], r["case"], None if r["passed"] is None else int(r["passed"]),
                           json.dumps(r, default=_nan)) for r in results])
    conn.close()
    return run_id


def _nan(o: Any) -> Any:
    return None


def list_runs(state: Path, limit: int = 20) -> list[tuple]:
    if not (state / "eval.db").exists():
        return []
    conn = _connect(state)
    try:
        return conn.execute("SELECT id, ts, suite, status, git_commit, metrics FROM runs ORDER BY ts DESC LIMIT ?",
                            (limit,)).fetchall()
    finally:
        conn.close()


def load_run(state: Path, run_id: str) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]]]:
    conn = _connect(state)
    try:
        row = conn.execute("SELECT id, suite, metrics, targets, git_commit, suite_hash, dataset_hash FROM runs "
                           "WHERE id = ? OR id LIKE ?", (run_id, run_id + "%")).fetchall()
        if len(row) != 1:
            raise KeyError(f"run {run_id!r}: {'not found' if not row else 'ambiguous prefix'}")
        rid, suite, metrics, targets, commit, sh, dh = row[0]
        results = {(t, c): json.loads(r) for t, c, r in
                   conn.execute("SELECT target, case_id, result FROM results WHERE run_id = ?", (rid,))}
    finally:
        conn.close()
    return {"id": rid, "suite": suite, "metrics": json.loads(metrics), "targets": json.loads(targets),
            "git_commit": commit, "suite_hash": sh, "dataset_hash": dh}, results


def load_gates(state: Path, run_id: str) -> list[dict[str, Any]]:
    """The gate results recorded with a run ([] for none, or an unknown run)."""
    conn = _connect(state)
    try:
        row = conn.execute("SELECT gates FROM runs WHERE id = ?", (run_id,)).fetchone()
    finally:
        conn.close()
    return json.loads(row[0]) if row and row[0] else []


def last_run_id(state: Path, suite: str) -> str | None:
    if not (state / "eval.db").exists():
        return None
    conn = _connect(state)
    try:
        row = conn.execute("SELECT id FROM runs WHERE suite = ? AND status != 'interrupted' ORDER BY ts DESC LIMIT 1",
                           (suite,)).fetchone()
    finally:
        conn.close()
    return row[0] if row else None
