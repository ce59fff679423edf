"""Which ledger backend: the SQLite file in the state directory (default) or PostgreSQL, chosen once
from `state.ledger` in gateway.yaml. Callers get a writer (Ledger) or a reader; neither says which."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.metering.ledger import Ledger, SqliteReader
from gateway.state.config import StateSettings


def open_reader(settings: StateSettings, sqlite_path: Path) -> Any:
    """Read side for reports (`gateway usage`, `gateway ab report`, endpoints)."""
    if settings.ledger == "postgres":
        from gateway.state.postgres import PostgresReader

        return PostgresReader(settings)
    return SqliteReader(sqlite_path)


def open_ledger(settings: StateSettings, sqlite_path: Path, **kwargs: Any) -> Ledger:
    """The writer. With PostgreSQL the journal (the local spool that keeps rows while the database is
    down) still lives beside `sqlite_path`, in the state directory."""
    if settings.ledger == "postgres":
        from gateway.state.postgres import PostgresSink

        return Ledger(sqlite_path, sink=PostgresSink(settings), reader=open_reader(settings, sqlite_path), **kwargs)
    return Ledger(sqlite_path, **kwargs)


def check(settings: StateSettings) -> None:
    """Start-up check of the ledger backend (PostgreSQL: reachable, schema current); raises StateError."""
    if settings.ledger == "postgres":
        from gateway.state import postgres

        postgres.check(settings)
