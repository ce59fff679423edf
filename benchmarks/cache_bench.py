"""The exact response cache (issue #17): how fast a hit is, and what 100k entries cost in memory.

    python benchmarks/cache_bench.py [--requests 3000] [--entries 100000]

Starts the mock upstream, one gateway with the cache off and one with it on (both empty policy,
metering on, the same deterministic request). Sequential requests, interleaved round-robin:
  direct   the mock upstream itself
  gateway  the gateway with the cache off: the empty-policy path (mock round trip included)
  hit      the cached gateway answering the same request from the cache (no upstream call)
"added over the empty-policy path" = hit p50 - (gateway p50 - direct p50), i.e. a hit compared with
the gateway's own share of an uncached request; a hit should also beat a mock round trip.
Then, in this process, the embedded store filled with --entries answers of ~1 KB: RSS per 100k.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.bench import procs  # noqa: E402
from gateway.bench.load import one  # noqa: E402

REPLY = "A cached answer of about forty words, as a short chat reply would be. " * 3
GATEWAY_YAML = """
upstreams:
  upstream: {{type: openai, base_url: "{upstream}/v1", max_connections: 100}}
models:
  bench: {{targets: [{{upstream: upstream, model: "{target}"}}], retries: 0}}
open_mode: {{policy: none}}
cache: {{enabled: {cache}}}
"""


def start_gateway(work: Path, name: str, upstream: str, cache: bool):
    policies = work / name / "policies"
    policies.mkdir(parents=True)
    target = "fixed?text=" + REPLY.strip().replace(" ", "+")
    (policies / "gateway.yaml").write_text(GATEWAY_YAML.format(upstream=upstream, target=target,
                                                                cache=str(cache).lower()))
    (policies / "none.yaml").write_text("request: []\nresponse: []\n")
    port = procs.free_port()
    proc = procs.spawn(["-m", "gateway", "serve", "--policies", str(policies), "--port", str(port),
                        "--state-dir", str(work / name / "state"), "--log-level", "warning"],
                       work / f"{name}.log", cwd=work)
    procs.wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
    return proc, f"http://127.0.0.1:{port}/v1/chat/completions"


async def latencies(urls: dict[str, str], bodies: dict[str, bytes], n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in urls}
    async with aiohttp.ClientSession() as session:
        for k in urls:  # warm-up; for "hit" the first request stores the answer
            for _ in range(50):
                await one(session, urls[k], bodies[k])
        names = list(urls)
        for i in range(n):
            for k in names[i % len(names):] + names[:i % len(names)]:
                out[k].append(await one(session, urls[k], bodies[k]))
    return out


def memory_per_100k(entries: int) -> tuple[float, float]:
    """(MB of RSS per 100k entries, payload MB per 100k) for ~1 KB answers in the embedded store."""
    from gateway.cache.store import CacheKey, Entry
    from gateway.state.embedded_cache import EmbeddedCache

    completion = {"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "bench",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY * 4},
                               "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 30, "completion_tokens": 200, "total_tokens": 230}}
    store = EmbeddedCache(entries + 1, 1 << 40)
    gc.collect()
    before = procs.rss_mb(os.getpid())
    now = time.time()
    payload = 0

    async def fill():
        nonlocal payload
        for i in range(entries):
            completion["id"] = f"chatcmpl-{i}"
            body = orjson.dumps({"completion": completion, "upstream": "upstream", "served_model": "bench",
                                 "usage": {"input": 30, "output": 200, "cached": 0, "reasoning": 0}, "cost_usd": 1e-4})
            payload += len(body)
            await store.put(CacheKey(f"{i:064x}", "key:bench", "bench"), Entry("key:bench", "bench", now, now + 3600, body))

    asyncio.run(fill())
    gc.collect()
    used = procs.rss_mb(os.getpid()) - before
    return used * 100_000 / entries, payload / 1e6 * 100_000 / entries


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--entries", type=int, default=100_000)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cache-bench-"))
    port = procs.free_port()
    upstream = f"http://127.0.0.1:{port}"
    children = [procs.spawn(["-m", "gateway", "mock-server", "--port", str(port)], work / "mock.log")]
    try:
        procs.wait_ready(upstream + "/mock/stats", children[0])
        plain, plain_url = start_gateway(work, "plain", upstream, cache=False)
        cached, cached_url = start_gateway(work, "cached", upstream, cache=True)
        children += [plain, cached]
        target = "fixed?text=" + REPLY.strip().replace(" ", "+")
        question = {"messages": [{"role": "user", "content": "What does a cache hit cost?"}], "temperature": 0}
        urls = {"direct": upstream + "/v1/chat/completions", "gateway": plain_url, "hit": cached_url}
        bodies = {"direct": orjson.dumps({"model": target, **question}),
                  "gateway": orjson.dumps({"model": "bench", **question}),
                  "hit": orjson.dumps({"model": "bench", **question})}
        lat = asyncio.run(latencies(urls, bodies, args.requests))
    finally:
        for c in children:
            procs.stop(c)
    p50 = {k: statistics.median(v) for k, v in lat.items()}
    p99 = {k: sorted(v)[int(len(v) * 0.99)] for k, v in lat.items()}
    for k in lat:
        print(f"  {k:<8} p50 {p50[k]:.3f} ms  p99 {p99[k]:.3f} ms")
    own = p50["gateway"] - p50["direct"]
    added = p50["hit"] - own
    print(f"Exact hit: p50 {p50['hit']:.3f} ms; the gateway's own share of an uncached request {own:.3f} ms; "
          f"hit added over the empty-policy path {added:+.3f} ms (target <= 0.3); "
          f"{'faster' if p50['hit'] < p50['direct'] else 'slower'} than a mock round trip ({p50['direct']:.3f} ms)")
    if args.entries:
        rss, payload = memory_per_100k(args.entries)
        print(f"Embedded store: {rss:.0f} MB RSS per 100k entries of {payload / 100:.2f} KB answers "
              f"({payload:.0f} MB of stored JSON per 100k)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
