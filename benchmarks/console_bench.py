"""Render time of every console page on a large ledger (issue #15: < 300 ms on 1M rows).

Writes an example ledger (`gateway console example-data`'s rows: keys, models, checks, an experiment)
of --rows rows over --days days, and --predictions predictions of the shipped `churn` tabular model,
into a fresh state directory, starts `gateway serve` on it (open mode on loopback: no login), then
times each page --repeat times, server-side work plus transfer on loopback, and prints median and
max per page.

    .venv/bin/python benchmarks/console_bench.py --rows 1000000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
PAGES = [
    "/ui/?since=24h", "/ui/?since=7d", "/ui/?since=30d", "/ui/?since=30d&dim=key&value=support-bot",
    "/ui/requests", "/ui/requests?key=support-bot&status=4xx", "/ui/requests?check=injection&action=block",
    "/ui/requests?model=claude-sonnet&page=40", "/ui/guardrails", "/ui/guardrails?since=30d",
    "/ui/prompts", "/ui/prompts/support-answer/diff?a=1&b=2", "/ui/experiments/support-answer-v2",
    "/ui/experiments/support-answer-v2?bucket=hour", "/ui/evals", "/ui/tabular", "/ui/tabular/churn?window=24h",
    "/ui/tabular/churn?window=7d", "/ui/tabular/churn?window=30d",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--days", type=float, default=30)
    ap.add_argument("--predictions", type=int, default=100_000, help="predictions of the churn tabular model")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--port", type=int, default=8977)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from gateway.console.example_data import write_example_ledger, write_example_predictions

    state = Path(tempfile.mkdtemp(prefix="console-bench-"))
    t0 = time.perf_counter()
    write_example_ledger(state / "ledger.db", args.rows, days=args.days)
    print(f"wrote {args.rows:,} rows over {args.days:g} days in {time.perf_counter() - t0:.0f} s "
          f"({(state / 'ledger.db').stat().st_size / 1e6:.0f} MB)")
    write_example_predictions(state / "tabular.db", args.predictions, days=args.days)
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(args.port), "--state-dir",
                             str(state)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "GATEWAY_LOG_LEVEL": "warning"})
    try:
        base = f"http://127.0.0.1:{args.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the gateway did not become ready")
            time.sleep(0.2)
        worst = 0.0
        print(f"{'page':<58}{'median ms':>10}{'max ms':>9}{'KB':>7}")
        with httpx.Client(base_url=base, timeout=60) as client:
            for path in PAGES:
                times, size = [], 0
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    r = client.get(path)
                    times.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, (path, r.status_code, r.text[:300])
                    size = len(r.content)
                med = statistics.median(times)
                worst = max(worst, med)
                print(f"{path:<58}{med:>10.1f}{max(times):>9.1f}{size / 1024:>7.0f}")
        print(f"slowest page (median): {worst:.1f} ms; target < 300 ms: {'met' if worst < 300 else 'NOT met'}")
    finally:
        proc.terminate()
        proc.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
