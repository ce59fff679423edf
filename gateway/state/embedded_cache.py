"""The embedded cache store: an in-process LRU with an entry cap and a memory cap, optionally
persisted to SQLite (`cache.persist`) so entries survive a restart.

Persistence is write-behind: the request path only appends to a queue that a thread applies to
the database, so a slow disk never slows a hit or a miss. At start-up the live entries are read
back, newest last, within the same caps; a row that cannot be read is removed and counted.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path

from gateway.cache.store import CacheKey, Entry
from gateway.state.sqlite_wal import use_wal

log = logging.getLogger("gateway.cache")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, scope TEXT NOT NULL, model TEXT NOT NULL,
    stored_at REAL NOT NULL, expires_at REAL NOT NULL, body BLOB NOT NULL
);
"""


class EmbeddedCache:
    def __init__(self, max_entries: int, max_bytes: int, path: Path | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0
        self.corrupt = 0  # persisted rows that could not be read (removed)
        self.path = path
        self._writes: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if path is not None:
            self._load(path)  # an unreadable file turns persistence off (self.path = None)
        if self.path is not None:
            self._writes = queue.Queue()
            self._thread = threading.Thread(target=self._write_loop, name="cache-persist", daemon=True)
            self._thread.start()

    # ---- CacheStore ----------------------------------------------------------------------------
    async def get(self, key: CacheKey, now: float) -> Entry | None:
        entry = self._entries.get(key.hash)
        if entry is None:
            return None
        if entry.expires_at <= now:
            self._drop(key.hash)
            return None
        self._entries.move_to_end(key.hash)
        return entry

    async def put(self, key: CacheKey, entry: Entry) -> None:
        # orjson.dumps returns bytes that keep its whole output buffer: a 1.2 KB answer held 8 KB of
        # RSS (800 MB per 100k entries). A copy is exactly its length.
        entry.body = bytes(memoryview(entry.body))
        self._insert(key.hash, entry)
        if self._writes is not None:
            self._writes.put(("put", key.hash, entry))

    async def delete(self, key: CacheKey) -> None:
        self._drop(key.hash)

    async def clear(self, scope: str | None = None, model: str | None = None) -> int:
        gone = [k for k, e in self._entries.items()
                if (scope is None or e.scope == scope) and (model is None or e.model == model)]
        for k in gone:
            self._drop(k, persist=False)
        if self._writes is not None:
            self._writes.put(("clear", scope, model))
        return len(gone)

    def stats(self) -> dict[str, int | None]:
        return {"entries": len(self._entries), "bytes": self._bytes}

    async def close(self) -> None:
        if self._writes is not None and self._thread is not None:
            self._writes.put(None)
            import asyncio

            await asyncio.to_thread(self._thread.join, 10)

    # ---- the LRU -------------------------------------------------------------------------------
    def _insert(self, key: str, entry: Entry) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size()
        self._entries[key] = entry
        self._bytes += entry.size()
        while self._entries and (len(self._entries) > self.max_entries or self._bytes > self.max_bytes):
            k, e = self._entries.popitem(last=False)  # least recently used first
            self._bytes -= e.size()
            if self._writes is not None:
                self._writes.put(("del", k))

    def _drop(self, key: str, persist: bool = True) -> None:
        e = self._entries.pop(key, None)
        if e is not None:
            self._bytes -= e.size()
        if persist and self._writes is not None:
            self._writes.put(("del", key))

    # ---- persistence ---------------------------------------------------------------------------
    def _connect(self, path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False)
        use_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        return conn

    def _load(self, path: Path) -> None:
        try:
            conn = self._connect(path)
        except sqlite3.DatabaseError as e:  # not a database at all: start empty, keep the file for a look
            log.error("cache file %s cannot be read (%s); the cache starts empty and is not persisted", path, e)
            self.path = None
            return
        now = time.time()
        bad = []
        try:
            conn.execute("DELETE FROM entries WHERE expires_at <= ?", (now,))
            for key, scope, model, stored_at, expires_at, body in conn.execute(
                    "SELECT key, scope, model, stored_at, expires_at, body FROM entries ORDER BY stored_at"):
                if not (isinstance(key, str) and isinstance(scope, str) and isinstance(model, str)
                        and isinstance(body, bytes) and isinstance(stored_at, float) and isinstance(expires_at, float)):
                    bad.append(key)
                    continue
                self._insert(key, Entry(scope, model, stored_at, expires_at, body))
            if bad:
                conn.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k in bad])
                self.corrupt += len(bad)
                log.warning("cache file %s: %d unreadable entries removed", path, len(bad))
            conn.commit()
        finally:
            conn.close()

    def _write_loop(self) -> None:
        assert self.path is not None and self._writes is not None
        conn = self._connect(self.path)
        try:
            while True:
                op = self._writes.get()
                ops = [op]
                while len(ops) < 256:  # what queued up meanwhile goes in the same transaction
                    try:
                        ops.append(self._writes.get_nowait())
                    except queue.Empty:
                        break
                stop = None in ops
                try:
                    with conn:
                        for o in ops:
                            if o is not None:
                                self._apply(conn, o)
                except sqlite3.Error as e:  # the in-memory cache goes on; only persistence suffers
                    log.error("cache file %s: write failed (%s)", self.path, type(e).__name__)
                if stop:
                    return
        finally:
            conn.close()

    @staticmethod
    def _apply(conn: sqlite3.Connection, op: tuple) -> None:
        if op[0] == "put":
            _, key, e = op
            conn.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                         (key, e.scope, e.model, e.stored_at, e.expires_at, e.body))
        elif op[0] == "del":
            conn.execute("DELETE FROM entries WHERE key = ?", (op[1],))
        else:
            _, scope, model = op
            conn.execute("DELETE FROM entries WHERE (? IS NULL OR scope = ?) AND (? IS NULL OR model = ?)",
                         (scope, scope, model, model))
