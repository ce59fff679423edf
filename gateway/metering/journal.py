"""The ledger's write-ahead journal: every finished request's row is appended to a local file before
its response is written, so a crash of the process (kill -9, OOM killer) loses no row.

The ledger commits rows in batches (every 0.2 s by default); without the journal a crash lost the
rows of the last batch. With it:
  - the event loop appends one JSON line per row (one `write` syscall, no fsync: the kernel keeps
    written pages when a process dies) to the current segment file;
  - the ledger writer rotates segments at each flush and deletes a segment once every row in it is
    committed to SQLite;
  - on start-up, segments left by a process that is gone are replayed into the ledger. Replay is
    idempotent: request ids are unique in the ledger, so a row that had been committed before the
    crash is ignored.
What it does not cover: a power loss or kernel crash may lose journal lines the kernel had not
written back to disk yet (Linux writes dirty pages back within `vm.dirty_expire_centisecs`, 30 s
by default), on top of SQLite's own WAL-with-synchronous=NORMAL bound (its last transactions).

Each segment is locked (flock) by the process writing it, so a second gateway sharing the state
directory never replays, or deletes, a live process's segment.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("gateway.ledger")

REQUEST, FEEDBACK = "r", "f"


@dataclass(slots=True)
class Segment:
    path: Path
    fd: int
    rows: int = 0


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._seq = 0
        self._segment = self._new_segment()
        self.closed = False
        self.write_errors = 0
        self._last_error: int | None = None

    def _new_segment(self) -> Segment:
        self._seq += 1
        path = self.directory / f"{os.getpid()}-{time.time_ns()}-{self._seq}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return Segment(path, fd)

    # ---- event-loop side -------------------------------------------------------------------------
    def append(self, kind: str, row: Sequence[Any], put: Callable[[Any], None], item: Any) -> None:
        """Write the row, then `put(item)` under the same lock: the ledger queues the row there, so a
        segment's rows are always queued before the marker that retires it."""
        line = orjson.dumps((kind, row)) + b"\n"
        with self._lock:
            if not self.closed:
                try:
                    os.write(self._segment.fd, line)
                    self._segment.rows += 1
                except OSError as e:  # disk full: the row is still queued for SQLite; say so once per kind
                    self.write_errors += 1
                    if self._last_error != e.errno:
                        self._last_error = e.errno
                        log.error("cannot append to the ledger journal %s (%s): rows of a crash now may be lost",
                                  self._segment.path, e)
            put(item)

    # ---- writer-thread side ----------------------------------------------------------------------
    def rotate(self, then: Any) -> None:
        """Start a new segment if the current one holds rows; `then(old)` runs under the lock."""
        with self._lock:
            if self.closed or not self._segment.rows:
                return
            old, self._segment = self._segment, self._new_segment()
            then(old)

    @staticmethod
    def retire(segment: Segment) -> None:
        """Every row of `segment` is committed: delete it (then release its lock)."""
        try:
            segment.path.unlink(missing_ok=True)
        finally:
            os.close(segment.fd)

    def close(self, committed: bool) -> None:
        """On shutdown. `committed`: every row written is in the ledger (the current segment goes too)."""
        with self._lock:
            self.closed = True
            seg = self._segment
        if committed:
            self.retire(seg)
        else:
            os.close(seg.fd)  # kept for the next start-up's replay


def leftovers(directory: Path) -> Iterator[tuple[Path, int]]:
    """Segments no live process holds, oldest first, each yielded locked: (path, fd). The caller
    replays, then `discard`s it."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime_ns if p.exists() else 0):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a running gateway's segment
            os.close(fd)
            continue
        if not path.exists():  # retired between listing and locking
            os.close(fd)
            continue
        yield path, fd


def read_segment(fd: int) -> tuple[list[tuple], list[tuple], int]:
    """(request rows, feedback rows, unreadable lines). A crash can leave the last line cut short:
    it is counted and skipped (its request's response had not been written yet)."""
    data = b""
    while chunk := os.read(fd, 1 << 20):
        data += chunk
    requests: list[tuple] = []
    feedback: list[tuple] = []
    bad = 0
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            kind, row = orjson.loads(line)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            bad += 1
            continue
        if kind == FEEDBACK:
            feedback.append(tuple(row))
        else:
            requests.append(_padded(row))
    return requests, feedback, bad


def _padded(row: list) -> tuple:
    """A row journaled by an older version has fewer columns (they were added at the end): the
    missing ones are NULL, as the ledger's migration leaves them on old rows."""
    from gateway.metering.ledger import COLUMNS

    missing = len(COLUMNS) - len(row)
    return tuple(row) + (None,) * missing if missing > 0 else tuple(row)


def discard(path: Path, fd: int) -> None:
    try:
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)
