"""Ledger benchmark (issue #3): writer throughput, event-loop lag while writing, reports over 1M rows;
with `--backend postgres` (or `both`, side by side) the same for the PostgreSQL ledger (issue #13).

    .venv/bin/python benchmarks/ledger_bench.py [--rows 1000000] [--json out.json]
    GATEWAY_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \
        .venv/bin/python benchmarks/ledger_bench.py --backend both --rows 200000
"""

from __future__ import annotations

import argparse
import os
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.metering.ledger import COLUMNS, Ledger, SqliteReader, connect, write_rows
from gateway.metering.outcome import outcome
from gateway.metering.report import GROUPINGS, usage_rows


def make_row(i: int, now: float, rng: random.Random, spread_s: float = 30 * 86400) -> tuple:
    """`spread_s`: how far back the rows' times go (a month for report tests; live traffic flushed every
    0.2 s falls in the last minute or so)."""
    values = dict.fromkeys(COLUMNS)
    values.update(
        request_id=f"gw-{i:012d}", ts=now - rng.random() * spread_s, endpoint="chat.completions",
        key=f"app-{rng.randrange(50)}", model="gpt-4o-mini", served_model=f"model-{rng.randrange(20)}",
        upstream="openai", prompt_name=f"prompt-{rng.randrange(10)}", prompt_version=rng.randrange(1, 5),
        stream=rng.randrange(2), status=200 if rng.random() > 0.02 else 502,
        input_tokens=rng.randrange(50, 2000), cached_tokens=0, output_tokens=rng.randrange(10, 800),
        reasoning_tokens=0, usage_source="upstream", cost_usd=rng.random() / 100, price_key="gpt-4o-mini",
        latency_ms=rng.random() * 2000, upstream_ms=rng.random() * 2000, overhead_ms=rng.random(), attempts=1)
    values["outcome"] = outcome(values["status"], None)
    return tuple(values[c] for c in COLUMNS)


class Backend:
    """A fresh ledger of one kind: a SQLite file in a temporary directory, or a PostgreSQL schema of its own
    (dropped at the end)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.dir = Path(tempfile.mkdtemp())
        self.schemas: list[str] = []

    def ledger(self) -> Ledger:
        if self.kind == "sqlite":
            return Ledger(Path(tempfile.mkdtemp(dir=self.dir)) / "ledger.db")
        from gateway.state import postgres
        from gateway.state.ledger import open_ledger

        settings = self._settings()
        postgres.migrate(settings)
        return open_ledger(settings, Path(tempfile.mkdtemp(dir=self.dir)) / "ledger.db")

    def reader(self, ledger: Ledger):
        return ledger.reader

    def _settings(self):
        import os

        from gateway.state.config import StateSettings

        self.schemas.append(f"bench_{os.getpid()}_{len(self.schemas)}")
        return StateSettings(ledger="postgres", postgres_schema=self.schemas[-1])

    def cleanup(self) -> None:
        if self.schemas:
            import os

            import psycopg

            with psycopg.connect(os.environ["GATEWAY_POSTGRES_URL"], autocommit=True) as conn:
                for schema in self.schemas:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def writer_throughput(backend: Backend, n: int) -> float:
    rng = random.Random(1)
    rows = [make_row(i, time.time(), rng, spread_s=60) for i in range(n)]  # as live traffic arrives
    ledger = backend.ledger()
    ledger.start()
    t0 = time.perf_counter()
    for r in rows:
        ledger.record(r)
    ledger.close(timeout=600)
    assert ledger.written == n and ledger.write_errors == 0, (ledger.written, ledger.last_error)
    return n / (time.perf_counter() - t0)


async def _lag_probe(seconds: float, rate: int, ledger: Ledger, rows: list[tuple]) -> list[float]:
    """Event-loop lateness (ms) of a 1 ms ticker while a producer records `rate` rows/s (prebuilt rows:
    the producer does what the gateway does per request, a `record()` call)."""
    lags: list[float] = []
    stop = time.perf_counter() + seconds

    async def producer() -> None:
        i = 0
        while time.perf_counter() < stop:
            for _ in range(rate // 100):
                ledger.record(rows[i % len(rows)])
                i += 1
            await asyncio.sleep(0.01)

    async def ticker() -> None:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - t - 0.001) * 1000)

    await asyncio.gather(ticker(), producer())
    return lags


def loop_lag(backend: Backend, seconds: float, rate: int, writer: bool) -> dict[str, float]:
    """Same producer either way; `writer` False leaves the rows in the queue (no writer thread)."""
    rng = random.Random(2)
    # unique ids: a repeated request id is (rightly) skipped by the ledger, which would flatter the writer
    rows = [make_row(i, time.time(), rng, spread_s=60) for i in range(int(seconds * rate) + rate)]
    ledger = backend.ledger()
    if writer:
        ledger.start()
    lags = asyncio.run(_lag_probe(seconds, rate, ledger, rows))
    if writer:
        ledger.close()
    lags.sort()
    return {"p50_ms": round(statistics.median(lags), 3), "p99_ms": round(lags[int(len(lags) * 0.99)], 3),
            "max_ms": round(lags[-1], 3), "rows_written": ledger.written}


def report_speed(backend: Backend, rows: int) -> dict[str, float]:
    rng = random.Random(3)
    now = time.time()
    t0 = time.perf_counter()
    if backend.kind == "sqlite":
        path = Path(tempfile.mkdtemp()) / "ledger.db"
        conn = connect(path)
        for start in range(0, rows, 50_000):  # through the ledger's own write path (raw rows + rollup)
            write_rows(conn, [make_row(i, now, rng) for i in range(start, min(rows, start + 50_000))])
        conn.close()
        reader = SqliteReader(path)
        out = {"fill_s": round(time.perf_counter() - t0, 1), "db_mb": round(path.stat().st_size / 2**20, 1)}
    else:
        ledger = backend.ledger()
        sink = ledger.sink
        conn = sink.connect()
        for start in range(0, rows, 50_000):
            sink.write(conn, [make_row(i, now, rng) for i in range(start, min(rows, start + 50_000))])
        conn.close()
        reader = ledger.reader
        out = {"fill_s": round(time.perf_counter() - t0, 1)}
    for by in GROUPINGS:
        t0 = time.perf_counter()
        usage_rows(reader, now - 31 * 86400, now + 1, by)
        out[f"by_{by}_s"] = round(time.perf_counter() - t0, 3)
    if backend.kind == "sqlite":
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gateway", "usage", "--ledger", str(path), "--by", "model"],
                       check=True, capture_output=True)
        out["cli_by_model_s"] = round(time.perf_counter() - t0, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="sqlite")
    ap.add_argument("--json")
    args = ap.parse_args()
    # the machine's server, as in the tests (trust auth, database `test`), unless told otherwise
    os.environ.setdefault("GATEWAY_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    result: dict = {}
    for kind in (["sqlite", "postgres"] if args.backend == "both" else [args.backend]):
        backend = Backend(kind)
        try:
            out = result.setdefault(kind, {})
            out["writer_rows_per_s"] = round(writer_throughput(backend, 200_000))
            print(f"[{kind}] writer throughput: {out['writer_rows_per_s']:,} rows/s", flush=True)
            for rate in (5000, 20000):
                for writer in (False, True):
                    name = f"loop_lag_{rate}_rows_per_s_{'with' if writer else 'without'}_writer"
                    out[name] = loop_lag(backend, args.seconds, rate, writer)
                    print(f"[{kind}] event-loop lag, {rate} rows/s, writer {'on ' if writer else 'off'}: {out[name]}",
                          flush=True)
            out["report"] = report_speed(backend, args.rows)
            print(f"[{kind}] gateway usage over {args.rows:,} rows: {out['report']}", flush=True)
        finally:
            backend.cleanup()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
