#!/usr/bin/env python3
"""Added latency and throughput of the input guardrails, side by side in one run.

    .venv/bin/python benchmarks/guard_bench.py [--requests 200] [--seconds 5] [--json FILE]

One mock upstream and one gateway process per policy (none, pii regex-only, pii with NER, topics +
injection, all three); metering off so only the checks differ. Requests to all gateways are
interleaved. Reports, per policy: added latency p50/p99 over the no-check gateway for a 100-word and
a 2,000-word prompt; throughput at concurrency 16 (100 words); and, during that load, the latency of
a /healthz probe every 20 ms (the event loop must stay responsive while models run in the pool).
`--upstream-latency-ms 300` shows the early upstream start: judging-only checks overlap the model.
Every request carries a different text (a case number and the sentence order vary): the model
batchers would otherwise embed 16 identical concurrent prompts once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.bench import procs  # noqa: E402
from gateway.bench.load import concurrent, one  # noqa: E402

POLICIES = {
    "none": "request: []\n",
    "pii-regex": "request:\n  - {type: pii, mode: regex}\n",
    "pii-ner": "request:\n  - {type: pii, mode: ner}\n",
}

TOPICS = """  - type: topics
    threshold: 0.30
    allowed:
      - name: banking
        examples: [what is my account balance, transfer money to my savings account, show me my recent transactions,
                   how do I change my PIN, I think there is a fraudulent charge on my account, when is my bill due]
      - name: cards
        examples: [my credit card was declined, I lost my card please cancel it, what is the credit limit on my card,
                   how do I redeem my reward points, what is the APR on my credit card, my card is damaged]
"""
POLICIES["topics+injection"] = "request:\n  - {type: injection}\n" + TOPICS
POLICIES["all"] = "request:\n  - {type: pii, mode: ner}\n  - {type: injection}\n" + TOPICS

GATEWAY_YAML = """
upstreams:
  upstream: {{type: openai, base_url: {upstream}/v1, timeouts: {{connect_s: 5, read_s: 60}}, max_connections: 1000}}
models:
  bench: {{targets: [{{upstream: upstream, model: "fixed?text=Your+balance+is+shown+in+the+app.&latency_ms={latency}"}}], retries: 0}}
open_mode: {{policy: bench}}
server: {{max_body_mb: 8}}
metering: {{enabled: false}}
"""

SENTENCES = [
    "Hello, my name is Maria Lopez and I have a question about my checking account.",
    "Last week I noticed a charge of 42 dollars that I do not recognise from a shop in Denver.",
    "You can reach me at maria.lopez@example.com or on +1 415-555-0132 during the day.",
    "I already called the branch on Main Street but nobody could explain the transaction to me.",
    "Could you tell me whether this payment was made with my debit card or with the credit card?",
    "If it was fraud, I would like the card blocked and a replacement sent to my home address.",
    "Thanks a lot for your help, I have been a customer of this bank for more than ten years.",
]


def prompt(words: int, n: int | None = None) -> str:
    """A `words`-word prompt; with `n`, one of many different ones (a reference number and the
    sentence order vary), so no two requests of a run carry the same text."""
    out: list[str] = []
    i = 0 if n is None else n % len(SENTENCES)
    while sum(len(s.split()) for s in out) < words:
        out.append(SENTENCES[i % len(SENTENCES)])
        i += 1
    text = " ".join(out)
    return text if n is None else f"Case {n}: {text}"


async def healthz_probe(session: aiohttp.ClientSession, url: str, stop: asyncio.Event, out: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        async with session.get(url) as r:
            await r.read()
        out.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.02)


def body(words: int, n: int) -> bytes:
    return orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": prompt(words, n)}]})


async def drive(urls: dict[str, str], args) -> dict:
    seq = iter(range(1 << 62))
    res: dict = {"sequential": {}, "c16": {}}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=120)) as s:
        for n, url in urls.items():
            for w in (100, 2000):
                for _ in range(5):
                    await one(s, url + "/v1/chat/completions", body(w, next(seq)))
        for w in (100, 2000):
            lat = {n: [] for n in urls}
            for _ in range(args.requests if w == 100 else max(30, args.requests // 4)):
                k = next(seq)  # the same text for every gateway, a new one each round
                for n, url in urls.items():
                    lat[n].append(await one(s, url + "/v1/chat/completions", body(w, k)))
            base50, base99 = np.percentile(lat["none"], 50), np.percentile(lat["none"], 99)
            res["sequential"][w] = {n: {"p50": round(float(np.percentile(v, 50)), 2),
                                        "p99": round(float(np.percentile(v, 99)), 2),
                                        "added_p50": round(float(np.percentile(v, 50) - base50), 2),
                                        "added_p99": round(float(np.percentile(v, 99) - base99), 2)}
                                    for n, v in lat.items()}
        for n, url in urls.items():
            stop, probe = asyncio.Event(), []
            task = asyncio.create_task(healthz_probe(s, url + "/healthz", stop, probe))
            sample = await concurrent(s, url + "/v1/chat/completions", lambda i: body(100, 10**6 + i), 16, args.seconds)
            stop.set()
            await task
            res["c16"][n] = {"rps": round(sample.rps, 1), "p50": round(sample.pct(50), 1),
                             "p99": round(sample.pct(99), 1), "errors": sample.errors,
                             "healthz_p50": round(float(np.percentile(probe, 50)), 2),
                             "healthz_p99": round(float(np.percentile(probe, 99)), 2)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200, help="sequential requests per gateway (100 words)")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds of load at concurrency 16 per gateway")
    ap.add_argument("--upstream-latency-ms", type=float, default=0,
                    help="mock model latency; with a realistic value (e.g. 300) checks that only judge "
                         "(topics, injection) run while the model works and add almost nothing")
    ap.add_argument("--only", default="", help="comma-separated policies to run (with `none`, the baseline), "
                    f"of: {', '.join(POLICIES)}; default all; the pass/fail lines need all")
    ap.add_argument("--json")
    args = ap.parse_args()
    policies = POLICIES
    if args.only:
        wanted = {"none", *(x.strip() for x in args.only.split(",") if x.strip())}
        unknown = wanted - set(POLICIES)
        if unknown:
            ap.error(f"--only: unknown policy {', '.join(sorted(unknown))} (have: {', '.join(POLICIES)})")
        policies = {n: v for n, v in POLICIES.items() if n in wanted}
    work = Path(tempfile.mkdtemp(prefix="guard-bench-"))
    children = []
    try:
        upstream = procs.spawn_mock(work, children)
        urls, ready, pids = procs.spawn_gateways(
            work, GATEWAY_YAML.format(upstream=upstream, latency=args.upstream_latency_ms), policies, children)
        res = asyncio.run(drive(urls, args))
        res["ready_s"] = ready
        res["rss_mb"] = {n: round(procs.rss_mb(pid), 0) for n, pid in pids.items()}
    finally:
        for p in children:
            procs.stop(p)
        shutil.rmtree(work, ignore_errors=True)
    for w, rows in res["sequential"].items():
        print(f"\nSequential, {w}-word prompt (ms)   p50      p99   added p50  added p99")
        for n, r in rows.items():
            print(f"  {n:<28}{r['p50']:>8.2f} {r['p99']:>8.2f} {r['added_p50']:>10.2f} {r['added_p99']:>10.2f}")
    print("\nConcurrency 16, 100 words      RPS     p50     p99  errors  /healthz p50  p99 (ms)")
    for n, r in res["c16"].items():
        print(f"  {n:<24}{r['rps']:>8.1f} {r['p50']:>7.1f} {r['p99']:>7.1f} {r['errors']:>7} "
              f"{r['healthz_p50']:>12.2f} {r['healthz_p99']:>6.2f}")
    print("\nready after (s):", res["ready_s"], " RSS (MB):", res["rss_mb"])
    s100 = res["sequential"][100]
    if set(policies) != set(POLICIES):
        return
    # The no-check gateway is CPU-bound on HTTP at thousands of RPS: not what this target is about.
    guarded_probe = max(r["healthz_p99"] for n, r in res["c16"].items() if n != "none")
    checks = [
        (s100["pii-regex"]["added_p50"] <= 10, f"pii regex-only added p50 {s100['pii-regex']['added_p50']} ms <= 10 ms"),
        (s100["pii-ner"]["added_p50"] <= 40, f"pii with NER added p50 {s100['pii-ner']['added_p50']} ms <= 40 ms"),
        (s100["topics+injection"]["added_p50"] <= 25,
         f"topics + injection added p50 {s100['topics+injection']['added_p50']} ms <= 25 ms"),
        (res["c16"]["topics+injection"]["rps"] >= 120,
         f"topics + injection at c=16 {res['c16']['topics+injection']['rps']} req/s >= 120"),
        (res["c16"]["pii-ner"]["rps"] >= 80, f"pii with NER at c=16 {res['c16']['pii-ner']['rps']} req/s >= 80"),
        (guarded_probe <= 5, f"/healthz p99 under guardrail load (worst policy) {guarded_probe} ms <= 5 ms"),
    ]
    print()
    for ok, text in checks:
        print(f"[{'PASS' if ok else 'FAIL'}] {text}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
