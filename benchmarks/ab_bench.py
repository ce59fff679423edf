"""A/B report benchmark (issue #7): `gateway ab report` over 10M outcome rows, and assignment speed.

    .venv/bin/python benchmarks/ab_bench.py [--units 1000000] [--outcomes 10000000] [--json out.json]

The ledger is filled through its own write path (raw rows + rollups, feedback via the idempotent
insert and its trigger); the report then aggregates in SQL and computes in numpy/scipy.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

from gateway.experiments.assign import Splitter
from gateway.experiments.config import Experiment
from gateway.experiments.report import build_report, render
from gateway.metering.ledger import COLUMNS, SqliteReader, connect, write_rows

EXPERIMENTS_YAML = """
experiments:
  - name: bench
    models: [m]
    unit: header:x-user-id
    variants: [{name: control, weight: 0.5}, {name: treatment, weight: 0.5}]
    metrics:
      conversion: {type: proportion}
      revenue: {type: mean}
"""


def fill(path: Path, exp: Experiment, units: int, outcomes: int) -> dict[str, float]:
    rng = random.Random(7)
    splitter = Splitter(exp)
    conn = connect(path)
    now = time.time()
    t0 = time.perf_counter()
    assigned = []
    batch = []
    for u in range(units):
        a = splitter.assign(f"user-{u}")
        assigned.append((a.variant.name, a.unit_hash))
        row = dict.fromkeys(COLUMNS)
        row.update(request_id=f"gw-{u:012d}", ts=now - rng.random() * 14 * 86400, endpoint="chat.completions",
                   key="app", model="m", served_model="m", upstream="u", stream=0, status=200,
                   input_tokens=rng.randrange(50, 500), cached_tokens=0, output_tokens=rng.randrange(10, 300),
                   reasoning_tokens=0, usage_source="upstream", cost_usd=rng.random() / 1000,
                   latency_ms=rng.random() * 900, upstream_ms=0.0, overhead_ms=0.5, attempts=1,
                   experiment=exp.name, variant=a.variant.name, unit_hash=a.unit_hash)
        batch.append(tuple(row[c] for c in COLUMNS))
        if len(batch) == 50_000:
            write_rows(conn, batch)
            batch = []
    write_rows(conn, batch)
    requests_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    written = 0
    feedback = []
    per_unit = max(1, outcomes // units)
    for u, (variant, uh) in enumerate(assigned):
        lift = 1.02 if variant == "treatment" else 1.0
        feedback.append((f"gw-{u:012d}", "conversion", now, exp.name, variant, uh,
                         float(rng.random() < 0.1 * lift)))
        for k in range(per_unit - 1):
            feedback.append((f"gw-{u:012d}-{k}", "revenue", now, exp.name, variant, uh, rng.expovariate(1 / 20) * lift))
        if len(feedback) >= 200_000:
            write_rows(conn, (), feedback)
            written += len(feedback)
            feedback = []
        if written >= outcomes:
            break
    write_rows(conn, (), feedback)
    written += len(feedback)
    conn.close()
    return {"requests_rows": units, "outcome_rows": written, "fill_requests_s": round(requests_s, 1),
            "fill_outcomes_s": round(time.perf_counter() - t0, 1), "db_mb": round(path.stat().st_size / 2**20)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=1_000_000)
    ap.add_argument("--outcomes", type=int, default=10_000_000)
    ap.add_argument("--json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    (work / "policies").mkdir()
    (work / "policies" / "experiments.yaml").write_text(EXPERIMENTS_YAML)
    import yaml

    exp = Experiment.model_validate(yaml.safe_load(EXPERIMENTS_YAML)["experiments"][0])
    splitter = Splitter(exp)
    per_assign_us = timeit.timeit(lambda: splitter.assign("user-123456"), number=100_000) / 100_000 * 1e6
    result = {"assign_us": round(per_assign_us, 2)}
    print(f"assignment: {per_assign_us:.2f} us per request")
    result.update(fill(work / "ledger.db", exp, args.units, args.outcomes))
    print(f"ledger: {result}")
    t0 = time.perf_counter()
    report = build_report(SqliteReader(work / "ledger.db"), exp)
    result["report_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gateway", "ab", "--policies", str(work / "policies"), "--ledger",
                    str(work / "ledger.db"), "report", "bench"], check=True, capture_output=True)
    result["cli_report_s"] = round(time.perf_counter() - t0, 2)
    print(f"report over {result['outcome_rows']:,} outcome rows: {result['report_s']} s in-process, "
          f"{result['cli_report_s']} s via the CLI")
    print(render(report, "table"))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
