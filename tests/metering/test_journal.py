"""The ledger's write-ahead journal: rows survive a crash of the process, replay is idempotent, a
live process's segment is never touched, and kill -9 of a served gateway under load loses no row."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import httpx

from gateway.metering import journal
from gateway.metering.ledger import Ledger
from tests.helpers import REPO, free_port, gateway_cmd, wait_http, write_policies
from tests.metering.test_ledger import count, row

CRASHER = """
import os, sys, time
sys.path.insert(0, {repo!r})
from gateway.metering.ledger import Ledger
from tests.metering.test_ledger import row
ledger = Ledger(__import__("pathlib").Path({path!r}), flush_interval_s=3600)  # never flushes by itself
ledger.start()
for i in range({n}):
    ledger.record(row(i))
ledger.record_feedback(("r1", "thumbs", time.time(), "exp", "a", "u1", 1.0))
os._exit(9)  # a crash: no close(), nothing committed
"""


def crash_after_recording(tmp_path, n: int) -> None:
    script = CRASHER.format(repo=str(REPO), path=str(tmp_path / "l.db"), n=n)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 9, r.stderr


def test_rows_of_a_crashed_process_are_replayed_once(tmp_path):
    crash_after_recording(tmp_path, 700)
    assert not (tmp_path / "l.db").exists() or count(tmp_path / "l.db") == 0
    assert list((tmp_path / "l.db.journal").glob("*.jsonl"))
    ledger = Ledger(tmp_path / "l.db")
    assert ledger.recover() == 700
    assert count(tmp_path / "l.db") == 700
    with sqlite3.connect(tmp_path / "l.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 1
        assert conn.execute("SELECT SUM(requests) FROM usage_hourly WHERE dim = 'key'").fetchone()[0] == 700
    assert not list((tmp_path / "l.db.journal").glob("*.jsonl"))  # replayed segments are gone
    assert Ledger(tmp_path / "l.db").recover() == 0


def test_replay_skips_rows_already_committed(tmp_path):
    path = tmp_path / "l.db"
    ledger = Ledger(path, flush_interval_s=0.02)
    ledger.start()
    for i in range(50):
        ledger.record(row(i))
    deadline = time.monotonic() + 10
    while ledger.written < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    # A crash right after the commit, before the segment was retired: simulate with a copy.
    seg = journal.Journal(tmp_path / "copy")
    for i in range(60):  # 50 committed + 10 that were not
        seg.append(journal.REQUEST, row(i), lambda item: None, None)
    ledger.close()
    os.close(seg._segment.fd)  # the "dead" process's lock goes with it
    replayer = Ledger(path, journal_dir=tmp_path / "copy")
    replayer.recover()
    assert count(path) == 60
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT SUM(requests) FROM usage_hourly WHERE dim = 'key'").fetchone()[0] == 60


def test_rows_journaled_by_an_older_version_get_the_newer_columns_as_null(tmp_path):
    """A journal written before the cache columns existed (ledger v5 rows) replays after an upgrade."""
    path = tmp_path / "l.db"
    seg = journal.Journal(tmp_path / "old")
    for i in range(5):
        seg.append(journal.REQUEST, row(i)[:-3], lambda item: None, None)  # without cache, saved_usd, cache_write
    os.close(seg._segment.fd)
    replayer = Ledger(path, journal_dir=tmp_path / "old")
    replayer.recover()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(cache), COUNT(saved_usd), COUNT(cache_write_tokens) "
                            "FROM requests").fetchone() == (5, 0, 0, 0)


def test_a_live_process_segment_is_left_alone(tmp_path):
    path = tmp_path / "l.db"
    live = Ledger(path, flush_interval_s=3600)
    live.start()
    live.record(row(1))
    other = Ledger(path)  # a second gateway on the same state directory starting up
    assert other.recover() == 0
    assert list((tmp_path / "l.db.journal").glob("*.jsonl"))
    live.close()
    assert count(path) == 1
    assert not list((tmp_path / "l.db.journal").glob("*.jsonl"))  # a clean shutdown leaves no journal


def test_a_torn_last_line_is_skipped(tmp_path):
    crash_after_recording(tmp_path, 5)
    seg = next((tmp_path / "l.db.journal").glob("*.jsonl"))
    with open(seg, "ab") as f:
        f.write(b'["r", ["half a row')  # the process died in the middle of a write
    assert Ledger(tmp_path / "l.db").recover() == 5
    assert count(tmp_path / "l.db") == 5


def test_journal_off_writes_no_files(tmp_path):
    ledger = Ledger(tmp_path / "l.db", journal_dir=False, flush_interval_s=0.02)
    ledger.start()
    ledger.record(row(1))
    ledger.close()
    assert count(tmp_path / "l.db") == 1 and not (tmp_path / "l.db.journal").exists()


GATEWAY = """
upstreams: {mock: {type: mock}}
models:
  echo: {targets: [{upstream: mock, model: echo}]}
server: {watch_interval_s: 0}
"""


def _serve(root, state, port):
    return subprocess.Popen(gateway_cmd("serve", "--policies", str(root), "--port", str(port), "--state-dir", str(state)),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill9_under_load(tmp_path, gateway_yaml: str = GATEWAY, seconds: float = 2.0, threads: int = 8):
    """(request ids answered 200, request ids in the ledger after a restart)."""
    root = write_policies(tmp_path / "p", textwrap.dedent(gateway_yaml))
    state, port = tmp_path / "state", free_port()
    proc = _serve(root, state, port)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", timeout=60)
    answered: list[str] = []
    stop = threading.Event()

    def load():
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.post(url + "/v1/chat/completions",
                                    json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
                except httpx.HTTPError:
                    return  # the gateway is gone
                if r.status_code == 200:
                    answered.append(r.headers["x-gateway-request-id"])

    workers = [threading.Thread(target=load) for _ in range(threads)]
    for w in workers:
        w.start()
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)  # mid-load
    proc.wait(30)
    stop.set()
    for w in workers:
        w.join(30)
    # Restart: the new process replays the journal before it serves.
    proc = _serve(root, state, port)
    try:
        wait_http(url + "/healthz", timeout=60)
    finally:
        proc.terminate()
        proc.wait(30)
    with sqlite3.connect(state / "ledger.db") as conn:
        ids = {r[0] for r in conn.execute("SELECT request_id FROM requests")}
    return answered, ids


def test_kill9_under_load_loses_no_answered_request(tmp_path):
    answered, ids = kill9_under_load(tmp_path)
    assert len(answered) > 200, "the load did not run"
    lost = set(answered) - ids
    assert not lost, f"{len(lost)} of {len(answered)} answered requests have no ledger row"
