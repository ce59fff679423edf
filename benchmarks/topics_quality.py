#!/usr/bin/env python3
"""`topics` check quality on the CLINC banking set, with the shipped example policy.

    .venv/bin/python benchmarks/topics_quality.py [--policy policies/examples/banking-assistant.yaml]

The policy declares its allowed topics by a handful of example phrases (written by hand, not taken
from the data). Score = best on-topic similarity (label 1 = on-topic). Prints AUROC (via
../shared/eval/binary_score.py) and, at the policy's threshold, the share of on-topic requests blocked
and precision/recall of blocking off-topic ones. `--half even|odd` scores every other row.
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
from gateway.pipeline import load_check  # noqa: E402

SHARED = ROOT.parent / "shared"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", default=str(ROOT / "policies/examples/banking-assistant.yaml"))
    ap.add_argument("--data", default=str(SHARED / "data/topics/clinc_banking_dev.jsonl"))
    ap.add_argument("--half", choices=["even", "odd"])
    args = ap.parse_args()
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
    if args.half:
        rows = rows[0 if args.half == "even" else 1::2]
    check = load_check(Path(args.policy), "topics")
    check._build()
    out_dir = ROOT / "benchmarks/results"
    out_dir.mkdir(parents=True, exist_ok=True)
    scores_file = out_dir / "topics_scores.jsonl"
    times, blocked_on, blocked_off = [], 0, 0
    with scores_file.open("w") as f:
        for r in rows:
            t = time.perf_counter()
            v = check.judge(r["text"])
            times.append((time.perf_counter() - t) * 1000)
            on_topic = 1 - v.score
            f.write(json.dumps({"score": on_topic, "label": r["label"]}) + "\n")
            if v.action is not Action.ALLOW:
                blocked_on += r["label"] == 1
                blocked_off += r["label"] == 0
    n_on = sum(r["label"] == 1 for r in rows)
    n_off = len(rows) - n_on
    blocked = blocked_on + blocked_off
    print(f"rows={len(rows)} latency ms p50={statistics.median(times):.2f} p99={sorted(times)[int(len(times) * .99) - 1]:.2f}")
    print(f"at the policy threshold: on-topic blocked {blocked_on}/{n_on} = {blocked_on / n_on:.1%}; "
          f"off-topic blocked {blocked_off}/{n_off} = recall {blocked_off / n_off:.3f}, "
          f"precision {blocked_off / blocked if blocked else 0:.3f}")
    subprocess.run([sys.executable, str(SHARED / "eval/binary_score.py"), str(scores_file)], check=True)


if __name__ == "__main__":
    main()
