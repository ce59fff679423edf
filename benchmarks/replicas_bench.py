"""Several gateway replicas on one Redis (issue #13): is a shared limit exact, and what do the
shared counters cost?

    python benchmarks/replicas_bench.py [--seconds 58] [--replicas 3] [--rpm 600]

Starts N `gateway serve` processes (mock upstream, one key limited to --rpm requests per minute,
`state.counters: redis`) and sends ~4x the limit round-robin over all of them for --seconds, beside
one gateway with embedded counters under the same load; both must admit exactly the limit. Then one
replica with embedded counters and one with Redis, side by side, for the added latency of the shared
store, and `--workers 1` against `--workers 2`. Needs Redis on 127.0.0.1:6379 (or $GATEWAY_REDIS_URL).
For tokens per minute and USD per day the reference is what one embedded gateway admitted under the
same load (exactness of the store itself: tests/state/test_redis_counters.py).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-replicas"
BODY = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 10}
PRICING = """
models:
  echo: {input: 1000, output: 1000, source: benchmark, as_of: 2026-12-01}
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def policies(work: Path, name: str, limits: str, counters: str, prefix: str, state_extra: str = "") -> Path:
    root = work / name
    root.mkdir(parents=True)
    (root / "gateway.yaml").write_text(textwrap.dedent(f"""
        upstreams: {{mock: {{type: mock}}}}
        models: {{echo: {{targets: [{{upstream: mock, model: echo}}]}}}}
        keys:
          - {{name: app, sha256: {hashlib.sha256(KEY.encode()).hexdigest()}, policy: default, limits: {limits}}}
        state: {{counters: {counters}, key_prefix: "{prefix}"{state_extra}}}
        server: {{watch_interval_s: 0}}
        """))
    (root / "default.yaml").write_text("request: []\nresponse: []\n")
    (root / "pricing.yaml").write_text(PRICING)
    return root


def launch(root: Path, work: Path, i: int, port: int) -> subprocess.Popen:
    """Replica `i` of `root` on `port`, with its own state directory (the same one when started again)."""
    return subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--policies", str(root), "--port",
                             str(port), "--state-dir", str(work / f"{root.name}-state-{i}"),
                             "--log-level", "warning"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=(work / f"{root.name}-{i}.log").open("a"))


def wait_ready(urls: list[str], work: Path) -> None:
    for url in urls:
        deadline = time.monotonic() + 60
        while True:
            try:
                import httpx

                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except Exception:  # not up yet
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not start; see {work}")
            time.sleep(0.1)


def start(root: Path, work: Path, n: int) -> tuple[list[subprocess.Popen], list[str]]:
    ports = [free_port() for _ in range(n)]
    procs = [launch(root, work, i, port) for i, port in enumerate(ports)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    wait_ready(urls, work)
    return procs, urls


def stop(procs) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(30)


async def load(urls: list[str], rate: float, seconds: float) -> dict[int, int]:
    """Requests at `rate`/s, round-robin over `urls`, for `seconds`; counts per status."""
    counts: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as session:
        async def one(url: str) -> None:
            try:
                async with session.post(url + "/v1/chat/completions", json=BODY, headers=headers) as r:
                    await r.read()
                    counts[r.status] = counts.get(r.status, 0) + 1
            except aiohttp.ClientError:
                counts[-1] = counts.get(-1, 0) + 1

        tasks, t0, i = [], time.monotonic(), 0
        while (elapsed := time.monotonic() - t0) < seconds:
            due = int(elapsed * rate)
            while i < due:
                tasks.append(asyncio.create_task(one(urls[i % len(urls)])))
                i += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
    return counts


async def latency(url: str, n: int) -> list[float]:
    headers = {"Authorization": f"Bearer {KEY}"}
    out = []
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            t0 = time.perf_counter()
            async with session.post(url + "/v1/chat/completions", json=BODY, headers=headers) as r:
                await r.read()
            out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=58, help="load duration; keep it under 60 (one window)")
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--rpm", type=int, default=600)
    p.add_argument("--latency-requests", type=int, default=2000, help="0 skips the overhead comparison")
    p.add_argument("--workers-rounds", type=int, default=3, help="0 skips the --workers 1 vs 2 comparison")
    p.add_argument("--limits", default="rpm,tpm,usd", help="which limits to check (comma-separated; '' for none)")
    p.add_argument("--load-generator", choices=["auto", "wrk", "aiohttp"], default="auto",
                   help="for the workers comparison: wrk when installed (apt-get install wrk), else aiohttp")
    args = p.parse_args()
    os.environ.setdefault("GATEWAY_REDIS_URL", "redis://127.0.0.1:6379/0")
    work = Path(tempfile.mkdtemp(prefix="replicas-"))
    rate = 4 * args.rpm / 60
    # Each request costs ~(prompt + 10 max tokens) tokens and $0.001-ish at the bench price: the tpm and
    # USD limits are set so that, like the rpm one, about a quarter of the offered load fits.
    # The same load on one gateway with embedded counters and on N replicas sharing Redis: both must
    # admit exactly the limit. The run stays within one 60 s window (--seconds 58) so that no bucket
    # slides out before it ends: any excess is then an error of the store, not the window moving on.
    # tpm and USD: a request is estimated at ~20 tokens (prompt + max_tokens 10) and settles at ~12 (the
    # echo answer is 2 tokens) and ~$0.012 at the bench price, so these limits also admit ~500 of 2,300.
    limits_of = {"rpm": f"{{requests_per_minute: {args.rpm}}}", "tpm": "{tokens_per_minute: 6000}",
                 "usd": "{usd_per_day: 6}"}
    cases = [(name, limits_of[name], counters, 1 if counters == "embedded" else args.replicas)
             for name in args.limits.split(",") if name for counters in ("embedded", "redis")]
    rows = []
    for name, limits, counters, n in cases:
        prefix = f"bench-{os.urandom(4).hex()}"
        root = policies(work, f"{name}-{counters}", limits, counters, prefix)
        procs, urls = start(root, work, n)
        try:
            counts = asyncio.run(load(urls, rate, args.seconds))
        finally:
            stop(procs)
        admitted = counts.get(200, 0)
        # rpm: the limit itself; tpm / usd: what the same load admitted on one embedded gateway
        allowed = min(sum(counts.values()), args.rpm) if name == "rpm" else (rows[-1][4] if counters == "redis"
                                                                             else admitted)
        rows.append((name, counters, n, sum(counts.values()), admitted, allowed, counts))
    if rows:
        print(f"Limit accuracy: round-robin, {rate:.0f} req/s offered (4x the limit) for {args.seconds:.0f} s")
    for name, counters, n, sent, admitted, allowed, counts in rows:
        print(f"  {name:<5} {n} x {counters:<8} sent {sent:>6}  admitted {admitted:>6}  allowed {allowed:>6}  "
              f"error {100 * (admitted - allowed) / allowed:+.2f}%  statuses {dict(sorted(counts.items()))}")

    if args.latency_requests:
        overhead(args, work)
    if args.workers_rounds:
        workers(args, work)
    return 0


def overhead(args, work: Path) -> None:
    """Embedded vs Redis counters, one replica each, sequential requests, interleaved rounds."""
    emb, _ = start(policies(work, "lat-embedded", "{requests_per_minute: 100000000}", "embedded", "x"), work, 1)
    red, _ = start(policies(work, "lat-redis", "{requests_per_minute: 100000000}", "redis",
                            f"bench-{os.urandom(4).hex()}"), work, 1)
    try:
        urls = {"embedded": _url_of(emb[0]), "redis": _url_of(red[0])}
        lat = {k: [] for k in urls}
        # many short interleaved rounds: the machine's speed drifts over seconds (one p50 moved
        # 0.49-1.06 ms between runs), and both gateways must see the same drift
        for _ in range(20):
            for k, u in urls.items():
                lat[k] += asyncio.run(latency(u, args.latency_requests // 20))
    finally:
        stop(emb + red)
    p50 = {k: statistics.median(v) for k, v in lat.items()}
    p99 = {k: sorted(v)[int(len(v) * 0.99)] for k, v in lat.items()}
    print(f"Overhead ({args.latency_requests} sequential requests each, interleaved): embedded p50 {p50['embedded']:.3f} ms "
          f"p99 {p99['embedded']:.3f}; redis p50 {p50['redis']:.3f} ms p99 {p99['redis']:.3f}; "
          f"added p50 {p50['redis'] - p50['embedded']:+.3f} ms")


async def throughput(url: str, concurrency: int, seconds: float) -> float:
    headers = {"Authorization": f"Bearer {KEY}"}
    done = 0
    stop_at = time.monotonic() + seconds
    conn = aiohttp.TCPConnector(limit=concurrency)  # 64 keep-alive connections, spread over the workers at accept
    async with aiohttp.ClientSession(connector=conn) as session:
        async def worker() -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                async with session.post(url + "/v1/chat/completions", json=BODY, headers=headers) as r:
                    await r.read()
                    done += r.status == 200
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / seconds


def throughput_wrk(url: str, concurrency: int, seconds: float, work: Path) -> float:
    """The same load from wrk (C, one thread): it needs a fraction of the CPU the Python client does,
    which matters when the load generator and the gateway share two cores."""
    import json

    script = work / "post.lua"
    script.write_text(f"""
wrk.method = "POST"
wrk.body = {json.dumps(json.dumps(BODY))}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {KEY}"
""")
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "-s", str(script),
                          url + "/v1/chat/completions"], capture_output=True, text=True, check=True).stdout
    rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec:")))
    bad = next((int(line.split()[-1]) for line in out.splitlines() if "Non-2xx" in line), 0)
    if bad:
        raise SystemExit(f"wrk saw {bad} non-2xx responses from {url}")
    return rps


def workers(args, work: Path) -> None:
    """`gateway serve --workers 1` vs `--workers 2` (Redis counters, a key with a huge limit), c=64."""
    root = policies(work, "workers", "{requests_per_minute: 100000000}", "redis", f"bench-{os.urandom(4).hex()}")
    procs = {}
    for n in (1, 2):
        port = free_port()
        procs[n] = (subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--policies", str(root), "--port",
                                      str(port), "--workers", str(n), "--state-dir", str(work / f"workers-{n}"),
                                      "--log-level", "warning"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=(work / f"workers-{n}.log").open("w")), f"http://127.0.0.1:{port}")
    try:
        import httpx

        for _, url in procs.values():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
        time.sleep(2)
        rps: dict[int, list[float]] = {1: [], 2: []}
        cores: dict[int, list[float]] = {1: [], 2: []}  # CPU cores the gateway's processes used under load
        import shutil

        use_wrk = args.load_generator == "wrk" or (args.load_generator == "auto" and shutil.which("wrk"))
        for _ in range(args.workers_rounds):
            for n, (proc, url) in procs.items():
                tree = _process_tree(proc.pid)
                cpu0, t0 = sum(_cpu_s(p) for p in tree), time.monotonic()
                rps[n].append(throughput_wrk(url, 64, 5.0, work) if use_wrk else asyncio.run(throughput(url, 64, 5.0)))
                cores[n].append((sum(_cpu_s(p) for p in tree) - cpu0) / (time.monotonic() - t0))
    finally:
        stop([p for p, _ in procs.values()])
    one, two = statistics.median(rps[1]), statistics.median(rps[2])
    c1, c2 = statistics.median(cores[1]), statistics.median(cores[2])
    print(f"Workers (c=64 keep-alive connections, {args.workers_rounds} interleaved rounds of 5 s): "
          f"1 worker {one:.0f} req/s, 2 workers {two:.0f} req/s, ratio {two / one:.2f}x "
          f"(load from {'wrk' if use_wrk else 'aiohttp'}, on the same two cores)")
    # One worker is not one core: its ledger writer and journal threads run beside the event loop.
    # Throughput per core used says whether the second worker scales; the cores say what was left.
    print(f"  gateway CPU: 1 worker {c1:.2f} cores ({one / c1:.0f} req/s per core), 2 workers {c2:.2f} cores "
          f"({two / c2:.0f} req/s per core); per-core ratio {(two / c2) / (one / c1):.2f}x")


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the supervisor's workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _url_of(proc: subprocess.Popen) -> str:
    args = proc.args
    return f"http://127.0.0.1:{args[args.index('--port') + 1]}"


if __name__ == "__main__":
    sys.exit(main())
