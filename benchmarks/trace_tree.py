#!/usr/bin/env python3
"""Print the trace of one guarded request that is retried and then fails over, as a tree: span
names, kinds, durations and key attributes, as an in-process OTLP collector received them.

    .venv/bin/python benchmarks/trace_tree.py

The gateway config and collector are the ones tests/test_tracing.py checks (two request checks, a
route whose first target fails twice, then a second upstream).
"""
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_tracing import Collector, Upstream, gateway_yaml, POLICY, _chat
from tests.helpers import running_gateway, write_policies
c, u = Collector(), Upstream()
tmp = Path(tempfile.mkdtemp())
root = write_policies(tmp / "p", gateway_yaml(c.url, u.server.url), guarded=POLICY)
with running_gateway(root, ledger=tmp / "l.db") as gw:
    r = _chat(gw, "guarded", traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    spans = c.wait_for(r.headers["x-gateway-trace-id"], 7)
keys = ("gen_ai.request.model", "gen_ai.response.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
        "gateway.check.type", "gateway.check.action", "gateway.upstream", "gateway.retry", "gateway.fallback", "gateway.outcome",
        "http.response.status_code", "gateway.cost_usd")
kids = {}
for s in spans: kids.setdefault(s["parent"], []).append(s)
def show(s, depth):
    attrs = ", ".join(f"{k.split('.')[-1] if k.startswith('gateway.') else k}={s['attrs'][k]}" for k in keys if k in s["attrs"])
    kind = {1: "internal", 2: "server", 3: "client"}.get(s["kind"], "?")
    print(f"{'  ' * depth}{s['name']} [{kind}, {s['ms']:.2f} ms{', ERROR' if s['status'] == 2 else ''}] {attrs}")
    for k in sorted(kids.get(s["span_id"], []), key=lambda x: x["attrs"].get("gateway.attempt", 0)):
        show(k, depth + 1)
print("trace", r.headers["x-gateway-trace-id"], "(continued from the caller's traceparent)")
for s in spans:
    if s["parent"] == "00f067aa0ba902b7": show(s, 0)
c.stop(); u.server.stop()
