#!/usr/bin/env python3
"""`injection` check quality on our labelled sets (benchmarks/data/injection_{dev,heldout}.jsonl).

    .venv/bin/python benchmarks/injection_quality.py [--data FILE] [--no-embeddings]

Prints AUROC (../shared/eval/binary_score.py), false alarms on ordinary prompts and attacks caught at
the default threshold, and latency per prompt.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.checks.base import Action  # noqa: E402
from gateway.checks.injection import Injection, InjectionParams  # noqa: E402

SHARED = ROOT.parent / "shared"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT / "benchmarks/data/injection_dev.jsonl"))
    ap.add_argument("--no-embeddings", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="list the misclassified prompts")
    args = ap.parse_args()
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
    check = Injection(InjectionParams(use_embeddings=not args.no_embeddings))
    check.judge("warm up")
    out = ROOT / "benchmarks/results"
    out.mkdir(parents=True, exist_ok=True)
    scores = out / f"injection_{Path(args.data).stem}.jsonl"
    times, fa, caught = [], 0, 0
    misses = []
    with scores.open("w") as f:
        for r in rows:
            t = time.perf_counter()
            v = check.judge(r["text"])
            times.append((time.perf_counter() - t) * 1000)
            f.write(json.dumps({"score": v.score, "label": r["label"]}) + "\n")
            hit = v.action is not Action.ALLOW
            fa += hit and r["label"] == 0
            caught += hit and r["label"] == 1
            if hit != bool(r["label"]):
                misses.append((r["label"], v.score, r["text"][:90]))
    n1 = sum(r["label"] for r in rows)
    n0 = len(rows) - n1
    print(f"rows={len(rows)} attacks={n1} ordinary={n0} latency ms p50={statistics.median(times):.2f} "
          f"p99={sorted(times)[int(len(times) * .99) - 1]:.2f}")
    print(f"at threshold {check.params.threshold}: false alarms {fa}/{n0} = {fa / n0:.1%}; attacks caught {caught}/{n1} = {caught / n1:.1%}")
    if args.verbose:
        for m in misses:
            print("  miss", m)
    subprocess.run([sys.executable, str(SHARED / "eval/binary_score.py"), str(scores)], check=True)


if __name__ == "__main__":
    main()
