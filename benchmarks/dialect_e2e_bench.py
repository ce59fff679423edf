"""What the ingress translation adds end to end (issue #14): the same 500-token answer asked for as a
chat completion (native, no translation), a Responses request and a Messages request, through one
`gateway serve` to the mock server, interleaved request by request so machine noise hits every path
alike. Non-streamed: latency p50 at concurrency 1. Streamed (500 one-word events): time to first
content byte p50 and total stream time p50. Each path's figure minus the native path's is what the
translation costs; the gateway's own x-gateway-overhead-ms header is reported beside it.

    .venv/bin/python benchmarks/dialect_e2e_bench.py [--n 400]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from gateway.bench import procs

ANSWER = " ".join(f"w{i % 97}" for i in range(500))  # ~500 tokens, one word per streamed event
GATEWAY_YAML = f"""
upstreams:
  up: {{type: openai, base_url: "{{mock}}/v1", max_connections: 100}}
models:
  m: {{targets: [{{upstream: up, model: "fixed?text={ANSWER.replace(' ', '%20')}"}}], retries: 0}}
open_mode: {{policy: bench}}
metering: {{enabled: true}}
"""
QUESTION = "Please list the words."
PATHS = {
    "chat (native)": ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": QUESTION}]}),
    "responses": ("/v1/responses", {"model": "m", "input": QUESTION}),
    "messages": ("/v1/messages", {"model": "m", "max_tokens": 1024, "messages": [{"role": "user", "content": QUESTION}]}),
}


async def one(session, url: str, body: bytes) -> tuple[float, float]:
    t0 = time.perf_counter()
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        await r.read()
        assert r.status == 200, r.status
        return (time.perf_counter() - t0) * 1000, float(r.headers["x-gateway-overhead-ms"])


async def streamed(session, url: str, body: bytes) -> tuple[float, float]:
    """(ms to the first byte of content, ms to the end of the stream)."""
    t0 = time.perf_counter()
    first = None
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        assert r.status == 200, r.status
        async for chunk in r.content.iter_any():
            if first is None and b"w0" in chunk:  # the answer's first word, in any dialect's framing
                first = (time.perf_counter() - t0) * 1000
    return first, (time.perf_counter() - t0) * 1000


async def drive(base: str, n: int) -> dict:
    out: dict = {name: {"ms": [], "overhead": [], "ttfb": [], "stream_ms": []} for name in PATHS}
    async with aiohttp.ClientSession() as session:
        bodies = {k: orjson.dumps(b) for k, (_, b) in PATHS.items()}
        streams = {k: orjson.dumps({**b, "stream": True}) for k, (_, b) in PATHS.items()}
        for _ in range(20):  # warm-up
            for name, (path, _) in PATHS.items():
                await one(session, base + path, bodies[name])
                await streamed(session, base + path, streams[name])
        rng = random.Random(0)
        names = list(PATHS)
        for _ in range(n):
            rng.shuffle(names)  # interleaved, in a new order each round: no path always goes first
            for name in names:
                ms, overhead = await one(session, base + PATHS[name][0], bodies[name])
                out[name]["ms"].append(ms)
                out[name]["overhead"].append(overhead)
            rng.shuffle(names)
            for name in names:
                first, total = await streamed(session, base + PATHS[name][0], streams[name])
                out[name]["ttfb"].append(first)
                out[name]["stream_ms"].append(total)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=400, help="requests per path and mode")
    args = p.parse_args()
    children: list = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            mock = procs.spawn_mock(work, children)
            urls, _, _ = procs.spawn_gateways(work, GATEWAY_YAML.replace("{mock}", mock),
                                              {"gw": "request: []\nresponse: []\n"}, children)
            results = asyncio.run(drive(urls["gw"], args.n))
        finally:
            for c in children:
                procs.stop(c)
    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    native = med["chat (native)"]
    print(f"500-token answer, n={args.n} per path and mode, interleaved; p50 in ms (difference to native)")
    print(f"{'path':16} {'latency':>16} {'gw overhead':>16} {'stream TTFB':>16} {'stream total':>16}")
    for name, m in med.items():
        cells = [f"{m[k]:7.3f} ({m[k] - native[k]:+.3f})" for k in ("ms", "overhead", "ttfb", "stream_ms")]
        print(f"{name:16} " + " ".join(f"{c:>16}" for c in cells))


if __name__ == "__main__":
    main()
