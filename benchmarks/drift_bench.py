"""Drift benchmark (issue #6): 1M reference x 1M current rows x 50 numeric columns, full per-column
report; and a 100,000-row window against a fitted profile. Optionally Evidently on the same data.

    .venv/bin/python benchmarks/drift_bench.py [--rows 1000000] [--cols 50] [--evidently-python PATH]

Evidently runs in its own virtualenv (pass its python), on the same arrays saved as .npy, so its
dependencies stay out of the project.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from gateway.stats import drift

EVIDENTLY_SCRIPT = """
import sys, time, numpy as np, pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
ref = pd.DataFrame(np.load(sys.argv[1]), columns=[f"c{i}" for i in range(int(sys.argv[3]))])
cur = pd.DataFrame(np.load(sys.argv[2]), columns=ref.columns)
t = time.perf_counter()
Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
print(time.perf_counter() - t)
"""


def data(rows: int, cols: int, seed: int, shifted: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(cols):
        x = rng.normal(0, 1, rows)
        if i < shifted:
            x += 0.2  # a real shift in the first columns
        out[f"c{i}"] = x
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=50)
    ap.add_argument("--evidently-python")
    ap.add_argument("--json")
    args = ap.parse_args()
    ref = data(args.rows, args.cols, 1)
    cur = data(args.rows, args.cols, 2, shifted=5)
    result: dict = {"rows": args.rows, "columns": args.cols}

    t0 = time.perf_counter()
    profile = drift.fit(ref, keep_sample=True)  # the sorted reference is reused: exact KS and Wasserstein
    report = drift.compare(profile, cur)
    result["full_report_s"] = round(time.perf_counter() - t0, 2)
    result["drifted_columns"] = report.drifted_columns
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"full report, {args.rows:,} x {args.rows:,} rows x {args.cols} columns: {result['full_report_s']} s "
          f"(fit + compare, exact KS), {report.drifted_columns} drifted; peak RSS {result['peak_rss_mb']} MB")

    window = {k: v[:100_000] for k, v in cur.items()}
    profile_only = dataclasses.replace(profile, sorted_samples={})  # as loaded from a .profile file
    t0 = time.perf_counter()
    drift.compare(profile_only, window)
    result["profile_window_100k_s"] = round(time.perf_counter() - t0, 3)
    print(f"100,000-row window x {args.cols} columns against the fitted profile: {result['profile_window_100k_s']} s")

    if args.evidently_python:
        work = Path(tempfile.mkdtemp())
        np.save(work / "ref.npy", np.column_stack(list(ref.values())))
        np.save(work / "cur.npy", np.column_stack(list(cur.values())))
        (work / "run.py").write_text(EVIDENTLY_SCRIPT)
        t0 = time.perf_counter()
        out = subprocess.run([args.evidently_python, str(work / "run.py"), str(work / "ref.npy"), str(work / "cur.npy"),
                              str(args.cols)], capture_output=True, text=True, timeout=3600)
        if out.returncode == 0:
            result["evidently_report_s"] = round(float(out.stdout.strip().splitlines()[-1]), 2)
            result["ratio_evidently_to_gateway"] = round(result["evidently_report_s"] / result["full_report_s"], 1)
            print(f"Evidently DataDriftPreset on the same data: {result['evidently_report_s']} s "
                  f"({result['ratio_evidently_to_gateway']}x ours)")
        else:
            result["evidently_error"] = out.stderr[-2000:]
            print("Evidently failed:", out.stderr[-2000:])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
