"""Ledger benchmark (issue #3): writer throughput, event-loop lag while writing, reports over 1M rows.

    .venv/bin/python benchmarks/ledger_bench.py [--rows 1000000] [--json out.json]
"""

from __future__ import annotations

import argparse
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
from gateway.metering.report import GROUPINGS, usage_rows  # noqa: E402


def make_row(i: int, now: float, rng: random.Random) -> tuple:
    values = dict.fromkeys(COLUMNS)
    values.update(
        request_id=f"gw-{i:012d}", ts=now - rng.random() * 30 * 86400, endpoint="chat.completions",
        key=f"app-{rng.randrange(50)}", model="gpt-4o-mini", served_model=f"model-{rng.randrange(20)}",
        upstream="openai", prompt_name=f"prompt-{rng.randrange(10)}", prompt_version=rng.randrange(1, 5),
        stream=rng.randrange(2), status=200 if rng.random() > 0.02 else 502,
        input_tokens=rng.randrange(50, 2000), cached_tokens=0, output_tokens=rng.randrange(10, 800),
        reasoning_tokens=0, usage_source="upstream", cost_usd=rng.random() / 100, price_key="gpt-4o-mini",
        latency_ms=rng.random() * 2000, upstream_ms=rng.random() * 2000, overhead_ms=rng.random(), attempts=1)
    return tuple(values[c] for c in COLUMNS)


def writer_throughput(n: int) -> float:
    rng = random.Random(1)
    rows = [make_row(i, time.time(), rng) for i in range(n)]
    ledger = Ledger(Path(tempfile.mkdtemp()) / "ledger.db")
    ledger.start()
    t0 = time.perf_counter()
    for r in rows:
        ledger.record(r)
    ledger.close(timeout=600)
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


def loop_lag(seconds: float, rate: int, writer: bool) -> dict[str, float]:
    """Same producer either way; `writer` False leaves the rows in the queue (no writer thread)."""
    rng = random.Random(2)
    rows = [make_row(i, time.time(), rng) for i in range(20_000)]
    ledger = Ledger(Path(tempfile.mkdtemp()) / "ledger.db")
    if writer:
        ledger.start()
    lags = asyncio.run(_lag_probe(seconds, rate, ledger, rows))
    if writer:
        ledger.close()
    lags.sort()
    return {"p50_ms": round(statistics.median(lags), 3), "p99_ms": round(lags[int(len(lags) * 0.99)], 3),
            "max_ms": round(lags[-1], 3), "rows_written": ledger.written}


def report_speed(rows: int) -> dict[str, float]:
    path = Path(tempfile.mkdtemp()) / "ledger.db"
    conn = connect(path)
    rng = random.Random(3)
    now = time.time()
    t0 = time.perf_counter()
    for start in range(0, rows, 50_000):  # through the ledger's own write path (raw rows + rollup)
        write_rows(conn, [make_row(i, now, rng) for i in range(start, min(rows, start + 50_000))])
    conn.close()
    out = {"fill_s": round(time.perf_counter() - t0, 1), "db_mb": round(path.stat().st_size / 2**20, 1)}
    for by in GROUPINGS:
        t0 = time.perf_counter()
        usage_rows(SqliteReader(path), now - 31 * 86400, now + 1, by)
        out[f"by_{by}_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gateway", "usage", "--ledger", str(path), "--by", "model"],
                   check=True, capture_output=True)
    out["cli_by_model_s"] = round(time.perf_counter() - t0, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    result = {"writer_rows_per_s": round(writer_throughput(200_000))}
    print(f"writer throughput: {result['writer_rows_per_s']:,} rows/s")
    for rate in (5000, 20000):
        for writer in (False, True):
            name = f"loop_lag_{rate}_rows_per_s_{'with' if writer else 'without'}_writer"
            result[name] = loop_lag(args.seconds, rate, writer)
            print(f"event-loop lag, {rate} rows/s, writer {'on ' if writer else 'off'}: {result[name]}")
    result["report"] = report_speed(args.rows)
    print(f"gateway usage over {args.rows:,} rows: {result['report']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
