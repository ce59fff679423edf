#!/usr/bin/env python3
"""Streaming cost of output guardrails: time to first content and to the end of the answer.

    .venv/bin/python benchmarks/output_guard_bench.py [--requests 60] [--word-ms 15]

One mock upstream that streams a ~150-word answer (supported by the request's 5 documents) one word
every `--word-ms`, and three gateways: no checks, `faithfulness` in `hold` mode, in `monitor` mode.
Requests are interleaved. Hold may add up to one sentence's check time to the first content; monitor
should add nothing measurable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.faithfulness_bench import corpus  # noqa: E402
from gateway.bench import procs  # noqa: E402

POLICIES = {
    "none": "response: []\n",
    "hold": "response:\n  - {type: faithfulness, action: block, stream: hold}\n",
    "monitor": "response:\n  - {type: faithfulness, action: block, stream: monitor}\n",
}
GATEWAY_YAML = """
upstreams:
  upstream: {{type: openai, base_url: {upstream}/v1, timeouts: {{connect_s: 5, read_s: 60}}}}
models:
  bench: {{targets: [{{upstream: upstream, model: "{target}"}}], retries: 0}}
open_mode: {{policy: bench}}
metering: {{enabled: false}}
"""


async def timed_stream(session, url: str, body: bytes) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    first = None
    finish = ""
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        async for line in resp.content:
            if not line.startswith(b"data: {"):
                continue
            chunk = orjson.loads(line[6:])
            for c in chunk.get("choices") or ():
                if first is None and (c.get("delta") or {}).get("content"):
                    first = (time.perf_counter() - t0) * 1000
                finish = c.get("finish_reason") or finish
    return first or float("nan"), (time.perf_counter() - t0) * 1000, finish


async def drive(urls: dict[str, str], body: bytes, n: int) -> dict:
    out = {name: {"ttfc": [], "total": [], "finish": set()} for name in urls}
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            for url in urls.values():
                await timed_stream(s, url, body)
        for _ in range(n):
            for name, url in urls.items():
                first, total, finish = await timed_stream(s, url, body)
                out[name]["ttfc"].append(first)
                out[name]["total"].append(total)
                out[name]["finish"].add(finish)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--word-ms", type=float, default=15)
    args = ap.parse_args()
    docs, answer, question = corpus(invent=False)
    from urllib.parse import quote

    target = f"fixed?chunk_delay_ms={args.word_ms}&text={quote(answer)}"
    work = Path(tempfile.mkdtemp(prefix="og-bench-"))
    children = []
    try:
        upstream = procs.spawn_mock(work, children)
        gateway_yaml = GATEWAY_YAML.format(upstream=upstream, target=target.replace('"', '\\"'))
        bases, _ready, _pids = procs.spawn_gateways(work, gateway_yaml, POLICIES, children)
        urls = {name: base + "/v1/chat/completions" for name, base in bases.items()}
        body = orjson.dumps({"model": "bench", "stream": True, "messages": [{"role": "user", "content": question}],
                             "gateway": {"context": [{"id": f"d{i}", "text": d} for i, d in enumerate(docs)]}})
        res = asyncio.run(drive(urls, body, args.requests))
    finally:
        for p in children:
            procs.stop(p)
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(res["none"]["ttfc"])
    print(f"answer {len(answer.split())} words streamed one word per {args.word_ms} ms; 5 documents; "
          f"{args.requests} requests per gateway, interleaved")
    print(f"{'policy':<10}{'first content p50':>18}{'p99':>9}{'added p50':>11}{'whole answer p50':>18}  finish")
    for name, r in res.items():
        ttfc = sorted(r["ttfc"])
        print(f"{name:<10}{statistics.median(ttfc):>15.1f} ms{ttfc[int(len(ttfc) * .99) - 1]:>9.1f}"
              f"{statistics.median(ttfc) - base:>11.1f}{statistics.median(r['total']):>15.1f} ms  {sorted(r['finish'])}")
    print(json.dumps({n: {"ttfc_p50": statistics.median(r["ttfc"]), "total_p50": statistics.median(r["total"])}
                      for n, r in res.items()}))


if __name__ == "__main__":
    main()
