#!/usr/bin/env python3
"""PII detection quality on a labelled set, scored with the shared span scorer.

    .venv/bin/python benchmarks/pii_quality.py [--mode ner|regex] [--gold FILE] [--half even|odd]

Writes predictions to benchmarks/results/pii_<mode>.jsonl and prints ../shared/eval/pii_score.py's
table plus latency per sample. `--half` scores every other sample (even indices / odd indices), to
show a figure did not come from fitting one half.
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

from gateway.pii.engine import PiiEngine  # noqa: E402

SHARED = ROOT.parent / "shared"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["ner", "regex"], default="ner")
    ap.add_argument("--gold", default=str(SHARED / "data/pii/presidio_synth_dev.json"))
    ap.add_argument("--half", choices=["even", "odd"])
    ap.add_argument("--threshold", type=float, default=0.4)
    args = ap.parse_args()
    gold = json.loads(Path(args.gold).read_text())
    if args.half:
        gold = gold[0 if args.half == "even" else 1::2]
    engine = PiiEngine(mode=args.mode)
    t0 = time.perf_counter()
    engine.load()
    load_s = time.perf_counter() - t0
    out_dir = ROOT / "benchmarks/results"
    out_dir.mkdir(parents=True, exist_ok=True)
    preds = out_dir / f"pii_{args.mode}{'_' + args.half if args.half else ''}.jsonl"
    gold_file = out_dir / "pii_gold_subset.json"
    gold_file.write_text(json.dumps(gold))
    times = []
    with preds.open("w") as f:
        for i, sample in enumerate(gold):
            t = time.perf_counter()
            ents = [e for e in engine.analyze(sample["full_text"]) if e.score >= args.threshold]
            times.append((time.perf_counter() - t) * 1000)
            f.write(json.dumps({"index": i, "spans": [{"start": e.start, "end": e.end, "type": e.type} for e in ents]}) + "\n")
    print(f"mode={args.mode} samples={len(gold)} load={load_s:.1f}s "
          f"latency ms/sample p50={statistics.median(times):.2f} mean={statistics.fmean(times):.2f} "
          f"p99={sorted(times)[int(len(times) * 0.99) - 1]:.2f}")
    subprocess.run([sys.executable, str(SHARED / "eval/pii_score.py"), str(gold_file), str(preds)], check=True)


if __name__ == "__main__":
    main()
