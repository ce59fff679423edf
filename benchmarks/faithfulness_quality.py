#!/usr/bin/env python3
"""`faithfulness` scorer quality on the shared development sets, scored by ../shared/eval/binary_score.py.

    .venv/bin/python benchmarks/faithfulness_quality.py [--no-embeddings] [--half even|odd]

HaluEval QA: each record gives a faithful and a hallucinated answer to a question over a knowledge
passage (500 pairs); BEGIN-WoW: dialogue responses labelled attributable or not (430). The scorer sees
(context, question, answer) - never the label, and not the answer's length. Prints AUROC and balanced
accuracy at the check's shipped default threshold for each file, and latency per answer.
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

from gateway.checks.faithfulness import Faithfulness, FaithfulnessParams  # noqa: E402

SHARED = ROOT.parent / "shared"


def rows(name: str) -> list[tuple[str, str, str, int]]:
    path = SHARED / "data/faithfulness" / name
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if name.startswith("halueval"):
        return ([(r["knowledge"], r["question"], r["right_answer"], 1) for r in recs]
                + [(r["knowledge"], r["question"], r["hallucinated_answer"], 0) for r in recs])
    return [(r["context"], "", r["answer"], r["label"]) for r in recs]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-embeddings", action="store_true")
    ap.add_argument("--half", choices=["even", "odd"])
    args = ap.parse_args()
    check = Faithfulness(FaithfulnessParams(use_embeddings=not args.no_embeddings))
    out = ROOT / "benchmarks/results"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("halueval_qa_dev.jsonl", "begin_wow_dev.jsonl"):
        data = rows(name)
        if args.half:
            data = data[0 if args.half == "even" else 1::2]
        scores = out / f"faithfulness_{name.split('_')[0]}.jsonl"
        times = []
        with scores.open("w") as f:
            for ctx, question, answer, label in data:
                t = time.perf_counter()
                result = check.score(answer, [ctx], question)
                times.append((time.perf_counter() - t) * 1000)
                f.write(json.dumps({"score": result.score, "label": label, "answer": answer}) + "\n")
        print(f"\n== {name}: {len(data)} answers, latency ms p50={statistics.median(times):.2f}, "
              f"threshold {check.params.threshold}")
        subprocess.run([sys.executable, str(SHARED / "eval/binary_score.py"), str(scores),
                        "--threshold", str(check.params.threshold)], check=True)


if __name__ == "__main__":
    main()
