"""`gateway serve --workers N`: N worker processes on one port (SO_REUSEPORT; the kernel spreads
connections over them) under a small supervisor that restarts a worker that dies.

Workers share nothing in memory, so limits and budgets are only right when their counters are
shared: with `state.counters: embedded` the supervisor refuses to start (N workers would each
enforce the whole limit). Each worker writes the same ledger (SQLite: WAL allows several writers;
or PostgreSQL) through its own crash journal. /metrics answers for all workers, whichever serves the
scrape: each worker keeps its metrics in memory-mapped files in one directory
(prometheus_client's multiprocess mode), and the scrape sums them.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

log = logging.getLogger("gateway.workers")

RESTART_WINDOW_S = 60
MAX_RESTARTS = 5  # per worker within the window: a worker that keeps dying is a bug, not bad luck


def supervise(n: int, child_args: list[str], grace_s: float) -> int:
    """Run `gateway serve <child_args> --reuse-port` N times; restart crashed ones; forward SIGTERM/SIGINT."""
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    cmd = [sys.executable, "-m", "gateway", "serve", *child_args, "--reuse-port"]
    # Set before a worker imports prometheus_client, which picks its value store at import time.
    metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    try:
        return _run(n, cmd, env, metrics_dir, grace_s, lambda: stopping)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _run(n: int, cmd: list[str], env: dict[str, str], metrics_dir: str, grace_s: float, stopped) -> int:
    from prometheus_client import multiprocess

    stopping = False
    procs: dict[int, subprocess.Popen] = {i: subprocess.Popen(cmd, env=env) for i in range(n)}
    restarts: dict[int, list[float]] = {i: [] for i in range(n)}
    log.info("supervising %d workers (pids %s)", n, ", ".join(str(p.pid) for p in procs.values()))
    code = 0
    while not stopping:
        time.sleep(0.2)
        stopping = stopped()
        for i, proc in list(procs.items()):
            rc = proc.poll()
            if rc is None or stopping:
                continue
            if rc == 2:  # a start-up problem (bad policies, port taken, backend unreachable): restarting won't help
                log.error("worker %d (pid %d) could not start (exit 2); stopping all workers", i, proc.pid)
                stopping, code = True, 2
                break
            now = time.monotonic()
            restarts[i] = [t for t in restarts[i] if now - t < RESTART_WINDOW_S] + [now]
            if len(restarts[i]) > MAX_RESTARTS:
                log.error("worker %d died %d times within %ds; stopping all workers", i, len(restarts[i]),
                          RESTART_WINDOW_S)
                stopping, code = True, 1
                break
            log.warning("worker %d (pid %d) exited with %s; restarting it", i, proc.pid, rc)
            multiprocess.mark_process_dead(proc.pid, metrics_dir)  # its gauges stop counting; counters stay
            procs[i] = subprocess.Popen(cmd, env=env)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s + 5
    for proc in procs.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return code
