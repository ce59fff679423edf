#!/usr/bin/env python3
"""`faithfulness` quality, scored by ../shared/eval/binary_score.py, with answer length beside it.

    .venv/bin/python benchmarks/faithfulness_quality.py [--set dev-split|shared|all] [--fallback]

dev-split: the 25% of the training data `gateway train faithfulness` held out (SummEdits summaries by
domain, WiCE claims, and the held-out quarter of HaluEval / BEGIN), per subset. shared: the whole
HaluEval QA and BEGIN-WoW dev files (three quarters of them were training data for the learned model:
read those figures as in-sample). The scorer sees (context, question, answer) - never the label, and
not the answer's length. `--fallback` scores with the claim scorer alone (the heuristic fallback).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.checks.faithfulness import Faithfulness, FaithfulnessParams  # noqa: E402
from gateway.training.common import data_dir, grouped_split  # noqa: E402
from gateway.training.faithfulness import rows_of  # noqa: E402

SHARED = ROOT.parent / "shared"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", choices=["dev-split", "shared", "all"], default="all")
    ap.add_argument("--fallback", action="store_true")
    args = ap.parse_args()
    check = Faithfulness(FaithfulnessParams(weights="/nonexistent" if args.fallback else None, fallback="heuristics"))
    rows = rows_of(data_dir())
    sets: dict[str, list[dict]] = defaultdict(list)
    if args.set in ("dev-split", "all"):
        for r in grouped_split(rows, lambda r: r["group"])[1]:
            sets[f"dev-split/{r['subset']}"].append(r)
            if r["kind"] == "summary":
                sets["dev-split/ALL summaries"].append(r)
    if args.set in ("shared", "all"):
        for r in rows:
            if r["subset"] in ("halueval", "begin"):
                sets[f"shared-file/{r['subset']} (3/4 in training)"].append(r)
    out = ROOT / "benchmarks/results"
    out.mkdir(parents=True, exist_ok=True)
    print(f"detector: {'heuristics (claim scorer)' if args.fallback else 'learned'}; threshold {check.threshold}")
    for name, data in sets.items():
        scores = out / "faithfulness_scores.jsonl"
        times = []
        with scores.open("w") as f:
            for r in data:
                t = time.perf_counter()
                s = check.score(r["answer"], [r["source"]], r["question"])
                times.append((time.perf_counter() - t) * 1000)
                f.write(json.dumps({"score": s, "label": r["label"], "answer": r["answer"]}) + "\n")
        res = json.loads(subprocess.run([sys.executable, str(SHARED / "eval/binary_score.py"), str(scores),
                                         "--threshold", str(check.threshold), "--json"],
                                        check=True, capture_output=True, text=True).stdout)
        print(f"{name:<42} n={res['n']:>4}  AUROC {res['auroc']:.3f}  length {res['answer_length_auroc']:.3f}  "
              f"bal.acc@thr {res['balanced_accuracy_at_threshold']:.3f}  p50 {statistics.median(times):.1f} ms")


if __name__ == "__main__":
    main()
