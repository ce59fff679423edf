"""`gateway guard "text" --policy NAME`: what a policy's request checks would do to an input.

For people editing policy files: it runs the real checks (same models, thresholds, actions) on one
text as a user message, and prints each verdict and the text as it would be sent upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from gateway.config.yamlfile import load_yaml
from gateway.errors import GatewayError
from gateway.exchange import Exchange
from gateway.pipeline import build_pipeline


def add_parser(sub) -> None:
    p = sub.add_parser("guard", help="show what a policy's request checks do to a text")
    p.add_argument("text", help="the text to check (as a user message); '-' reads standard input")
    p.add_argument("--policy", default="default", help="policy name (file in the policies folder) or a path")
    p.add_argument("--policies", help="policies folder (default: ./policies or $GATEWAY_POLICIES)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _policy_path(args: argparse.Namespace) -> Path:
    from gateway.cli import _policies_dir

    candidate = Path(args.policy)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    return _policies_dir(args.policies) / f"{args.policy}.yaml"


def run(args: argparse.Namespace) -> int:
    path = _policy_path(args)
    if not path.exists():
        print(f"error: no policy file {path} (give --policy NAME of a file in the policies folder, or a path)",
              file=sys.stderr)
        return 2
    try:
        pipeline = build_pipeline(path.stem, load_yaml(path))
    except ValueError as e:
        print(f"error: {path} is not a valid policy:\n{e}", file=sys.stderr)
        return 2
    text = sys.stdin.read() if args.text == "-" else args.text
    ex = Exchange("chat.completions", {"model": "guard", "messages": [{"role": "user", "content": text}]})
    blocked: str | None = None

    async def go() -> None:
        nonlocal blocked
        await pipeline.warm()
        try:
            await pipeline.run_request(ex)
        except GatewayError as e:
            blocked = e.message

    asyncio.run(go())
    results = [r.to_json() for r in ex.results]
    sent = ex.body["messages"][0]["content"]
    if args.json:
        print(json.dumps({"policy": path.stem, "blocked": blocked, "sent": None if blocked else sent,
                          "verdicts": results}, indent=1))
        return 0
    print(f"policy {path.stem}: {len(pipeline.request_checks)} request check(s)")
    for r in results:
        score = f" score={r['score']}" if "score" in r else ""
        print(f"  {r['check']} ({r['type']}): {r['action']}{score}  {r.get('reason', '')}  [{r['latency_ms']} ms]")
        if r.get("details"):
            print(f"    {json.dumps(r['details'])[:400]}")
    print(f"result: BLOCKED - {blocked}" if blocked else f"sent upstream: {sent}")
    return 0
