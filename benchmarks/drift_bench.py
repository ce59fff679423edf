"""Drift benchmark (issues #6 and #21), side by side in one run:

- 1M reference x 1M current rows x 50 numeric columns, full per-column report (exact KS and
  Wasserstein), and Evidently's DataDriftPreset on the same arrays (its own virtualenv: pass its python);
- a 100,000-row window against a fitted profile;
- reading the 1M x 50 window from CSV and from Parquet (Arrow), and, with --csv-module, the old
  pure-Python csv reader for comparison;
- the KLL sketch's error on the 1M x 50 window: sketched KS D and Wasserstein against the exact values;
- with --big-rows N: N rows x --big-cols columns of Parquet on local disk against a fitted profile,
  streamed in-process and on a 2-worker Dask LocalCluster, each in its own process, with peak RSS.

    .venv/bin/python benchmarks/drift_bench.py [--rows 1000000] [--cols 50] [--evidently-python PATH]
        [--csv-module] [--big-rows 100000000 --big-cols 20 --big-dir /tmp/drift-big] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
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
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--csv-module", action="store_true", help="also time the pure-Python csv reader (slow)")
    ap.add_argument("--big-rows", type=int, default=0, help="rows of the big Parquet window (e.g. 100000000)")
    ap.add_argument("--big-cols", type=int, default=20)
    ap.add_argument("--big-dir", default="/tmp/drift-big")
    ap.add_argument("--only-big", action="store_true", help="skip the 1M sections")
    args = ap.parse_args()
    if args.only_big:
        result = big_window(args.big_rows, args.big_cols, Path(args.big_dir))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return
    ref = data(args.rows, args.cols, 1)
    cur = data(args.rows, args.cols, 2, shifted=5)
    result: dict = {"rows": args.rows, "columns": args.cols}

    runs = []
    for _ in range(args.repeat):  # this machine is noisy (page faults cost 0.1-2 s per GB): min and median
        profile = report = None
        t0 = time.perf_counter()
        profile = drift.fit(ref, keep_sample=True)  # the sorted reference is reused: exact KS and Wasserstein
        report = drift.compare(profile, cur)
        runs.append(time.perf_counter() - t0)
    result["full_report_s"] = round(float(np.median(runs)), 2)
    result["full_report_min_s"] = round(min(runs), 2)
    result["full_report_runs_s"] = [round(r, 2) for r in runs]
    result["drifted_columns"] = report.drifted_columns
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"full report, {args.rows:,} x {args.rows:,} rows x {args.cols} columns: median {result['full_report_s']} s, "
          f"min {result['full_report_min_s']} s of {args.repeat} (fit + compare, exact KS and Wasserstein), "
          f"{report.drifted_columns} drifted; peak RSS {result['peak_rss_mb']} MB")

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
            result["ratio_evidently_to_gateway_min"] = round(result["evidently_report_s"] / result["full_report_min_s"], 1)
            print(f"Evidently DataDriftPreset on the same data: {result['evidently_report_s']} s "
                  f"({result['ratio_evidently_to_gateway']}x our median, {result['ratio_evidently_to_gateway_min']}x "
                  "our min)")
        else:
            result["evidently_error"] = out.stderr[-2000:]
            print("Evidently failed:", out.stderr[-2000:])
    work = Path(tempfile.mkdtemp())
    result.update(read_speeds(cur, work, args.csv_module))
    result.update(sketch_errors(profile, cur))
    del ref, cur, report, window, profile, profile_only
    if args.big_rows:
        result.update(big_window(args.big_rows, args.big_cols, Path(args.big_dir)))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


def read_speeds(cur: dict[str, np.ndarray], work: Path, csv_module: bool) -> dict:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from gateway.tabular import io

    table = pa.table(cur)
    pcsv.write_csv(table, work / "cur.csv")
    pq.write_table(table, work / "cur.parquet")
    out = {}
    for fmt in ("csv", "parquet"):
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            cols = io.read_table(work / f"cur.{fmt}")
            runs.append(time.perf_counter() - t0)
            assert len(cols) == len(cur) and len(next(iter(cols.values()))) == len(next(iter(cur.values())))
            del cols
        out[f"read_{fmt}_s"], out[f"read_{fmt}_min_s"] = round(float(np.median(runs)), 2), round(min(runs), 2)
    print(f"read 1M x {len(cur)} columns (median / min of 3): CSV {out['read_csv_s']} / {out['read_csv_min_s']} s "
          f"({(work / 'cur.csv').stat().st_size >> 20} MB, full-precision floats), Parquet {out['read_parquet_s']} / "
          f"{out['read_parquet_min_s']} s (Arrow, typed columns)")
    if csv_module:
        t0 = time.perf_counter()
        io._read_csv_module(work / "cur.csv")
        out["read_csv_module_s"] = round(time.perf_counter() - t0, 2)
        print(f"  the pure-Python csv reader on the same file: {out['read_csv_module_s']} s")
    return out


def sketch_errors(profile, cur: dict[str, np.ndarray]) -> dict:
    """Every column sketched (no exact budget) against the exact in-memory report on the same data."""
    from gateway.stats import drift_stream

    exact = {c.column: c for c in drift.compare(profile, cur).columns}
    t0 = time.perf_counter()
    partials = drift_stream.partials_for(profile.columns)
    drift_stream.sketch_all(partials)
    for name, col in cur.items():
        for lo in range(0, col.size, 262_144):
            partials[name].add(col[lo:lo + 262_144])
    sketched = drift_stream.results(profile.columns, partials, {}, profile.sorted_samples)
    took = time.perf_counter() - t0
    d_err = [abs(s.metrics["ks_d"] - exact[s.column].metrics["ks_d"]) for s in sketched]
    w_err = [abs(s.metrics["wasserstein"] - exact[s.column].metrics["wasserstein"]) for s in sketched]
    agree = sum(s.drifted == exact[s.column].drifted for s in sketched)
    out = {"sketch_k": drift_stream.KLL_K, "sketch_ks_d_bound": round(sketched[0].sketch["ks_d_bound"], 5),
           "sketch_ks_d_error_max": round(max(d_err), 6), "sketch_ks_d_error_mean": round(float(np.mean(d_err)), 6),
           "sketch_wasserstein_bound_min": round(min(s.sketch["wasserstein_bound"] for s in sketched), 5),
           "sketch_wasserstein_error_max": round(max(w_err), 6), "sketch_decisions_agree": f"{agree}/{len(sketched)}",
           "sketch_s": round(took, 2)}
    print(f"KLL sketch (k={out['sketch_k']}) vs exact over {len(sketched)} columns of 1M: KS D error max "
          f"{out['sketch_ks_d_error_max']} (bound {out['sketch_ks_d_bound']}), mean {out['sketch_ks_d_error_mean']}; "
          f"Wasserstein error max {out['sketch_wasserstein_error_max']} (smallest bound "
          f"{out['sketch_wasserstein_bound_min']}); decisions agree {out['sketch_decisions_agree']}; {took:.1f} s")
    return out


BIG_SCRIPT = """
import json, sys, time
from pathlib import Path


def peak_mb():  # VmHWM: this process's own peak (ru_maxrss would include the forking parent's RSS)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return 0


from gateway.stats import drift
from gateway.tabular import engines
profile = drift.Profile.load(sys.argv[1])
engine, spec = sys.argv[2], sys.argv[3]
cluster = None
options = engines.Options(engine=engine)
if engine == "dask":
    from distributed import LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           memory_limit="4GiB")
    options.scheduler = cluster.scheduler_address
t = time.perf_counter()
report, _ = engines.run(profile, spec, options)
wall = time.perf_counter() - t
workers = []
if cluster is not None:
    from distributed import Client
    with Client(cluster.scheduler_address) as c:
        workers = sorted(c.run(peak_mb).values())
    cluster.close()
print(json.dumps({"wall_s": round(wall, 1), "rows": report.engine["rows_read"], "parts": report.engine["parts"],
                  "sketched": len(report.engine["sketched_columns"]), "drifted": report.drifted_columns,
                  "peak_rss_mb": peak_mb(),
                  "worker_peak_rss_mb": workers}))
"""


def big_window(rows: int, cols: int, where: Path) -> dict:
    """`rows` x `cols` float64 Parquet (files of 5M rows, row groups of 1M) against a fitted profile."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where.mkdir(parents=True, exist_ok=True)
    per_file = 5_000_000
    stamp = where / f"done-{rows}x{cols}"
    if not stamp.exists():
        for old in where.glob("*.parquet"):
            old.unlink()
        rng = np.random.default_rng(21)
        t0 = time.perf_counter()
        for f in range(0, rows, per_file):
            n = min(per_file, rows - f)
            with pq.ParquetWriter(where / f"part-{f // per_file:04d}.parquet",
                                  pa.schema([(f"c{i}", pa.float64()) for i in range(cols)])) as w:
                for lo in range(0, n, 1_000_000):
                    m = min(1_000_000, n - lo)
                    w.write_table(pa.table({f"c{i}": rng.normal(0.05 if i < 3 else 0, 1, m) for i in range(cols)}))
        stamp.write_text("")
        print(f"wrote {rows:,} x {cols} Parquet to {where} in {time.perf_counter() - t0:.0f} s")
    size = sum(p.stat().st_size for p in where.glob("*.parquet"))
    profile = drift.fit(data(1_000_000, cols, 3))
    profile.save(where / "ref.profile")
    out = {"big_rows": rows, "big_cols": cols, "big_parquet_gb": round(size / 2**30, 1)}
    for engine in ("stream", "dask"):
        run = subprocess.run([sys.executable, "-c", BIG_SCRIPT, str(where / "ref.profile"), engine, str(where)],
                             capture_output=True, text=True, timeout=7200)
        if run.returncode != 0:
            out[f"big_{engine}_error"] = run.stderr[-2000:]
            print(f"{engine} failed:", run.stderr[-2000:])
            continue
        res = json.loads(run.stdout.strip().splitlines()[-1])
        out[f"big_{engine}"] = res
        print(f"{rows:,} x {cols} Parquet ({out['big_parquet_gb']} GB) against a profile, {engine}: {res['wall_s']} s, "
              f"{res['rows']:,} rows in {res['parts']} parts, peak RSS {res['peak_rss_mb']} MB"
              + (f", workers {res['worker_peak_rss_mb']} MB" if res["worker_peak_rss_mb"] else "")
              + f"; {res['sketched']} columns sketched, {res['drifted']} drifted")
    return out


if __name__ == "__main__":
    main()
