"""`GET /v1/tabular/churn/drift?window=24h` over a prediction log of 10M predictions (issue #21).

Writes N predictions of the shipped churn model spread over the last 24 hours into a fresh state
directory's tabular.db, builds the drift summaries (the backfill a first start would run), starts
`gateway serve` on the shipped policies, and times the drift endpoint, with the server's RSS before
and its peak after (VmRSS / VmHWM). Side by side: the same report computed from the raw rows of one
hour of that log (the path windows of up to 100k predictions take).

    .venv/bin/python benchmarks/tabular_drift_bench.py [--rows 10000000] [--state-dir /tmp/tabular-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_log(db: Path, rows: int, now: float) -> None:
    from gateway.tabular.store import SqliteLog

    log = SqliteLog(db)
    log.setup()
    conn = log.connect()
    rng = np.random.default_rng(5)
    plans = np.array(["basic", "pro", "enterprise"])
    chunk = 500_000
    t0 = time.perf_counter()
    for lo in range(0, rows, chunk):
        n = min(chunk, rows - lo)
        ts = rng.uniform(now - 86400, now - 1, n)
        tenure = rng.gamma(2.0, 12.0, n).round()
        spend = rng.normal(75, 20, n).clip(5, None).round(2)  # spend drifted up against the reference
        calls = rng.poisson(1.5, n)
        plan = plans[rng.choice(3, n, p=[0.5, 0.35, 0.15])]
        pred = rng.uniform(0, 1, n).round(6)
        params = [(f"b{lo + i}", "churn", float(ts[i]),
                   f'{{"tenure_months":{tenure[i]},"monthly_spend":{spend[i]},"support_calls":{calls[i]},'
                   f'"plan":"{plan[i]}"}}', float(pred[i]), None) for i in range(n)]
        with conn:
            conn.executemany("INSERT INTO predictions (id, model, ts, features, prediction, prediction_label) "
                             "VALUES (?, ?, ?, ?, ?, ?)", params)
    conn.close()
    print(f"wrote {rows:,} predictions in {time.perf_counter() - t0:.0f} s ({db.stat().st_size >> 20} MB)")


def churn_model():
    from gateway.runtime import load_runtime
    from gateway.upstreams.http import HttpPool

    rt = load_runtime(REPO / "policies", HttpPool(), REPO / "prompts")
    return rt.tabular["churn"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--state-dir", default="/tmp/tabular-bench")
    ap.add_argument("--json")
    args = ap.parse_args()
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    db = state / "tabular.db"
    out: dict = {"rows": args.rows}
    stamp = state / f"done-{args.rows}"
    if not stamp.exists():
        for p in state.glob("tabular.db*"):
            p.unlink()
        write_log(db, args.rows, time.time())
        stamp.write_text(str(time.time()))
    from gateway.tabular import rollups, service
    from gateway.tabular.store import PredictionStore

    model = churn_model()
    store = PredictionStore(db)
    t0 = time.perf_counter()
    built = rollups.Rollups(store).build(model)
    out["summaries_built"] = built
    out["summaries_build_s"] = round(time.perf_counter() - t0, 1)
    print(f"drift summaries: {built} written in {out['summaries_build_s']} s (the backfill of a first start)")

    # side by side: the raw path on one hour of the same log
    one_hour = store.count_upto("churn", time.time() - 3600, 10**9)
    saved = service.RAW_LIMIT
    service.RAW_LIMIT = 10**9
    t0 = time.perf_counter()
    raw = service.compute_drift(store, model, 3600)
    out["raw_1h_s"] = round(time.perf_counter() - t0, 2)
    out["raw_1h_rows"] = one_hour
    service.RAW_LIMIT = saved
    print(f"raw rows, 1 h window ({one_hour:,} predictions, read into Python): {out['raw_1h_s']} s, "
          f"status {raw['status']}")

    port = free_port()
    env = {**os.environ, "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": ""}
    server = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port), "--state-dir", str(state),
                               "--policies", str(REPO / "policies"), "--log-level", "warning"], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        httpx.get(url + "/v1/tabular/churn/drift?window=10m", timeout=60)  # imports scipy once
        before = proc_kb(server.pid, "VmRSS")
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # reset VmHWM: the peak from here on
        times, body = [], None
        for _ in range(3):
            t0 = time.perf_counter()
            r = httpx.get(url + "/v1/tabular/churn/drift?window=24h", timeout=300)
            times.append(time.perf_counter() - t0)
            body = r.json()
        peak = proc_kb(server.pid, "VmHWM")
        out.update(drift_24h_s=[round(t, 3) for t in times], drift_24h_median_s=round(float(np.median(times)), 3),
                   window_rows=body["window"].get("rows"), engine=body.get("data_drift", {}).get("engine", {}).get("name"),
                   rss_before_mb=before // 1024, rss_peak_mb=peak // 1024, rss_growth_mb=(peak - before) // 1024,
                   status=body["status"], dataset_drift=body.get("data_drift", {}).get("dataset_drift"))
        print(f"GET /v1/tabular/churn/drift?window=24h over {body['window'].get('rows'):,} predictions: median "
              f"{out['drift_24h_median_s']} s of {out['drift_24h_s']} ({out['engine']}); server RSS {before // 1024} MB "
              f"before, peak {peak // 1024} MB (growth {(peak - before) // 1024} MB); dataset drift "
              f"{out['dataset_drift']}")
    finally:
        server.terminate()
        server.wait(30)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
