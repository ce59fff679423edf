#!/usr/bin/env python3
"""`injection` check quality: the training data's dev split, and our two hand-labelled prompt sets.

    .venv/bin/python benchmarks/injection_quality.py [--set dev-split|prompts-dev|prompts-heldout|FILE] [-v]

dev-split: the 25% of ../shared/data/train/injection held out by `gateway train injection` (grouped
by template/carrier; the model never trained on it, its calibration was fitted on it).
prompts-dev / prompts-heldout: benchmarks/data/injection_{dev,heldout}.jsonl, 213 short prompts
written for the earlier heuristic detector (never used in training). Prints AUROC with
../shared/eval/binary_score.py, false alarms and attacks caught at the shipped threshold, per
family where the set has families, and latency per text.
"""

from __future__ import annotations

import argparse
import collections
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
from gateway.training.common import data_dir, grouped_split, read_jsonl_gz  # noqa: E402
from gateway.training.injection import group_of  # noqa: E402

SHARED = ROOT.parent / "shared"


def load(which: str) -> list[dict]:
    if which == "dev-split":
        return grouped_split(read_jsonl_gz(data_dir() / "injection" / "train.jsonl.gz"), group_of)[1]
    path = ROOT / f"benchmarks/data/injection_{which.split('-')[1]}.jsonl" if which.startswith("prompts-") else Path(which)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default="dev-split")
    ap.add_argument("--fallback", action="store_true", help="score with the heuristic fallback instead")
    ap.add_argument("-v", "--verbose", action="store_true", help="list the misclassified texts (first 90 chars)")
    args = ap.parse_args()
    rows = load(args.set)
    check = Injection(InjectionParams(weights="/nonexistent" if args.fallback else None, fallback="heuristics"))
    check.judge("warm up")
    out = ROOT / "benchmarks/results"
    out.mkdir(parents=True, exist_ok=True)
    scores = out / f"injection_{Path(args.set).stem}.jsonl"
    times, misses = [], []
    hit_by: dict[str, list[int]] = collections.defaultdict(list)
    with scores.open("w") as f:
        for r in rows:
            t = time.perf_counter()
            v = check.judge(r["text"])
            times.append((time.perf_counter() - t) * 1000)
            f.write(json.dumps({"score": v.score, "label": r["label"]}) + "\n")
            hit = v.action is not Action.ALLOW
            hit_by[r.get("family", "attack" if r["label"] else "ordinary")].append(hit)
            if hit != bool(r["label"]):
                misses.append((r["label"], v.score, r["text"][:90].replace("\n", " ")))
    n1 = sum(r["label"] for r in rows)
    n0 = len(rows) - n1
    flagged = [json.loads(line) for line in scores.read_text().splitlines()]
    fa = sum(1 for s in flagged if s["label"] == 0 and s["score"] >= check.threshold)
    caught = sum(1 for s in flagged if s["label"] == 1 and s["score"] >= check.threshold)
    print(f"set={args.set} rows={len(rows)} attacks={n1} ordinary={n0} detector={'heuristics' if args.fallback else 'learned'} "
          f"latency ms p50={statistics.median(times):.2f} p99={sorted(times)[int(len(times) * .99) - 1]:.2f}")
    print(f"at threshold {check.threshold}: false alarms {fa}/{n0} = {fa / max(1, n0):.1%}; "
          f"attacks caught {caught}/{n1} = {caught / max(1, n1):.1%}")
    for fam, hs in sorted(hit_by.items()):
        print(f"  {fam:<28} {sum(hs):>4}/{len(hs):<4} flagged")
    if args.verbose:
        for m in misses:
            print("  miss", m)
    subprocess.run([sys.executable, str(SHARED / "eval/binary_score.py"), str(scores)], check=True)


if __name__ == "__main__":
    main()
