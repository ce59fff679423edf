"""Faults under load with the shared backends (issue #13): PostgreSQL restarted, a replica killed -9,
Redis stopped. Rows are counted against what clients were answered.

    python benchmarks/faults_bench.py [--replicas 3] [--rate 150] [--seconds 12] [--redis]

Runs its own PostgreSQL server (initdb in a temporary directory, as the `postgres` user when run as
root) so it can stop it, and, with --redis, its own redis-server; the shared-counter runs use the
machine's Redis (127.0.0.1:6379 or $GATEWAY_REDIS_URL) otherwise. Each replica is `gateway serve` with
`state: {counters: redis, ledger: postgres}`, a journal in its own state directory.

Checks: every request a client got an answer for (any status) has exactly one ledger row; rows equal
the hourly rollup; with --redis, after Redis comes back (empty) the key admits exactly its limit in
the next window (58 s of it: see run_redis_stop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.replicas_bench import BODY, KEY, free_port, launch, policies, stop, wait_ready  # noqa: E402

os.environ.setdefault("GATEWAY_TEST_REQUIRE_SERVICES", "1")  # private_postgres: fail loudly, never skip


class Load:
    """Requests at `rate`/s round-robin over the replicas; keeps each answered request id."""

    def __init__(self, urls: list[str], rate: float) -> None:
        self.urls, self.rate = urls, rate
        self.ids: list[str] = []
        self.statuses: dict[int, int] = {}
        self.admitted_at: list[float] = []
        self.connection_errors = 0

    async def run(self, seconds: float, events: list[tuple[float, object]] = ()) -> None:
        headers = {"Authorization": f"Bearer {KEY}"}
        events = sorted(events, key=lambda e: e[0])
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            async def one(url: str) -> None:
                try:
                    async with session.post(url + "/v1/chat/completions", json=BODY, headers=headers) as r:
                        await r.read()
                        self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
                        if "x-gateway-request-id" in r.headers:
                            self.ids.append(r.headers["x-gateway-request-id"])
                        if r.status == 200:
                            self.admitted_at.append(time.monotonic())
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    self.connection_errors += 1

            tasks, t0, i = [], time.monotonic(), 0
            while (elapsed := time.monotonic() - t0) < seconds:
                while events and events[0][0] <= elapsed:
                    _, action = events.pop(0)
                    await asyncio.to_thread(action)
                due = int(elapsed * self.rate)
                while i < due:
                    tasks.append(asyncio.create_task(one(self.urls[i % len(self.urls)])))
                    i += 1
                await asyncio.sleep(0.005)
            await asyncio.gather(*tasks)


def replicas(root: Path, work: Path, n: int) -> tuple[list[int], list[subprocess.Popen], list[str]]:
    ports = [free_port() for _ in range(n)]
    procs = [launch(root, work, i, p) for i, p in enumerate(ports)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    wait_ready(urls, work)
    return ports, procs, urls


def ledger_counts(schema: str, ids: list[str]) -> dict:
    import psycopg

    with psycopg.connect(os.environ["GATEWAY_POSTGRES_URL"]) as conn:
        total, distinct = conn.execute(f"SELECT COUNT(*), COUNT(DISTINCT request_id) FROM {schema}.requests").fetchone()
        rolled = conn.execute(f"SELECT COALESCE(SUM(requests), 0) FROM {schema}.usage_hourly WHERE dim = 'key'").fetchone()[0]
        stored = {r for (r,) in conn.execute(f"SELECT request_id FROM {schema}.requests")}
    return {"answered": len(ids), "rows": total, "distinct_rows": distinct, "rollup_requests": int(rolled),
            "answered_without_row": len(set(ids) - stored), "duplicates": total - distinct}


def run_postgres_restart(args, work: Path, restart) -> dict:
    root = policies(work, "pgrestart", "{}", "redis", f"bench-pg-{os.getpid()}",
                    ", ledger: postgres, postgres_schema: pgrestart")
    ports, procs, urls = replicas(root, work, args.replicas)
    load = Load(urls, args.rate)
    t0 = time.monotonic()
    asyncio.run(load.run(args.seconds, [(args.seconds / 3, lambda: restart(args.down_s))]))
    stop(procs)  # SIGTERM: each replica flushes what it holds before it exits
    out = ledger_counts("pgrestart", load.ids)
    out.update(statuses=load.statuses, connection_errors=load.connection_errors, down_s=args.down_s,
               seconds=round(time.monotonic() - t0, 1))
    return out


def run_replica_kill(args, work: Path) -> dict:
    root = policies(work, "kill", "{}", "redis", f"bench-kill-{os.getpid()}",
                    ", ledger: postgres, postgres_schema: kill")
    ports, procs, urls = replicas(root, work, args.replicas)
    load = Load(urls, args.rate)

    def kill() -> None:
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()

    def restart() -> None:  # same state directory: its journal is replayed at start-up
        procs[0] = launch(root, work, 0, ports[0])
        wait_ready(urls[:1], work)

    asyncio.run(load.run(args.seconds, [(args.seconds / 3, kill), (args.seconds * 2 / 3, restart)]))
    stop(procs)
    out = ledger_counts("kill", load.ids)
    log = (work / "kill-0.log").read_text()
    replayed = [line for line in log.splitlines() if "replayed" in line]
    out.update(statuses=load.statuses, connection_errors=load.connection_errors, journal_replay=replayed[-1:] or None)
    return out


def run_redis_stop(args, work: Path) -> dict:
    """A private redis-server; 600 rpm key; 4x load; Redis stopped for --down-s; then a full window."""
    port = free_port()
    rdir = work / "redis"
    rdir.mkdir()
    redis_cmd = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(rdir)]
    redis = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    os.environ["GATEWAY_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    root = policies(work, "redisstop", f"{{requests_per_minute: {args.rpm}}}", "redis", f"bench-r-{os.getpid()}",
                    ", ledger: postgres, postgres_schema: redisstop, on_backend_error: closed")
    ports, procs, urls = replicas(root, work, args.replicas)
    load = Load(urls, args.rpm / 60 * 4)
    back_at: list[float] = []

    def redis_down() -> None:
        redis.send_signal(signal.SIGKILL)
        redis.wait()

    def redis_up() -> None:
        nonlocal redis
        redis = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL)
        time.sleep(0.3)
        back_at.append(time.monotonic())

    before = 5.0
    asyncio.run(load.run(before + args.down_s + 59, [(before, redis_down), (before + args.down_s, redis_up)]))
    stop(procs)
    redis.terminate()
    t_back = back_at[0]
    # 58 s, as in replicas_bench: the window is 60 one-second buckets, so a full 60 s span can see the
    # oldest bucket expire early and admit up to one second's worth more (the embedded store does the same)
    after = [t for t in load.admitted_at if t_back <= t < t_back + 58]
    return {"rpm": args.rpm, "on_backend_error": "closed", "statuses": load.statuses,
            "admitted_in_the_window_after_redis_returned": len(after), **ledger_counts("redisstop", load.ids)}


def main() -> int:
    from tests.helpers import private_postgres

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--rate", type=float, default=150, help="requests/s over all replicas")
    p.add_argument("--seconds", type=float, default=12)
    p.add_argument("--down-s", type=float, default=3.0)
    p.add_argument("--rpm", type=int, default=600)
    p.add_argument("--redis", action="store_true", help="also the Redis-stopped run (~70 s)")
    p.add_argument("--json")
    args = p.parse_args()
    os.environ.setdefault("GATEWAY_REDIS_URL", "redis://127.0.0.1:6379/0")
    work = Path(tempfile.mkdtemp(prefix="faults-bench-"))
    results = {}
    with private_postgres() as (url, restart):
        os.environ["GATEWAY_POSTGRES_URL"] = url
        results["postgres_restart"] = run_postgres_restart(args, work, restart)
        print("PostgreSQL restarted mid-load:", json.dumps(results["postgres_restart"]), flush=True)
        results["replica_kill"] = run_replica_kill(args, work)
        print("one replica killed -9 mid-load, restarted:", json.dumps(results["replica_kill"]), flush=True)
        if args.redis:
            results["redis_stop"] = run_redis_stop(args, work)
            print("Redis stopped mid-load:", json.dumps(results["redis_stop"]), flush=True)
    ok = all(r["answered_without_row"] == 0 and r["duplicates"] == 0 and r["rows"] == r["rollup_requests"]
             for r in results.values())
    if "redis_stop" in results:
        ok = ok and abs(results["redis_stop"]["admitted_in_the_window_after_redis_returned"] - args.rpm) <= args.rpm / 100
    print("PASS" if ok else "FAIL", f"(logs in {work})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
