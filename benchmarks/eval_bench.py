#!/usr/bin/env python3
"""Overhead of the eval runner: 1,000 cases x 3 deterministic assertions against the mock model at
concurrency 16, through the in-process gateway, cache off. Target: < 20 s on this machine.

    .venv/bin/python benchmarks/eval_bench.py [--cases 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    (work / "cases.jsonl").write_text("".join(
        json.dumps({"id": f"c{i}", "input": f"Order {i} shipped on day {i % 28 + 1}."}) + "\n" for i in range(args.cases)))
    (work / "suite.yaml").write_text(f"""
name: runner-overhead
dataset: {{file: cases.jsonl}}
targets: [{{name: mock, model: mock-echo}}]
assertions:
  - {{type: contains, value: shipped}}
  - {{type: regex, value: 'Order \\d+'}}
  - {{type: not-contains, value: error}}
gates: [{{metric: pass_rate, target: mock, min: 0.99}}]
concurrency: {args.concurrency}
""")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "gateway", "eval", "--state-dir", str(work / "state"), "run",
                        str(work / "suite.yaml"), "--no-cache", "--no-progress"], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    print(r.stdout.strip().splitlines()[-1] if r.stdout else r.stderr)
    print(f"{args.cases} cases x 3 assertions, concurrency {args.concurrency}: {wall:.1f} s wall "
          f"(process start, gateway start, run, report, recording) - exit {r.returncode}")
    print(f"[{'PASS' if wall < 20 and r.returncode == 0 else 'FAIL'}] < 20 s")


if __name__ == "__main__":
    main()
