"""Switch a SQLite connection to WAL, also when several processes or threads open a fresh file at once."""

from __future__ import annotations

import sqlite3
import time


def use_wal(conn: sqlite3.Connection, *, attempts: int = 100) -> None:
    """PRAGMA journal_mode=WAL needs an exclusive lock the first time, and SQLite answers "database is
    locked" at once, without the busy timeout, when another connection holds one (seen with eight
    first connections to a new ledger). Retry briefly; WAL, once set, is kept by the file."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == attempts - 1:
                raise
            time.sleep(0.02)
